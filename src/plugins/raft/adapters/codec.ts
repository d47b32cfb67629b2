// Binary encoding of Raft entries and memberships, shared by the log store (on disk) and the
// transport (on the wire). Little-endian; indexes and terms as float64 (exact to 2^53).

import { StorageError } from '../../../kernel/errors.js';
import type { Entry, EntryKind, Membership } from '../core/types.js';

const KIND_CODES: Record<EntryKind, number> = { command: 1, noop: 2, membership: 3 };
const KINDS: Record<number, EntryKind> = { 1: 'command', 2: 'noop', 3: 'membership' };

/** A growable byte buffer for encoding. */
export class Writer {
  private buffer = Buffer.allocUnsafe(256);
  private used = 0;

  private room(bytes: number): void {
    if (this.used + bytes <= this.buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.used + bytes));
    this.buffer.copy(next, 0, 0, this.used);
    this.buffer = next;
  }

  u8(value: number): this {
    this.room(1);
    this.buffer[this.used++] = value;
    return this;
  }

  u32(value: number): this {
    this.room(4);
    this.buffer.writeUInt32LE(value, this.used);
    this.used += 4;
    return this;
  }

  f64(value: number): this {
    this.room(8);
    this.buffer.writeDoubleLE(value, this.used);
    this.used += 8;
    return this;
  }

  bytes(value: Uint8Array): this {
    this.u32(value.length);
    this.room(value.length);
    this.buffer.set(value, this.used);
    this.used += value.length;
    return this;
  }

  membership(value: Membership): this {
    this.u32(value.voters.length);
    for (const id of value.voters) this.u32(id);
    this.u32(value.learners.length);
    for (const id of value.learners) this.u32(id);
    return this;
  }

  entry(entry: Entry): this {
    this.u8(KIND_CODES[entry.kind]).f64(entry.index).f64(entry.term).bytes(entry.data);
    if (entry.kind === 'membership') this.membership(entry.membership ?? { voters: [], learners: [] });
    return this;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.used);
  }
}

/** Thrown when bytes do not decode: a damaged record or frame. */
export class DecodeError extends StorageError {
  constructor(message: string) {
    super('RAFT_DECODE', message);
  }
}

export class Reader {
  private at = 0;
  private readonly source: Buffer;

  constructor(source: Buffer) {
    this.source = source;
  }

  get done(): boolean {
    return this.at >= this.source.length;
  }

  private need(bytes: number): void {
    if (this.at + bytes > this.source.length) throw new DecodeError(`needs ${bytes} more bytes at ${this.at} of ${this.source.length}`);
  }

  u8(): number {
    this.need(1);
    return this.source[this.at++] ?? 0;
  }

  u32(): number {
    this.need(4);
    const value = this.source.readUInt32LE(this.at);
    this.at += 4;
    return value;
  }

  f64(): number {
    this.need(8);
    const value = this.source.readDoubleLE(this.at);
    this.at += 8;
    if (!Number.isSafeInteger(value) || value < 0) throw new DecodeError(`not an index or term: ${value}`);
    return value;
  }

  bytes(): Uint8Array {
    const length = this.u32();
    this.need(length);
    // A copy: the source buffer is reused by whoever read it.
    const value = Uint8Array.prototype.slice.call(this.source, this.at, this.at + length);
    this.at += length;
    return value;
  }

  membership(): Membership {
    const voters = this.ids();
    const learners = this.ids();
    return { voters, learners };
  }

  private ids(): number[] {
    const count = this.u32();
    if (count > 10_000) throw new DecodeError(`implausible member count ${count}`);
    const ids: number[] = [];
    for (let index = 0; index < count; index++) ids.push(this.u32());
    return ids;
  }

  entry(): Entry {
    const code = this.u8();
    const kind = KINDS[code];
    if (kind === undefined) throw new DecodeError(`unknown entry kind ${code}`);
    const index = this.f64();
    const term = this.f64();
    const data = this.bytes();
    if (kind === 'membership') return { index, term, kind, data, membership: this.membership() };
    return { index, term, kind, data };
  }
}
