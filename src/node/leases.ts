// Write leases for segments (the WriteFencing of src/contracts/fencing.ts), derived from the
// local metadata replica. A node may append to a segment key `t_<topic>_s_<n>` only while the metadata it has
// applied names it the leader of that topic's open segment n. The table is rebuilt on every
// metadata apply (through the source's change listener) and every `syncMs` as a safety net, and
// each lease remembers the metadata epoch that granted it. A write without a current lease fails
// with NOT_LEADER_FOR_PARTITION, whose message is the protocol's `NotLeaderForPartition: <key>`.
// A lease can also be given up locally before the metadata moves it (a full segment being
// rolled over), so that nothing is appended past the count the rollover will seal.

import type { Lease, LeaseSource, WriteFencing } from '../contracts/fencing.js';
import { type WalrusError, walrusError } from '../kernel/errors.js';
import { segmentKey } from './metadata.js';

export interface LeaseTableOptions {
  readonly nodeId: number;
  readonly source: LeaseSource;
  /** How often the table is rebuilt even without a metadata change (the original: 100 ms). */
  readonly syncMs?: number;
  /**
   * Whether this node may write at all right now: the lease-fencing plugin passes "consensus had
   * quorum contact within lease.ttlMs", so a partitioned old leader stops accepting writes before
   * another node can be elected. Absent: always.
   */
  readonly confirmed?: () => boolean;
}

export const LEASE_SYNC_MS_DEFAULT = 100;

export type { Lease, LeaseSource } from '../contracts/fencing.js';
export { segmentKey } from './metadata.js';

/**
 * The refusal of a write or read this node cannot serve for segment `key`: NOT_LEADER_FOR_PARTITION,
 * whose message is the protocol's `NotLeaderForPartition: <key>`.
 */
export function notLeaderFor(key: string, details: Readonly<Record<string, unknown>> = {}): WalrusError {
  return walrusError('NOT_LEADER_FOR_PARTITION', `NotLeaderForPartition: ${key}`, { details: { key, ...details } });
}

export class LeaseTable implements WriteFencing {
  private readonly options: LeaseTableOptions;
  private leases = new Map<string, Lease>();
  /** Keys given up locally (sealing) until the metadata stops naming them. */
  private readonly surrendered = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(options: LeaseTableOptions) {
    this.options = options;
    this.sync();
  }

  /** Starts following the source: on every change, and every syncMs. */
  start(): void {
    if (this.timer !== undefined) return;
    this.unsubscribe = this.options.source.onChange(() => this.sync());
    this.timer = setInterval(() => this.sync(), this.options.syncMs ?? LEASE_SYNC_MS_DEFAULT);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Rebuilds the table from the source now. */
  sync(): void {
    const epoch = this.options.source.epoch;
    const next = new Map<string, Lease>();
    for (const { topic, segment } of this.options.source.ownedOpenSegments(this.options.nodeId)) {
      const key = segmentKey(topic, segment);
      next.set(key, { key, epoch: this.leases.get(key)?.epoch ?? epoch });
    }
    // A surrendered key stays surrendered while the metadata still grants it.
    for (const key of this.surrendered) if (!next.has(key)) this.surrendered.delete(key);
    this.leases = next;
  }

  /** The lease on `key`, or throws NOT_LEADER_FOR_PARTITION. */
  check(key: string): Lease {
    const lease = this.leases.get(key);
    if (lease === undefined || this.surrendered.has(key) || !(this.options.confirmed?.() ?? true)) {
      throw notLeaderFor(key);
    }
    return lease;
  }

  stillValid(lease: Lease): boolean {
    return this.holds(lease.key) && this.leases.get(lease.key)?.epoch === lease.epoch;
  }

  holds(key: string): boolean {
    return this.leases.has(key) && !this.surrendered.has(key) && (this.options.confirmed?.() ?? true);
  }

  inContact(): boolean {
    return this.options.confirmed?.() ?? true;
  }

  /** Gives up the lease on `key` now, before the metadata moves it (the segment is being sealed). */
  surrender(key: string): void {
    if (this.leases.has(key)) this.surrendered.add(key);
  }

  /** Keys this node may write now. */
  keys(): string[] {
    return [...this.leases.keys()].filter((key) => this.holds(key));
  }
}
