// Every error Walrus raises on purpose is a WalrusError with a stable code from ERROR_CODES.
// The table below is the single source of truth: docs/errors.md lists the same codes (a unit
// test keeps them in step), and each code fixes its class and whether a retry can help.
// Subclasses group errors by who must react: the operator (config), a plugin author (plugin),
// the caller (input: fix the call; busy and timeout: retry later; state: a programming error),
// storage (the disk or the data on it), fenced (no lease or leadership here), protocol (a request
// or reply that breaks the client protocol) and client (what WalrusClient reports). What a code
// looks like on the wire is in src/protocol/wire-errors.ts, keyed by the same codes.

export type ErrorKind = 'config' | 'plugin' | 'timeout' | 'state' | 'input' | 'busy' | 'storage' | 'fenced' | 'protocol' | 'client';

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
  CONFIG_UNSUPPORTED: {
    kind: 'config',
    retriable: false,
    summary:
      'A documented option that this release does not implement yet was set (such as `node.join`); the message names it and where it was set. Remove it.',
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
  NATIVE_ADDON_IN_USE: {
    kind: 'state',
    retriable: false,
    summary:
      'disableNativeAddon() was called after this process had loaded the native addon; call it before the first engine or storage use.',
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
  STORAGE_UNAVAILABLE: {
    kind: 'storage',
    retriable: true,
    summary:
      'A write or sync failed (the message names the cause, e.g. ENOSPC or EIO): the node refuses writes, keeps serving reads, and resumes writes by itself once the disk accepts them again; retry later.',
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
  UNKNOWN_TOPIC: {
    kind: 'input',
    retriable: false,
    summary: 'A node was asked about a topic that was never registered (`ERR unknown topic <topic>`).',
  },
  INVALID_TOPIC_NAME: {
    kind: 'input',
    retriable: false,
    summary:
      'A topic name given to a node (REGISTER, `bootstrap.topics`) breaks the cluster naming rules: empty, over 234 UTF-8 bytes, whitespace or control characters.',
  },
  METADATA_REJECTED: {
    kind: 'input',
    retriable: false,
    summary: 'The metadata state machine refused a committed command (a REGISTER that conflicts, say); the message says why.',
  },
  CORRUPT_SNAPSHOT: {
    kind: 'storage',
    retriable: false,
    summary: 'A metadata snapshot does not decode; the message says which field is wrong.',
  },
  RAFT_DECODE: {
    kind: 'storage',
    retriable: false,
    summary: 'A Raft log record or peer message does not decode: damaged bytes on disk or on the wire.',
  },
  RAFT_NOT_LEADER: {
    kind: 'fenced',
    retriable: true,
    summary: 'A Raft call only the leader can serve reached another node, or no leader is known (an election, a node stopping); retry.',
  },
  RAFT_BUSY: {
    kind: 'busy',
    retriable: true,
    summary: 'A Raft request that is valid only later, such as a membership change while another is pending; retry once it settles.',
  },
  PROPOSAL_DROPPED: {
    kind: 'busy',
    retriable: true,
    summary: 'A proposal was overwritten by a new leader before it committed; nothing of it applied, retry it.',
  },
  CONSENSUS_UNAVAILABLE: {
    kind: 'busy',
    retriable: true,
    summary:
      'The store that keeps the metadata (etcd, with the consensus-etcd plugin) did not take a metadata change: it could not be reached, or failed before it answered, so whether the change was written is unknown. Retry once it is back.',
  },
  PEER_UNAVAILABLE: {
    kind: 'busy',
    retriable: true,
    summary:
      'A request to another node could not be sent: that node is down, unreachable or stopping. Nothing was done there; the message names the node. Retry, through any node.',
  },
  PEER_TIMEOUT: {
    kind: 'timeout',
    retriable: true,
    summary:
      'A request to another node was sent but no answer came within its timeout, or the connection broke first: whether it took effect there is unknown, and the node does not repeat it. Check (GET, FETCH, STATE) or retry.',
  },
  NOT_COMMITTED: {
    kind: 'timeout',
    retriable: true,
    summary:
      "A PUT was written on its segment's leader but a majority of the segment's replicas did not confirm it in time (replication.commitTimeoutMs), or the leader's write lease ended during the write: whether it is kept is unknown, and the node does not send it again. Check (FETCH, GET) or retry.",
  },
  NODE_REMOVED: {
    kind: 'state',
    retriable: false,
    summary:
      'This node was taken out of its cluster (walrus cluster remove) and serves no more requests: its view of the cluster is no longer kept up to date. Use another node, and stop this one.',
  },
  PEER_PROTOCOL: {
    kind: 'protocol',
    retriable: false,
    summary: 'A node-to-node frame broke the internal protocol (its length, head or kind); the connection was closed.',
  },
  FRAME_TIMEOUT: {
    kind: 'protocol',
    retriable: true,
    summary:
      'A request frame began to arrive and did not complete within protocol.frameTimeoutMs; the server answers and closes the connection.',
  },
  FRAME_LENGTH: {
    kind: 'protocol',
    retriable: false,
    summary: 'A request frame length is 0 or above the frame limit; the server answers and closes the connection.',
  },
  INVALID_UTF8: {
    kind: 'protocol',
    retriable: false,
    summary: 'A request body is not valid UTF-8.',
  },
  UNKNOWN_COMMAND: {
    kind: 'protocol',
    retriable: false,
    summary: 'A request names no known command (commands are case-sensitive).',
  },
  BAD_REQUEST: {
    kind: 'protocol',
    retriable: false,
    summary: 'A known command lacks an argument or has a malformed one; the message names it.',
  },
  TOO_MANY_CONNECTIONS: {
    kind: 'busy',
    retriable: true,
    summary: 'The node serves `serverConnectionsMax` connections already; this one was answered and closed.',
  },
  REPLY_UNENCODABLE: {
    kind: 'protocol',
    retriable: false,
    summary: 'The node could not encode a reply (a handler bug, or a reply beyond a u32 length); the client gets this error instead.',
  },
  REPLY_FORMAT: {
    kind: 'protocol',
    retriable: false,
    summary: 'A reply does not have the shape its request calls for (parseFetchReply).',
  },
  SERVER_ERROR: {
    kind: 'client',
    retriable: false,
    summary:
      "The node answered `ERR <message>`; `serverMessage` has the message and `serverCode` the node's code when the reply is one the wire table knows. `retriable` is that code's (false for an unknown reply).",
  },
  TIMEOUT: {
    kind: 'client',
    retriable: true,
    summary: 'A WalrusClient request got no reply within its timeout.',
  },
  CONNECTION: {
    kind: 'client',
    retriable: true,
    summary: 'WalrusClient could not connect, lost the connection, or was closed.',
  },
  PROTOCOL: {
    kind: 'client',
    retriable: false,
    summary: 'WalrusClient refused a request it cannot send, or got a reply that makes no sense for the request.',
  },
  GONE: {
    kind: 'client',
    retriable: false,
    summary:
      'A consumer reading by position asked for entries that are no longer on the node (consumed by GET, their data file reclaimed).',
  },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface WalrusErrorOptions {
  readonly cause?: unknown;
  /** Structured facts for logs and callers (key path, plugin name, ...). */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Overrides the code's `retriable` (a server's refusal carries its own code's). */
  readonly retriable?: boolean;
}

export class WalrusError extends Error {
  readonly code: ErrorCode;
  /** Whether the same call may succeed later (the code's table entry; for a server's error, its code's). */
  readonly retriable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: WalrusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? ERROR_CODES[code].retriable;
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
/** A request or reply that breaks the client protocol. */
export class ProtocolError extends WalrusError {}

/**
 * The codes WalrusClient reports. GONE: a consumer reading by position asked for entries that are
 * no longer on the node (GET consumed them and their data file was reclaimed).
 */
export type ClientErrorCode = 'SERVER_ERROR' | 'TIMEOUT' | 'CONNECTION' | 'PROTOCOL' | 'GONE';

/** What WalrusClient rejects with (defined here so that its kind has a class; the client re-exports it). */
export class ClientError extends WalrusError {
  declare readonly code: ClientErrorCode;
  /** For SERVER_ERROR: the server's message, without `ERR ` (also the error's message). */
  readonly serverMessage: string | undefined;
  /** For SERVER_ERROR: the node's error code, when its reply is one the wire table knows. */
  readonly serverCode: ErrorCode | undefined;

  constructor(
    code: ClientErrorCode,
    message: string,
    options: WalrusErrorOptions & { serverMessage?: string; serverCode?: ErrorCode } = {},
  ) {
    // A node's retriable refusal (STORAGE_UNAVAILABLE, SEGMENT_FULL, NotLeaderForPartition) stays
    // retriable across the wire: the caller need not know the codes to decide to try again.
    const server = options.serverCode === undefined ? undefined : ERROR_CODES[options.serverCode].retriable;
    super(code, message, { ...options, retriable: options.retriable ?? server });
    this.serverMessage = options.serverMessage;
    this.serverCode = options.serverCode;
  }
}

const CLASS_BY_KIND: Record<ErrorKind, new (code: ErrorCode, message: string, options?: WalrusErrorOptions) => WalrusError> = {
  config: ConfigError,
  plugin: PluginError,
  timeout: TimeoutError,
  state: StateError,
  input: InputError,
  busy: BusyError,
  storage: StorageError,
  fenced: FencedError,
  protocol: ProtocolError,
  client: ClientError as new (code: ErrorCode, message: string, options?: WalrusErrorOptions) => WalrusError,
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
