// The public API of the walrus package: the engine, the kernel and its plugin contract, the
// config schema builders for plugin authors, errors, Walrus's own catalog of built-in plugins and
// the TCP client. The engine takes every setting from its caller; this entry point is where an
// embedded user gets the environment's: importing it applies WALRUS_DISABLE_NATIVE, and
// `openWalrus` puts WALRUS_DATA_DIR and WALRUS_DISABLE_IO_URING under the options given.

import 'reflect-metadata';
import { applyProcessSwitches } from './commands/process-switches.js';
import { Walrus, type WalrusOptions } from './engine/walrus.js';
import { type Environment, processEnvironment, walrusOptionsFromEnv } from './kernel/env.js';

// The TCP client: WalrusClient, ClientError and their types (src/client/index.ts lists them).
export * from './client/index.js';
export type { StorageBackend, StorageFile } from './contracts/storage.js';
export { disableNativeAddon } from './engine/native-addon.js';
export { PayloadRun } from './engine/payload-run.js';
export type { RecoveryReport } from './engine/recovery.js';
export { BACKENDS, chooseBackend, resolveBackend } from './engine/storage/select.js';
export type { BackendName, Consistency, Entry, FsyncSchedule, ReadBatchOptions, WalrusOptions } from './engine/walrus.js';
export { DEFAULT_DATA_DIR, sanitizeKey, Walrus } from './engine/walrus.js';
export type { Candidate, Catalog, Selection, Selector } from './kernel/catalog.js';
export type { Assignment, ConfigFile, ResolvedConfig, TextSetting } from './kernel/config.js';
export { parseConfigText, readConfigFile, resolveConfig } from './kernel/config.js';
export type { EngineEnvironment, Environment } from './kernel/env.js';
export { ENV_TABLE, walrusOptionsFromEnv } from './kernel/env.js';
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
export { applyProcessSwitches };

applyProcessSwitches();

/**
 * Walrus.open with the environment's settings as defaults: WALRUS_DATA_DIR for `dataDir`,
 * WALRUS_DISABLE_IO_URING for `disableIoUring`. An option given (not undefined) wins.
 */
export function openWalrus(options: WalrusOptions = {}, env: Environment = processEnvironment()): Promise<Walrus> {
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  return Walrus.open({ ...walrusOptionsFromEnv(env), ...given });
}
