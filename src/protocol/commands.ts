// Parsing of one request body into a command, following the original's rules (cluster.md §1.3):
//   1. trailing spaces, tabs, CRs and LFs are trimmed; leading whitespace is kept, so ` PUT a b`
//      has the empty op and is an unknown command;
//   2. the text is split on single ASCII spaces into at most three parts, op, arg1 and rest, where
//      rest keeps every remaining byte verbatim (no quoting, no escaping) and consecutive spaces
//      make empty parts;
//   3. op is case-sensitive;
//   4. tokens a command does not use are ignored (`GET t junk` is `GET t`, `METRICS x` is `METRICS`).
// Deviation from the original: an empty topic (`REGISTER  a`, `PUT  t x`) counts as a missing
// one and gets `<OP> requires a topic`. The original accepted '' as a topic name, which nothing
// can use on purpose and which made `PUT  t x` write `t x` to topic ''.
// FETCH is new (cluster.md §10.19): `FETCH <topic> <segment> <offset>`, a non-destructive read of
// entry `offset` (0-based) of segment `segment` (1-based).
//
// The batch commands are new too (issue 16; docs/protocol.md, "Batches"):
// - `MPUT <topic> <size> [<size> ...]` LF, then the payloads' bytes back to back: the first line
//   lists each payload's length in bytes, and what follows the LF must be exactly their sum. The
//   body is not trimmed (a payload may end in spaces or LFs); the payloads are appended together.
// - `MGET <topic> <max>` and `MFETCH <topic> <segment> <offset> <max>`: up to `max` entries, from
//   the topic's consumption position or from an offset of a segment, in one reply.
//
// Errors are returned as the message without the `ERR ` prefix; the server replies `err(error)`.

import { PayloadRun } from '../engine/payload-run.js';
import { limits } from '../kernel/limits.js';

export type Command =
  | { readonly op: 'REGISTER'; readonly topic: string }
  /** The payload is text from parseCommand(), and the body's bytes from parseRequest(). */
  | { readonly op: 'PUT'; readonly topic: string; readonly payload: string | Buffer }
  | { readonly op: 'GET'; readonly topic: string }
  | { readonly op: 'STATE'; readonly topic: string }
  | { readonly op: 'METRICS' }
  | { readonly op: 'FETCH'; readonly topic: string; readonly segment: number; readonly offset: number }
  /** The payloads, back to back in the request body's bytes (the pieces it arrived in); no copy. */
  | { readonly op: 'MPUT'; readonly topic: string; readonly batch: PayloadRun }
  | { readonly op: 'MGET'; readonly topic: string; readonly max: number }
  | {
      readonly op: 'MFETCH';
      readonly topic: string;
      readonly segment: number;
      readonly offset: number;
      readonly max: number;
    };

export interface CommandError {
  /** The reply message, without `ERR ` (e.g. `PUT requires a payload`). */
  readonly error: string;
}

/** The most entries one MPUT appends or one MGET or MFETCH returns (the engine's batch limit). */
export const BATCH_ENTRIES_MAX = limits.batchEntriesMax;

/** The exact messages parseCommand returns (the reply is `ERR ` + message). */
export const COMMAND_ERRORS = {
  unknownCommand: 'unknown command',
  registerTopic: 'REGISTER requires a topic',
  putTopic: 'PUT requires a topic',
  putPayload: 'PUT requires a payload',
  getTopic: 'GET requires a topic',
  stateTopic: 'STATE requires a topic',
  fetchTopic: 'FETCH requires a topic',
  fetchPosition: 'FETCH requires a segment and an offset',
  fetchSegment: 'FETCH segment must be a positive integer',
  fetchOffset: 'FETCH offset must be a non-negative integer',
  mputTopic: 'MPUT requires a topic',
  mputSizes: 'MPUT requires the payload sizes, then a line feed and the payloads',
  mputSize: 'MPUT sizes must be positive integers',
  mputCount: `MPUT takes at most ${BATCH_ENTRIES_MAX} payloads`,
  mputBytes: 'MPUT payloads must add up to their sizes',
  mputSplit: 'MPUT sizes must not split a UTF-8 character',
  mgetTopic: 'MGET requires a topic',
  mgetMax: `MGET max must be an integer from 1 to ${BATCH_ENTRIES_MAX}`,
  mfetchTopic: 'MFETCH requires a topic',
  mfetchPosition: 'MFETCH requires a segment, an offset and a max',
  mfetchSegment: 'MFETCH segment must be a positive integer',
  mfetchOffset: 'MFETCH offset must be a non-negative integer',
  mfetchMax: `MFETCH max must be an integer from 1 to ${BATCH_ENTRIES_MAX}`,
} as const;

/** True when parseCommand found no valid command. */
export function isCommandError(parsed: Command | CommandError): parsed is CommandError {
  return 'error' in parsed;
}

/** Parses one request body (already decoded as UTF-8). */
export function parseCommand(text: string): Command | CommandError {
  const parts = splitParts(trimTrailingWhitespace(text));
  const [op, arg1, rest] = parts;
  switch (op) {
    case 'REGISTER':
      return present(arg1) ? { op, topic: arg1 } : fail(COMMAND_ERRORS.registerTopic);
    case 'PUT':
      if (!present(arg1)) return fail(COMMAND_ERRORS.putTopic);
      // rest can only be empty if the text ended with a space, which trimming rules out; checked anyway.
      return present(rest) ? { op, topic: arg1, payload: rest } : fail(COMMAND_ERRORS.putPayload);
    case 'GET':
      return present(arg1) ? { op, topic: arg1 } : fail(COMMAND_ERRORS.getTopic);
    case 'STATE':
      return present(arg1) ? { op, topic: arg1 } : fail(COMMAND_ERRORS.stateTopic);
    case 'METRICS':
      return { op };
    case 'FETCH':
      return parseFetch(arg1, rest);
    case 'MPUT': {
      // A batch's payloads are bytes (parseRequest reads them from the body); as text, re-encoded.
      const bytes = Buffer.from(text, 'utf8');
      return parseBatchPut([bytes], bytes.length);
    }
    case 'MGET': {
      if (!present(arg1)) return fail(COMMAND_ERRORS.mgetTopic);
      const max = batchMax(rest?.split(' ')[0]);
      return max === undefined ? fail(COMMAND_ERRORS.mgetMax) : { op, topic: arg1, max };
    }
    case 'MFETCH':
      return parseBatchFetch(arg1, rest);
    default:
      return fail(COMMAND_ERRORS.unknownCommand);
  }
}

/**
 * parseCommand() for a request body as received, already known to be valid UTF-8 (the server
 * checks with buffer.isUtf8). The same rules give the same command; a PUT's payload is a view of
 * the body's bytes instead of text, so it is neither decoded nor encoded again on its way to the
 * log. Other requests are short and are decoded and parsed as text.
 */
export function parseRequest(body: Buffer): Command | CommandError {
  // 'MPUT ': its body is not trimmed, and its payloads stay bytes.
  if (isBatchPut(body)) return parseBatchPut([body], body.length);
  let end = body.length;
  while (end > 0 && isTrimmedCode(body[end - 1] as number)) end -= 1;
  // 'PUT ' and at least one more byte once trimmed; anything else takes the text path.
  if (end <= 4 || body[0] !== 0x50 || body[1] !== 0x55 || body[2] !== 0x54 || body[3] !== 0x20) {
    return parseCommand(body.toString('utf8'));
  }
  // A space is one byte in UTF-8 and never part of another character, so splitting the bytes on
  // it splits the text in the same places.
  const second = body.indexOf(0x20, 4);
  if (second === 4) return fail(COMMAND_ERRORS.putTopic);
  if (second < 0 || second >= end) return fail(COMMAND_ERRORS.putPayload);
  // The payload runs to the trimmed end and is not empty: its last byte is not a space.
  return { op: 'PUT', topic: body.toString('utf8', 4, second), payload: body.subarray(second + 1, end) };
}

/**
 * Space, tab, CR or LF (as a UTF-16 code unit or a UTF-8 byte: the same values): what the server
 * trims from the end of a request.
 */
export function isTrimmedCode(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0d || code === 0x0a;
}

/**
 * parseRequest() for a body that arrived split between chunks (FrameDecoder.nextBodyParts), valid
 * UTF-8 as a whole: an MPUT's payloads stay where they are in the chunks (a PayloadRun), so a
 * batch costs no copy of the frame; any other request is joined first.
 */
export function parseRequestParts(parts: readonly Buffer[], length: number): Command | CommandError {
  const first = parts[0] as Buffer;
  if (parts.length === 1) return parseRequest(first);
  // The first line of an MPUT normally lies in the first part; when it does not, the body is joined.
  if (isBatchPut(first) && first.indexOf(0x0a) >= 0) return parseBatchPut(parts, length);
  return parseRequest(Buffer.concat(parts, length));
}

/** The body starts with `MPUT ` (at least 5 bytes of it are in `body`). */
function isBatchPut(body: Buffer): boolean {
  return body.length >= 5 && body[0] === 0x4d && body[1] === 0x50 && body[2] === 0x55 && body[3] === 0x54 && body[4] === 0x20;
}

/**
 * `MPUT <topic> <size> [<size> ...]` LF payloads, as bytes (valid UTF-8 as a whole: the server
 * checks before parsing), `length` bytes in `parts` (one part, or the pieces a body arrived in;
 * its first line lies in the first). Each payload must be valid UTF-8 itself, so a size must not
 * end inside a character: the byte after each payload but the last must not be a continuation
 * byte. The payloads stay in the parts, as a PayloadRun from the byte after the LF.
 */
function parseBatchPut(parts: readonly Buffer[], length: number): Command | CommandError {
  const body = parts[0] as Buffer;
  const newline = body.indexOf(0x0a);
  const headEnd = newline < 0 ? body.length : newline;
  const topicEnd = body.indexOf(0x20, 5);
  const topic = body.toString('utf8', 5, topicEnd < 0 || topicEnd > headEnd ? headEnd : topicEnd);
  if (topic.length === 0) return fail(COMMAND_ERRORS.mputTopic);
  if (newline < 0 || topicEnd < 0 || topicEnd >= headEnd) return fail(COMMAND_ERRORS.mputSizes);
  // The sizes, read straight from the bytes: decimal digits separated by single spaces.
  const sizes: number[] = [];
  let size = -1;
  for (let at = topicEnd + 1; at <= headEnd; at++) {
    const byte = at === headEnd ? 0x20 : (body[at] as number);
    if (byte === 0x20) {
      if (size < 1) return fail(COMMAND_ERRORS.mputSize);
      if (sizes.length === BATCH_ENTRIES_MAX) return fail(COMMAND_ERRORS.mputCount);
      sizes.push(size);
      size = -1;
    } else if (byte >= 0x30 && byte <= 0x39) {
      size = (size < 0 ? 0 : size * 10) + (byte - 0x30);
      if (size > Number.MAX_SAFE_INTEGER / 10) return fail(COMMAND_ERRORS.mputSize);
    } else {
      return fail(COMMAND_ERRORS.mputSize);
    }
  }
  // Each payload but the first must start a character: the byte at its start is looked at where
  // it lies (part `part`, byte `at`), without cutting the body.
  let part = 0;
  let current = body;
  let at = newline + 1;
  let left = length - at;
  for (let index = 0; index < sizes.length; index++) {
    const wanted = sizes[index] as number;
    if (wanted > left) return fail(COMMAND_ERRORS.mputBytes);
    while (at === current.length) {
      part += 1;
      current = parts[part] as Buffer;
      at = 0;
    }
    if (index > 0 && ((current[at] as number) & 0xc0) === 0x80) return fail(COMMAND_ERRORS.mputSplit);
    left -= wanted;
    // On to the next payload's start, across the parts it spans.
    at += wanted;
    while (at > current.length) {
      at -= current.length;
      part += 1;
      current = parts[part] as Buffer;
    }
  }
  if (left !== 0) return fail(COMMAND_ERRORS.mputBytes);
  return { op: 'MPUT', topic, batch: new PayloadRun(parts, newline + 1, sizes) };
}

function parseBatchFetch(topic: string | undefined, rest: string | undefined): Command | CommandError {
  if (!present(topic)) return fail(COMMAND_ERRORS.mfetchTopic);
  const [segmentText, offsetText, maxText] = rest === undefined ? [] : rest.split(' ');
  if (segmentText === undefined || offsetText === undefined || maxText === undefined) return fail(COMMAND_ERRORS.mfetchPosition);
  const segment = parseDecimal(segmentText);
  if (segment === undefined || segment < 1) return fail(COMMAND_ERRORS.mfetchSegment);
  const offset = parseDecimal(offsetText);
  if (offset === undefined) return fail(COMMAND_ERRORS.mfetchOffset);
  const max = batchMax(maxText);
  if (max === undefined) return fail(COMMAND_ERRORS.mfetchMax);
  return { op: 'MFETCH', topic, segment, offset, max };
}

/** A batch read's max: 1 to BATCH_ENTRIES_MAX. */
function batchMax(text: string | undefined): number | undefined {
  const max = text === undefined ? undefined : parseDecimal(text);
  return max === undefined || max < 1 || max > BATCH_ENTRIES_MAX ? undefined : max;
}

function parseFetch(topic: string | undefined, rest: string | undefined): Command | CommandError {
  if (!present(topic)) return fail(COMMAND_ERRORS.fetchTopic);
  // Same splitting rule as the command itself: single spaces, empty tokens kept, extras ignored.
  const tokens = rest === undefined ? [] : rest.split(' ');
  const [segmentText, offsetText] = tokens;
  if (segmentText === undefined || offsetText === undefined) return fail(COMMAND_ERRORS.fetchPosition);
  const segment = parseDecimal(segmentText);
  if (segment === undefined || segment < 1) return fail(COMMAND_ERRORS.fetchSegment);
  const offset = parseDecimal(offsetText);
  if (offset === undefined) return fail(COMMAND_ERRORS.fetchOffset);
  return { op: 'FETCH', topic, segment, offset };
}

/** Decimal digits only (no sign, no exponent, no fraction), at most Number.MAX_SAFE_INTEGER. */
export function parseDecimal(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const value = Number(text);
  return value <= Number.MAX_SAFE_INTEGER ? value : undefined;
}

/** Removes trailing spaces, tabs, CRs and LFs only (not other Unicode whitespace). */
export function trimTrailingWhitespace(text: string): string {
  let end = text.length;
  while (end > 0) {
    if (!isTrimmedCode(text.charCodeAt(end - 1))) break;
    end -= 1;
  }
  return end === text.length ? text : text.slice(0, end);
}

/** Splits on single spaces into at most three parts; the third keeps the rest verbatim. */
function splitParts(text: string): string[] {
  const first = text.indexOf(' ');
  if (first < 0) return [text];
  const second = text.indexOf(' ', first + 1);
  if (second < 0) return [text.slice(0, first), text.slice(first + 1)];
  return [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
}

function present(value: string | undefined): value is string {
  return value !== undefined && value.length > 0;
}

function fail(error: string): CommandError {
  return { error };
}
