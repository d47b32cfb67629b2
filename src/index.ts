// The public API of the walrus package: the kernel and its plugin contract, the config schema
// builders for plugin authors, errors, and Walrus's own catalog of built-in plugins.
// The TCP client (WalrusClient) joins this list when it lands.

import 'reflect-metadata';

// The TCP client: WalrusClient, ClientError and their types (src/client/index.ts lists them).
export * from './client/index.js';
export type { StorageBackend, StorageFile } from './contracts/storage.js';
export type { RecoveryReport } from './engine/recovery.js';
export { BACKENDS, resolveBackend } from './engine/storage/select.js';
export type { BackendName, Consistency, Entry, FsyncSchedule, ReadBatchOptions, WalrusOptions } from './engine/walrus.js';
export { sanitizeKey, Walrus } from './engine/walrus.js';
export type { Candidate, Catalog, Selection, Selector } from './kernel/catalog.js';
export type { Assignment, ConfigFile, ResolvedConfig, TextSetting } from './kernel/config.js';
export { parseConfigText, readConfigFile, resolveConfig } from './kernel/config.js';
export { ENV_TABLE } from './kernel/env.js';
export type { ErrorCode, ErrorCodeInfo, ErrorKind } from './kernel/errors.js';
export {
  BusyError,
  ConfigError,
  ERROR_CODES,
  FencedError,
  InputError,
  isWalrusError,
  PluginError,
  StateError,
  StorageError,
  TimeoutError,
  WalrusError,
  walrusError,
} from './kernel/errors.js';
export type { Inspection, KernelOptions, KernelState, StopReport } from './kernel/kernel.js';
export { Kernel } from './kernel/kernel.js';
export { limits } from './kernel/limits.js';
export type { PluginState, PluginStatus } from './kernel/plan.js';
export type { AnyPlugin, Plugin, PluginConfigSection, PluginManifest, PluginScope, ProbeContext, ProbeResult } from './kernel/plugin.js';
export { pluginContractProblems } from './kernel/plugin.js';
export type { Infer, Problem } from './kernel/schema.js';
export { Schema, s } from './kernel/schema.js';
export { stopOnSignals } from './kernel/signals.js';
export { CAPABILITIES, Token, token } from './kernel/tokens.js';
export { builtinPlugins, DEFAULT_PLUGINS, walrusCatalog } from './plugins/catalog.js';
export { VERSION } from './version.js';
