// Every error Walrus raises on purpose is a WalrusError with a stable code from ERROR_CODES.
// The table below is the single source of truth: docs/errors.md lists the same codes (a unit
// test keeps them in step), and each code fixes its class and whether a retry can help.
// Subclasses group errors by who must react: the operator (config), a plugin author (plugin),
// the caller (input: fix the call; busy and timeout: retry later; state: a programming error),
// and storage (the disk or the data on it). Later parts of the system add their kinds
// (protocol, not-leader, fenced) to this same table.

export type ErrorKind = 'config' | 'plugin' | 'timeout' | 'state' | 'input' | 'busy' | 'storage' | 'fenced';

export interface ErrorCodeInfo {
  readonly kind: ErrorKind;
  readonly retriable: boolean;
  /** One sentence: what happened and what to do about it. docs/errors.md shows it. */
  readonly summary: string;
}

export const ERROR_CODES = {
  CONFIG_FILE: {
    kind: 'config',
    retriable: false,
    summary: 'The config file cannot be read or is not valid YAML; the message gives the path and line.',
  },
  CONFIG_INVALID: {
    kind: 'config',
    retriable: false,
    summary:
      'The effective configuration breaks the schema; the message lists every problem with its key path and where the value came from.',
  },
  PLUGIN_UNKNOWN: {
    kind: 'plugin',
    retriable: false,
    summary: 'A name in `plugins:` is neither a built-in plugin nor a module path (custom plugins start with ./, ../ or /).',
  },
  PLUGIN_LOAD_FAILED: {
    kind: 'plugin',
    retriable: false,
    summary: 'A custom plugin module could not be imported; the cause is attached.',
  },
  PLUGIN_CONTRACT: {
    kind: 'plugin',
    retriable: false,
    summary: 'A plugin object does not fit the plugin contract; the message lists each mismatch.',
  },
  PLUGIN_DUPLICATE: {
    kind: 'plugin',
    retriable: false,
    summary: 'Two plugins in the list share a name, or two loaded plugins provide the same capability.',
  },
  PLUGIN_UNAVAILABLE: {
    kind: 'plugin',
    retriable: false,
    summary:
      'A plugin that the configuration forces (for example `storage.backend: mmap`) cannot run on this machine; the reason is given.',
  },
  PLUGIN_MISSING_REQUIREMENT: {
    kind: 'plugin',
    retriable: false,
    summary: 'A loaded plugin requires a capability that no loaded plugin provides.',
  },
  PLUGIN_CYCLE: {
    kind: 'plugin',
    retriable: false,
    summary: 'Plugins require each other in a cycle, so no start order exists; the cycle is named.',
  },
  PLUGIN_UNDECLARED: {
    kind: 'plugin',
    retriable: false,
    summary: 'A plugin bound or resolved a capability that its manifest does not declare.',
  },
  PLUGIN_START_FAILED: {
    kind: 'plugin',
    retriable: false,
    summary: 'A plugin failed while starting; the plugins started before it were stopped again.',
  },
  PLUGIN_START_TIMEOUT: {
    kind: 'timeout',
    retriable: true,
    summary: 'A plugin did not finish starting within `kernel.startTimeoutMs`; the kernel stopped what it had started.',
  },
  PLUGIN_STOP_FAILED: {
    kind: 'plugin',
    retriable: false,
    summary: 'One or more plugins failed or overran `kernel.stopTimeoutMs` while stopping; the others were still stopped.',
  },
  KERNEL_STATE: {
    kind: 'state',
    retriable: false,
    summary: 'A kernel method was called in the wrong state (for example `start()` twice).',
  },
  CLOSED: {
    kind: 'state',
    retriable: false,
    summary: 'The Walrus instance was closed; open it again to go on.',
  },
  INVALID_TOPIC: {
    kind: 'input',
    retriable: false,
    summary: 'A topic name is empty, longer than 255 UTF-8 bytes, or not a string.',
  },
  INVALID_ARGUMENT: {
    kind: 'input',
    retriable: false,
    summary: 'An option or argument has the wrong type or is out of range; the message names it.',
  },
  ENTRY_TOO_LARGE: {
    kind: 'input',
    retriable: false,
    summary: 'An entry is larger than the per-entry limit; nothing was written.',
  },
  BATCH_TOO_LARGE: {
    kind: 'input',
    retriable: false,
    summary: 'A batch has more than 2000 entries or more bytes than the batch limit; nothing was written.',
  },
  TOPIC_BUSY: {
    kind: 'busy',
    retriable: true,
    summary:
      'A batch append is in flight on this topic; an overlapping append or batch is refused rather than queued. Retry after it settles.',
  },
  DIRECTORY_LOCKED: {
    kind: 'busy',
    retriable: true,
    summary: 'Another live process has this data directory open; one process at a time may use a Walrus directory.',
  },
  CORRUPT_RECORD: {
    kind: 'storage',
    retriable: false,
    summary: 'A record read back from disk fails its checksum or framing; its bytes are never returned.',
  },
  FORMAT_TOO_NEW: {
    kind: 'storage',
    retriable: false,
    summary: 'The data directory was written by a newer on-disk format version than this Walrus reads.',
  },
  IO: {
    kind: 'storage',
    retriable: false,
    summary:
      'The operating system refused a read, write or sync; the cause is attached. After a failed write or sync the instance refuses further appends until reopened.',
  },
  SEGMENT_FULL: {
    kind: 'busy',
    retriable: true,
    summary: 'The open segment reached the rollover threshold and takes no more appends until its rollover applies; retry shortly.',
  },
  NOT_LEADER_FOR_PARTITION: {
    kind: 'fenced',
    retriable: true,
    summary:
      'This node holds no current lease for the segment (it is not its leader, or a rollover moved the lease); the message names the segment key `t_<topic>_s_<n>`.',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface WalrusErrorOptions {
  readonly cause?: unknown;
  /** Structured facts for logs and callers (key path, plugin name, ...). */
  readonly details?: Readonly<Record<string, unknown>>;
}

export class WalrusError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: WalrusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = ERROR_CODES[code].retriable;
    this.details = options.details ?? {};
  }

  override get name(): string {
    return this.constructor.name;
  }
}

export class ConfigError extends WalrusError {
  /** Each problem as `path: message`, in the order found. */
  readonly problems: readonly string[];

  constructor(code: ErrorCode, message: string, options: WalrusErrorOptions & { problems?: readonly string[] } = {}) {
    super(code, message, options);
    this.problems = options.problems ?? [];
  }
}

export class PluginError extends WalrusError {}
export class TimeoutError extends WalrusError {}
/** A method called in a state that does not allow it (a closed instance, a kernel started twice). */
export class StateError extends WalrusError {}
/** The caller's input is wrong: fix the call, retrying the same input cannot help. */
export class InputError extends WalrusError {}
/** The target is busy with a conflicting operation: retry once it settles. */
export class BusyError extends WalrusError {}
/** The disk or the data on it: I/O failures, corruption, unknown formats. */
export class StorageError extends WalrusError {}
/** This node may not write there now (no current lease for the segment): go to its leader, or retry. */
export class FencedError extends WalrusError {}

const CLASS_BY_KIND: Record<ErrorKind, new (code: ErrorCode, message: string, options?: WalrusErrorOptions) => WalrusError> = {
  config: ConfigError,
  plugin: PluginError,
  timeout: TimeoutError,
  state: StateError,
  input: InputError,
  busy: BusyError,
  storage: StorageError,
  fenced: FencedError,
};

/** Builds the error of the class that the code's kind names. */
export function walrusError(code: ErrorCode, message: string, options: WalrusErrorOptions = {}): WalrusError {
  const Class = CLASS_BY_KIND[ERROR_CODES[code].kind];
  return new Class(code, message, options);
}

export function isWalrusError(value: unknown): value is WalrusError {
  return value instanceof WalrusError;
}

/** A one-line description of anything thrown, for logs and aggregated messages. */
export function describeError(value: unknown): string {
  if (value instanceof WalrusError) return `${value.code}: ${value.message}`;
  if (value instanceof Error) return value.message;
  return String(value);
}
