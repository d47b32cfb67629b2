// Every error Walrus raises on purpose is a WalrusError with a stable code from ERROR_CODES.
// The table below is the single source of truth: docs/errors.md lists the same codes (a unit
// test keeps them in step), and each code fixes its class and whether a retry can help.
// Subclasses group errors by who must react: the operator (config), a plugin author (plugin),
// the caller (timeout: retry later; state: a programming error). Later parts of the system add
// their kinds (storage, protocol, not-leader, fenced) to this same table.

export type ErrorKind = 'config' | 'plugin' | 'timeout' | 'state';

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
export class KernelStateError extends WalrusError {}

const CLASS_BY_KIND: Record<ErrorKind, new (code: ErrorCode, message: string, options?: WalrusErrorOptions) => WalrusError> = {
  config: ConfigError,
  plugin: PluginError,
  timeout: TimeoutError,
  state: KernelStateError,
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
