// Reply texts of the client TCP protocol (cluster.md §1.4–1.7): builders for the server and a
// classifier for clients. Success is `OK` or `OK <payload>`, an empty topic is `EMPTY`, failures
// are `ERR <message>`, and STATE / METRICS answer raw JSON with no `OK ` prefix (scripts of the
// original test `reply.startswith("{")`). FETCH (new, §10.19) answers `OK <next_offset> <payload>`.

import { ProtocolError } from '../kernel/errors.js';
import { parseDecimal } from './commands.js';

export const OK = 'OK';
export const EMPTY = 'EMPTY';

/** `OK <payload>`: the GET reply. */
export function okPayload(payload: string): string {
  return `OK ${payload}`;
}

/** `ERR <message>`. */
export function err(message: string): string {
  return `ERR ${message}`;
}

/** `OK <nextOffset> <payload>`: the FETCH reply. */
export function fetched(nextOffset: number, payload: string): string {
  return `OK ${nextOffset} ${payload}`;
}

export type Reply =
  /** Exactly `OK`. */
  | { readonly kind: 'ok' }
  /** `OK <value>`: the value is everything after the first space, verbatim. */
  | { readonly kind: 'value'; readonly value: string }
  /** Exactly `EMPTY`. */
  | { readonly kind: 'empty' }
  /** `ERR <message>` (a bare `ERR` gives the empty message). */
  | { readonly kind: 'error'; readonly message: string }
  /** Text starting with `{` that parses as JSON (STATE, METRICS). */
  | { readonly kind: 'json'; readonly value: unknown }
  /** Anything else, including `{…` that is not valid JSON. */
  | { readonly kind: 'raw'; readonly text: string };

/** Classifies one reply body. */
export function parseReply(text: string): Reply {
  if (text === OK) return { kind: 'ok' };
  if (text === EMPTY) return { kind: 'empty' };
  if (text.startsWith('OK ')) return { kind: 'value', value: text.slice(3) };
  if (text === 'ERR') return { kind: 'error', message: '' };
  if (text.startsWith('ERR ')) return { kind: 'error', message: text.slice(4) };
  if (text.startsWith('{')) {
    try {
      return { kind: 'json', value: JSON.parse(text) as unknown };
    } catch {
      return { kind: 'raw', text };
    }
  }
  return { kind: 'raw', text };
}

/** A reply that does not have the shape its request calls for. */
export class ReplyFormatError extends ProtocolError {
  /** The reply body as received. */
  readonly text: string;

  constructor(message: string, text: string) {
    super('REPLY_FORMAT', message);
    this.text = text;
  }
}

export interface FetchedEntry {
  /** The offset to ask for next within the same segment (the requested offset + 1). */
  readonly nextOffset: number;
  readonly payload: string;
}

/**
 * The FETCH reply: the entry, or null for `EMPTY` (past the end of the segment). Anything else,
 * `ERR …` included, throws ReplyFormatError; callers that want the server's message check
 * parseReply(text).kind === 'error' first.
 */
export function parseFetchReply(text: string): FetchedEntry | null {
  if (text === EMPTY) return null;
  if (!text.startsWith('OK ')) throw new ReplyFormatError(`not a FETCH reply: ${preview(text)}`, text);
  const space = text.indexOf(' ', 3);
  const nextOffset = parseDecimal(space < 0 ? text.slice(3) : text.slice(3, space));
  if (space < 0 || nextOffset === undefined) {
    throw new ReplyFormatError(`a FETCH reply must be 'OK <next_offset> <payload>': ${preview(text)}`, text);
  }
  return { nextOffset, payload: text.slice(space + 1) };
}

/** The start of a reply, for error messages (replies can be megabytes long). */
export function preview(text: string, maxChars = 80): string {
  return text.length <= maxChars ? JSON.stringify(text) : `${JSON.stringify(text.slice(0, maxChars))}… (${text.length} chars)`;
}
