// The in-memory Raft log of one node: a snapshot point (index and term of the last compacted
// entry) followed by the entries after it. It also tracks which suffix has not been handed to
// the host for persisting yet (`unstableFrom`), so Ready carries exactly what must be written.

import type { Entry } from './types.js';

export class RaftLog {
  /** Index and term of the last entry folded into the snapshot (0, 0 with no snapshot). */
  snapshotIndex: number;
  snapshotTerm: number;
  private entries: Entry[];
  /** Entries from this index on are not known to be on stable storage. */
  unstableFrom: number;

  constructor(snapshotIndex: number, snapshotTerm: number, entries: readonly Entry[]) {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
    this.entries = [...entries];
    for (const [offset, entry] of this.entries.entries()) {
      if (entry.index !== snapshotIndex + 1 + offset) throw new Error(`raft log: entry ${entry.index} out of place`);
    }
    this.unstableFrom = this.lastIndex + 1;
  }

  get firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  get lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  get lastTerm(): number {
    return this.termAt(this.lastIndex) ?? 0;
  }

  /** The term of the entry at `index`; undefined when it is compacted away or not there yet. */
  termAt(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex) return undefined;
    return this.entries[index - this.snapshotIndex - 1]?.term;
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.snapshotIndex) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  /** Entries in [from, to] (inclusive), clipped to what the log holds after the snapshot. */
  slice(from: number, to: number): Entry[] {
    const start = Math.max(from, this.firstIndex) - this.snapshotIndex - 1;
    const end = Math.min(to, this.lastIndex) - this.snapshotIndex;
    return start >= end ? [] : this.entries.slice(start, end);
  }

  /** True when a candidate whose log ends at (index, term) is at least as up to date as this one. */
  isUpToDate(index: number, term: number): boolean {
    const lastTerm = this.lastTerm;
    return term > lastTerm || (term === lastTerm && index >= this.lastIndex);
  }

  append(entry: Entry): void {
    if (entry.index !== this.lastIndex + 1) throw new Error(`raft log: appending ${entry.index} after ${this.lastIndex}`);
    this.entries.push(entry);
  }

  /** Drops every entry from `index` on (a follower's conflicting suffix). */
  truncateFrom(index: number): void {
    if (index <= this.snapshotIndex) throw new Error(`raft log: truncating at ${index}, inside the snapshot (${this.snapshotIndex})`);
    this.entries.length = Math.max(0, index - this.snapshotIndex - 1);
    this.unstableFrom = Math.min(this.unstableFrom, index);
  }

  /** The first index of the run of entries with `term` that contains `index` (fast back-off). */
  firstIndexOfTermAt(index: number): number {
    const term = this.termAt(index);
    let first = index;
    while (first - 1 > this.snapshotIndex && this.termAt(first - 1) === term) first -= 1;
    return first;
  }

  /** The last index holding an entry of `term`, or 0 when the log has none. */
  lastIndexOfTerm(term: number): number {
    for (let index = this.lastIndex; index > this.snapshotIndex; index--) {
      const at = this.termAt(index) ?? 0;
      if (at === term) return index;
      if (at < term) return 0;
    }
    return 0;
  }

  /** Folds everything up to `index` into the snapshot point (the entries are no longer needed). */
  compact(index: number, term: number): void {
    if (index <= this.snapshotIndex) return;
    const keep = index >= this.lastIndex ? [] : this.entries.slice(index - this.snapshotIndex);
    this.entries = keep;
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.unstableFrom = Math.max(this.unstableFrom, index + 1);
  }

  /** Entries not yet handed out for persisting. */
  unstable(): Entry[] {
    return this.slice(this.unstableFrom, this.lastIndex);
  }

  /** Marks entries up to `index` (with `term`) as persisted, if the log still holds them. */
  stableTo(index: number, term: number): void {
    if (this.termAt(index) === term && index >= this.unstableFrom) this.unstableFrom = index + 1;
  }

  /** Entries from the end back to (and including) the newest with a membership, if any. */
  lastMembershipEntry(upTo = this.lastIndex): Entry | undefined {
    for (let index = Math.min(upTo, this.lastIndex); index > this.snapshotIndex; index--) {
      const entry = this.entryAt(index);
      if (entry?.kind === 'membership') return entry;
    }
    return undefined;
  }
}
