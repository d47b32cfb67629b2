// The rollover monitor: seals a full open segment and hands the topic's next segment to the next
// live voter, skipping voters that are down (the original rotated onto them and the topic wedged
// there, reference/cluster.md §6.4); with no other voter live the segment stays here. Every `checkMs` (and at once when the segment store reports a segment full) it
// looks at each open segment this node leads; one holding at least `threshold` entries gets a
// RolloverTopic proposal with the exact count the store holds and the segment it expects to seal,
// so a stale or repeated proposal is a no-op when applied (the original sealed a segment per
// duplicate). At most one proposal per segment is in flight. Nothing here rejects: a failure to
// look at a segment (its store refusing a count, a storage fault) is logged and retried at the
// next tick, because a rejection dropped by a timer would end the node's process.

import { replicaSet } from '../../node/placement.js';

/** What the monitor works with: the metadata replica, the segment store, consensus. */
export interface RolloverTarget {
  /** Open segments whose leader is this node, per the metadata applied here. */
  ownedOpenSegments(): readonly { readonly topic: string; readonly segment: number }[];
  /** Entries the segment holds on this node. */
  count(topic: string, segment: number): number;
  /** Every voter of the Raft group, up or not, in any order. */
  voters(): readonly number[];
  /** The members known to be up (Consensus.liveMembers), this node included, in any order. */
  liveMembers(): readonly number[];
  /** Proposes the rollover through consensus; resolves once applied here. */
  propose(rollover: Rollover): Promise<unknown>;
}

export interface Rollover {
  readonly topic: string;
  readonly expectedSegment: number;
  readonly sealedCount: number;
  readonly newLeader: number;
  /** The next segment's replica set (replication.factor above 1). */
  readonly replicas?: readonly number[];
}

export interface MonitorLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface RolloverMonitorOptions {
  readonly nodeId: number;
  /** replication.factor: nodes in the next segment's replica set (default 1: its leader alone). */
  readonly replicationFactor?: number;
  /** Entries after which an open segment is sealed (WALRUS_MAX_SEGMENT_ENTRIES). */
  readonly threshold: number;
  /** How often every owned segment is looked at (WALRUS_MONITOR_CHECK_MS). */
  readonly checkMs: number;
  readonly target: RolloverTarget;
  readonly log: MonitorLog;
}

/**
 * The first live voter after `self` in ascending id order, wrapping round (voters 1, 2, 3, all
 * up: 2 → 3 → 1 → 2); a voter that is not live is skipped. `self` when no other voter is live.
 */
export function nextLeader(self: number, voters: readonly number[], live: readonly number[]): number {
  const up = new Set(live);
  const candidates = [...new Set(voters)].filter((id) => id !== self && up.has(id)).sort((a, b) => a - b);
  if (candidates.length === 0) return self;
  return candidates.find((id) => id > self) ?? (candidates[0] as number);
}

export class RolloverMonitor {
  private readonly options: RolloverMonitorOptions;
  private timer: NodeJS.Timeout | undefined;
  /** Segment keys with a proposal in flight. */
  private readonly proposing = new Set<string>();
  private ticking: Promise<void> | undefined;

  constructor(options: RolloverMonitorOptions) {
    this.options = options;
  }

  start(): void {
    if (this.timer !== undefined) return;
    // tick() does not reject (check() catches per segment); the catch is the last guard, so a
    // fault in the monitor is a log line, never an unhandled rejection from a timer.
    this.timer = setInterval(() => {
      this.tick().catch((error: unknown) => this.options.log.warn({ error: (error as Error).message }, 'rollover check failed'));
    }, this.options.checkMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /** Looks at every owned open segment once; proposals run concurrently, one per segment. */
  tick(): Promise<void> {
    this.ticking ??= this.check().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /** A segment was reported full: propose its rollover now rather than at the next tick. */
  segmentFull(topic: string, segment: number): void {
    void this.consider(topic, segment);
  }

  private async check(): Promise<void> {
    let owned: readonly { readonly topic: string; readonly segment: number }[];
    try {
      owned = this.options.target.ownedOpenSegments();
    } catch (error) {
      this.options.log.warn({ error: (error as Error).message }, 'rollover check failed: cannot list the open segments');
      return;
    }
    await Promise.all(owned.map(({ topic, segment }) => this.consider(topic, segment)));
  }

  /** Proposes the segment's rollover if it is full; never rejects (every failure is logged). */
  private async consider(topic: string, segment: number): Promise<void> {
    const key = `${topic}\u0000${segment}`;
    if (this.proposing.has(key)) return;
    const { target, threshold, nodeId, log } = this.options;
    let rollover: Rollover;
    try {
      const count = target.count(topic, segment);
      if (count < threshold) return;
      if (!target.ownedOpenSegments().some((open) => open.topic === topic && open.segment === segment)) return;
      const voters = target.voters();
      const live = target.liveMembers();
      const newLeader = nextLeader(nodeId, voters, live);
      const factor = this.options.replicationFactor ?? 1;
      rollover = {
        topic,
        expectedSegment: segment,
        sealedCount: count,
        newLeader,
        ...(factor > 1 ? { replicas: replicaSet(newLeader, factor, voters, live) } : {}),
      };
    } catch (error) {
      // E.g. the store cannot be read after a storage failure: looked at again at the next tick.
      log.warn({ topic, segment, error: (error as Error).message }, 'rollover check failed');
      return;
    }
    this.proposing.add(key);
    try {
      await target.propose(rollover);
      log.info({ ...rollover }, 'segment rolled over');
    } catch (error) {
      // Retried at the next tick (the segment stays full and owned until a rollover applies).
      log.warn({ ...rollover, error: (error as Error).message }, 'rollover proposal failed');
    } finally {
      this.proposing.delete(key);
    }
  }
}
