// The public API of the walrus package: the kernel and its plugin contract, the config schema
// builders for plugin authors, errors, and Walrus's own catalog of built-in plugins.
// The WAL engine (Walrus) and the TCP client (WalrusClient) join this list as they land.

import 'reflect-metadata';

export type { Candidate, Catalog, Selection, Selector } from './kernel/catalog.js';
export type { Assignment, ConfigFile, ResolvedConfig, TextSetting } from './kernel/config.js';
export { parseConfigText, readConfigFile, resolveConfig } from './kernel/config.js';
export { ENV_TABLE } from './kernel/env.js';
export type { ErrorCode, ErrorCodeInfo, ErrorKind } from './kernel/errors.js';
export {
  ConfigError,
  ERROR_CODES,
  isWalrusError,
  PluginError,
  StateError,
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
