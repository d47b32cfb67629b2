// The one table from error codes to the client protocol's `ERR …` texts. The node controller
// and the server hand WalrusErrors to wireText(); nothing else builds an error reply, and nothing
// matches on message prefixes to find out what went wrong. The texts are the original's, byte for
// byte (cluster.md §1.4–1.7). docs/protocol.md lists exactly the `replies` of this table (a unit
// test keeps them in step); WalrusClient reads the table backwards (wireCode) to give a server's
// error its code again.

import { type ErrorCode, WalrusError, walrusError } from '../kernel/errors.js';
import { COMMAND_ERRORS, type CommandError } from './commands.js';
import { err } from './replies.js';

interface WireForm {
  /** How the reply reads, as docs/protocol.md shows it (`<x>` stands for a value, `...` for more text). */
  readonly replies: readonly string[];
  /** The reply body for `error`. */
  readonly text: (error: WalrusError) => string;
}

/** The wire text of every code not in WIRE_ERRORS: the message (consensus, disk, ... failures). */
export const WIRE_FALLBACK_REPLY = 'ERR <reason>';

const message = (error: WalrusError): string => err(error.message);
/** `build(value)` from the detail `key`; the message when the error lacks it (raised elsewhere). */
const fromDetail =
  (key: string, build: (value: string) => string) =>
  (error: WalrusError): string => {
    const value = error.details[key];
    return typeof value === 'string' ? err(build(value)) : err(error.message);
  };

export const WIRE_ERRORS = {
  FRAME_LENGTH: { replies: ['ERR invalid frame length'], text: () => err('invalid frame length') },
  FRAME_TIMEOUT: { replies: ['ERR frame timeout'], text: () => err('frame timeout') },
  INVALID_UTF8: { replies: ['ERR invalid utf-8'], text: () => err('invalid utf-8') },
  TOO_MANY_CONNECTIONS: { replies: ['ERR too many connections'], text: () => err('too many connections') },
  UNKNOWN_COMMAND: { replies: [err(COMMAND_ERRORS.unknownCommand)], text: () => err(COMMAND_ERRORS.unknownCommand) },
  // The message is one of COMMAND_ERRORS (parseCommand's own texts).
  BAD_REQUEST: {
    replies: Object.values(COMMAND_ERRORS)
      .filter((text) => text !== COMMAND_ERRORS.unknownCommand)
      .map(err),
    text: message,
  },
  UNKNOWN_TOPIC: { replies: ['ERR unknown topic <topic>'], text: fromDetail('topic', (topic) => `unknown topic ${topic}`) },
  // The message is metadata's topicNameProblem(), which always starts `topic name`.
  INVALID_TOPIC_NAME: { replies: ['ERR topic name ...'], text: message },
  NOT_LEADER_FOR_PARTITION: {
    replies: ['ERR NotLeaderForPartition: t_<topic>_s_<n>'],
    text: fromDetail('key', (key) => `NotLeaderForPartition: ${key}`),
  },
  SEGMENT_FULL: { replies: ['ERR segment t_<topic>_s_<n> is full ... retry'], text: message },
  // The message is the segment store's refusal, naming the errno and the failure.
  STORAGE_UNAVAILABLE: { replies: ['ERR storage unavailable (<errno>): ... retry later'], text: message },
  // Requests between nodes (src/node/peer-client.ts words both): never sent, or sent with no answer.
  PEER_UNAVAILABLE: { replies: ['ERR node <id> ... the request was not sent'], text: message },
  PEER_TIMEOUT: { replies: ['ERR ... whether it took effect there is unknown'], text: message },
  // A replicated segment's majority did not confirm the entry in time (replication.ts).
  NOT_COMMITTED: { replies: ['ERR the PUT was written on this node but ... is unknown'], text: message },
  // The node was removed from its cluster (membership.ts tells it): every request but METRICS.
  NODE_REMOVED: { replies: ['ERR node <id> was removed from the cluster ...'], text: message },
  // The message is the segment holder's refusal of a GET that waited too long for its turn.
  TOPIC_BUSY: { replies: ['ERR GET of <topic> waited ... retry'], text: message },
  // consensus-etcd's command log (src/plugins/consensus-etcd/command-log.ts) words it: etcd did not answer a metadata change.
  CONSENSUS_UNAVAILABLE: { replies: ['ERR etcd did not take the metadata command ... retry'], text: message },
} as const satisfies Partial<Record<ErrorCode, WireForm>>;

const FORMS: Partial<Record<ErrorCode, WireForm>> = WIRE_ERRORS;

/** The `ERR …` reply body for anything thrown: a WalrusError by its code, anything else by its message. */
export function wireText(error: unknown): string {
  if (error instanceof WalrusError) {
    const form = FORMS[error.code];
    return form === undefined ? err(error.message) : form.text(error);
  }
  return err(error instanceof Error ? error.message : String(error));
}

/** The reply to a request parseCommand refused: UNKNOWN_COMMAND, or BAD_REQUEST with its message. */
export function commandErrorText(refused: CommandError): string {
  return wireText(walrusError(commandErrorCode(refused), refused.error));
}

/** The code of a request that does not parse: an unknown command, or a known one used wrongly. */
export function commandErrorCode(refused: CommandError): ErrorCode {
  return refused.error === COMMAND_ERRORS.unknownCommand ? 'UNKNOWN_COMMAND' : 'BAD_REQUEST';
}

/** Each table reply as a matcher of the message after `ERR `, most specific (longest) first. */
const MATCHERS: readonly (readonly [RegExp, ErrorCode])[] = Object.entries(FORMS)
  .flatMap(([code, form]) => (form?.replies ?? []).map((reply) => [reply.slice(4), code as ErrorCode] as const))
  .sort((a, b) => b[0].length - a[0].length)
  .map(([reply, code]) => [matcher(reply), code] as const);

function matcher(reply: string): RegExp {
  const pattern = reply
    .split(/(<[a-z_]+>|\.\.\.)/)
    .map((part) => (part === '...' ? '.*' : /^<[a-z_]+>$/.test(part) ? '.+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${pattern}$`, 's');
}

/**
 * The code of a server's error message (without `ERR `) by the same table, read backwards;
 * undefined for a message of the fallback form (`ERR <reason>`).
 */
export function wireCode(serverMessage: string): ErrorCode | undefined {
  for (const [pattern, code] of MATCHERS) if (pattern.test(serverMessage)) return code;
  return undefined;
}
