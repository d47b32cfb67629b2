// One topic's in-memory state: where each retained entry lives on disk, how far appends have
// been reserved and published, and the shared consumption cursor. Positions pack the file
// number and the record's offset into one float64 (file × 2^32 + offset), so a million entries
// cost 12 MB and no per-entry objects.

import { RECORD_HEADER_BYTES } from './format.js';

const U32 = 2 ** 32;

export class TopicState {
  readonly id: number;
  readonly name: string;
  readonly nameBytes: Buffer;
  /** Next sequence number to hand out (reserved by a staged append). */
  nextSeq: number;
  /** Entries below this have their position recorded (staged for writing, or recovered). */
  storedSeq: number;
  /** Entries below this have been written and can be read. */
  visibleSeq: number;
  /** First sequence number still indexed (older ones were reclaimed with their files). */
  lowSeq: number;
  /** Next sequence number the shared cursor will deliver. */
  cursor: number;
  /** The cursor value most recently written to the log. */
  persistedCursor: number;
  /** Entries consumed since the cursor was last written (for `atLeastOnce`). */
  consumedSincePersist = 0;
  /** True while the topic is in the engine's list of topics to publish after the next write. */
  awaitingPublish = false;
  /** True while an appendBatch is in flight: overlapping appends are refused. */
  batchInFlight = false;
  private positions: Float64Array;
  private lengths: Uint32Array;

  constructor(id: number, name: string, lowSeq = 0) {
    this.id = id;
    this.name = name;
    this.nameBytes = Buffer.from(name, 'utf8');
    this.nextSeq = lowSeq;
    this.storedSeq = lowSeq;
    this.visibleSeq = lowSeq;
    this.lowSeq = lowSeq;
    this.cursor = lowSeq;
    this.persistedCursor = lowSeq;
    this.positions = new Float64Array(16);
    this.lengths = new Uint32Array(16);
  }

  /** Records where entry `seq` (the next one in order) lives; `publish` makes it readable. */
  store(seq: number, fileNo: number, offset: number, payloadBytes: number): void {
    if (seq !== this.storedSeq) this.outOfOrder(seq);
    const slot = seq - this.lowSeq;
    if (slot >= this.positions.length) this.grow(slot + 1);
    this.positions[slot] = fileNo * U32 + offset;
    this.lengths[slot] = payloadBytes;
    this.storedSeq = seq + 1;
  }

  /**
   * Records a batch's entries from `firstSeq` on, laid back to back in file `fileNo` from
   * `offset` (each a record header plus its payload); returns where the batch ends.
   */
  storeRun(firstSeq: number, fileNo: number, offset: number, sizes: readonly number[]): number {
    if (firstSeq !== this.storedSeq) throw new Error(`invariant: topic ${this.name} stores seq ${firstSeq}, expected ${this.storedSeq}`);
    const count = sizes.length;
    const first = firstSeq - this.lowSeq;
    if (first + count > this.positions.length) this.grow(first + count);
    const positions = this.positions;
    const lengths = this.lengths;
    const base = fileNo * U32;
    let at = offset;
    for (let index = 0; index < count; index++) {
      const length = sizes[index] as number;
      positions[first + index] = base + at;
      lengths[first + index] = length;
      at += RECORD_HEADER_BYTES + length;
    }
    this.storedSeq = firstSeq + count;
    return at;
  }

  /** Forgets the entries stored but not yet published (an incomplete batch, in recovery). */
  unstore(): void {
    this.storedSeq = this.visibleSeq;
  }

  /** Every stored entry has been written: make them readable. */
  publish(): void {
    this.visibleSeq = this.storedSeq;
  }

  /** Entries below `end` are durable (fsync 'each'): make them readable; never moves back. */
  publishUpTo(end: number): void {
    if (end > this.visibleSeq) this.visibleSeq = Math.min(end, this.storedSeq);
  }

  /** Forgets every entry below `seq` and restarts the index there (a gap, or reclaimed files). */
  restartAt(seq: number): void {
    this.lowSeq = seq;
    this.storedSeq = Math.max(this.storedSeq, seq);
    this.visibleSeq = Math.max(this.visibleSeq, seq);
    this.nextSeq = Math.max(this.nextSeq, seq);
    this.positions = new Float64Array(16);
    this.lengths = new Uint32Array(16);
    this.cursor = Math.max(this.cursor, seq);
  }

  /** Forgets the entries below `seq` (their file was reclaimed); the cursor is already past them. */
  trimBelow(seq: number): void {
    if (seq <= this.lowSeq) return;
    const cut = Math.min(seq, this.storedSeq) - this.lowSeq;
    this.positions.copyWithin(0, cut);
    this.lengths.copyWithin(0, cut);
    this.lowSeq += cut;
  }

  fileOf(seq: number): number {
    return Math.floor((this.positions[seq - this.lowSeq] ?? 0) / U32);
  }

  offsetOf(seq: number): number {
    const position = this.positions[seq - this.lowSeq] ?? 0;
    // The offset is below 2^32, so this is exact (and avoids `%` on a double, a call to fmod).
    return position - Math.floor(position / U32) * U32;
  }

  lengthOf(seq: number): number {
    return this.lengths[seq - this.lowSeq] ?? 0;
  }

  /** Entries published but not consumed by the cursor. */
  pending(): number {
    return Math.max(0, this.visibleSeq - this.cursor);
  }

  private outOfOrder(seq: number): never {
    throw new Error(`invariant: topic ${this.name} stores seq ${seq}, expected ${this.storedSeq}`);
  }

  private grow(needed: number): void {
    let capacity = this.positions.length;
    while (capacity < needed) capacity *= 2;
    const positions = new Float64Array(capacity);
    positions.set(this.positions);
    const lengths = new Uint32Array(capacity);
    lengths.set(this.lengths);
    this.positions = positions;
    this.lengths = lengths;
  }
}
