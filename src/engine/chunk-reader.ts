// Sequential reading of a data file through one reusable chunk, for recovery and for the
// checksum worker: fields are read in place from `chunk`, and a file is read in large pieces.

import { limits } from '../kernel/limits.js';

/** Anything that reads at a position: a StorageFile, or a small adapter over a raw fd. */
export interface PositionalReader {
  read(buffer: Uint8Array, offset: number, length: number, position: number): number;
}

export class ChunkReader {
  private readonly file: PositionalReader;
  readonly chunk: Buffer;
  /** The chunk as a DataView: field reads without Buffer's per-call bounds checks. */
  readonly view: DataView;
  /** File position of chunk[0], and of the end of what the chunk holds. */
  start = 0;
  private end = 0;

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
    if (position >= this.start && position + length <= this.end) return true;
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
