// The WriteFencing contract: which segment keys this node may append to right now, and with the
// epoch of the metadata that granted each lease. The append path checks a lease before it writes
// and checks it again when the write completes (stillValid), so a lease that moved or lapsed while
// the write was in flight gets no acknowledgement. The lease-fencing plugin provides a factory;
// the data plane builds its fencing from it over the metadata replica it owns.

import type { NodeId } from './consensus.js';

export interface Lease {
  readonly key: string;
  /** The metadata epoch at which this node's lease on `key` was granted. */
  readonly epoch: number;
}

/** What leases are derived from: the metadata replica, or a test double. */
export interface LeaseSource {
  /** The open segments whose leader is `nodeId`, per the metadata applied here. */
  ownedOpenSegments(nodeId: NodeId): readonly { readonly topic: string; readonly segment: number }[];
  /** Increases with every metadata change. */
  readonly epoch: number;
  /** Calls `listener` after every metadata apply; returns the function that unsubscribes. */
  onChange(listener: () => void): () => void;
}

export interface WriteFencing {
  /** The lease on `key`, or throws NOT_LEADER_FOR_PARTITION (`NotLeaderForPartition: <key>`). */
  check(key: string): Lease;
  /** True while `lease` is still this node's lease on its key: same epoch, and a quorum heard from recently. */
  stillValid(lease: Lease): boolean;
  holds(key: string): boolean;
  /**
   * Whether this node has had contact with a quorum recently enough for a lease (what every lease
   * rests on). GET of a replicated segment needs it too: a node cut off from the majority may
   * already have lost its segments to a failover.
   */
  inContact(): boolean;
  /** Gives up the lease on `key` now, before the metadata moves it (the segment is being sealed). */
  surrender(key: string): void;
  /** Keys this node may write now. */
  keys(): string[];
  /** Starts following the source (every change, and a periodic rebuild). */
  start(): void;
  stop(): void;
}

export interface WriteFencingFactory {
  create(options: { readonly nodeId: NodeId; readonly source: LeaseSource }): WriteFencing;
}
