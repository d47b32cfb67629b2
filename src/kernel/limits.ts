// Every bound the kernel enforces, in one place, each named with its unit last.
// Values a user may tune live in the config schema (with these as their bounds); the rest are
// fixed here. Related limits are checked against each other at import time: a broken pair is a
// programming error and crashes at once.

export const limits = {
  /** Largest config file the kernel will read. Config is hand-written; anything bigger is a mistake. */
  configFileBytesMax: 1024 * 1024,
  /** Most plugins one kernel may load (built-in plus custom). */
  pluginsMax: 64,
  /** Longest plugin or capability name. */
  pluginNameLengthMax: 64,
  /** Default and bounds for the time one plugin may take to start. */
  startTimeoutMsDefault: 30_000,
  startTimeoutMsMin: 1,
  startTimeoutMsMax: 10 * 60_000,
  /** Default and bounds for the whole stop sequence (all plugins together). */
  stopTimeoutMsDefault: 10_000,
  stopTimeoutMsMin: 1,
  stopTimeoutMsMax: 10 * 60_000,
  /** Longest array accepted anywhere in the config (cluster.nodes, plugins). */
  configArrayItemsMax: 256,
  /** Longest string accepted anywhere in the config. */
  configStringLengthMax: 4096,
  /** Most problems listed in one CONFIG_INVALID message (the rest are counted). */
  configProblemsListedMax: 50,
} as const;

function assertLimit(condition: boolean, what: string): void {
  if (!condition) throw new Error(`limits.ts is inconsistent: ${what}`);
}

assertLimit(limits.startTimeoutMsMin <= limits.startTimeoutMsDefault, 'startTimeoutMsDefault below its minimum');
assertLimit(limits.startTimeoutMsDefault <= limits.startTimeoutMsMax, 'startTimeoutMsDefault above its maximum');
assertLimit(limits.stopTimeoutMsMin <= limits.stopTimeoutMsDefault, 'stopTimeoutMsDefault below its minimum');
assertLimit(limits.stopTimeoutMsDefault <= limits.stopTimeoutMsMax, 'stopTimeoutMsDefault above its maximum');
assertLimit(limits.pluginsMax <= limits.configArrayItemsMax, 'the plugins list cannot hold pluginsMax names');
