// Sequential reading of a data file through one reusable chunk, for recovery and for the
// checksum worker: fields are read in place from `chunk`, and a file is read in large pieces.
// RecordFramer finds where each record's bytes are; what they mean is format.ts's business.

import { limits } from '../kernel/limits.js';
import { hasRecordMagic, RECORD_HEADER_BYTES, recordPayloadBytes } from './format.js';

/** Anything that reads at a position: a StorageFile, or a small adapter over a raw fd. */
export interface PositionalReader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): number;
}

export class ChunkReader {
  private readonly file: PositionalReader;
  readonly chunk: Buffer;
  /** The chunk as a DataView: field reads without Buffer's per-call bounds checks. */
  readonly view: DataView;
  /** File position of chunk[0], and of the end of what the chunk holds (both changed only by a read). */
  start = 0;
  end = 0;

  /** How many bytes of `chunk` hold file data. */
  get filled(): number {
    return this.end - this.start;
  }

  constructor(file: PositionalReader) {
    this.file = file;
    this.chunk = Buffer.allocUnsafe(limits.recoveryChunkBytes);
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length);
  }

  /**
   * Makes [position, position + length) available in `chunk` (at `position - start`), reading
   * from the file when needed; false when the file ends first. `length` must fit the chunk.
   */
  ensure(position: number, length: number): boolean {
    // Nearly always true without a read; the read is a call of its own so that this stays small
    // (see RecordFramer.frame on the scan loop's inlining budget).
    return (position >= this.start && position + length <= this.end) || this.refill(position, length);
  }

  /** Reads the chunk from `position`; false when the file ends before `length` bytes. */
  private refill(position: number, length: number): boolean {
    const count = this.file.read(this.chunk, 0, this.chunk.length, position);
    this.start = position;
    this.end = position + count;
    return count >= length;
  }

  /** `length` bytes at `position` (a view into the chunk, or a fresh buffer for big records); short at EOF. */
  bytes(position: number, length: number): Buffer {
    if (length > this.chunk.length) {
      const big = Buffer.allocUnsafe(length);
      return big.subarray(0, this.file.read(big, 0, length, position));
    }
    this.ensure(position, length);
    const from = position - this.start;
    return this.chunk.subarray(from, Math.min(from + length, this.end - this.start));
  }
}

/**
 * How framing the record at a position came out: `framed` (its bytes are at `source`/`at`),
 * `end` (fewer than a header's bytes left in the file), `unread` (the file read short of its
 * size), `no-magic` (a header without the record magic, at `source`/`at`), `too-long` (the
 * record is over the entry limit or runs past the end of the file).
 */
export type Framing = 'framed' | 'end' | 'unread' | 'no-magic' | 'too-long';

/**
 * Frames a data file's records one at a time, for the scanner and the checksum worker: the
 * header is read in place from the chunk; a record bigger than the chunk gets a buffer of its own.
 * One framer per file; its fields describe the record last framed (no object per record).
 */
export class RecordFramer {
  readonly reader: ChunkReader;
  private readonly size: number;
  /** The framed record's bytes: the reader's chunk, or a buffer of its own. */
  source: Buffer;
  /** `source` as a DataView, for the field reads of format.ts. */
  view: DataView;
  /** Where the record starts in `source`. */
  at = 0;
  /** Header and payload bytes. */
  total = 0;

  constructor(file: PositionalReader, size: number) {
    this.reader = new ChunkReader(file);
    this.size = size;
    this.source = this.reader.chunk;
    this.view = this.reader.view;
  }

  /** True when the framed record lies in the chunk (so one bulk CRC call over the chunk covers it). */
  get inChunk(): boolean {
    return this.source === this.reader.chunk;
  }

  /**
   * Frames the record at `position`. This and Scanner.takeEntry run once per record and must both
   * be inlined into the scan loop: V8 (Node 20) inlines at most about 920 bytecode bytes into one
   * function, counting 1.2× each callee plus what that callee's own optimised code inlined. When
   * one of the two was left out, a 1 GiB reopen cost about 100 ms more CPU (docs/performance.md),
   * so everything that is not the common case (a re-read, a big record, a reset after one) is a
   * call of its own, never taken per record.
   */
  frame(position: number): Framing {
    const reader = this.reader;
    const headerEnd = position + RECORD_HEADER_BYTES;
    if (headerEnd > this.size) return 'end';
    if (!reader.ensure(position, RECORD_HEADER_BYTES)) return 'unread';
    const view = reader.view;
    const at = position - reader.start;
    // Only a record bigger than the chunk moves source and view off it (no stores per record).
    if (this.view !== view) this.backToChunk();
    this.at = at;
    if (!hasRecordMagic(view, at)) return 'no-magic';
    const payloadBytes = recordPayloadBytes(view, at);
    if (payloadBytes > limits.entryBytesMax || headerEnd + payloadBytes > this.size) return 'too-long';
    const total = RECORD_HEADER_BYTES + payloadBytes;
    this.total = total;
    return position + total <= reader.end ? 'framed' : this.frameRest(position, total);
  }

  /** The record framed before was bigger than the chunk: point back at the chunk. */
  private backToChunk(): void {
    this.source = this.reader.chunk;
    this.view = this.reader.view;
  }

  /** The record runs past the chunk: read the chunk again from its start, or (bigger than the chunk) into a buffer of its own. */
  private frameRest(position: number, total: number): Framing {
    const reader = this.reader;
    if (total <= reader.chunk.length) {
      if (!reader.ensure(position, total)) return 'too-long';
      this.at = position - reader.start;
      return 'framed';
    }
    const big = reader.bytes(position, total);
    if (big.length < total) return 'too-long';
    this.source = big;
    this.view = new DataView(big.buffer, big.byteOffset, big.length);
    this.at = 0;
    return 'framed';
  }
}
