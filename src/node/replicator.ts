// The leader's side of one replicated segment (issue 14): it sends the entries the leader has
// appended to each follower of the segment's replica set, in runs, several in flight per
// follower, and works out the commit count: the entries a majority of the replica set holds
// (the leader counts with what its own engine has acknowledged). A PUT is acknowledged once its
// entry is committed; committed() tells when.
//
// A follower answers each run with the count it holds; a count below what was sent (it missed
// some, or restarted and lost unsynced ones) makes the leader send again from there, so the
// follower's copy is always a prefix of the leader's. A follower that cannot be reached is tried
// again after a pause, from the count it last confirmed. A follower that answers `fenced` has
// been told by a failover that this segment is over: the leader stops (its epoch has ended) and
// every PUT still waiting fails with a retriable error, never OK.
//
// The GET position goes along: each run carries how many entries GET has consumed on the leader,
// and a move of that position alone is sent as a run without entries, so the followers' cursors
// follow the leader's (a failover then replays at most what was in flight).
//
// No sockets here: the transport sends a run and returns the follower's answer.

import type { NodeId } from '../contracts/consensus.js';
import { notLeaderFor, segmentKey } from './leases.js';

/** One run of entries for a follower: `payloads` go at `offset` onward; `commit` is what the leader knows to be committed. */
export interface ReplicaRun {
  readonly topic: string;
  readonly segment: number;
  /** The segment's epoch: a follower refuses runs of an epoch older than one it has seen. */
  readonly epoch: number;
  readonly offset: number;
  readonly payloads: readonly Uint8Array[];
  readonly commit: number;
  /** Entries GET has consumed on the leader: the follower moves its cursor there (as far as it holds). */
  readonly consumed: number;
}

/** A follower's answer: the count of entries it holds, or that it will take no more of this segment. */
export type ReplicaAnswer = { readonly held: number } | { readonly fenced: true };

export interface ReplicaTransport {
  send(follower: NodeId, run: ReplicaRun): Promise<ReplicaAnswer>;
}

export interface ReplicatorOptions {
  readonly topic: string;
  readonly segment: number;
  readonly epoch: number;
  /** The other nodes of the replica set (the leader is not listed). */
  readonly followers: readonly NodeId[];
  readonly transport: ReplicaTransport;
  /** The entry at `offset` in the leader's copy (null past its end). */
  readonly read: (offset: number) => Uint8Array | null;
  /** Entries the follower already holds when replication starts (a new leader that caught up). Default 0. */
  readonly startAt?: number;
  /** Most entries in one run (default 64). */
  readonly runEntriesMax?: number;
  /**
   * Runs one follower may have unanswered (default 1: the entries appended while a run is out go
   * in the next one, fewer and larger runs; in the cluster bench this cost less CPU per PUT than
   * 4 or 16 and gave more PUTs per second).
   */
  readonly inFlightMax?: number;
  /**
   * A commit needs quorum - 1 followers; the others (the least advanced) are sent a run only once
   * four runs' worth of entries wait for them or the oldest has waited this long (default 5 ms; 0:
   * send every follower everything at once). Fewer, larger runs to them cost less CPU on both sides and
   * wake fewer processes, and a commit never waits for them while the quorum answers.
   */
  readonly extraDelayMs?: number;
  /** Pause before trying a follower again after a failed send (default 100 ms). */
  readonly retryMs?: number;
  /** Called when the commit count moves. */
  readonly onCommit?: (commit: number) => void;
  /** Called once when a follower answers `fenced` (a failover is sealing the segment), after the stop. */
  readonly onFenced?: () => void;
  /**
   * Called once, after the stop, when a follower holds more than this leader (its copy lost
   * entries it had acknowledged: a power cut under fsync `interval`); appending on would give the
   * follower's copy other entries at the same offsets. Absent: such an answer is taken as `held`.
   */
  readonly onBehind?: (follower: NodeId, held: number, local: number) => void;
  /** How long committed() waits before it rejects with `timedOut(count)` (default: no limit). */
  readonly waitMs?: number;
  readonly timedOut?: (count: number) => Error;
  /** The clock and timers (default: the process's); the data-path simulator runs on a virtual one. */
  readonly clock?: ReplicatorClock;
}

export interface ReplicatorClock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** The process's clock; timers are unref'd: a replicator is no reason for the process to stay up. */
export const REAL_CLOCK: ReplicatorClock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (callback, ms) => setInterval(callback, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

interface Follower {
  readonly id: NodeId;
  /** Entries it has confirmed holding. */
  held: number;
  /** The next offset to send. */
  next: number;
  /** The GET position last sent to it (-1: to be sent again) and the one it confirmed. */
  toldConsumed: number;
  confirmedConsumed: number;
  inFlight: number;
  /** Since when something has waited to be sent to it while it counted as an extra follower. */
  deferredSince: number | undefined;
  /** Not before this time (after a failed send). */
  retryAt: number;
  timer: unknown;
}

interface Waiter {
  readonly count: number;
  readonly since: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export class SegmentReplicator {
  private readonly options: ReplicatorOptions;
  private readonly followers: Follower[];
  /** The leader's own acknowledged count. */
  private local = 0;
  private commitCount = 0;
  /** How many of the replica set (leader included) must hold an entry for it to be committed. */
  private readonly quorum: number;
  /** Waiters for commit counts, in ascending count order (appends arrive in order). */
  private readonly waiters: Waiter[] = [];
  /** Waiters for a GET position a majority has recorded (positionConfirmed). */
  private readonly positionWaiters: Waiter[] = [];
  private stopped: Error | undefined;
  /** The leader's GET position in this segment. */
  private cursor = 0;
  /** A send to the followers is due at the end of this turn (appends of one turn go as one run). */
  private pumpDue = false;
  /** Entries read for runs, from offset recentFrom on, kept until every follower was sent them (entry()). */
  private recent: Uint8Array[] = [];
  private recentFrom = 0;
  /** Bytes of the entries in `recent`. */
  private recentBytes = 0;
  /** Rejects waiters older than waitMs; runs while any waits (one timer, not one per PUT). */
  private sweeper: unknown;
  private readonly clock: ReplicatorClock;

  constructor(options: ReplicatorOptions) {
    this.options = options;
    this.clock = options.clock ?? REAL_CLOCK;
    const start = options.startAt ?? 0;
    this.followers = options.followers.map((id) => ({
      id,
      held: start,
      next: start,
      toldConsumed: 0,
      confirmedConsumed: 0,
      inFlight: 0,
      deferredSince: undefined,
      retryAt: 0,
      timer: undefined,
    }));
    this.quorum = Math.floor((options.followers.length + 1) / 2) + 1;
    this.local = start;
    this.commitCount = start;
  }

  /** The segment this replicates. */
  get segmentOf(): { readonly topic: string; readonly segment: number } {
    return { topic: this.options.topic, segment: this.options.segment };
  }

  /** The leader's own acknowledged count. */
  get leaderCount(): number {
    return this.local;
  }

  /** Entries a majority of the replica set holds. */
  get commit(): number {
    return this.commitCount;
  }

  /** What each follower has confirmed (for STATE, METRICS and tests). */
  held(): ReadonlyMap<NodeId, number> {
    return new Map(this.followers.map((follower) => [follower.id, follower.held]));
  }

  /** GET has consumed the first `count` entries on the leader: the followers' cursors follow. */
  consumedTo(count: number): void {
    if (this.stopped !== undefined || count <= this.cursor) return;
    this.cursor = count;
    this.positionMoved();
    this.schedulePump();
  }

  /**
   * The GET position a majority of the replica set has recorded (this leader counts with its own):
   * a failover hands the segment to a copy whose position is at least this.
   */
  get confirmedPosition(): number {
    return quorumValue(this.cursor, this.followers, confirmedConsumedOf, this.quorum);
  }

  /**
   * Resolves once a majority has recorded a GET position of at least `position` (at once when it
   * has); rejects with `timedOut` after `ms`, or when replication stops.
   */
  positionConfirmed(position: number, ms: number, timedOut: () => Error): Promise<void> {
    if (position <= this.confirmedPosition) return COMMITTED;
    if (this.stopped !== undefined) return Promise.reject(this.stopped);
    this.consumedTo(position);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        count: position,
        since: this.clock.now(),
        resolve: () => {
          this.clock.clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          this.clock.clearTimeout(timer);
          reject(error);
        },
      };
      const timer = this.clock.setTimeout(() => {
        const at = this.positionWaiters.indexOf(waiter);
        if (at >= 0) this.positionWaiters.splice(at, 1);
        reject(timedOut());
      }, ms);
      this.positionWaiters.push(waiter);
    });
  }

  /** Every follower holds all of the leader's entries and has confirmed the GET position (nothing left to send). */
  caughtUp(): boolean {
    return this.followers.every((follower) => follower.held >= this.local && follower.confirmedConsumed >= this.cursor);
  }

  /**
   * The leader's engine acknowledged its entries up to `count`: send them on. `last`, when
   * given, is the bytes of entry count - 1 as the leader's copy holds them (the runs then need
   * not read it back).
   */
  appended(count: number, last?: Uint8Array): void {
    if (this.stopped !== undefined || count <= this.local) return;
    if (last !== undefined) this.remember(count - 1, last);
    this.local = count;
    this.recount();
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.pumpDue) return;
    this.pumpDue = true;
    queueMicrotask(() => {
      this.pumpDue = false;
      for (const follower of this.followers) this.pump(follower);
    });
  }

  /** Resolves once `count` entries are committed; rejects if the segment's epoch ends first. */
  committed(count: number): Promise<void> {
    if (count <= this.commitCount) return COMMITTED;
    if (this.stopped !== undefined) return Promise.reject(this.stopped);
    if (this.options.waitMs !== undefined && this.sweeper === undefined) {
      const every = Math.max(10, Math.floor(this.options.waitMs / 4));
      this.sweeper = this.clock.setInterval(() => this.sweep(), every);
    }
    return new Promise((resolve, reject) => {
      const waiter = { count, since: this.clock.now(), resolve, reject };
      // Appends come in order, so this is nearly always the end.
      let at = this.waiters.length;
      while (at > 0 && (this.waiters[at - 1] as Waiter).count > count) at -= 1;
      this.waiters.splice(at, 0, waiter);
    });
  }

  /** Stops replicating: waiting PUTs fail with `error` (the segment's epoch ended, or the node is stopping). */
  stop(error: Error): void {
    if (this.stopped !== undefined) return;
    this.stopped = error;
    for (const follower of this.followers) if (follower.timer !== undefined) this.clock.clearTimeout(follower.timer);
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
    for (const waiter of this.positionWaiters.splice(0)) waiter.reject(error);
    this.stopSweeping();
  }

  /** Rejects the waiters that have waited waitMs; stops once none waits. */
  private sweep(): void {
    const { waitMs, timedOut } = this.options;
    if (waitMs !== undefined) {
      const now = this.clock.now();
      for (let at = this.waiters.length - 1; at >= 0; at--) {
        const waiter = this.waiters[at] as Waiter;
        if (now - waiter.since < waitMs) continue;
        this.waiters.splice(at, 1);
        waiter.reject(timedOut?.(waiter.count) ?? new Error(`entry ${waiter.count - 1} not committed within ${waitMs} ms`));
      }
    }
    if (this.waiters.length === 0) this.stopSweeping();
  }

  private stopSweeping(): void {
    if (this.sweeper !== undefined) this.clock.clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private pump(follower: Follower): void {
    const { runEntriesMax = 64, inFlightMax = 1 } = this.options;
    while (
      this.stopped === undefined &&
      (follower.next < this.local || follower.toldConsumed < this.cursor) &&
      follower.inFlight < inFlightMax
    ) {
      const wait = follower.retryAt - this.clock.now();
      if (wait > 0) {
        // (The real clock's timers are unref'd: a follower being retried keeps no process up.)
        follower.timer ??= this.clock.setTimeout(() => {
          follower.timer = undefined;
          this.pump(follower);
        }, wait);
        return;
      }
      const runMax = this.runMax(follower, runEntriesMax);
      if (runMax === 0) return;
      const offset = follower.next;
      const payloads: Uint8Array[] = [];
      for (let at = offset; at < this.local && payloads.length < runMax; at++) {
        const payload = this.entry(at);
        if (payload === null) break;
        payloads.push(payload);
      }
      // No entry to send (they are all out, or the copy cannot be read): only a position move goes,
      // and only when nothing else is in flight to that follower (its answer sends the moves made
      // meanwhile in one run: GETs would otherwise cost a run each).
      if (payloads.length === 0 && (follower.toldConsumed >= this.cursor || follower.inFlight > 0)) return;
      follower.next = offset + payloads.length;
      follower.inFlight += 1;
      const consumed = this.cursor;
      follower.toldConsumed = consumed;
      const { topic, segment, epoch } = this.options;
      this.options.transport.send(follower.id, { topic, segment, epoch, offset, payloads, commit: this.commitCount, consumed }).then(
        (answer) => this.answered(follower, offset + payloads.length, consumed, answer),
        () => this.failed(follower),
      );
    }
  }

  /**
   * The most entries the next run to `follower` may carry, or 0 when it waits (a timer then pumps
   * it). An extra follower — at least quorum - 1 others that are not being retried are ahead of it
   * (hold more, or as much and are listed first) — waits until EXTRA_RUN_FACTOR × runEntriesMax
   * entries wait for it or the oldest of them has waited extraDelayMs, and then takes runs that
   * long; the others are sent at once, runEntriesMax at a time.
   */
  private runMax(follower: Follower, runEntriesMax: number): number {
    const delay = this.options.extraDelayMs ?? 5;
    if (delay <= 0) return runEntriesMax;
    const now = this.clock.now();
    let ahead = 0;
    for (const other of this.followers) {
      if (other === follower || other.retryAt > now) continue;
      if (other.held > follower.held || (other.held === follower.held && this.followers.indexOf(other) < this.followers.indexOf(follower)))
        ahead += 1;
    }
    if (ahead < this.quorum - 1) {
      follower.deferredSince = undefined;
      return runEntriesMax;
    }
    const extraMax = EXTRA_RUN_FACTOR * runEntriesMax;
    if (this.local - follower.next >= extraMax) {
      follower.deferredSince = undefined;
      return extraMax;
    }
    follower.deferredSince ??= now;
    const wait = follower.deferredSince + delay - now;
    if (wait <= 0) {
      follower.deferredSince = undefined;
      return extraMax;
    }
    follower.timer ??= this.clock.setTimeout(() => {
      follower.timer = undefined;
      this.pump(follower);
    }, wait);
    return 0;
  }

  /**
   * The entry at `offset` of the leader's copy, read once for all the followers: the entries read
   * for the first follower's run are kept until every follower has been sent them (or
   * RECENT_MAX or RECENT_BYTES_MAX is reached, past which they are read again).
   */
  private entry(offset: number): Uint8Array | null {
    let lowest = Number.POSITIVE_INFINITY;
    for (const follower of this.followers) if (follower.next < lowest) lowest = follower.next;
    // Drop what every follower has been sent (a resend after a failure reads them again).
    const drop = Math.min(this.recent.length, lowest - this.recentFrom);
    if (drop > 0) {
      for (let at = 0; at < drop; at++) this.recentBytes -= (this.recent[at] as Uint8Array).length;
      this.recent.splice(0, drop);
      this.recentFrom += drop;
    }
    const index = offset - this.recentFrom;
    if (this.recent.length > 0 && index >= 0 && index < this.recent.length) return this.recent[index] as Uint8Array;
    const payload = this.options.read(offset);
    if (payload !== null) this.remember(offset, payload);
    return payload;
  }

  /** Keeps `payload`, the entry at `offset`, for the runs: when it extends what is kept (or nothing is). */
  private remember(offset: number, payload: Uint8Array): void {
    if (this.recent.length === 0) {
      this.recentFrom = offset;
      this.recentBytes = 0;
    }
    if (offset !== this.recentFrom + this.recent.length || this.recent.length >= RECENT_MAX) return;
    if (this.recentBytes + payload.length > RECENT_BYTES_MAX && this.recent.length > 0) return;
    this.recent.push(payload);
    this.recentBytes += payload.length;
  }

  private answered(follower: Follower, sentTo: number, consumed: number, answer: ReplicaAnswer): void {
    follower.inFlight -= 1;
    if (this.stopped !== undefined) return;
    if ('fenced' in answer) {
      this.stop(notLeaderFor(segmentKey(this.options.topic, this.options.segment), { fenced: true }));
      this.options.onFenced?.();
      return;
    }
    if (answer.held > this.local && this.options.onBehind !== undefined) {
      const local = this.local;
      this.stop(
        notLeaderFor(segmentKey(this.options.topic, this.options.segment), {
          behind: true,
          detail: `node ${follower.id} holds ${answer.held} entries, this leader ${local}`,
        }),
      );
      this.options.onBehind(follower.id, answer.held, local);
      return;
    }
    if (answer.held > follower.held) follower.held = Math.min(answer.held, this.local);
    // It holds more than this leader had sent it (a catch-up that started from nothing): skip those.
    if (follower.held > follower.next) follower.next = follower.held;
    // It moved its cursor as far as it holds entries: the rest of the move goes with later runs.
    const reached = Math.min(consumed, answer.held);
    if (reached > follower.confirmedConsumed) {
      follower.confirmedConsumed = reached;
      this.positionMoved();
    }
    if (reached < consumed && follower.toldConsumed > reached) follower.toldConsumed = reached;
    // It holds less than was sent (a gap, or it lost unsynced entries in a restart): from there again.
    if (answer.held < sentTo && follower.next > answer.held) follower.next = Math.max(answer.held, follower.held);
    this.recount();
    this.pump(follower);
  }

  private failed(follower: Follower): void {
    follower.inFlight -= 1;
    if (this.stopped !== undefined) return;
    // Not known to have arrived: send again from what it confirmed, after a pause.
    follower.next = follower.held;
    follower.toldConsumed = follower.confirmedConsumed;
    follower.retryAt = this.clock.now() + (this.options.retryMs ?? 100);
    this.pump(follower);
    // An extra follower whose runs waited may be the one a commit needs now.
    for (const other of this.followers) if (other !== follower) this.pump(other);
  }

  private positionMoved(): void {
    if (this.positionWaiters.length === 0) return;
    const confirmed = this.confirmedPosition;
    for (let at = this.positionWaiters.length - 1; at >= 0; at--) {
      const waiter = this.positionWaiters[at] as Waiter;
      if (waiter.count > confirmed) continue;
      this.positionWaiters.splice(at, 1);
      waiter.resolve();
    }
  }

  private recount(): void {
    const commit = quorumValue(this.local, this.followers, heldOf, this.quorum);
    if (commit <= this.commitCount) return;
    this.commitCount = commit;
    let done = 0;
    while (done < this.waiters.length && (this.waiters[done] as Waiter).count <= commit) done += 1;
    for (const waiter of this.waiters.splice(0, done)) waiter.resolve();
    if (this.waiters.length === 0) this.stopSweeping();
    this.options.onCommit?.(commit);
  }
}

const COMMITTED: Promise<void> = Promise.resolve();
/** An extra follower's runs are this many times runEntriesMax (see runMax). */
const EXTRA_RUN_FACTOR = 4;
/** Entries read for runs that are kept for the other followers' runs at most. */
const RECENT_MAX = 4_096;
/** ... and at most this many bytes of them (a follower that is down must not make the leader keep large entries). */
const RECENT_BYTES_MAX = 8 * 1024 * 1024;

const heldOf = (follower: Follower): number => follower.held;
const confirmedConsumedOf = (follower: Follower): number => follower.confirmedConsumed;

/**
 * The largest value that at least `quorum` of the replica set has reached: the leader's `own`
 * and each follower's `of(follower)` (0 when no quorum has any). Without allocating: it runs on
 * every append and every answer, over at most a handful of followers.
 */
function quorumValue(own: number, followers: readonly Follower[], of: (follower: Follower) => number, quorum: number): number {
  let best = 0;
  for (let at = -1; at < followers.length; at++) {
    const candidate = at < 0 ? own : of(followers[at] as Follower);
    if (candidate <= best) continue;
    let reached = own >= candidate ? 1 : 0;
    for (const follower of followers) if (of(follower) >= candidate) reached += 1;
    if (reached >= quorum) best = candidate;
  }
  return best;
}
