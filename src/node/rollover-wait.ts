// PUTs that meet a segment being rolled over wait here, per topic, in the order they arrived, and
// go to the new segment in that order once the rollover has applied. Two rules keep the order of
// acknowledged PUTs equal to their order in the log:
// - while a topic has waiters, a new PUT for it queues behind them instead of trying on its own;
// - a waiter that fails again (the new segment filled up too) goes back into the queue at the
//   place its arrival number gives it, ahead of everything that arrived later.
// Waiters are woken by the metadata change that moves the topic on (not by polling); only when the
// metadata already names the next segment but the write lease has not followed yet is the drain
// retried after a short pause. Each waiter gives up with the retriable error it met after `waitMs`
// without progress, where progress is the topic's open segment moving on (a PUT at the back of a
// long pipeline may need many rollovers, each of which it sees happen), and in any case after
// PROGRESS_WAITS_MAX × `waitMs`.

import { walrusError } from '../kernel/errors.js';
import type { PutUnit } from './payload-batch.js';

/** What one attempt of a waiting PUT does: resolves with its offset, or rejects with why not. */
export interface RolloverWaitTarget {
  /** The topic's open segment when this node leads it, or the reply-ready error why not. */
  openSegment(topic: string): number | Error;
  append(topic: string, segment: number, payload: PutUnit): Promise<number>;
  /** Whether the segment holds its full count (a rollover is pending for it). */
  full(topic: string, segment: number): boolean;
  /** Subscribes to every metadata change; returns the function that unsubscribes. */
  onChange(listener: () => void): () => void;
  /**
   * Settles once PUTs of `topic` sent before the queue's and not answered yet are answered (their
   * refusals join the queue first, at the place of their arrival); undefined when there are none.
   * A drain waits for it, so nothing is sent ahead of a PUT that arrived earlier.
   */
  earlierInFlight?(topic: string): Promise<void> | undefined;
}

export interface RolloverWaitOptions {
  readonly target: RolloverWaitTarget;
  /** How long one PUT waits at most, from its first refusal, in milliseconds. */
  readonly waitMs: number;
  /**
   * Pause before retrying when the metadata names a segment that refused the PUTs (its lease, or
   * the node leading it, has not caught up yet), in milliseconds; a function picks it per segment.
   */
  readonly retryPauseMs: number | ((topic: string, segment: number) => number);
}

/** Errors that mean "this segment is being rolled over": wait and try the next one. */
export function isRolling(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'SEGMENT_FULL' || code === 'NOT_LEADER_FOR_PARTITION';
}

/** However much progress it sees, a waiter gives up after this many times waitMs. */
export const PROGRESS_WAITS_MAX = 4;

interface Waiter {
  readonly arrival: number;
  readonly payload: PutUnit;
  /** When it gives up unless the topic moves on first. */
  deadline: number;
  /** When it gives up whatever happens. */
  readonly limit: number;
  /** The refusal it would answer with if its time runs out. */
  failure: unknown;
  settle(result: number | Error): void;
}

interface TopicQueue {
  waiters: Waiter[];
  /** The open segment the last drain sent to (a different one now is progress). */
  segment: number | undefined;
  draining: boolean;
  /** The next drain, when one is due. */
  wake: NodeJS.Timeout | undefined;
  /** The look at the earliest deadline. */
  expiry: NodeJS.Timeout | undefined;
}

export class RolloverWait {
  private readonly options: RolloverWaitOptions;
  private readonly queues = new Map<string, TopicQueue>();
  private arrivals = 0;
  private unsubscribe: (() => void) | undefined;

  constructor(options: RolloverWaitOptions) {
    this.options = options;
  }

  /** A number for each PUT as it arrives; a waiter keeps it, so retries keep their place. */
  arrive(): number {
    this.arrivals += 1;
    return this.arrivals;
  }

  /** Whether PUTs for `topic` are waiting (a new PUT must then queue behind them). */
  has(topic: string): boolean {
    return this.queues.has(topic);
  }

  /** Queues a PUT after `failure` (or behind other waiters); resolves with its offset or the error to answer. */
  wait(topic: string, arrival: number, payload: PutUnit, failure: unknown): Promise<number | Error> {
    return new Promise((resolve) => {
      const now = Date.now();
      const waiter: Waiter = {
        arrival,
        payload,
        deadline: now + this.options.waitMs,
        limit: now + PROGRESS_WAITS_MAX * this.options.waitMs,
        failure,
        settle: resolve,
      };
      let queue = this.queues.get(topic);
      if (queue === undefined) {
        queue = { waiters: [], segment: undefined, draining: false, wake: undefined, expiry: undefined };
        this.queues.set(topic, queue);
        this.unsubscribe ??= this.options.target.onChange(() => this.changed());
        // The rollover may have applied between the refusal and now: look once, right away.
        this.schedule(topic, queue, 0);
      }
      insert(queue.waiters, waiter);
      this.expireLater(topic, queue);
    });
  }

  /** Answers every waiter with `error` (the node is stopping). */
  close(error: Error): void {
    for (const queue of this.queues.values()) {
      clearTimeout(queue.wake);
      clearTimeout(queue.expiry);
      for (const waiter of queue.waiters) waiter.settle(error);
    }
    this.queues.clear();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private changed(): void {
    // After every other listener of this change (the lease table rebuilds on it first).
    for (const [topic, queue] of this.queues) this.schedule(topic, queue, 0);
  }

  private schedule(topic: string, queue: TopicQueue, delayMs: number): void {
    clearTimeout(queue.wake);
    queue.wake = setTimeout(() => {
      queue.wake = undefined;
      void this.drain(topic, queue);
    }, delayMs);
  }

  /** Sends every waiter of `topic` to the open segment, in arrival order; the refused ones wait again. */
  private async drain(topic: string, queue: TopicQueue): Promise<void> {
    if (queue.draining || this.queues.get(topic) !== queue) return;
    this.expire(topic, queue);
    if (queue.waiters.length === 0) return this.forget(topic, queue);
    const earlier = this.options.target.earlierInFlight?.(topic);
    if (earlier !== undefined) {
      queue.draining = true;
      await earlier;
      queue.draining = false;
      if (this.queues.get(topic) !== queue) return;
      this.expire(topic, queue);
      if (queue.waiters.length === 0) return this.forget(topic, queue);
    }
    const segment = this.options.target.openSegment(topic);
    if (segment instanceof Error) {
      // Unknown topic or another node's segment now: nothing to wait for.
      for (const waiter of queue.waiters.splice(0)) waiter.settle(segment);
      return this.forget(topic, queue);
    }
    if (queue.segment !== undefined && segment !== queue.segment) {
      // The topic moved on since the last attempt: every waiter gets its time again (up to its limit).
      const deadline = Date.now() + this.options.waitMs;
      for (const waiter of queue.waiters) waiter.deadline = Math.min(deadline, waiter.limit);
    }
    queue.segment = segment;
    queue.draining = true;
    const batch = queue.waiters.splice(0);
    // Issued in arrival order: the segment store appends one key's entries in call order.
    const results = await Promise.allSettled(batch.map((waiter) => this.options.target.append(topic, segment, waiter.payload)));
    queue.draining = false;
    let refused = false;
    results.forEach((result, index) => {
      const waiter = batch[index] as Waiter;
      if (result.status === 'fulfilled') waiter.settle(result.value);
      else if (isRolling(result.reason)) {
        waiter.failure = result.reason;
        insert(queue.waiters, waiter);
        refused = true;
      } else waiter.settle(asError(result.reason));
    });
    if (queue.waiters.length === 0) return this.forget(topic, queue);
    this.expireLater(topic, queue);
    const now = this.options.target.openSegment(topic);
    if (typeof now === 'number' && now !== segment) this.schedule(topic, queue, 0);
    else if (refused && typeof now === 'number' && !this.options.target.full(topic, now)) {
      // The metadata names this segment ours but the lease has not caught up yet.
      const pause = this.options.retryPauseMs;
      this.schedule(topic, queue, typeof pause === 'number' ? pause : pause(topic, now));
    } else if (!refused) this.schedule(topic, queue, 0);
    // Otherwise the segment is full: the metadata change of its rollover wakes the queue.
  }

  /** Answers the waiters whose time is up with the refusal they met. */
  private expire(topic: string, queue: TopicQueue): void {
    const now = Date.now();
    const kept: Waiter[] = [];
    for (const waiter of queue.waiters) {
      if (waiter.deadline <= now) waiter.settle(timedOut(topic, waiter.failure));
      else kept.push(waiter);
    }
    queue.waiters = kept;
  }

  /** Makes sure the earliest deadline is looked at even if no metadata change comes. */
  private expireLater(topic: string, queue: TopicQueue): void {
    const first = queue.waiters.reduce((earliest, waiter) => Math.min(earliest, waiter.deadline), Number.POSITIVE_INFINITY);
    clearTimeout(queue.expiry);
    if (!Number.isFinite(first)) return;
    queue.expiry = setTimeout(
      () => {
        queue.expiry = undefined;
        if (queue.draining) return;
        this.expire(topic, queue);
        if (queue.waiters.length === 0) this.forget(topic, queue);
        else this.expireLater(topic, queue);
      },
      Math.max(0, first - Date.now()) + 1,
    );
  }

  private forget(topic: string, queue: TopicQueue): void {
    if (queue.waiters.length > 0 || queue.draining) return;
    clearTimeout(queue.wake);
    clearTimeout(queue.expiry);
    if (this.queues.get(topic) === queue) this.queues.delete(topic);
    if (this.queues.size === 0) {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
    }
  }
}

/** Inserts `waiter` at the place its arrival number gives it. */
function insert(waiters: Waiter[], waiter: Waiter): void {
  let at = waiters.length;
  while (at > 0 && (waiters[at - 1] as Waiter).arrival > waiter.arrival) at -= 1;
  waiters.splice(at, 0, waiter);
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

function timedOut(topic: string, failure: unknown): Error {
  if (failure instanceof Error) return failure;
  return walrusError('SEGMENT_FULL', `the open segment of ${topic} is being rolled over; retry`, { details: { topic } });
}
