// The one table of environment variables and the config paths they set, and the only code in
// Walrus that reads `process.env`. Everything else receives the resolved, frozen config, or (the
// engine) its options from the caller: `walrusOptionsFromEnv` and `nativeAddonSwitch` are what
// the package's entry points (src/index.ts, src/commands/) hand to the engine.
// An empty variable counts as unset, so `WALRUS_LOG_LEVEL= walrus start` means "the default".

import { ConfigError } from './errors.js';
import { s } from './schema.js';

export interface EnvVariable {
  readonly name: string;
  /** Dotted config path the variable sets (it overrides the config file, flags override it). */
  readonly path: string;
}

/** The variables an embedded engine takes too (through walrusOptionsFromEnv), named once. */
const ENGINE_VARIABLES = { dataDir: 'WALRUS_DATA_DIR', disableIoUring: 'WALRUS_DISABLE_IO_URING' } as const;

export const ENV_TABLE: readonly EnvVariable[] = [
  { name: 'WALRUS_NODE_ID', path: 'node.id' },
  { name: ENGINE_VARIABLES.dataDir, path: 'node.dataDir' },
  { name: 'WALRUS_CLIENT_HOST', path: 'node.clientHost' },
  { name: 'WALRUS_CLIENT_PORT', path: 'node.clientPort' },
  { name: 'WALRUS_RAFT_HOST', path: 'node.raftHost' },
  { name: 'WALRUS_RAFT_PORT', path: 'node.raftPort' },
  { name: 'WALRUS_JOIN', path: 'node.join' },
  { name: 'WALRUS_STORAGE_BACKEND', path: 'storage.backend' },
  { name: ENGINE_VARIABLES.disableIoUring, path: 'storage.disableIoUring' },
  { name: 'WALRUS_MAX_SEGMENT_ENTRIES', path: 'segments.maxEntries' },
  { name: 'WALRUS_REPLICATION_FACTOR', path: 'replication.factor' },
  { name: 'WALRUS_FAILOVER_TIMEOUT_MS', path: 'failover.timeoutMs' },
  { name: 'WALRUS_CONSENSUS', path: 'consensus' },
  { name: 'WALRUS_ETCD_ENDPOINTS', path: 'etcd.endpoints' },
  { name: 'WALRUS_MONITOR_CHECK_MS', path: 'rollover.monitorCheckMs' },
  { name: 'WALRUS_ADMIN_PORT', path: 'admin.port' },
  { name: 'WALRUS_LOG_LEVEL', path: 'log.level' },
  { name: 'WALRUS_PLUGINS', path: 'plugins' },
];

/** Variables outside the config tree, read by the launcher or once per process. */
export const LAUNCHER_ENV = {
  /** Path of the config file when `--config` is not given. */
  config: 'WALRUS_CONFIG',
  /** Any value: do not load the native addon (CRCs then use zlib.crc32; same bytes, slower). */
  disableNative: 'WALRUS_DISABLE_NATIVE',
  /** walrus-cli: the node's client address when `--addr` is not given. */
  cliAddress: 'WALRUS_ADDR',
  /** walrus-cli top: the node's admin address when `--admin` is not given. */
  cliAdminAddress: 'WALRUS_ADMIN_ADDR',
} as const;

export type Environment = Readonly<Record<string, string | undefined>>;

/** A snapshot of the process environment. Tests pass their own object instead. */
export function processEnvironment(): Environment {
  return { ...process.env };
}

/** The value of `name`, or undefined when it is unset or empty. */
export function envValue(env: Environment, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** How the node's config reads a boolean variable (1/true/yes/on, 0/false/no/off). */
const BOOLEAN_TEXT = s.bool({ default: false, description: 'a boolean variable' });

/** What the environment sets of an embedded engine's options (Walrus.open takes none from it itself). */
export interface EngineEnvironment {
  /** WALRUS_DATA_DIR. */
  readonly dataDir?: string;
  /** WALRUS_DISABLE_IO_URING, read as the node reads it. */
  readonly disableIoUring?: boolean;
}

/**
 * The engine options the environment gives, for `openWalrus` (src/index.ts): only the variables
 * that are set. A WALRUS_DISABLE_IO_URING the node's config would refuse is refused here too.
 */
export function walrusOptionsFromEnv(env: Environment = processEnvironment()): EngineEnvironment {
  const dataDir = envValue(env, ENGINE_VARIABLES.dataDir);
  const disableText = envValue(env, ENGINE_VARIABLES.disableIoUring);
  let disableIoUring: boolean | undefined;
  if (disableText !== undefined) {
    const parsed = BOOLEAN_TEXT.parseText(disableText);
    if (!parsed.ok) {
      const problem = `${ENGINE_VARIABLES.disableIoUring}: ${parsed.message}`;
      throw new ConfigError('CONFIG_INVALID', `invalid environment (1 problem):\n  ${problem}`, { problems: [problem] });
    }
    disableIoUring = parsed.value === true;
  }
  return { ...(dataDir === undefined ? {} : { dataDir }), ...(disableIoUring === undefined ? {} : { disableIoUring }) };
}

/** When WALRUS_DISABLE_NATIVE is set: the reason the native addon is off, for disableNativeAddon. */
export function nativeAddonSwitch(env: Environment = processEnvironment()): string | undefined {
  return envValue(env, LAUNCHER_ENV.disableNative) === undefined ? undefined : `${LAUNCHER_ENV.disableNative} is set`;
}
