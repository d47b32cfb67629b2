// The node's segment store: each segment of a topic is one engine topic keyed `t_<topic>_s_<n>`.
// An append checks the write lease and appends while holding that key's lock, so a lease given
// up (or moved by a rollover) between the check and the write cannot let an entry in: the check
// and the append are one step per key. Counts come from what the engine holds, so they survive a
// restart (the original counted in memory and sealed wrong counts after one). A segment that has
// reached `maxEntries` takes no more appends: the caller gets a retriable SEGMENT_FULL and the
// lease is given up locally until the rollover that seals it has applied, so no acknowledged
// entry can land beyond the sealed count.

import type { Walrus } from '../engine/walrus.js';
import { walrusError } from '../kernel/errors.js';
import { type Lease, segmentKey } from '../plugins/lease-fencing/leases.js';
import { KeyedLock } from './keyed-lock.js';

/** The part of the lease table the store needs. */
export interface LeaseCheck {
  check(key: string): Lease;
  surrender(key: string): void;
}

export interface SegmentStoreOptions {
  readonly wal: Walrus;
  readonly leases: LeaseCheck;
  /** Entries after which an open segment takes no more appends (the rollover threshold). */
  readonly maxEntries: number;
  /** Called once when a segment reaches maxEntries (the rollover monitor can propose at once). */
  readonly onFull?: (topic: string, segment: number, count: number) => void;
}

export class SegmentStore {
  private readonly options: SegmentStoreOptions;
  /** One append at a time per key, across the lease check and the write. */
  private readonly locks = new KeyedLock();

  constructor(options: SegmentStoreOptions) {
    this.options = options;
  }

  /**
   * Appends `payload` to the open segment `segment` of `topic` if this node holds its lease and
   * it is not full; resolves with the entry's 0-based offset within the segment once the engine
   * has acknowledged it.
   */
  append(topic: string, segment: number, payload: Uint8Array | string): Promise<number> {
    const key = segmentKey(topic, segment);
    return this.locks.run(key, async () => {
      this.options.leases.check(key);
      const count = this.options.wal.entryCount(key);
      if (count >= this.options.maxEntries) {
        this.options.leases.surrender(key);
        this.options.onFull?.(topic, segment, count);
        throw walrusError('SEGMENT_FULL', `segment ${key} is full (${count} entries) and is being rolled over; retry`, {
          details: { key, count },
        });
      }
      await this.options.wal.append(key, payload);
      if (count + 1 >= this.options.maxEntries) {
        // The entry that filled it: no further append may pass the check above.
        this.options.leases.surrender(key);
        this.options.onFull?.(topic, segment, count + 1);
      }
      return count;
    });
  }

  /** Entries the segment holds on this node (0 for a segment it never wrote). */
  count(topic: string, segment: number): number {
    return this.options.wal.entryCount(segmentKey(topic, segment));
  }

  /** The entry at 0-based `offset` of the segment, or null past its end. Does not move any cursor. */
  async read(topic: string, segment: number, offset: number): Promise<Buffer | null> {
    const key = segmentKey(topic, segment);
    if (offset >= this.options.wal.entryCount(key)) return null;
    const [entry] = await this.options.wal.readBatch(key, { startSeq: offset, maxBytes: 1 });
    return entry !== undefined && entry.seq === offset ? entry.data : null;
  }

  /** Entries of the segment consumed by GET so far (its engine cursor, persisted with it). */
  consumed(topic: string, segment: number): number {
    const key = segmentKey(topic, segment);
    return this.options.wal.entryCount(key) - this.options.wal.pendingCount(key);
  }

  /**
   * Marks the entry at the segment's consumption position consumed and returns it (the engine
   * persists the position, so a restart neither replays nor skips it); null when there is none.
   */
  async consume(topic: string, segment: number): Promise<Buffer | null> {
    const entry = await this.options.wal.readNext(segmentKey(topic, segment));
    return entry === null ? null : entry.data;
  }
}
