// Failover of replicated segments (issue 14), run by the Raft leader. Every checkMs it looks for
// voters it has not heard from for timeoutMs (Consensus.memberSilenceMs) and, for each segment
// such a node serves:
//
// - an open segment it leads is sealed and the topic moves on: the other replicas are fenced
//   (each stops taking that leader's runs, a fence kept on disk, and answers the count its copy
//   holds); once a majority of the replica set has answered, the segment is sealed at the
//   largest count among them and a replica holding that many serves it and leads the next
//   segment. Every committed entry is on a majority, and any two majorities share a node, so the
//   largest count of a fenced majority covers every acknowledged PUT; the old leader, with a
//   majority fenced, cannot get another entry committed.
// - a sealed segment it serves moves to another replica whose copy holds the whole seal.
//
// - a sealed segment kept on a node that left the cluster (removed: no longer a voter) gets a new
//   copy on a live voter outside its replica set (ReplaceReplica); the replica serving it then
//   copies it there in the background, logging its progress (replication.ts). An open segment
//   gets a whole new replica set at its next rollover.
//
// A node whose process is gone need not be waited for: once a voter has been silent for
// probeAfterMs (a fifth of the timeout, at least 200 ms: two of Raft's default heartbeats), the
// monitor tries a connection to its internal port, and a refused one (nothing listens there: the
// process died) counts as down at once until the node is heard from again. A frozen (SIGSTOP)
// process still accepts connections and a cut-off one answers nothing, so those wait out the
// timeout. Failing over early is safe either way: the fence, not the clock, keeps the old
// leader from committing anything more.
//
// A fence placed without the seal that should follow (the proposal failed, then the leader came
// back) would leave the segment taking no writes, so fenced segments are finished even when their
// leader answers again, and an old leader that finds its followers fenced asks for the seal
// (`finish`). With a replica set of one (replication.factor 1) nothing can be done: the topic
// waits for its node, which is logged.

import type { NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
import { type MetadataCommand, type MetadataResult, type MetadataStateMachine, segmentKey } from './metadata.js';
import { replicaSet } from './placement.js';
import { REAL_CLOCK, type ReplicatorClock } from './replicator.js';

export interface FailoverTarget {
  /** Whether this node leads the Raft group now. */
  isLeader(): boolean;
  /** Milliseconds since voter `id` last answered this leader (Consensus.memberSilenceMs). */
  silenceMs(id: NodeId): number | undefined;
  voters(): readonly NodeId[];
  readonly metadata: Pick<MetadataStateMachine, 'topics' | 'topic' | 'segmentReplicas' | 'segmentLeader' | 'sealedCount'>;
  /**
   * Whether a connection to node `id`'s internal port is refused now (its process is gone):
   * true only on that evidence; false when it answered or when nothing is known (no answer in
   * time). Absent: silence alone decides.
   */
  refused?(id: NodeId): Promise<boolean>;
  /** Fences node `id`'s copy of the segment and resolves with the count it holds (this node's own copy too). */
  fence(id: NodeId, topic: string, segment: number): Promise<number>;
  /** Proposes through consensus; resolves with the result once applied here. */
  propose(command: MetadataCommand): Promise<MetadataResult>;
}

export interface FailoverLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface FailoverOptions {
  readonly nodeId: NodeId;
  /** How long a segment's node must be silent before its segments fail over (failover.timeoutMs). */
  readonly timeoutMs: number;
  /** How often to look (default timeoutMs / 10, 20 to 50 ms: a look at the open segments is cheap, and each ms of it is failover time). */
  readonly checkMs?: number;
  /** How long a voter is silent before its internal port is tried (default timeoutMs / 5, at least 200 ms). */
  readonly probeAfterMs?: number;
  /** How long one fence request may take. */
  readonly fenceTimeoutMs?: number;
  /** replication.factor: the next segment's replica set. */
  readonly replicationFactor: number;
  readonly target: FailoverTarget;
  readonly log: FailoverLog;
  /** The clock of the fence timeout (default: the process's; the data-path simulator's is virtual). */
  readonly clock?: ReplicatorClock;
}

/** A majority of `size` nodes. */
export function majority(size: number): number {
  return Math.floor(size / 2) + 1;
}

/**
 * Where a fenced majority says a segment ends: the largest count among the answers, and the first
 * replica (in replica-set order) holding that many. Undefined when fewer than a majority answered.
 */
export function sealPoint(
  replicas: readonly NodeId[],
  held: ReadonlyMap<NodeId, number>,
): { readonly count: number; readonly owner: NodeId } | undefined {
  if (held.size < majority(replicas.length)) return undefined;
  let best: { count: number; owner: NodeId } | undefined;
  for (const id of replicas) {
    const count = held.get(id);
    if (count !== undefined && (best === undefined || count > best.count)) best = { count, owner: id };
  }
  return best;
}

/** The nodes failover treats as gone: silent for timeoutMs, or no longer voters (removed). */
type Unavailable = { has(id: NodeId): boolean };

/** Repairs proposed per check at most (a removal can leave thousands of sealed segments to copy). */
const REPAIRS_PER_CHECK = 8;
/** How often the sealed segments are looked at while something may need moving or repairing. */
const SEALED_SCAN_MS = 250;
/** How often a silent voter's internal port is tried while it stays silent. */
const PROBE_EVERY_MS = 200;

export class FailoverMonitor {
  private readonly options: FailoverOptions;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  /** Segment keys with a failover or move in progress. */
  private readonly busy = new Set<string>();
  /** Open segments this leader fenced whose seal has not applied yet: finished even if their leader is back. */
  private readonly fencedOpen = new Map<string, { readonly topic: string; readonly segment: number; readonly leader: NodeId }>();
  /** Keys whose "cannot" was logged, with the reason, so a stuck segment logs once per reason. */
  private readonly told = new Map<string, string>();
  /** The voters at the last look at the sealed segments, and whether repairs were left for later. */
  private scannedMembership = '';
  private sealedScanAt = Number.NEGATIVE_INFINITY;
  private repairsLeft = false;
  /** Silent voters whose port refused a connection: when (this clock), while not heard from since. */
  private readonly refusedAt = new Map<NodeId, number>();
  /** When each silent voter was last probed, and the probes in flight. */
  private readonly probedAt = new Map<NodeId, number>();
  private readonly probing = new Set<NodeId>();

  constructor(options: FailoverOptions) {
    this.options = options;
  }

  start(): void {
    if (this.timer !== undefined) return;
    const every = this.options.checkMs ?? Math.max(20, Math.min(50, Math.floor(this.options.timeoutMs / 10)));
    this.timer = setInterval(() => {
      this.tick().catch((error: unknown) => this.options.log.warn({ error: (error as Error).message }, 'failover check failed'));
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.ticking;
  }

  /** One look at every segment of every down node (and at the fenced ones); one run at a time. */
  tick(): Promise<void> {
    this.ticking ??= this.check().finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  /**
   * An old leader found its followers fenced while its segment is still open: seal it (on the Raft
   * leader; elsewhere refused so that the asker tries the leader it learns of).
   */
  async finish(topic: string, segment: number): Promise<void> {
    const { target } = this.options;
    if (!target.isLeader())
      throw walrusError('RAFT_NOT_LEADER', 'this node does not lead the Raft group: ask its leader to finish the failover');
    const view = target.metadata.topic(topic);
    if (view === undefined || view.currentSegment !== segment) return;
    await this.failOver(topic, segment, view.leaderNode, new Set());
  }

  private async check(): Promise<void> {
    const { target, nodeId } = this.options;
    if (!target.isLeader()) {
      // Another leader decides now; what this one fenced is finished by the old leader's request.
      this.fencedOpen.clear();
      return;
    }
    const voters = target.voters();
    const members = new Set(voters);
    const silent = new Set(voters.filter((id) => id !== nodeId && this.isDown(id)));
    const down: Unavailable = { has: (id) => silent.has(id) || !members.has(id) };
    const runs: Promise<void>[] = [];
    for (const [key, { topic, segment, leader }] of this.fencedOpen) {
      const view = target.metadata.topic(topic);
      if (view === undefined || view.currentSegment !== segment || view.leaderNode !== leader) this.fencedOpen.delete(key);
      else if (!down.has(leader)) runs.push(this.failOver(topic, segment, leader, down));
    }
    // The sealed segments are looked at (at most every SEALED_SCAN_MS) while a node is silent or
    // repairs are left to do, and at once after a membership change; the open ones at every check
    // while a node is silent. With all answering and nothing left, a check looks at nothing.
    const membership = voters.join(',');
    const now = (this.options.clock ?? REAL_CLOCK).now();
    const scanSealed =
      membership !== this.scannedMembership || ((silent.size > 0 || this.repairsLeft) && now - this.sealedScanAt >= SEALED_SCAN_MS);
    this.scannedMembership = membership;
    if (scanSealed) {
      this.sealedScanAt = now;
      this.repairsLeft = false;
    }
    let repairs = 0;
    // With every voter answering and the membership as it was, there is nothing to look for.
    if (silent.size === 0 && !scanSealed) {
      await Promise.all(runs);
      return;
    }
    for (const topic of target.metadata.topics()) {
      const view = target.metadata.topic(topic);
      if (view === undefined) continue;
      if (down.has(view.leaderNode)) {
        runs.push(this.failOver(topic, view.currentSegment, view.leaderNode, down));
        this.repairsLeft = true;
      }
      if (!scanSealed) continue;
      for (let segment = 1; segment < view.currentSegment; segment++) {
        const owner = target.metadata.segmentLeader(topic, segment);
        if (owner === undefined) continue;
        if (down.has(owner)) {
          runs.push(this.move(topic, segment, owner, down));
          this.repairsLeft = true;
        } else if (repairs >= REPAIRS_PER_CHECK) this.repairsLeft = true;
        else {
          const repair = this.repair(topic, segment, owner, members, down);
          if (repair !== undefined) {
            repairs += 1;
            runs.push(repair);
          }
        }
      }
    }
    // Look again next time until a scan starts nothing (proposals can fail, and are retried).
    if (repairs > 0) this.repairsLeft = true;
    await Promise.all(runs);
  }

  /**
   * Whether voter `id` counts as down: silent for timeoutMs, or silent since its port refused a
   * connection. Starts a probe of a voter silent for probeAfterMs (the answer counts at a later check).
   */
  private isDown(id: NodeId): boolean {
    const { target, timeoutMs } = this.options;
    const silence = target.silenceMs(id) ?? 0;
    if (silence >= timeoutMs) return true;
    const now = (this.options.clock ?? REAL_CLOCK).now();
    const refusedAt = this.refusedAt.get(id);
    if (refusedAt !== undefined) {
      // Heard from after the refusal (a restart): no longer evidence.
      if (silence >= now - refusedAt) return true;
      this.refusedAt.delete(id);
    }
    const probeAfter = this.options.probeAfterMs ?? Math.min(timeoutMs, Math.max(200, Math.floor(timeoutMs / 5)));
    if (target.refused === undefined || silence < probeAfter) {
      if (silence < probeAfter) this.probedAt.delete(id);
      return false;
    }
    if (this.probing.has(id) || now - (this.probedAt.get(id) ?? Number.NEGATIVE_INFINITY) < PROBE_EVERY_MS) return false;
    this.probing.add(id);
    this.probedAt.set(id, now);
    target
      .refused(id)
      .then(
        (refused) => {
          if (!refused) return;
          this.refusedAt.set(id, now);
          this.options.log.info(
            { node: id, silentMs: silence },
            `node ${id} refuses connections (its process is gone): its segments fail over without waiting out failover.timeoutMs`,
          );
        },
        () => undefined,
      )
      .finally(() => this.probing.delete(id));
    return false;
  }

  /** Seals an open segment whose leader is gone at what a fenced majority holds; never rejects. */
  private async failOver(topic: string, segment: number, leader: NodeId, down: Unavailable): Promise<void> {
    const key = segmentKey(topic, segment);
    if (this.busy.has(key)) return;
    this.busy.add(key);
    const clock = this.options.clock ?? REAL_CLOCK;
    const started = clock.now();
    try {
      const { target, replicationFactor } = this.options;
      const replicas = target.metadata.segmentReplicas(topic, segment) ?? [leader];
      if (replicas.length < 2) {
        this.once(
          key,
          'alone',
          { topic, segment, leader },
          `${key} is kept by node ${leader} alone (replication.factor 1): its topic takes no writes until that node is back`,
        );
        return;
      }
      const asked = replicas.filter((id) => id !== leader && !down.has(id));
      const need = majority(replicas.length);
      if (asked.length < need) {
        this.once(
          key,
          `few:${asked.join(',')}`,
          { topic, segment, leader, replicas, up: asked },
          `${key} cannot fail over yet: ${asked.length} of its ${replicas.length} replicas are up and ${need} are needed; its topic takes no writes until more are back`,
        );
        return;
      }
      this.fencedOpen.set(key, { topic, segment, leader });
      const held = await this.fenceAll(asked, topic, segment);
      const point = sealPoint(replicas, held);
      if (point === undefined) {
        this.once(
          key,
          `unanswered:${[...held.keys()].join(',')}`,
          { topic, segment, leader, answered: [...held.keys()] },
          `${key} cannot fail over yet: too few replicas answered the fence; trying again`,
        );
        return;
      }
      const view = target.metadata.topic(topic);
      if (view === undefined || view.currentSegment !== segment) return;
      const live = target.voters().filter((id) => id !== leader && !down.has(id));
      const command: MetadataCommand = {
        kind: 'RolloverTopic',
        topic,
        expectedSegment: segment,
        sealedCount: point.count,
        newLeader: point.owner,
        sealedOwner: point.owner,
        ...(replicationFactor > 1 ? { replicas: replicaSet(point.owner, replicationFactor, target.voters(), live) } : {}),
      };
      const result = await target.propose(command);
      if (!result.ok) throw new Error(result.error);
      this.fencedOpen.delete(key);
      this.told.delete(key);
      this.options.log.info(
        {
          topic,
          segment,
          oldLeader: leader,
          sealedCount: point.count,
          newLeader: point.owner,
          held: Object.fromEntries(held),
          outcome: result.outcome,
          tookMs: Math.round(clock.now() - started),
        },
        'failover: segment sealed at what a majority of its replicas holds; the next one is led by a live replica',
      );
    } catch (error) {
      this.options.log.warn({ topic, segment, leader, error: (error as Error).message }, 'failover attempt failed; trying again');
    } finally {
      this.busy.delete(key);
    }
  }

  /** Moves a sealed segment whose node is gone to a replica holding all of it; never rejects. */
  private async move(topic: string, segment: number, owner: NodeId, down: Unavailable): Promise<void> {
    const key = segmentKey(topic, segment);
    if (this.busy.has(key)) return;
    const { target } = this.options;
    const sealed = target.metadata.sealedCount(topic, segment);
    const replicas = target.metadata.segmentReplicas(topic, segment) ?? [owner];
    const asked = replicas.filter((id) => id !== owner && !down.has(id));
    if (sealed === undefined || asked.length === 0) {
      if (replicas.length < 2)
        this.once(
          key,
          'alone',
          { topic, segment, owner },
          `${key} is kept by node ${owner} alone: it cannot be read until that node is back`,
        );
      return;
    }
    this.busy.add(key);
    try {
      const held = await this.fenceAll(asked, topic, segment);
      const next = asked.find((id) => (held.get(id) ?? -1) >= sealed);
      if (next === undefined) {
        this.once(
          key,
          `short:${JSON.stringify([...held])}`,
          { topic, segment, owner, sealed, held: Object.fromEntries(held) },
          `${key} cannot move: no live replica holds all ${sealed} of its entries; it can be read again when node ${owner} is back`,
        );
        return;
      }
      const result = await target.propose({ kind: 'MoveSegment', topic, segment, expectedOwner: owner, owner: next });
      if (!result.ok) throw new Error(result.error);
      this.told.delete(key);
      this.options.log.info(
        { topic, segment, from: owner, to: next, sealed, outcome: result.outcome },
        'sealed segment now served by another replica',
      );
    } catch (error) {
      this.options.log.warn({ topic, segment, owner, error: (error as Error).message }, 'moving a sealed segment failed; trying again');
    } finally {
      this.busy.delete(key);
    }
  }

  /**
   * A sealed segment with a copy on a node that is no longer a member: a ReplaceReplica naming a
   * live voter outside its set (the next after its server in id order), when there is one.
   * Undefined when the segment needs no repair (or one is in flight).
   */
  private repair(
    topic: string,
    segment: number,
    owner: NodeId,
    members: ReadonlySet<NodeId>,
    down: Unavailable,
  ): Promise<void> | undefined {
    const key = segmentKey(topic, segment);
    const replicas = this.options.target.metadata.segmentReplicas(topic, segment) ?? [owner];
    const removed = replicas.find((id) => !members.has(id));
    if (removed === undefined || this.busy.has(key)) return undefined;
    const candidates = [...members].filter((id) => !replicas.includes(id) && !down.has(id)).sort((a, b) => a - b);
    const added = candidates.find((id) => id > owner) ?? candidates[0];
    if (added === undefined) {
      this.once(
        key,
        `repair:${removed}`,
        { topic, segment, removed, replicas },
        `${key} lost its copy on node ${removed} (removed) and no live node outside its replica set can take one`,
      );
      return undefined;
    }
    this.busy.add(key);
    return (async () => {
      try {
        const result = await this.options.target.propose({ kind: 'ReplaceReplica', topic, segment, removed, added });
        if (!result.ok) throw new Error(result.error);
        this.told.delete(key);
        this.options.log.info(
          { topic, segment, removed, added, outcome: result.outcome },
          'repair: a sealed segment gets a new copy in place of a removed node',
        );
      } catch (error) {
        this.options.log.warn({ topic, segment, removed, added, error: (error as Error).message }, 'repair proposal failed; trying again');
      } finally {
        this.busy.delete(key);
      }
    })();
  }

  /** The counts of the replicas that answered the fence within fenceTimeoutMs. */
  private async fenceAll(ids: readonly NodeId[], topic: string, segment: number): Promise<Map<NodeId, number>> {
    const timeoutMs = this.options.fenceTimeoutMs ?? Math.max(200, this.options.timeoutMs);
    const clock = this.options.clock ?? REAL_CLOCK;
    const answers = await Promise.all(
      ids.map(async (id) => {
        let timer: unknown;
        try {
          const late = new Promise<undefined>((resolve) => {
            timer = clock.setTimeout(() => resolve(undefined), timeoutMs);
          });
          const count = await Promise.race([this.options.target.fence(id, topic, segment), late]);
          return count === undefined ? undefined : ([id, count] as const);
        } catch {
          return undefined;
        } finally {
          if (timer !== undefined) clock.clearTimeout(timer);
        }
      }),
    );
    return new Map(answers.filter((answer) => answer !== undefined));
  }

  private once(key: string, reason: string, fields: object, message: string): void {
    if (this.told.get(key) === reason) return;
    this.told.set(key, reason);
    this.options.log.warn(fields, message);
  }
}
