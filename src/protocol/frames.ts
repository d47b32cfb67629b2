// Framing of the client TCP protocol, with no socket in sight: every request and every reply is
// one frame, a u32 little-endian body length followed by that many bytes of UTF-8 text. Requests
// are capped (limits.frameBytesMax, inclusive); replies have no cap in the protocol, so a decoder
// for replies is built without one (or with the client's own cap).
//
// FrameDecoder takes bytes as they arrive, split anywhere, and hands out whole frames. A length
// of 0 or above the cap breaks the decoder for good: the original kept reading after such a
// prefix and parsed body bytes as further prefixes (cluster.md §1.1, §10.18), so the caller is
// expected to reply `ERR invalid frame length` and close the connection instead.

import { isUtf8 } from 'node:buffer';

/** Bytes of the length prefix in front of every frame body. */
export const FRAME_HEADER_BYTES = 4;

const U32_MAX = 0xffff_ffff;

/** One frame's body as text: prefix and body in one buffer, so a caller can send it with one write. */
export function encodeFrame(text: string): Buffer {
  return encodeSizedFrame(text, Buffer.byteLength(text, 'utf8'));
}

/** encodeFrame() for a caller that has measured the body already: `bodyBytes` is its UTF-8 length. */
export function encodeSizedFrame(text: string, bodyBytes: number): Buffer {
  if (bodyBytes > U32_MAX) throw new RangeError(`a frame body of ${bodyBytes} bytes does not fit a u32 length`);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + bodyBytes);
  frame.writeUInt32LE(bodyBytes, 0);
  frame.write(text, FRAME_HEADER_BYTES, 'utf8');
  return frame;
}

export type DecodedFrame =
  /** A whole frame whose body is valid UTF-8. */
  | { readonly kind: 'text'; readonly text: string }
  /** A whole frame whose body is not valid UTF-8; the body was consumed and the next frame follows. */
  | { readonly kind: 'invalid-utf8' }
  /** A length prefix of 0 or above the cap: the decoder is broken from here on. */
  | { readonly kind: 'invalid-length'; readonly length: number };

/** A length prefix of 0 or above the cap: the decoder is broken from here on. */
export interface InvalidLength {
  readonly kind: 'invalid-length';
  readonly length: number;
}

export type RawFrame =
  /** A whole frame's body, not checked for UTF-8. */
  { readonly kind: 'body'; readonly body: Buffer } | InvalidLength;

export type RawFrameParts =
  /**
   * A whole frame's body as views of the chunks it arrived in, in order (one part when it came
   * in one chunk), `length` bytes in all; not checked for UTF-8.
   */
  { readonly kind: 'parts'; readonly parts: readonly Buffer[]; readonly length: number } | InvalidLength;

export interface FrameDecoderOptions {
  /** Largest body accepted, inclusive; undefined accepts any u32 length (for replies). */
  readonly maxFrameBytes?: number;
}

export class FrameDecoder {
  readonly maxFrameBytes: number | undefined;
  // Received bytes not handed out yet: a list of chunks, the first one read from `head` on.
  // Appending is O(1); bytes are copied only when a frame spans chunks.
  private chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private isBroken = false;
  // Strict: invalid bytes are an error, not U+FFFD. ignoreBOM keeps a leading BOM in the text
  // (the original passes it through as part of the command), instead of silently dropping it.
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

  constructor(options: FrameDecoderOptions = {}) {
    const max = options.maxFrameBytes;
    if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > U32_MAX)) {
      throw new RangeError(`maxFrameBytes must be an integer from 1 to ${U32_MAX}, got ${max}`);
    }
    this.maxFrameBytes = max;
  }

  /** Bytes received and not yet handed out as frames (0 once broken). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True after an invalid length: the stream cannot be resynchronised. */
  get broken(): boolean {
    return this.isBroken;
  }

  /** Appends received bytes. Ignored once broken. */
  push(chunk: Buffer): void {
    if (this.isBroken || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next whole frame, or undefined when more bytes are needed (or forever once broken). */
  next(): DecodedFrame | undefined {
    const frame = this.nextBody();
    if (frame?.kind !== 'body') return frame;
    try {
      return { kind: 'text', text: this.utf8.decode(frame.body) };
    } catch {
      return { kind: 'invalid-utf8' };
    }
  }

  /**
   * next() without the decoding: the body's bytes as received (a view into them when they came in
   * one chunk), for a caller that checks the UTF-8 itself (buffer.isUtf8) and reads the body as
   * bytes. The bytes are not reused by the decoder.
   */
  nextBody(): RawFrame | undefined {
    const length = this.nextWholeLength();
    if (typeof length !== 'number') return length;
    return { kind: 'body', body: this.take(length) };
  }

  /**
   * nextBody() without the copy a body split between chunks costs: the body as views of the
   * chunks it lies in, for a caller that can read a body in pieces (a batch of payloads). The
   * chunks stay alive as long as a view of them does; the decoder never writes to them.
   */
  nextBodyParts(): RawFrameParts | undefined {
    const length = this.nextWholeLength();
    if (typeof length !== 'number') return length;
    const first = this.chunks[0] as Buffer;
    if (first.length - this.head >= length) return { kind: 'parts', parts: [this.take(length)], length };
    const parts: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const chunk = this.chunks[0] as Buffer;
      const step = Math.min(left, chunk.length - this.head);
      parts.push(chunk.subarray(this.head, this.head + step));
      this.skip(step);
      left -= step;
    }
    return { kind: 'parts', parts, length };
  }

  /**
   * The next frame's body length once the whole frame is buffered, its prefix consumed; undefined
   * while more bytes are needed (and once broken). A prefix of 0 or above the cap breaks the
   * decoder for good and comes back as the invalid-length frame.
   */
  private nextWholeLength(): number | InvalidLength | undefined {
    if (this.isBroken || this.buffered < FRAME_HEADER_BYTES) return undefined;
    const length = this.peekLength();
    if (length === 0 || (this.maxFrameBytes !== undefined && length > this.maxFrameBytes)) {
      this.isBroken = true;
      this.chunks = [];
      this.head = 0;
      this.buffered = 0;
      return { kind: 'invalid-length', length };
    }
    if (this.buffered < FRAME_HEADER_BYTES + length) return undefined;
    this.skip(FRAME_HEADER_BYTES);
    return length;
  }

  /** The body length the next frame announces, once its prefix is buffered (undefined before, or once broken). */
  nextBodyBytes(): number | undefined {
    if (this.isBroken || this.buffered < FRAME_HEADER_BYTES) return undefined;
    return this.peekLength();
  }

  /** The u32 LE prefix at the read position (at least 4 bytes are buffered). */
  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length - this.head >= FRAME_HEADER_BYTES) return first.readUInt32LE(this.head);
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    this.copyOut(header, FRAME_HEADER_BYTES, false);
    return header.readUInt32LE(0);
  }

  private skip(count: number): void {
    this.copyOut(undefined, count, true);
  }

  /** Removes `count` buffered bytes and returns them (a view when they lie in one chunk). */
  private take(count: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length - this.head >= count) {
      const body = first.subarray(this.head, this.head + count);
      this.skip(count);
      return body;
    }
    const body = Buffer.allocUnsafe(count);
    this.copyOut(body, count, true);
    return body;
  }

  /** Copies the first `count` buffered bytes into `target` (if given), consuming them if asked. */
  private copyOut(target: Buffer | undefined, count: number, consume: boolean): void {
    let index = 0;
    let head = this.head;
    let copied = 0;
    while (copied < count) {
      const chunk = this.chunks[index] as Buffer;
      const step = Math.min(count - copied, chunk.length - head);
      if (target !== undefined) chunk.copy(target, copied, head, head + step);
      copied += step;
      head += step;
      if (head === chunk.length) {
        index += 1;
        head = 0;
      }
    }
    if (!consume) return;
    // shift() for the usual single chunk: splice() would also build an array of what it removed.
    if (index === 1) this.chunks.shift();
    else if (index > 1) this.chunks.splice(0, index);
    this.head = head;
    this.buffered -= count;
  }
}

/**
 * Whether the bytes of `parts`, taken in order as one body, are valid UTF-8 (buffer.isUtf8 of
 * their concatenation, without making it). A character split between two parts is checked on
 * its own; a part shorter than 4 bytes (a character could then span three parts) is checked
 * with its neighbours joined.
 */
export function isUtf8Parts(parts: readonly Buffer[]): boolean {
  if (parts.length === 1) return isUtf8(parts[0] as Buffer);
  if (parts.some((part) => part.length < 4)) return isUtf8(Buffer.concat(parts));
  // The bytes of a character begun at the end of the part before and not checked yet.
  let carried: Buffer | undefined;
  for (let index = 0; index < parts.length; index++) {
    let part = parts[index] as Buffer;
    if (carried !== undefined) {
      // Its continuation bytes (at most 3) open this part; whatever they make is checked alone.
      let continued = 0;
      while (continued < 3 && isContinuation(part[continued] as number)) continued += 1;
      if (!isUtf8(Buffer.concat([carried, part.subarray(0, continued)]))) return false;
      part = part.subarray(continued);
      carried = undefined;
    }
    let end = part.length;
    if (index < parts.length - 1) {
      // Hold back the last character's bytes when it may go on in the next part: the trailing
      // continuation bytes (at most 3) and the lead byte before them.
      while (end > part.length - 3 && end > 0 && isContinuation(part[end - 1] as number)) end -= 1;
      if (end > 0 && (part[end - 1] as number) >= 0xc0) end -= 1;
      if (end < part.length) carried = part.subarray(end);
    }
    if (!isUtf8(end === part.length ? part : part.subarray(0, end))) return false;
  }
  return true;
}

function isContinuation(byte: number): boolean {
  return (byte & 0xc0) === 0x80;
}
