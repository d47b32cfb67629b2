// The node's segment store: each segment of a topic is one engine topic keyed `t_<topic>_s_<n>`.
// An append checks the write lease and appends while holding that key's lock, so a lease given
// up (or moved by a rollover) between the check and the write cannot let an entry in: the check
// and the append are one step per key. Counts come from what the engine holds, so they survive a
// restart (the original counted in memory and sealed wrong counts after one). A segment that has
// reached `maxEntries` takes no more appends: the caller gets a retriable SEGMENT_FULL and the
// lease is given up locally until the rollover that seals it has applied, so no acknowledged
// entry can land beyond the sealed count.

import type { Lease, WriteFencing } from '../contracts/fencing.js';
import { Walrus } from '../engine/walrus.js';
import { walrusError } from '../kernel/errors.js';
import { KeyedLock } from './keyed-lock.js';
import { notLeaderFor, segmentKey } from './leases.js';

/** The part of the write fencing the store needs. */
export type LeaseCheck = Pick<WriteFencing, 'check' | 'stillValid' | 'surrender'>;

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
    try {
      const offset = this.appendNow(topic, segment, payload);
      return typeof offset === 'number' ? Promise.resolve(offset) : offset;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * append() for the request path: when the key is free and the engine acknowledges the entry at
   * once (fsync `interval` or `none`), the offset is returned synchronously, with no promise made;
   * otherwise a promise of it. Refusals found before any waiting (no lease, segment full) throw.
   */
  appendNow(topic: string, segment: number, payload: Uint8Array | string): number | Promise<number> {
    const key = segmentKey(topic, segment);
    const release = this.locks.tryAcquire(key);
    if (release === undefined) return this.locks.run(key, async () => this.appendHolding(key, topic, segment, payload));
    let offset: number | Promise<number>;
    try {
      offset = this.appendHolding(key, topic, segment, payload);
    } catch (error) {
      release();
      throw error;
    }
    if (typeof offset === 'number') {
      release();
      return offset;
    }
    return offset.finally(release);
  }

  /** The lease check and the append, with `key` held by the caller. */
  private appendHolding(key: string, topic: string, segment: number, payload: Uint8Array | string): number | Promise<number> {
    const lease = this.options.leases.check(key);
    const count = this.options.wal.entryCount(key);
    if (count >= this.options.maxEntries) {
      this.options.leases.surrender(key);
      this.options.onFull?.(topic, segment, count);
      throw walrusError('SEGMENT_FULL', `segment ${key} is full (${count} entries) and is being rolled over; retry`, {
        details: { key, count },
      });
    }
    const written = this.options.wal.append(key, payload);
    if (Walrus.acknowledged(written)) return this.appended(lease, topic, segment, count);
    return written.then(() => this.appended(lease, topic, segment, count));
  }

  /**
   * After the append of entry `count`: the lease must still be the one the append started under
   * (same epoch, quorum heard from recently), else the entry is not acknowledged — the segment may
   * have moved to another leader meanwhile. The entry that filled the segment ends its appends.
   */
  private appended(lease: Lease, topic: string, segment: number, count: number): number {
    const key = lease.key;
    if (!this.options.leases.stillValid(lease)) {
      throw notLeaderFor(key, { epoch: lease.epoch });
    }
    if (count + 1 >= this.options.maxEntries) {
      this.options.leases.surrender(key);
      this.options.onFull?.(topic, segment, count + 1);
    }
    return count;
  }

  /** Whether the segment holds its full count and takes no more appends until its rollover. */
  full(topic: string, segment: number): boolean {
    return this.count(topic, segment) >= this.options.maxEntries;
  }

  /** Entries the segment holds on this node (0 for a segment it never wrote). */
  count(topic: string, segment: number): number {
    return this.options.wal.entryCount(segmentKey(topic, segment));
  }

  /** The entry at 0-based `offset` of the segment, or null past its end. Does not move any cursor. */
  read(topic: string, segment: number, offset: number): Buffer | null {
    return this.options.wal.readAt(segmentKey(topic, segment), offset);
  }

  /** Entries of the segment consumed by GET so far (its engine cursor, persisted with it). */
  consumed(topic: string, segment: number): number {
    const key = segmentKey(topic, segment);
    return this.options.wal.entryCount(key) - this.options.wal.pendingCount(key);
  }

  /**
   * Marks entry `offset` of the segment, which must be at its consumption position, consumed (the
   * engine persists the position, so a restart neither replays nor skips it). The promise is one
   * for which Walrus.acknowledged() is true when that was done at once.
   */
  consumeAt(topic: string, segment: number, offset: number): Promise<void> {
    return this.options.wal.consumeAt(segmentKey(topic, segment), offset);
  }
}
