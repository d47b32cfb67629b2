// Load under faults, for the partition tests (test/cluster/partition.test.ts, run inside a
// network namespace by ./netns-partition-child.ts): writers that PUT one distinct payload at a
// time and classify each failure as the failover test does (test/cluster/failover.test.ts:
// 'unsure' when the PUT may have been applied, 'refused' when the node says it was not), readers
// that GET and record every delivery with when it was asked and answered, and the read-back
// (FETCH of every position of every segment through each node, then a GET drain) that feeds
// ./history.ts. Every time here is performance.now() of the one process that runs the scenario.
//
// GETs of several readers run at once, so the order in which their replies came says little
// about the order of the log. checkDeliveries() judges GET order by the log's own positions
// (from the FETCH pass) instead: once a delivery of position p has been answered, a GET sent
// after that (by any reader) must deliver a later position, unless it delivers an entry already
// delivered (a replay, counted separately against the allowance). The History is then given the
// deliveries in log order, so its own GET-order check adds nothing; its replay count, phantoms
// and losses still apply.

import { ClientError, type WalrusClient } from '../../src/client/index.js';
import type { History, Position, PutOutcome } from './history.js';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The outcome of a PUT that failed: whether it may have been applied (the failover test's rule). */
export function outcomeOf(error: unknown): 'unsure' | 'refused' {
  if (!(error instanceof ClientError)) return 'unsure';
  if (error.code === 'TIMEOUT' || error.code === 'CONNECTION') return 'unsure';
  return ['PEER_TIMEOUT', 'NOT_COMMITTED', 'CLOSED'].includes(error.serverCode ?? '') ? 'unsure' : 'refused';
}

/** `CODE/serverCode` of a failure, for counting; the message for a server error without a code. */
export function errorName(error: unknown): string {
  if (!(error instanceof ClientError)) return String(error);
  if (error.code === 'SERVER_ERROR' && error.serverCode === undefined) return `SERVER_ERROR/${error.message.slice(0, 80)}`;
  return `${error.code}/${error.serverCode ?? '-'}`;
}

export interface PutRecord {
  readonly payload: string;
  readonly sentAt: number;
  doneAt: number;
  outcome: PutOutcome | undefined;
  error?: string;
}

export interface Writer {
  readonly name: string;
  readonly via: number;
  readonly client: WalrusClient;
  readonly puts: PutRecord[];
  readonly errors: Map<string, number>;
}

export function writer(name: string, via: number, client: WalrusClient): Writer {
  return { name, via, client, puts: [], errors: new Map() };
}

/** PUTs through `w.client` until `stop()` says so, one at a time, each a new payload; never rejects. */
export async function write(history: History, w: Writer, topic: string, stop: () => boolean, pauseMs = 50): Promise<void> {
  for (let sequence = 0; !stop(); sequence++) {
    const payload = `${w.name}-${sequence}`;
    const settle = history.put(w.name, payload);
    const record: PutRecord = { payload, sentAt: performance.now(), doneAt: Number.NaN, outcome: undefined };
    w.puts.push(record);
    try {
      await w.client.put(topic, payload);
      record.doneAt = performance.now();
      record.outcome = 'acked';
      settle('acked');
    } catch (error) {
      record.doneAt = performance.now();
      record.outcome = outcomeOf(error);
      record.error = errorName(error);
      settle(record.outcome);
      w.errors.set(record.error, (w.errors.get(record.error) ?? 0) + 1);
      await sleep(pauseMs);
    }
  }
}

/** Reply times of every acknowledged PUT of `writers`, sorted. */
export function ackTimes(writers: readonly Writer[]): number[] {
  return writers.flatMap((w) => w.puts.filter((put) => put.outcome === 'acked').map((put) => put.doneAt)).sort((a, b) => a - b);
}

/** The longest stretch without any acknowledgement that covers `at` (ms), over all writers (Infinity: none after). */
export function gapAround(writers: readonly Writer[], at: number): number {
  const times = ackTimes(writers);
  const before = times.filter((time) => time <= at).pop() ?? at;
  const after = times.find((time) => time > at);
  return after === undefined ? Number.POSITIVE_INFINITY : after - before;
}

/** The longest stretch without an acknowledgement within [from, to] (its ends count as edges). */
export function longestGap(writers: readonly Writer[], from: number, to: number): number {
  const times = [from, ...ackTimes(writers).filter((time) => time > from && time < to), to];
  let longest = 0;
  for (let index = 1; index < times.length; index++) longest = Math.max(longest, (times[index] as number) - (times[index - 1] as number));
  return longest;
}

/** The first acknowledged PUT of `writers` sent after `at`: ms from `at` to its reply, or null. */
export function firstAckAfter(writers: readonly Writer[], at: number): number | null {
  const times = writers.flatMap((w) => w.puts.filter((put) => put.outcome === 'acked' && put.sentAt >= at).map((put) => put.doneAt));
  return times.length === 0 ? null : Math.min(...times) - at;
}

export interface WriterSummary {
  readonly name: string;
  readonly via: number;
  readonly puts: number;
  readonly acked: number;
  readonly unsure: number;
  readonly refused: number;
  readonly errors: Record<string, number>;
}

export function summarize(w: Writer): WriterSummary {
  const count = (outcome: PutOutcome) => w.puts.filter((put) => put.outcome === outcome).length;
  return {
    name: w.name,
    via: w.via,
    puts: w.puts.length,
    acked: count('acked'),
    unsure: w.puts.length - count('acked') - count('refused'),
    refused: count('refused'),
    errors: Object.fromEntries(w.errors),
  };
}

// --- readers -----------------------------------------------------------------------------------

export interface Delivery {
  readonly payload: string;
  readonly reader: string;
  /** The node the GET went to. */
  readonly via: number;
  readonly sentAt: number;
  readonly receivedAt: number;
}

export interface Reader {
  readonly name: string;
  readonly via: number;
  readonly client: WalrusClient;
  readonly deliveries: Delivery[];
  readonly errors: Map<string, number>;
  empties: number;
  /** performance.now() at which the GET now outstanding was sent; undefined when none is. */
  inFlightSince: number | undefined;
}

export function reader(name: string, via: number, client: WalrusClient): Reader {
  return { name, via, client, deliveries: [], errors: new Map(), empties: 0, inFlightSince: undefined };
}

/** GETs through `r.client` until `stop()`, one at a time; pauses `idleMs` after EMPTY or an error; never rejects. */
export async function consume(r: Reader, topic: string, stop: () => boolean, idleMs = 20): Promise<void> {
  while (!stop()) {
    const sentAt = performance.now();
    r.inFlightSince = sentAt;
    try {
      const payload = await r.client.get(topic);
      r.inFlightSince = undefined;
      if (payload === null) {
        r.empties += 1;
        await sleep(idleMs);
      } else {
        r.deliveries.push({ payload, reader: r.name, via: r.via, sentAt, receivedAt: performance.now() });
      }
    } catch (error) {
      r.inFlightSince = undefined;
      const name = errorName(error);
      r.errors.set(name, (r.errors.get(name) ?? 0) + 1);
      await sleep(idleMs * 2);
    }
  }
}

/** GETs through `r.client` until EMPTY (or `max` deliveries); errors are retried for up to `retryMs` in all. */
export async function drain(r: Reader, topic: string, max = 200_000, retryMs = 15_000): Promise<{ readonly complete: boolean }> {
  const giveUp = performance.now() + retryMs;
  while (r.deliveries.length < max) {
    const sentAt = performance.now();
    try {
      const payload = await r.client.get(topic);
      if (payload === null) return { complete: true };
      r.deliveries.push({ payload, reader: r.name, via: r.via, sentAt, receivedAt: performance.now() });
    } catch (error) {
      const name = errorName(error);
      r.errors.set(name, (r.errors.get(name) ?? 0) + 1);
      if (performance.now() > giveUp) return { complete: false };
      await sleep(100);
    }
  }
  return { complete: false };
}

export interface DeliveryCheck {
  /** Deliveries of an entry already delivered (by answer time), each described. */
  readonly replays: readonly string[];
  /** Those replays where neither delivery came from a GET that `inFlightAtFault` names. */
  readonly unexplainedReplays: readonly string[];
  /** Delivered entries that no FETCH found in the log. */
  readonly notInLog: readonly string[];
  /** A GET sent after another's answer that delivered an earlier position of the log (not a replay). */
  readonly outOfOrder: readonly string[];
}

/**
 * Judges the deliveries of all `readers` against the log (`positionOf`: where FETCH found each
 * payload), and gives them to `history` in log order (unknown positions last).
 */
export function checkDeliveries(
  readers: readonly Reader[],
  positionOf: ReadonlyMap<string, Position>,
  history: History,
  describeTime: (time: number) => string = (time) => `${Math.round(time)} ms`,
  inFlightAtFault: (delivery: Delivery) => boolean = () => false,
): DeliveryCheck {
  const all = readers.flatMap((r) => r.deliveries);
  const byAnswer = [...all].sort((a, b) => a.receivedAt - b.receivedAt);
  const firstOf = new Map<string, Delivery>();
  const replays: string[] = [];
  const unexplainedReplays: string[] = [];
  const replayed = new Set<Delivery>();
  for (const delivery of byAnswer) {
    const first = firstOf.get(delivery.payload);
    if (first === undefined) firstOf.set(delivery.payload, delivery);
    else {
      replayed.add(delivery);
      const position = positionOf.get(delivery.payload);
      const text = `${delivery.payload} (${position === undefined ? 'not in the log' : place(position)}) delivered to ${first.reader} via node ${first.via} (asked ${describeTime(first.sentAt)}, answered ${describeTime(first.receivedAt)}) and again to ${delivery.reader} via node ${delivery.via} (asked ${describeTime(delivery.sentAt)}, answered ${describeTime(delivery.receivedAt)})`;
      replays.push(text);
      if (!inFlightAtFault(first) && !inFlightAtFault(delivery)) unexplainedReplays.push(text);
    }
  }
  const notInLog = [...firstOf.keys()].filter((payload) => !positionOf.has(payload)).map((payload) => `${payload} delivered by GET`);
  const compare = (a: Position, b: Position) => a.segment - b.segment || a.offset - b.offset;
  const outOfOrder: string[] = [];
  const firsts = byAnswer.filter((delivery) => !replayed.has(delivery) && positionOf.has(delivery.payload));
  const bySend = [...firsts].sort((a, b) => a.sentAt - b.sentAt);
  let latest: { position: Position; delivery: Delivery } | undefined;
  let answered = 0;
  for (const delivery of bySend) {
    while (answered < firsts.length && (firsts[answered] as Delivery).receivedAt < delivery.sentAt) {
      const done = firsts[answered] as Delivery;
      const position = positionOf.get(done.payload) as Position;
      if (latest === undefined || compare(position, latest.position) > 0) latest = { position, delivery: done };
      answered += 1;
    }
    const position = positionOf.get(delivery.payload) as Position;
    if (latest !== undefined && compare(position, latest.position) < 0) {
      outOfOrder.push(
        `${delivery.reader} got ${delivery.payload} (${place(position)}) asked ${describeTime(delivery.sentAt)}, after ${latest.delivery.reader} got ${latest.delivery.payload} (${place(latest.position)}) answered ${describeTime(latest.delivery.receivedAt)}`,
      );
    }
  }
  const far = { segment: Number.MAX_SAFE_INTEGER, offset: Number.MAX_SAFE_INTEGER };
  const inLogOrder = [...all].sort((a, b) => compare(positionOf.get(a.payload) ?? far, positionOf.get(b.payload) ?? far));
  for (const delivery of inLogOrder) history.got(delivery.payload);
  return { replays, unexplainedReplays, notInLog, outOfOrder };
}

function place(position: Position): string {
  return `segment ${position.segment} offset ${position.offset}`;
}

// --- read-back ---------------------------------------------------------------------------------

export interface FetchPass {
  readonly via: number;
  readonly currentSegment: number;
  readonly sealed: Record<string, number>;
  readonly leaders: Record<string, number>;
  /** Entries found per segment. */
  readonly counts: Record<string, number>;
  /** What contradicts the seals or could not be read. */
  readonly problems: string[];
}

/**
 * FETCHes every position of every segment of `topic` through `client` (node `via`), `batch`
 * requests at a time (default 64), and tells `history` (and `onEntry`) what it found; `found`
 * collects every payload's first position. A request that fails is tried again for up to
 * `retryMs` (default 10 s) before it counts as a problem.
 */
export async function fetchAll(
  client: WalrusClient,
  via: number,
  topic: string,
  history: History,
  found: Map<string, Position>,
  options: { readonly batch?: number; readonly retryMs?: number; readonly onEntry?: (payload: string, position: Position) => void } = {},
): Promise<FetchPass> {
  const batch = options.batch ?? 64;
  const retryMs = options.retryMs ?? 10_000;
  const state = await client.state(topic);
  const problems: string[] = [];
  const counts: Record<string, number> = {};
  const one = async (segment: number, offset: number) => {
    const giveUp = performance.now() + retryMs;
    for (;;) {
      try {
        return await client.fetch(topic, segment, offset);
      } catch (error) {
        if (performance.now() > giveUp) throw error;
        await sleep(100);
      }
    }
  };
  for (let segment = 1; segment <= state.current_segment; segment++) {
    const sealed = state.sealed_segments[String(segment)];
    let count = 0;
    try {
      let ended = false;
      for (let start = 0; !ended; start += batch) {
        const entries = await Promise.all(Array.from({ length: batch }, (_, index) => one(segment, start + index)));
        for (const [index, entry] of entries.entries()) {
          const offset = start + index;
          if (entry === null) {
            ended = true;
            continue;
          }
          if (ended) problems.push(`segment ${segment}: an entry at ${offset} after EMPTY at an earlier offset`);
          if (sealed !== undefined && offset >= sealed) problems.push(`segment ${segment} sealed at ${sealed} has an entry at ${offset}`);
          history.fetched(entry.payload, { segment, offset });
          options.onEntry?.(entry.payload, { segment, offset });
          const known = found.get(entry.payload);
          if (known === undefined || known.segment > segment || (known.segment === segment && known.offset > offset)) {
            found.set(entry.payload, { segment, offset });
          }
          count += 1;
        }
      }
    } catch (error) {
      problems.push(`segment ${segment}: FETCH failed: ${errorName(error)}`);
    }
    counts[String(segment)] = count;
    if (sealed !== undefined && count !== sealed) problems.push(`segment ${segment} sealed at ${sealed} answered ${count} entries`);
  }
  return {
    via,
    currentSegment: state.current_segment,
    sealed: state.sealed_segments,
    leaders: state.segment_leaders,
    counts,
    problems,
  };
}

/** Polls `condition` every 20 ms; false when it still is not true after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
}
