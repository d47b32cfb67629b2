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
  | { readonly kind: 'unknown-topic' };

/** The segment store's read side, as the reader uses it. */
export type SegmentReads = Pick<SegmentStore, 'count' | 'read' | 'consumed' | 'consume'>;

/** How long a peeked entry holds its topic before it is abandoned (a reply that never gets written). */
export const PEEK_HOLD_MS_MAX = 30_000;

export class TopicReader {
  private readonly store: SegmentReads;
  private readonly layout: TopicLayout;
  /** Per topic: one GET at a time, from its peek until its reply is written or abandoned. */
  private readonly locks = new KeyedLock();
  /** Per topic: the first segment that may still hold unconsumed entries (segments before it are done). */
  private readonly firstOpen = new Map<string, number>();

  constructor(store: SegmentReads, layout: TopicLayout) {
    this.store = store;
    this.layout = layout;
  }

  /** The next entry for `topic` (held until delivered() or abandoned()), EMPTY, or an unknown topic. */
  async next(topic: string): Promise<NextResult> {
    const release = await this.locks.acquire(topic);
    let handedOut = false;
    try {
      const open = this.layout.openSegment(topic);
      if (open === undefined) return { kind: 'unknown-topic' };
      let segment = this.firstOpen.get(topic) ?? 1;
      for (;;) {
        const sealed = segment < open ? this.layout.sealedCount(topic, segment) : undefined;
        const consumed = this.store.consumed(topic, segment);
        if (sealed !== undefined && consumed >= sealed) {
          // Done with this sealed segment (entries past a seal never exist: the store refuses them).
          segment += 1;
          this.firstOpen.set(topic, segment);
          continue;
        }
        const payload = await this.store.read(topic, segment, consumed);
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
        return { kind: 'entry', entry: this.hold(topic, segment, payload, release) };
      }
    } finally {
      if (!handedOut) release();
    }
  }

  private hold(topic: string, segment: number, payload: Buffer, release: () => void): Peeked {
    let settled = false;
    const timer = setTimeout(() => settle(), PEEK_HOLD_MS_MAX);
    timer.unref();
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      release();
      return true;
    };
    return {
      payload,
      segment,
      delivered: async () => {
        if (settled) return;
        try {
          await this.store.consume(topic, segment);
        } finally {
          settle();
        }
      },
      abandoned: () => {
        settle();
      },
    };
  }
}
