// GET: one consumption position per topic, shared by every client of this node, that delivers
// each entry once, in append order, across sealed segments. The position is kept per segment as
// the engine's cursor of that segment's key (persisted under `consistency: 'strict'`, so a restart
// neither replays nor skips), and it moves only when the caller says its reply has been written:
// `next()` peeks the entry and holds the topic (a second GET waits), then `delivered()` consumes it
// or `abandoned()` leaves it for the next GET. Each topic has its own lock (the original held one
// lock for every topic, across remote calls).

import { KeyedLock } from './keyed-lock.js';
import type { SegmentStore } from './segment-store.js';

/** What the reader needs to know of a topic's segments (the metadata replica). */
export interface TopicLayout {
  /** The topic's open segment, or undefined for a topic this node does not know. */
  openSegment(topic: string): number | undefined;
  /** The entry count a sealed segment was sealed with; undefined for the open segment. */
  sealedCount(topic: string, segment: number): number | undefined;
  /**
   * Whether another node led `segment` (so its entries are not here). A GET whose position is in
   * such a segment is refused, never answered EMPTY or moved past it. Absent: every segment is here.
   */
  ledElsewhere?(topic: string, segment: number): boolean;
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
  /** The position is in a segment another node led: reading it needs that node (the cluster release). */
  | { readonly kind: 'elsewhere'; readonly segment: number };

/** The segment store's read side, as the reader uses it. */
export type SegmentReads = Pick<SegmentStore, 'read' | 'consumed' | 'consumeAt'>;

/** How long a peeked entry holds its topic before it is abandoned (a reply that never gets written). */
export const PEEK_HOLD_MS_MAX = 30_000;

export interface TopicReaderOptions {
  /** How long a peeked entry may hold its topic (default PEEK_HOLD_MS_MAX). */
  readonly holdMsMax?: number;
}

/** A peeked entry not delivered or abandoned yet. */
interface Hold {
  readonly since: number;
  readonly abandon: () => void;
}

export class TopicReader {
  private readonly store: SegmentReads;
  private readonly layout: TopicLayout;
  private readonly holdMsMax: number;
  /** Per topic: one GET at a time, from its peek until its reply is written or abandoned. */
  private readonly locks = new KeyedLock();
  /** Per topic: the first segment that may still hold unconsumed entries (segments before it are done). */
  private readonly firstOpen = new Map<string, number>();
  /**
   * Holds outstanding, swept by one timer (a timer per GET cost a measurable share of it). The
   * sweep runs every quarter of holdMsMax while any hold exists, so a hold lasts at most 1.25 ×
   * holdMsMax.
   */
  private readonly holds = new Set<Hold>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(store: SegmentReads, layout: TopicLayout, options: TopicReaderOptions = {}) {
    this.store = store;
    this.layout = layout;
    this.holdMsMax = options.holdMsMax ?? PEEK_HOLD_MS_MAX;
  }

  /** The next entry for `topic` (held until delivered() or abandoned()), EMPTY, or an unknown topic. */
  next(topic: string): Promise<NextResult> {
    try {
      return Promise.resolve(this.nextNow(topic));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** next() for the request path: synchronous when no other GET holds the topic. */
  nextNow(topic: string): NextResult | Promise<NextResult> {
    const release = this.locks.tryAcquire(topic);
    if (release !== undefined) return this.peek(topic, release);
    return this.locks.acquire(topic).then((acquired) => this.peek(topic, acquired));
  }

  /** Finds the next entry with the topic held; passes the hold to the entry, or releases it. */
  private peek(topic: string, release: () => void): NextResult {
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      if (open === undefined) return { kind: 'unknown-topic' };
      let segment = this.firstOpen.get(topic) ?? 1;
      for (;;) {
        if (this.layout.ledElsewhere?.(topic, segment) === true) return { kind: 'elsewhere', segment };
        const sealed = segment < open ? this.layout.sealedCount(topic, segment) : undefined;
        const consumed = this.store.consumed(topic, segment);
        if (sealed !== undefined && consumed >= sealed) {
          // Done with this sealed segment (entries past a seal never exist: the store refuses them).
          segment += 1;
          this.firstOpen.set(topic, segment);
          continue;
        }
        const payload = this.store.read(topic, segment, consumed);
        if (payload === null) {
          if (segment < open) {
            // Sealed, but this node holds fewer entries than the seal says: nothing more to read here.
            segment += 1;
            this.firstOpen.set(topic, segment);
            continue;
          }
          return { kind: 'empty' };
        }
        handedOut = true;
        return { kind: 'entry', entry: this.hold(topic, segment, consumed, payload, release) };
      }
    } finally {
      if (!handedOut) release();
    }
  }

  private hold(topic: string, segment: number, offset: number, payload: Buffer, release: () => void): Peeked {
    let settled = false;
    const hold: Hold = { since: performance.now(), abandon: () => settle() };
    const settle = (): void => {
      if (settled) return;
      settled = true;
      this.holds.delete(hold);
      release();
    };
    this.holds.add(hold);
    this.sweeper ??= setInterval(this.sweep, Math.max(1, Math.floor(this.holdMsMax / 4))).unref();
    return {
      payload,
      segment,
      delivered: () => {
        if (settled) return ACKNOWLEDGED_NOTHING;
        // The cursor moved as consumeAt returned: the next GET of the topic may go on while the
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

  /** Abandons holds older than holdMsMax; stops sweeping when none is left. */
  private readonly sweep = (): void => {
    const now = performance.now();
    for (const hold of this.holds) if (now - hold.since >= this.holdMsMax) hold.abandon();
    if (this.holds.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };
}

const ACKNOWLEDGED_NOTHING: Promise<void> = Promise.resolve();
