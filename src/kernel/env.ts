// The one table of environment variables and the config paths they set, and the only code in
// Walrus that reads `process.env`. Everything else receives the resolved, frozen config.
// An empty variable counts as unset, so `WALRUS_LOG_LEVEL= walrus start` means "the default".

export interface EnvVariable {
  readonly name: string;
  /** Dotted config path the variable sets (it overrides the config file, flags override it). */
  readonly path: string;
}

export const ENV_TABLE: readonly EnvVariable[] = [
  { name: 'WALRUS_NODE_ID', path: 'node.id' },
  { name: 'WALRUS_DATA_DIR', path: 'node.dataDir' },
  { name: 'WALRUS_CLIENT_HOST', path: 'node.clientHost' },
  { name: 'WALRUS_CLIENT_PORT', path: 'node.clientPort' },
  { name: 'WALRUS_RAFT_HOST', path: 'node.raftHost' },
  { name: 'WALRUS_RAFT_PORT', path: 'node.raftPort' },
  { name: 'WALRUS_JOIN', path: 'node.join' },
  { name: 'WALRUS_STORAGE_BACKEND', path: 'storage.backend' },
  { name: 'WALRUS_DISABLE_IO_URING', path: 'storage.disableIoUring' },
  { name: 'WALRUS_MAX_SEGMENT_ENTRIES', path: 'segments.maxEntries' },
  { name: 'WALRUS_MONITOR_CHECK_MS', path: 'rollover.monitorCheckMs' },
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
