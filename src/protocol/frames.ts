// Framing of the client TCP protocol, with no socket in sight: every request and every reply is
// one frame, a u32 little-endian body length followed by that many bytes of UTF-8 text. Requests
// are capped (limits.frameBytesMax, inclusive); replies have no cap in the protocol, so a decoder
// for replies is built without one (or with the client's own cap).
//
// FrameDecoder takes bytes as they arrive, split anywhere, and hands out whole frames. A length
// of 0 or above the cap breaks the decoder for good: the original kept reading after such a
// prefix and parsed body bytes as further prefixes (cluster.md §1.1, §10.18), so the caller is
// expected to reply `ERR invalid frame length` and close the connection instead.

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

export type RawFrame =
  /** A whole frame's body, not checked for UTF-8. */
  { readonly kind: 'body'; readonly body: Buffer } | { readonly kind: 'invalid-length'; readonly length: number };

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
    return { kind: 'body', body: this.take(length) };
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
