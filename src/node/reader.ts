// GET: one consumption position per topic for the whole cluster, that delivers each entry once,
// in append order, across sealed segments and the nodes that hold them. The position is kept per
// segment, on the node that holds the segment, as the engine's cursor of that segment's key
// (persisted under `consistency: 'strict'`, so a restart neither replays nor skips), and it moves
// only when the serving node says its reply has been written: a peek holds the segment (the next
// GET of it, from this node or another, waits), then `delivered()` consumes the entry or
// `abandoned()` leaves it for the next GET. Each segment has its own lock, and a holder never waits
// for another lock, so GETs served by different nodes cannot wait for each other in a circle.
// A segment another node holds is read through `remote` (node-to-node `take` and `settle`); the
// holder keeps the lock while the serving node writes its reply, for at most `remoteHoldMsMax`.

import type { NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
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
  readonly payload: Buffer;
  readonly segment: number;
  /** Consume the entry: the reply carrying it has been written. */
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
  | { readonly kind: 'entry'; readonly payload: Buffer; readonly offset: number; readonly hold: number }
  /** Every entry the seal counts has been consumed. */
  | { readonly kind: 'done' }
  /** Nothing at the position (yet, for an open segment). */
  | { readonly kind: 'empty' };

/** The reads of segments other nodes hold (node-to-node requests). */
export interface RemoteReads {
  /** Peeks the next entry of `segment` on `owner`, holding it there; `sealed` is the seal this node knows of. */
  take(owner: NodeId, topic: string, segment: number, sealed: number | undefined): Promise<RemoteTake>;
  /** Ends a hold: the entry was delivered (consume it) or not (leave it). */
  settle(owner: NodeId, hold: number, delivered: boolean): Promise<void>;
}

/** The segment store's read side, as the reader uses it. */
export type SegmentReads = Pick<SegmentStore, 'read' | 'consumed' | 'consumeAt'>;

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
}

/** A peeked entry not delivered or abandoned yet. */
interface Hold {
  readonly since: number;
  readonly maxMs: number;
  readonly abandon: () => void;
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
  /** Per segment: one GET at a time, from its peek until its reply is written or abandoned. */
  private readonly locks = new KeyedLock();
  /** Per topic: the first segment that may still hold unconsumed entries (segments before it are done). */
  private readonly firstOpen = new Map<string, number>();
  /**
   * Holds outstanding, swept by one timer (a timer per GET cost a measurable share of it). The
   * sweep runs every quarter of the shorter hold limit while any hold exists, so a hold lasts at
   * most 1.25 × its limit.
   */
  private readonly holds = new Set<Hold>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Entries peeked for other nodes, by hold number, until they settle or expire. */
  private readonly peerHolds = new Map<number, Peeked>();
  private lastHold = 0;

  constructor(store: SegmentReads, layout: TopicLayout, options: TopicReaderOptions = {}) {
    this.store = store;
    this.layout = layout;
    this.holdMsMax = options.holdMsMax ?? PEEK_HOLD_MS_MAX;
    this.remoteHoldMsMax = options.remoteHoldMsMax ?? Math.min(REMOTE_HOLD_MS_MAX, this.holdMsMax);
    this.remote = options.remote;
  }

  /** The next entry for `topic` (held until delivered() or abandoned()), EMPTY, or an unknown topic. */
  next(topic: string): Promise<NextResult> {
    try {
      return Promise.resolve(this.nextNow(topic));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** next() for the request path: synchronous when the segments it looks at are here and free. */
  nextNow(topic: string): NextResult | Promise<NextResult> {
    return this.scan(topic, this.firstOpen.get(topic) ?? 1);
  }

  /**
   * For another node's GET: the next entry of `segment` here, held for it under a number it
   * settles with settleForPeer(). `sealed` is the seal the asking node knows of (this replica may
   * not have applied it yet). Waits at most `waitMs` for the segment's turn.
   */
  async takeForPeer(topic: string, segment: number, sealed: number | undefined, waitMs: number): Promise<RemoteTake> {
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
      const consumed = this.store.consumed(topic, segment);
      if (seal !== undefined && consumed >= seal) return { kind: 'done' };
      const payload = this.store.read(topic, segment, consumed);
      if (payload === null) return { kind: 'empty' };
      handedOut = true;
      const peeked = this.hold(topic, segment, consumed, payload, release as () => void, this.remoteHoldMsMax, () =>
        this.peerHolds.delete(hold),
      );
      this.lastHold = this.lastHold >= 0xffff_ffff ? 1 : this.lastHold + 1;
      const hold = this.lastHold;
      this.peerHolds.set(hold, peeked);
      return { kind: 'entry', payload, offset: consumed, hold };
    } finally {
      if (!handedOut) (release as () => void)();
    }
  }

  /** Ends a hold made for another node; false when it had expired already (the entry stays). */
  async settleForPeer(hold: number, delivered: boolean): Promise<boolean> {
    const peeked = this.peerHolds.get(hold);
    if (peeked === undefined) return false;
    this.peerHolds.delete(hold);
    if (delivered) await peeked.delivered();
    else peeked.abandoned();
    return true;
  }

  /** From `segment` on: the first segment with something to say answers. */
  private scan(topic: string, from: number): NextResult | Promise<NextResult> {
    let segment = from;
    for (;;) {
      if (this.layout.openSegment(topic) === undefined) return { kind: 'unknown-topic' };
      if (this.layout.ledElsewhere?.(topic, segment) === true) return this.scanRemote(topic, segment);
      const key = lockKey(topic, segment);
      const release = this.locks.tryAcquire(key);
      if (release === undefined) {
        const at = segment;
        return this.locks.acquire(key).then((acquired) => {
          const step = this.local(topic, at, acquired);
          return step === 'next' ? this.scan(topic, at + 1) : step;
        });
      }
      const step = this.local(topic, segment, release);
      if (step !== 'next') return step;
      segment += 1;
    }
  }

  /** With the lock of a segment held here: its next entry (passing the lock to it), empty, or on. */
  private local(topic: string, segment: number, release: () => void): Step {
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      if (open === undefined) return { kind: 'unknown-topic' };
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
      handedOut = true;
      return { kind: 'entry', entry: this.hold(topic, segment, consumed, payload, release, this.holdMsMax) };
    } finally {
      if (!handedOut) release();
    }
  }

  /** A segment another node holds: ask it. */
  private async scanRemote(topic: string, segment: number): Promise<NextResult> {
    const owner = this.layout.owner?.(topic, segment);
    if (this.remote === undefined || owner === undefined) return { kind: 'elsewhere', segment };
    const open = this.layout.openSegment(topic);
    if (open === undefined) return { kind: 'unknown-topic' };
    const sealed = segment < open ? this.layout.sealedCount(topic, segment) : undefined;
    const taken = await this.remote.take(owner, topic, segment, sealed);
    if (taken.kind === 'entry') {
      const remote = this.remote;
      let settled = false;
      return {
        kind: 'entry',
        entry: {
          payload: taken.payload,
          segment,
          delivered: () => {
            if (settled) return ACKNOWLEDGED_NOTHING;
            settled = true;
            return remote.settle(owner, taken.hold, true);
          },
          abandoned: () => {
            if (settled) return;
            settled = true;
            remote.settle(owner, taken.hold, false).catch(() => undefined);
          },
        },
      };
    }
    // Sealed and done, or sealed as this node knows and nothing more there: on to the next one.
    if (taken.kind === 'done' || (taken.kind === 'empty' && segment < open)) {
      this.advance(topic, segment + 1);
      return this.scan(topic, segment + 1);
    }
    return { kind: 'empty' };
  }

  private advance(topic: string, segment: number): void {
    if ((this.firstOpen.get(topic) ?? 1) < segment) this.firstOpen.set(topic, segment);
  }

  private hold(
    topic: string,
    segment: number,
    offset: number,
    payload: Buffer,
    release: () => void,
    maxMs: number,
    onSettle?: () => void,
  ): Peeked {
    let settled = false;
    const hold: Hold = { since: performance.now(), maxMs, abandon: () => settle() };
    const settle = (): void => {
      if (settled) return;
      settled = true;
      this.holds.delete(hold);
      onSettle?.();
      release();
    };
    this.holds.add(hold);
    this.sweeper ??= setInterval(this.sweep, Math.max(1, Math.floor(Math.min(this.holdMsMax, this.remoteHoldMsMax) / 4))).unref();
    return {
      payload,
      segment,
      delivered: () => {
        if (settled) return ACKNOWLEDGED_NOTHING;
        // The cursor moved as consumeAt returned: the next GET of the segment may go on while the
        // record that persists the move is written (GETs then share one write, or one sync).
        try {
          return this.store.consumeAt(topic, segment, offset);
        } finally {
          settle();
        }
      },
      abandoned: settle,
    };
  }

  /** Abandons holds older than their limit; stops sweeping when none is left. */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const hold of this.holds) if (now - hold.since >= hold.maxMs) hold.abandon();
    if (this.holds.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };
}

const ACKNOWLEDGED_NOTHING: Promise<void> = Promise.resolve();
