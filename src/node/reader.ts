// GET: one consumption position per topic for the whole cluster, that delivers each entry once,
// in append order, across sealed segments and the nodes that hold them. The position is kept per
// segment, on the node that holds the segment, as the engine's cursor of that segment's key
// (persisted under `consistency: 'strict'`, so a restart neither replays nor skips), and it moves
// only when the serving node says its reply has been written: a peek holds the segment (the next
// GET of it, from this node or another, waits), then `delivered()` consumes the entry or
// `abandoned()` leaves it for the next GET. Each segment has its own lock, and a holder never waits
// for another lock, so GETs served by different nodes cannot wait for each other in a circle.
// A segment another node holds is read through `remote` (node-to-node `take` and `settle`): the
// holder lends a run of consecutive entries and keeps the segment's lock for the borrower, which
// hands them out one GET at a time under its own lock of the segment, exactly as a local segment,
// and tells the holder how many it delivered (`settle`, one in flight at a time, covering all
// delivered so far). A run is as long as the GETs waiting for the segment on the borrower when it
// asks (up to lendEntriesMax), so a lone GET borrows one entry and pipelined GETs share one round
// trip. The borrower hands the run back as its last entry is delivered, after `lendIdleMs` unused
// (a GET abandoned its entry), or `lendAgeMsMax` old (with the next `take`); the holder ends a
// hold after `remoteHoldMsMax` whatever the borrower does.

import type { NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { KeyedLock } from './keyed-lock.js';
import type { SegmentStore } from './segment-store.js';

/** What the reader needs to know of a topic's segments (the metadata replica). */
export interface TopicLayout {
  /** The topic's open segment, or undefined for a topic this node does not know. */
  openSegment(topic: string): number | undefined;
  /** The entry count a sealed segment was sealed with; undefined for the open segment. */
  sealedCount(topic: string, segment: number): number | undefined;
  /**
   * Whether another node led `segment` (so its entries are not here). Without `remote`, a GET
   * whose position is in such a segment is refused, never answered EMPTY or moved past it.
   * Absent: every segment is here.
   */
  ledElsewhere?(topic: string, segment: number): boolean;
  /** The node that led `segment` (asked only when ledElsewhere says another node did). */
  owner?(topic: string, segment: number): NodeId | undefined;
}

export interface Peeked {
  /** The first (with next(topic, 1), the only) entry. */
  readonly payload: Buffer;
  /** Every entry handed out (an MGET's run: consecutive entries of one segment, in order). */
  readonly payloads: readonly Buffer[];
  readonly segment: number;
  /** Consume the entries: the reply carrying them has been written. */
  delivered(): Promise<void>;
  /** Leave it for the next GET (the reply could not be written). */
  abandoned(): void;
}

export type NextResult =
  | { readonly kind: 'entry'; readonly entry: Peeked }
  | { readonly kind: 'empty' }
  | { readonly kind: 'unknown-topic' }
  /** The position is in a segment another node led and this reader has no way to reach it. */
  | { readonly kind: 'elsewhere'; readonly segment: number };

/** What the node holding a segment answers a `take` with. */
export type RemoteTake =
  /** A run of consecutive entries from `offset` on, held for the asker under `hold`. */
  | { readonly kind: 'entries'; readonly payloads: readonly Buffer[]; readonly offset: number; readonly hold: number }
  /** Every entry the seal counts has been consumed. */
  | { readonly kind: 'done' }
  /** Nothing at the position (yet, for an open segment). */
  | { readonly kind: 'empty' };

/** A hold to end before a take: the first `consumed` entries of its run were delivered. */
export interface HoldClose {
  readonly hold: number;
  readonly consumed: number;
}

/** What a borrowing node asks the holder of a segment for. */
export interface TakeRequest {
  readonly topic: string;
  readonly segment: number;
  /** The seal this node knows of (the holder's replica may not have applied it yet). */
  readonly sealed: number | undefined;
  /** Most entries to lend. */
  readonly max: number;
  /** An earlier hold of the same segment to end first (in the same request). */
  readonly close: HoldClose | undefined;
}

/** The reads of segments other nodes hold (node-to-node requests). */
export interface RemoteReads {
  /** Borrows up to `max` entries of the segment on `owner` from its position, held there until settled. */
  take(owner: NodeId, request: TakeRequest): Promise<RemoteTake>;
  /**
   * The first `consumed` entries of a hold's run were delivered: consume them there; `release`
   * also ends the hold (the rest stay for the next GET). False when the hold had ended already.
   */
  settle(owner: NodeId, hold: number, consumed: number, release: boolean): Promise<boolean>;
}

/** The segment store's read side, as the reader uses it. */
export type SegmentReads = Pick<SegmentStore, 'read' | 'readRun' | 'consumed' | 'consumeAt' | 'consumeRun'>;

/** How long a peeked entry holds its segment before it is abandoned (a reply that never gets written). */
export const PEEK_HOLD_MS_MAX = 30_000;
/** How long an entry peeked for another node holds its segment (that node may be gone). */
export const REMOTE_HOLD_MS_MAX = 10_000;

export interface TopicReaderOptions {
  /** How long a peeked entry may hold its segment (default PEEK_HOLD_MS_MAX). */
  readonly holdMsMax?: number;
  /** How long an entry peeked for another node may hold its segment (default REMOTE_HOLD_MS_MAX). */
  readonly remoteHoldMsMax?: number;
  /** Reads of segments other nodes hold; without it such a GET answers 'elsewhere'. */
  readonly remote?: RemoteReads;
  /**
   * Before the entry at `position` of a segment here goes out (locally, or lent to another node):
   * undefined when it may go at once, else a promise that resolves once it may (a majority of the
   * segment's replicas recorded that position: Replication.positionConfirmed) or rejects with a
   * retriable error. Absent: always at once.
   */
  readonly confirm?: (topic: string, segment: number, position: number, waitMs: number) => Promise<void> | undefined;
}

/** How long a GET waits for the replicas to record a segment's position before a retriable error. */
export const CONFIRM_WAIT_MS = 2_000;

/**
 * A peeked entry not delivered or abandoned yet, or a run lent to another node: end() ends it
 * once (later calls do nothing), and the sweep ends it once it is older than `maxMs`.
 */
class Hold {
  readonly since = performance.now();
  ended = false;
  private readonly holds: Set<Hold>;
  readonly maxMs: number;
  private readonly onEnd: () => void;

  constructor(holds: Set<Hold>, maxMs: number, onEnd: () => void) {
    this.holds = holds;
    this.maxMs = maxMs;
    this.onEnd = onEnd;
    holds.add(this);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.holds.delete(this);
    this.onEnd();
  }
}

/** A run of entries lent to another node, on the node that holds the segment. */
interface PeerLend {
  readonly topic: string;
  readonly segment: number;
  readonly offset: number;
  readonly count: number;
  /** How many of the run have been consumed. */
  consumed: number;
  /** Ends the hold (releases the segment), consuming nothing more. */
  readonly end: () => void;
}

/** A run of entries borrowed from the node that holds the segment, on the node serving GETs of it. */
interface Lend {
  readonly key: string;
  readonly topic: string;
  readonly segment: number;
  readonly owner: NodeId;
  readonly hold: number;
  /** The run's first entry in the segment. */
  readonly offset: number;
  readonly payloads: readonly Buffer[];
  readonly since: number;
  /** Entries of the run delivered so far (the next to hand out). */
  next: number;
  /** Entries the holder was told of (a settle sent, or the close). */
  told: number;
  /** Handed back (or being handed back): no more settles. */
  closed: boolean;
  /** When a GET last used it. */
  used: number;
  /** The settles, one after another. */
  settling: Promise<void>;
  idle: NodeJS.Timeout | undefined;
}

/** One step of the scan with a segment's lock held: an answer, or on to the next segment. */
type Step = NextResult | 'next';

function lockKey(topic: string, segment: number): string {
  return `${segment}\u0000${topic}`;
}

export class TopicReader {
  private readonly store: SegmentReads;
  private readonly layout: TopicLayout;
  private readonly holdMsMax: number;
  private readonly remoteHoldMsMax: number;
  private readonly remote: RemoteReads | undefined;
  private readonly confirm: TopicReaderOptions['confirm'];
  /** Per segment: one GET at a time, from its peek until its reply is written or abandoned. */
  private readonly locks = new KeyedLock();
  /** Per topic: the first segment that may still hold unconsumed entries (segments before it are done). */
  private readonly firstOpen = new Map<string, number>();
  /**
   * Holds outstanding, swept by one timer (a timer per GET cost a measurable share of it). The
   * sweep runs every eighth of the shorter hold limit while any hold exists (a borrowed entry's
   * limit is half the remote one), so a hold lasts at most 1.25 × its limit.
   */
  private readonly holds = new Set<Hold>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Runs lent to other nodes, by hold number, until they are settled or expire. */
  private readonly peerHolds = new Map<number, PeerLend>();
  private lastHold = 0;
  /** Runs borrowed from the nodes holding segments, by lock key, while entries of them are left. */
  private readonly lends = new Map<string, Lend>();

  constructor(store: SegmentReads, layout: TopicLayout, options: TopicReaderOptions = {}) {
    this.store = store;
    this.layout = layout;
    this.holdMsMax = options.holdMsMax ?? PEEK_HOLD_MS_MAX;
    this.remoteHoldMsMax = options.remoteHoldMsMax ?? Math.min(REMOTE_HOLD_MS_MAX, this.holdMsMax);
    this.remote = options.remote;
    this.confirm = options.confirm;
  }

  /**
   * The next entry for `topic` (held until delivered() or abandoned()), EMPTY, or an unknown
   * topic. With `max` above 1 (MGET): up to that many consecutive entries of one segment, held
   * and consumed together (at most batchReadBytesMax of payload, and at least one entry; from a
   * segment another node holds, at most what one borrowed run has left).
   */
  next(topic: string, max = 1): Promise<NextResult> {
    try {
      return Promise.resolve(this.nextNow(topic, max));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** next() for the request path: synchronous when the segments it looks at are here and free. */
  nextNow(topic: string, max = 1): NextResult | Promise<NextResult> {
    return this.scan(topic, this.firstOpen.get(topic) ?? 1, max);
  }

  /**
   * For another node's GET: up to `max` entries of `segment` here from its position (at most
   * `lendBytesMax` of payload, at least one entry), held for it under a number it settles with
   * settleForPeer(). `sealed` is the seal the asking node knows of (this replica may not have
   * applied it yet). Waits at most `waitMs` for the segment's turn.
   */
  async takeForPeer(topic: string, segment: number, sealed: number | undefined, waitMs: number, max = 1): Promise<RemoteTake> {
    const key = lockKey(topic, segment);
    let release = this.locks.tryAcquire(key);
    if (release === undefined) {
      const turn = this.locks.acquire(key);
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), waitMs);
      });
      release = await Promise.race([turn, late]);
      clearTimeout(timer);
      if (release === undefined) {
        // The turn comes after the asker gave up: pass it straight on.
        void turn.then((passOn) => passOn());
        throw walrusError('TOPIC_BUSY', `GET of ${topic} waited ${waitMs} ms for segment ${segment}, held by another GET; retry`, {
          details: { topic, segment },
        });
      }
    }
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      const known = open !== undefined && segment < open ? this.layout.sealedCount(topic, segment) : undefined;
      const seal = known ?? sealed;
      const offset = this.store.consumed(topic, segment);
      if (seal !== undefined && offset >= seal) return { kind: 'done' };
      // A run lent out is delivered by the borrower: its start must be recorded by the replicas.
      await this.confirm?.(topic, segment, offset, Math.min(waitMs, CONFIRM_WAIT_MS));
      const payloads = readConsecutive(
        this.store,
        topic,
        segment,
        offset,
        seal ?? Number.POSITIVE_INFINITY,
        Math.min(Math.max(1, max), limits.lendEntriesMax),
        limits.lendBytesMax,
      );
      if (payloads.length === 0) return { kind: 'empty' };
      handedOut = true;
      this.lastHold = this.lastHold >= 0xffff_ffff ? 1 : this.lastHold + 1;
      const hold = this.lastHold;
      const releaseLock = release;
      const held = this.newHold(this.remoteHoldMsMax, () => {
        this.peerHolds.delete(hold);
        releaseLock();
      });
      this.peerHolds.set(hold, { topic, segment, offset, count: payloads.length, consumed: 0, end: () => held.end() });
      return { kind: 'entries', payloads, offset, hold };
    } finally {
      if (!handedOut) (release as () => void)();
    }
  }

  /**
   * Another node delivered the first `consumed` entries of the run lent under `hold`: consumes
   * them (those not consumed yet); `release` ends the hold. False when it had expired already
   * (the entries not consumed by then stay for the next GET).
   */
  async settleForPeer(hold: number, consumed: number, release: boolean): Promise<boolean> {
    const lend = this.peerHolds.get(hold);
    if (lend === undefined) return false;
    const moves: Promise<void>[] = [];
    try {
      // With the segment held for the run, its position is the run's next entry: consumeAt moves
      // it at once (the promises are the writes that persist the moves).
      for (const upTo = Math.min(consumed, lend.count); lend.consumed < upTo; lend.consumed++) {
        moves.push(this.store.consumeAt(lend.topic, lend.segment, lend.offset + lend.consumed));
      }
    } finally {
      if (release) lend.end();
    }
    await Promise.all(moves);
    return true;
  }

  /** From `segment` on: the first segment with something to say answers. */
  private scan(topic: string, from: number, max: number): NextResult | Promise<NextResult> {
    let segment = from;
    for (;;) {
      if (this.layout.openSegment(topic) === undefined) return { kind: 'unknown-topic' };
      if (this.layout.ledElsewhere?.(topic, segment) === true) return this.scanRemote(topic, segment, max);
      const key = lockKey(topic, segment);
      const release = this.locks.tryAcquire(key);
      const at = segment;
      const onward = (step: Step): NextResult | Promise<NextResult> => (step === 'next' ? this.scan(topic, at + 1, max) : step);
      if (release === undefined) {
        return this.locks.acquire(key).then((acquired) => {
          const step = this.local(topic, at, acquired, false, max);
          return step instanceof Promise ? step.then(onward) : onward(step);
        });
      }
      const step = this.local(topic, segment, release, false, max);
      if (step instanceof Promise) return step.then(onward);
      if (step !== 'next') return step;
      segment += 1;
    }
  }

  /**
   * With the lock of a segment held here: its next entry (passing the lock to it), empty, or on —
   * after the replicas have recorded its position, when they have not yet (a promise then).
   */
  private local(topic: string, segment: number, release: () => void, confirmed = false, max = 1): Step | Promise<Step> {
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      if (open === undefined) return { kind: 'unknown-topic' };
      // A segment this node's metadata does not know yet (a holder said the one before is done):
      // its copy here, if any, is not this node's to hand out.
      if (segment > open) return { kind: 'elsewhere', segment };
      const sealed = segment < open ? this.layout.sealedCount(topic, segment) : undefined;
      const consumed = this.store.consumed(topic, segment);
      if (sealed !== undefined && consumed >= sealed) {
        // Done with this sealed segment (entries past a seal never exist: the store refuses them).
        this.advance(topic, segment + 1);
        return 'next';
      }
      const payload = this.store.read(topic, segment, consumed);
      if (payload === null) {
        if (segment < open) {
          // Sealed, but this node holds fewer entries than the seal says: nothing more to read here.
          this.advance(topic, segment + 1);
          return 'next';
        }
        return { kind: 'empty' };
      }
      // The GETs queued behind this one are out too: up to that many entries may go before the
      // replicas record their positions (a failover replays at most the GETs that were out), so
      // pipelined GETs share a round trip to the followers and a lone GET waits for its own.
      const ahead = Math.min(limits.lendEntriesMax - 1, this.locks.waiting(lockKey(topic, segment)));
      const waiting = confirmed ? undefined : this.confirm?.(topic, segment, Math.max(0, consumed - ahead), CONFIRM_WAIT_MS);
      if (waiting !== undefined) {
        // The lock stays with this GET while the replicas record the position.
        handedOut = true;
        return waiting.then(
          () => this.local(topic, segment, release, true, max),
          (error: unknown) => {
            release();
            throw error;
          },
        );
      }
      handedOut = true;
      const payloads =
        max > 1
          ? readConsecutive(
              this.store,
              topic,
              segment,
              consumed,
              sealed ?? Number.POSITIVE_INFINITY,
              max,
              limits.batchReadBytesMax,
              payload,
            )
          : [payload];
      return { kind: 'entry', entry: this.hold(topic, segment, consumed, payloads, release) };
    } finally {
      if (!handedOut) release();
    }
  }

  /** A segment another node holds: its next entry from the run borrowed from there, borrowing one when needed. */
  private async scanRemote(topic: string, segment: number, max = 1): Promise<NextResult> {
    const owner = this.layout.owner?.(topic, segment);
    const remote = this.remote;
    if (remote === undefined || owner === undefined) return { kind: 'elsewhere', segment };
    const key = lockKey(topic, segment);
    const release = this.locks.tryAcquire(key) ?? (await this.locks.acquire(key));
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      if (open === undefined) return { kind: 'unknown-topic' };
      const onward = (): NextResult | Promise<NextResult> => {
        this.advance(topic, segment + 1);
        release();
        handedOut = true;
        return this.scan(topic, segment + 1, max);
      };
      // GETs that waited here while the segment was finished go straight on.
      if ((this.firstOpen.get(topic) ?? 1) > segment) return onward();
      const lend = this.lends.get(key);
      if (lend !== undefined && performance.now() - lend.since < limits.lendAgeMsMax) {
        handedOut = true;
        return { kind: 'entry', entry: this.lent(lend, release, max) };
      }
      // An old run goes back with this take. As many entries as GETs want now: this one and
      // those waiting behind it (a run lent for nobody would make other nodes' GETs wait), counted
      // after the GETs started in this same turn (pipelined ones) have queued up.
      const close = lend === undefined ? undefined : this.handBack(lend);
      await Promise.resolve();
      const size = Math.min(limits.lendEntriesMax, Math.max(max, 1 + this.locks.waiting(key)));
      const sealed = segment < open ? this.layout.sealedCount(topic, segment) : undefined;
      let taken: RemoteTake;
      try {
        taken = await remote.take(owner, { topic, segment, sealed, max: size, close });
      } catch (error) {
        // The run handed back with it may not have reached the holder: say so on its own (its hold ends there by itself at worst).
        if (close !== undefined) remote.settle(owner, close.hold, close.consumed, true).catch(() => undefined);
        throw error;
      }
      if (taken.kind === 'entries') {
        const borrowed: Lend = {
          key,
          topic,
          segment,
          owner,
          hold: taken.hold,
          offset: taken.offset,
          payloads: taken.payloads,
          since: performance.now(),
          next: 0,
          told: 0,
          closed: false,
          used: 0,
          settling: ACKNOWLEDGED_NOTHING,
          idle: undefined,
        };
        this.lends.set(key, borrowed);
        handedOut = true;
        return { kind: 'entry', entry: this.lent(borrowed, release, max) };
      }
      // Sealed and done, or sealed as this node knows and nothing more there: on to the next one.
      if (taken.kind === 'done' || (taken.kind === 'empty' && segment < open)) return onward();
      return { kind: 'empty' };
    } finally {
      if (!handedOut) release();
    }
  }

  /**
   * The next entry of a borrowed run, holding this node's lock of the segment until its reply is
   * written. The delivery of the run's last entry hands the run back at once; an entry whose
   * reply was not written stays for the next GET here (or goes back with the run after lendIdleMs).
   */
  private lent(lend: Lend, release: () => void, max = 1): Peeked {
    const index = lend.next;
    const payloads = lend.payloads.slice(index, index + Math.max(1, Math.min(max, runBytesCount(lend.payloads, index))));
    // Abandoned well before the holder's own limit ends the run's hold there.
    const held = this.newHold(Math.min(this.holdMsMax, this.remoteHoldMsMax / 2), () => {
      lend.used = performance.now();
      release();
      if (!lend.closed) this.watchIdle(lend);
    });
    return {
      payload: payloads[0] as Buffer,
      payloads,
      segment: lend.segment,
      delivered: () => {
        if (held.ended) return ACKNOWLEDGED_NOTHING;
        lend.next = index + payloads.length;
        if (lend.next < lend.payloads.length) {
          held.end();
          return this.tell(lend);
        }
        // Used up: hand it back now, so the next GET of the segment (here or elsewhere) need not wait.
        const close = this.handBack(lend);
        const open = this.layout.openSegment(lend.topic);
        const sealed = open !== undefined && lend.segment < open ? this.layout.sealedCount(lend.topic, lend.segment) : undefined;
        if (sealed !== undefined && lend.offset + lend.next >= sealed) this.advance(lend.topic, lend.segment + 1);
        held.end();
        return this.remoteSettle(lend, close.consumed, true);
      },
      abandoned: () => held.end(),
    };
  }

  /**
   * Tells the holder how many entries of the run were delivered: one settle at a time, each
   * covering all delivered by the time it is sent. The promise settles once the holder has
   * consumed this call's entries (or the run was handed back, which consumes them too).
   */
  private tell(lend: Lend): Promise<void> {
    const send = (): Promise<void> => {
      if (lend.closed || lend.told >= lend.next) return ACKNOWLEDGED_NOTHING;
      lend.told = lend.next;
      return this.remoteSettle(lend, lend.next, false);
    };
    const link = lend.settling.then(send, send);
    lend.settling = link.catch(() => undefined);
    return link;
  }

  /** One settle of a borrowed run; fails when the holder had ended the hold (the entries will be delivered again). */
  private async remoteSettle(lend: Lend, consumed: number, release: boolean): Promise<void> {
    const settled = await (this.remote as RemoteReads).settle(lend.owner, lend.hold, consumed, release);
    // A run handed back meanwhile was settled by that (a later count covers this one).
    if (settled || (lend.closed && !release)) return;
    throw walrusError(
      'PEER_TIMEOUT',
      `node ${lend.owner} had released entries before they were acknowledged; they will be delivered again`,
      {
        details: { peer: lend.owner, hold: lend.hold },
      },
    );
  }

  /** Hands back a run whose entries no GET has wanted for lendIdleMs (other nodes' GETs of the segment wait for it). */
  private watchIdle(lend: Lend): void {
    if (lend.idle !== undefined) return;
    const check = (): void => {
      lend.idle = undefined;
      if (lend.closed) return;
      const quiet = performance.now() - lend.used;
      if (quiet < limits.lendIdleMs || this.locks.isHeld(lend.key)) {
        lend.idle = setTimeout(check, Math.max(1, limits.lendIdleMs - quiet)).unref();
        return;
      }
      const close = this.handBack(lend);
      (this.remote as RemoteReads).settle(lend.owner, close.hold, close.consumed, true).catch(() => undefined);
    };
    lend.idle = setTimeout(check, limits.lendIdleMs).unref();
  }

  /** Stops using a run: what the holder must be told to end its hold. */
  private handBack(lend: Lend): HoldClose {
    lend.closed = true;
    if (lend.idle !== undefined) clearTimeout(lend.idle);
    lend.idle = undefined;
    if (this.lends.get(lend.key) === lend) this.lends.delete(lend.key);
    lend.told = lend.next;
    return { hold: lend.hold, consumed: lend.next };
  }

  private advance(topic: string, segment: number): void {
    if ((this.firstOpen.get(topic) ?? 1) < segment) this.firstOpen.set(topic, segment);
  }

  private hold(topic: string, segment: number, offset: number, payloads: readonly Buffer[], release: () => void): Peeked {
    const held = this.newHold(this.holdMsMax, release);
    return {
      payload: payloads[0] as Buffer,
      payloads,
      segment,
      delivered: () => {
        if (held.ended) return ACKNOWLEDGED_NOTHING;
        // The cursor moved as consumeAt returned: the next GET of the segment may go on while the
        // record that persists the move is written (GETs then share one write, or one sync).
        try {
          return payloads.length === 1
            ? this.store.consumeAt(topic, segment, offset)
            : this.store.consumeRun(topic, segment, offset, payloads.length);
        } finally {
          held.end();
        }
      },
      abandoned: () => held.end(),
    };
  }

  /** A hold, counted in for the sweep. */
  private newHold(maxMs: number, onEnd: () => void): Hold {
    const hold = new Hold(this.holds, maxMs, onEnd);
    this.sweeper ??= setInterval(this.sweep, Math.max(1, Math.floor(Math.min(this.holdMsMax, this.remoteHoldMsMax) / 8))).unref();
    return hold;
  }

  /** Abandons holds older than their limit; stops sweeping when none is left. */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const hold of this.holds) if (now - hold.since >= hold.maxMs) hold.end();
    if (this.holds.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };
}

const ACKNOWLEDGED_NOTHING: Promise<void> = Promise.resolve();

/**
 * Up to `max` consecutive entries of a segment kept here, from `from` and before `end` (a seal),
 * at most `maxBytes` of payload but at least one: a run lent to another node, an MGET's run, an
 * MFETCH. `first`, when given, is the entry at `from`, read already.
 */
export function readConsecutive(
  store: Pick<SegmentStore, 'readRun'>,
  topic: string,
  segment: number,
  from: number,
  end: number,
  max: number,
  maxBytes: number,
  first?: Buffer,
): Buffer[] {
  if (first === undefined) return store.readRun(topic, segment, from, Math.min(max, end - from), maxBytes);
  if (max <= 1 || from + 1 >= end) return [first];
  const rest = store.readRun(topic, segment, from + 1, Math.min(max - 1, end - from - 1), Math.max(0, maxBytes - first.length));
  // readRun gives at least one entry; past the bound it is not this run's.
  if (rest.length === 1 && first.length + (rest[0] as Buffer).length > maxBytes) return [first];
  return [first, ...rest];
}

/** How many of `payloads` from `from` on fit in batchReadBytesMax (at least one). */
function runBytesCount(payloads: readonly Buffer[], from: number): number {
  let bytes = 0;
  let count = 0;
  for (let index = from; index < payloads.length; index++) {
    bytes += (payloads[index] as Buffer).length;
    if (count > 0 && bytes > limits.batchReadBytesMax) break;
    count += 1;
  }
  return count;
}
