// The scenarios of test/cluster/partition.test.ts, each run INSIDE `unshare -rn` (a private user
// and network namespace, see ./netns.ts): three nodes on 127.0.0.1..3 with replicated segments
// (replication.factor 3, acks quorum, commitTimeoutMs 1500; failover.timeoutMs 1500; lease.ttlMs
// 500; fsync each), link faults by nftables, process faults by signals to each node's own PID.
// Prints one JSON line on stdout (the PartitionReport below) and exits 0, or 1 when the scenario
// could not run to its end (the report then has `error`); whether what it measured is right is
// the test's to judge. Every node's PID goes to stderr as `netns-node <id> <pid>` when it starts,
// so the parent can stop what is left if this process dies. Before it exits it writes every
// node's log (each run of it) to <dir>/logs/, the report to <dir>/report.json, and everything
// sent and read to <dir>/history.jsonl. Import only its types: importing it runs a scenario.
//
// Usage: node netns-partition-child.js <scenario> <dir> [deadlineMs] [seed] [faultSeconds]
// Scenarios:
// - split-brain: the original's partition_test.py (one PUT before, one through the cut-off
//   segment leader, one through the majority after its failover; read back everything).
// - get-split: the GET side of split-brain: entries committed and not consumed, the open
//   segment's leader cut off, GETs through it (after lease.ttlMs) and through the majority (after
//   its failover), then a drain through both after the heal: how often each entry was delivered.
// - isolate: the open segment's leader cut off from both peers (both ways) under load.
// - oneway-out / oneway-in: only the leader's packets to its peers dropped, or only theirs to it.
// - random: producers and consumers on every node while a seeded fault loop kills, freezes,
//   isolates or one-way-cuts one node at a time.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WalrusClient } from '../../src/client/index.js';
import {
  checkDeliveries,
  consume,
  type Delivery,
  type DeliveryCheck,
  drain,
  errorName,
  type FetchPass,
  fetchAll,
  firstAckAfter,
  gapAround,
  longestGap,
  outcomeOf,
  type Reader,
  reader,
  sleep,
  summarize,
  until,
  type Writer,
  type WriterSummary,
  write,
  writer,
} from './fault-load.js';
import { describeReport, History, type Report as HistoryReport, type Position, type PutOutcome } from './history.js';
import { type NamespaceInfo, NetnsCluster, prepareNamespace, type RaftView } from './netns.js';

const SCENARIOS = ['split-brain', 'get-split', 'isolate', 'oneway-out', 'oneway-in', 'random'] as const;
type Scenario = (typeof SCENARIOS)[number];

const TTL_MS = 500;
const COMMIT_TIMEOUT_MS = 1_500;
const FAILOVER_TIMEOUT_MS = 1_500;
const CONFIG =
  `replication:\n  factor: 3\n  acks: quorum\n  commitTimeoutMs: ${COMMIT_TIMEOUT_MS}\n` +
  `failover:\n  timeoutMs: ${FAILOVER_TIMEOUT_MS}\nlease:\n  ttlMs: ${TTL_MS}\n`;
/** Client requests wait this long (longer than a commit timeout plus a forward). */
const CLIENT_TIMEOUT_MS = 5_000;

/** What the checker found, with each list cut to a few examples and its full length kept. */
export interface HistorySummary {
  readonly counts: HistoryReport['counts'];
  readonly totals: { lost: number; phantom: number; duplicated: number; reordered: number; changed: number };
  readonly lost: readonly string[];
  readonly phantom: readonly string[];
  readonly duplicated: readonly string[];
  readonly reordered: readonly string[];
  readonly changed: readonly string[];
  readonly text: string;
}

export interface DeliverySummary {
  readonly totals: { replays: number; unexplainedReplays: number; notInLog: number; outOfOrder: number };
  readonly replays: readonly string[];
  /** Replays where neither delivery came from a GET in flight at a fault's start. */
  readonly unexplainedReplays: readonly string[];
  readonly notInLog: readonly string[];
  readonly outOfOrder: readonly string[];
}

export interface ReaderSummary {
  readonly name: string;
  readonly via: number;
  readonly deliveries: number;
  readonly empties: number;
  readonly errors: Record<string, number>;
}

export interface PutAttempt {
  readonly via: number;
  readonly payload: string;
  readonly ok: boolean;
  readonly outcome: PutOutcome;
  readonly error?: string;
  readonly tookMs: number;
}

export interface FaultRecord {
  readonly kind: 'kill' | 'stop' | 'isolate' | 'oneway-out' | 'oneway-in';
  readonly node: number;
  /** ms since the scenario's start. */
  readonly at: number;
  /** How long the fault lasted (to the restarted node's "ready" for a kill). */
  durationMs: number;
  /** GETs outstanding (sent, not answered) when the fault began, by reader. */
  readonly inFlightGets: readonly string[];
  /** When each of those was sent (ms since the start). */
  readonly inFlightSentAt: readonly number[];
  /** GETs outstanding when the fault ended (healed, continued, restarted and ready), by reader. */
  inFlightAtEnd: string[];
  /** The open segment's leader and the Raft leader just before, as a healthy node saw them. */
  readonly segmentLeader: number | null;
  readonly raftLeader: number | null;
  /** The longest stretch without any acknowledgement from the fault's start to 2 s after its end. */
  gapMs?: number;
  error?: string;
}

export interface LoadPhase {
  readonly cut: string;
  readonly cutsInForce: readonly string[];
  /** ms since the scenario's start. */
  readonly cutAt: number;
  healAt?: number;
  /** Whether the majority's STATE showed the open segment sealed and led by another node during the cut, and when. */
  failover?: { readonly afterMs: number; readonly segment: number; readonly newLeader: number } | null;
  /** From the cut to the first acknowledgement of a PUT sent after it, through the majority nodes (null: none before the heal). */
  majorityResumeMs?: number | null;
  /** The longest stretch without an acknowledgement (majority writers) between the cut and the heal. */
  majorityGapMs?: number;
  /** The failover test's measure: the stretch without an acknowledgement around the cut's instant (a PUT committed just before the cut may end it). */
  gapAroundCutMs?: number;
  /** Every PUT through the cut-off node sent during the cut: sent and answered (ms since the start), how. */
  leaderPutsDuringCut?: readonly string[];
  /** Acknowledgements through the cut-off node of PUTs sent after the cut and answered before the heal. */
  leaderAcksDuringCut?: readonly string[];
  /** Acknowledgements through it answered after cut + lease.ttlMs and before the heal (whenever sent). */
  leaderAcksAfterTtl?: readonly string[];
  /** Its PUTs sent during the cut that did not get OK, and how each failed. */
  leaderFailuresDuringCut?: Record<string, number>;
  /** Those of its PUTs sent during the cut (not acknowledged) that a read found. */
  leaderEntriesReadable?: readonly string[];
  /** From the heal to the first acknowledgement through the cut-off node of a PUT sent after the heal. */
  leaderResumeAfterHealMs?: number | null;
  dropped?: Record<string, number>;
  /** STATE of the topic through each node just before the heal (undefined: no answer). */
  statesBeforeHeal?: Record<number, unknown>;
  viewsBeforeHeal?: Record<number, RaftView | undefined>;
  /** From the heal until all three named one Raft leader, and until the cut-off node's STATE matched the others'. */
  healAgreeMs?: number;
  healCaughtUpMs?: number | null;
}

export interface SplitBrain {
  readonly leader: number;
  readonly raftLeader: number;
  readonly openAtCut: number;
  readonly before: PutAttempt;
  split?: PutAttempt;
  /** FETCH through the cut-off leader of its open segment's offsets 0..2 during the split. */
  fetchThroughLeaderDuringSplit?: (string | null)[];
  stateThroughLeaderDuringSplit?: unknown;
  /** From the cut until both majority nodes' STATE showed a new open segment led by another node. */
  failoverMs?: number | null;
  newSegment?: number;
  newLeader?: number;
  duringSplitNew?: PutAttempt;
  /** A second PUT through the cut-off node once the failover was visible. */
  split2?: PutAttempt;
  healAgreeMs?: number;
  healCaughtUpMs?: number | null;
  /** Per node: how often FETCH found each of the scenario's payloads. */
  fetchCounts?: Record<number, Record<string, number>>;
  /** Where FETCH found them, per node. */
  fetchPositions?: Record<number, Record<string, string[]>>;
  /** The GET drain's deliveries, through the once cut-off node. */
  drained?: string[];
}

export interface GetSplit {
  readonly leader: number;
  readonly raftLeader: number;
  readonly payloads: readonly string[];
  /** GETs through the cut-off leader once lease.ttlMs had passed: the value, null (EMPTY) or the error. */
  duringSplitThroughLeader?: (string | null)[];
  failoverMs?: number | null;
  /** GETs through a majority node after the failover, until EMPTY (at most 10). */
  duringSplitThroughMajority?: (string | null)[];
  /** After the heal: GETs through the once cut-off node, then through the majority node, each until EMPTY. */
  afterHealThroughLeader?: (string | null)[];
  afterHealThroughMajority?: (string | null)[];
  /** Every delivery of each payload, over all the GETs above. */
  deliveries?: Record<string, number>;
}

export interface PartitionReport {
  scenario: string;
  ok: boolean;
  error?: string;
  seed?: number;
  faultSeconds?: number;
  namespace?: NamespaceInfo;
  pids: Record<number, number[]>;
  startMs?: number;
  topic?: string;
  raftLeaderAtStart?: number;
  segmentLeaderAtStart?: number;
  /** The scenario's steps, ms since its start. */
  events: string[];
  split?: SplitBrain;
  getSplit?: GetSplit;
  phases?: LoadPhase[];
  faults?: FaultRecord[];
  /** GETs in flight when a fault began or ended (each GET once): the replays the checker allows. */
  getReplaysAllowed?: number;
  /** From the final heal (every node up and healed) until all three agreed on a leader, and to the first acknowledgement after. */
  recovery?: { agreeMs: number; firstAckMs: number | null; restarted: number[]; resumed: number[] };
  writers?: WriterSummary[];
  readers?: ReaderSummary[];
  fetchPasses?: FetchPass[];
  /** Whether the STATE of all three agreed before the read-back (segments, seals, leaders), and how long it took. */
  statesAgreed?: { agreed: boolean; afterMs: number; states: Record<number, unknown> };
  drainComplete?: boolean;
  deliveries?: DeliverySummary;
  history?: HistorySummary;
  unexpectedExits: { id: number; code: number | null; signal: NodeJS.Signals | null }[];
  atFailure?: { views: Record<number, RaftView | undefined>; dropped?: Record<string, number> };
  problems?: string;
  logsDir?: string;
  totalMs?: number;
}

const [scenarioArg, dirArg, deadlineArg, seedArg, secondsArg] = process.argv.slice(2);
if (scenarioArg === undefined || dirArg === undefined || !(SCENARIOS as readonly string[]).includes(scenarioArg)) {
  throw new Error(`usage: netns-partition-child <${SCENARIOS.join('|')}> <dir> [deadlineMs] [seed] [faultSeconds]`);
}
const scenario = scenarioArg as Scenario;
const dir = dirArg;
const DEADLINE_MS = Number(deadlineArg ?? 90_000);
const FAULT_SECONDS = Number(secondsArg ?? 15);
const SEED = seedArg === undefined || seedArg === '' ? (Math.random() * 2 ** 32) >>> 0 : Number(seedArg) >>> 0;

const t0 = performance.now();
const rel = (time: number) => Math.round(time - t0);
const report: PartitionReport = { scenario, ok: false, pids: {}, events: [], unexpectedExits: [] };
let cluster: NetnsCluster | undefined;
/** Everything sent and read, for <dir>/history.jsonl (kept with a failure's evidence). */
const recorded: {
  writers: Writer[];
  readers: Reader[];
  positions?: ReadonlyMap<string, Position>;
  /** Each change of a node's view of the topic (STATE sampled every 100 ms): open segment, its leader, seals. */
  views: { node: number; at: number; current: number; leader: number; sealed: number }[];
} = { writers: [], readers: [], views: [] };

/** Samples every node's STATE of the topic every 100 ms until `stop()`, keeping each change in recorded.views. */
async function watchViews(c: NetnsCluster, stop: () => boolean): Promise<void> {
  const clients = new Map(c.ids.map((id) => [id, c.newClient(id, 500)]));
  const last = new Map<number, string>();
  while (!stop()) {
    await Promise.all(
      c.ids.map(async (id) => {
        const state = await (clients.get(id) as WalrusClient).state(TOPIC()).catch(() => undefined);
        if (state === undefined) return;
        const view = {
          node: id,
          at: rel(performance.now()),
          current: state.current_segment,
          leader: state.leader_node,
          sealed: Object.keys(state.sealed_segments).length,
        };
        const text = `${view.current}/${view.leader}/${view.sealed}`;
        if (last.get(id) !== text) {
          last.set(id, text);
          recorded.views.push(view);
        }
      }),
    );
    await sleep(100);
  }
}

function event(text: string): void {
  report.events.push(`${rel(performance.now())} ms: ${text}`);
}

function clip<T>(list: readonly T[], count = 25): T[] {
  return list.slice(0, count);
}

function summarizeHistory(result: HistoryReport): HistorySummary {
  return {
    counts: result.counts,
    totals: {
      lost: result.lost.length,
      phantom: result.phantom.length,
      duplicated: result.duplicated.length,
      reordered: result.reordered.length,
      changed: result.changed.length,
    },
    lost: clip(result.lost),
    phantom: clip(result.phantom),
    duplicated: clip(result.duplicated),
    reordered: clip(result.reordered),
    changed: clip(result.changed),
    text: describeReport(result),
  };
}

function summarizeDeliveries(check: DeliveryCheck): DeliverySummary {
  return {
    totals: {
      replays: check.replays.length,
      unexplainedReplays: check.unexplainedReplays.length,
      notInLog: check.notInLog.length,
      outOfOrder: check.outOfOrder.length,
    },
    replays: clip(check.replays),
    unexplainedReplays: clip(check.unexplainedReplays),
    notInLog: clip(check.notInLog),
    outOfOrder: clip(check.outOfOrder),
  };
}

function summarizeReader(r: Reader): ReaderSummary {
  return { name: r.name, via: r.via, deliveries: r.deliveries.length, empties: r.empties, errors: Object.fromEntries(r.errors) };
}

/** A small seeded PRNG (mulberry32): the same seed gives the same fault plan. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 2 ** 32;
  };
}

async function startCluster(maxEntries: number, lifetimeMs: number): Promise<NetnsCluster> {
  report.namespace = await prepareNamespace(3);
  const launchAt = performance.now();
  const c = await NetnsCluster.start(dir, {
    nodes: 3,
    env: { WALRUS_MAX_SEGMENT_ENTRIES: String(maxEntries) },
    extraConfig: CONFIG,
    fsync: 'each',
    clientTimeoutMs: CLIENT_TIMEOUT_MS,
    lifetimeMs,
    readyTimeoutMs: 30_000,
    onLaunch: (id, pid) => {
      report.pids[id] = [...(report.pids[id] ?? []), pid];
      process.stderr.write(`netns-node ${id} ${pid}\n`);
    },
  });
  cluster = c;
  report.startMs = Math.round(performance.now() - launchAt);
  const agreed = await c.agreedLeader(c.ids, 15_000);
  report.raftLeaderAtStart = agreed.leader;
  event(`cluster ready, Raft leader ${agreed.leader}`);
  return c;
}

/** One PUT, classified. */
async function attemptPut(client: WalrusClient, via: number, payload: string, history: History, producer: string): Promise<PutAttempt> {
  const settle = history.put(producer, payload);
  const started = performance.now();
  try {
    await client.put(TOPIC(), payload);
    settle('acked');
    return { via, payload, ok: true, outcome: 'acked', tookMs: Math.round(performance.now() - started) };
  } catch (error) {
    const outcome = outcomeOf(error);
    settle(outcome);
    return { via, payload, ok: false, outcome, error: errorName(error), tookMs: Math.round(performance.now() - started) };
  }
}

const TOPIC = () => report.topic as string;

async function stateOf(c: NetnsCluster, id: number) {
  return c
    .client(id)
    .state(TOPIC())
    .catch(() => undefined);
}

/** Waits (bounded) until every node's STATE of the topic names the same segments, seals and leaders. */
async function statesAgree(c: NetnsCluster, timeoutMs = 15_000): Promise<NonNullable<PartitionReport['statesAgreed']>> {
  const started = performance.now();
  let states: Record<number, unknown> = {};
  const agreed = await until(
    async () => {
      states = {};
      for (const id of c.ids) states[id] = await stateOf(c, id);
      const texts = new Set(
        c.ids.map((id) => {
          const state = states[id] as { current_segment: number; sealed_segments: unknown; segment_leaders: unknown } | undefined;
          return state === undefined ? 'none' : JSON.stringify([state.current_segment, state.sealed_segments, state.segment_leaders]);
        }),
      );
      return texts.size === 1 && !texts.has('none');
    },
    timeoutMs,
    100,
  );
  return { agreed, afterMs: Math.round(performance.now() - started), states };
}

/** FETCH through every node, a GET drain through `drainVia`, the checks. */
async function readBack(
  c: NetnsCluster,
  history: History,
  readers: Reader[],
  drainVia: number,
  getReplays: number,
  onEntry?: (via: number) => (payload: string, position: Position) => void,
  inFlightAtFault?: (delivery: Delivery) => boolean,
): Promise<Set<string>> {
  report.statesAgreed = await statesAgree(c);
  event(`STATE of all nodes ${report.statesAgreed.agreed ? 'agreed' : 'did NOT agree'} after ${report.statesAgreed.afterMs} ms`);
  const found = new Map<string, Position>();
  report.fetchPasses = [];
  for (const id of c.ids) {
    report.fetchPasses.push(
      await fetchAll(
        c.newClient(id, CLIENT_TIMEOUT_MS),
        id,
        TOPIC(),
        history,
        found,
        onEntry === undefined ? {} : { onEntry: onEntry(id) },
      ),
    );
  }
  event(`fetched ${found.size} distinct entries through each node`);
  const drainer = reader('drain', drainVia, c.newClient(drainVia, CLIENT_TIMEOUT_MS));
  readers.push(drainer);
  report.drainComplete = (await drain(drainer, TOPIC())).complete;
  event(`GET drain through node ${drainVia}: ${drainer.deliveries.length} entries, ${report.drainComplete ? 'to EMPTY' : 'NOT to EMPTY'}`);
  report.readers = readers.map(summarizeReader);
  recorded.readers = readers;
  recorded.positions = found;
  report.deliveries = summarizeDeliveries(checkDeliveries(readers, found, history, (time) => `${rel(time)} ms`, inFlightAtFault));
  report.history = summarizeHistory(history.check({ complete: true, getReplays }));
  return new Set([...found.keys(), ...readers.flatMap((r) => r.deliveries.map((delivery) => delivery.payload))]);
}

// --- 1. the original's partition_test.py -----------------------------------------------------

async function splitBrain(): Promise<void> {
  const c = await startCluster(1_000, 60_000);
  report.topic = 'partition_test_topic';
  const history = new History();
  await c.client(1).register(TOPIC());
  const before = await attemptPut(c.client(1), 1, 'before-split', history, 'driver');
  if (!before.ok) throw new Error(`PUT before-split failed: ${before.error}`);
  const state = await c.client(1).state(TOPIC());
  const leader = state.leader_node;
  report.segmentLeaderAtStart = leader;
  const others = c.ids.filter((id) => id !== leader);
  const raftLeader = (await c.agreedLeader(c.ids, 10_000)).leader;
  const split: SplitBrain = { leader, raftLeader, openAtCut: state.current_segment, before };
  report.split = split;
  event(`segment ${state.current_segment} led by ${leader}, Raft leader ${raftLeader}`);

  await c.isolate(leader);
  const cutAt = performance.now();
  event(`isolated node ${leader}`);
  split.split = await attemptPut(c.client(leader), leader, 'split-brain-write', history, 'driver');
  event(`PUT split-brain-write through ${leader}: ${split.split.ok ? 'OK' : split.split.error} after ${split.split.tookMs} ms`);
  split.fetchThroughLeaderDuringSplit = [];
  for (let offset = 0; offset < 3; offset++) {
    const entry = await c
      .client(leader)
      .fetch(TOPIC(), state.current_segment, offset)
      .then((found) => found?.payload ?? null)
      .catch((error: unknown) => `error ${errorName(error)}`);
    split.fetchThroughLeaderDuringSplit.push(entry);
  }
  split.stateThroughLeaderDuringSplit = await stateOf(c, leader);

  let newState: Awaited<ReturnType<typeof stateOf>>;
  const failedOver = await until(
    async () => {
      const states = await Promise.all(others.map((id) => stateOf(c, id)));
      newState = states[0];
      return states.every((s) => s !== undefined && s.current_segment > state.current_segment && s.leader_node !== leader);
    },
    10_000,
    100,
  );
  split.failoverMs = failedOver ? Math.round(performance.now() - cutAt) : null;
  if (!failedOver || newState === undefined) throw new Error(`no failover visible on nodes ${others.join(', ')} within 10 s of the cut`);
  split.newSegment = newState.current_segment;
  split.newLeader = newState.leader_node;
  event(`failover: segment ${split.newSegment} led by ${split.newLeader} after ${split.failoverMs} ms`);
  const via = others.find((id) => id !== split.newLeader) ?? (others[0] as number);
  split.duringSplitNew = await attemptPut(c.client(via), via, 'during-split-new', history, 'driver');
  event(`PUT during-split-new through ${via}: ${split.duringSplitNew.ok ? 'OK' : split.duringSplitNew.error}`);
  split.split2 = await attemptPut(c.client(leader), leader, 'split-brain-write-2', history, 'driver');
  event(`PUT split-brain-write-2 through ${leader}: ${split.split2.ok ? 'OK' : split.split2.error}`);

  const healAt = performance.now();
  await c.heal();
  event('healed');
  await c.agreedLeader(c.ids, 10_000);
  split.healAgreeMs = Math.round(performance.now() - healAt);
  const caughtUp = await until(async () => (await stateOf(c, leader))?.current_segment === split.newSegment, 10_000, 50);
  split.healCaughtUpMs = caughtUp ? Math.round(performance.now() - healAt) : null;
  event(`node ${leader} agreed on the leader after ${split.healAgreeMs} ms, its STATE caught up: ${split.healCaughtUpMs} ms`);

  const names = ['before-split', 'split-brain-write', 'during-split-new', 'split-brain-write-2'];
  split.fetchCounts = {};
  split.fetchPositions = {};
  for (const id of c.ids) {
    split.fetchCounts[id] = Object.fromEntries(names.map((name) => [name, 0]));
    split.fetchPositions[id] = {};
  }
  const readers: Reader[] = [];
  await readBack(c, history, readers, leader, 0, (id) => (payload, position) => {
    const counts = split.fetchCounts?.[id] as Record<string, number>;
    counts[payload] = (counts[payload] ?? 0) + 1;
    const positions = split.fetchPositions?.[id] as Record<string, string[]>;
    positions[payload] = [...(positions[payload] ?? []), `${position.segment}/${position.offset}`];
  });
  split.drained = readers[0]?.deliveries.map((delivery) => delivery.payload) ?? [];
  report.ok = true;
}

// --- 1b. the GET side of split-brain ------------------------------------------------------

/** Up to `max` GETs through `client`, stopping at the first EMPTY (recorded as null) or error (its name). */
async function gets(client: WalrusClient, max: number): Promise<(string | null)[]> {
  const answers: (string | null)[] = [];
  for (let index = 0; index < max; index++) {
    try {
      const payload = await client.get(TOPIC());
      answers.push(payload);
      if (payload === null) break;
    } catch (error) {
      answers.push(`error ${errorName(error)}`);
      break;
    }
  }
  return answers;
}

async function getSplit(): Promise<void> {
  const c = await startCluster(1_000, 60_000);
  report.topic = 'partition_get_topic';
  const history = new History();
  await c.client(1).register(TOPIC());
  const leader = (await c.client(1).state(TOPIC())).leader_node;
  report.segmentLeaderAtStart = leader;
  const others = c.ids.filter((id) => id !== leader) as [number, number];
  const payloads = ['g-0', 'g-1', 'g-2', 'g-3', 'g-4'];
  for (const payload of payloads) {
    const put = await attemptPut(c.client(leader), leader, payload, history, 'driver');
    if (!put.ok) throw new Error(`PUT ${payload} failed: ${put.error}`);
  }
  const raftLeader = (await c.agreedLeader(c.ids, 10_000)).leader;
  const split: GetSplit = { leader, raftLeader, payloads };
  report.getSplit = split;
  event(`${payloads.length} entries acknowledged (none consumed); segment led by ${leader}, Raft leader ${raftLeader}`);
  // The followers hold the GET position as of now (nothing consumed); let the replication settle.
  await sleep(300);
  await c.isolate(leader);
  const cutAt = performance.now();
  event(`isolated node ${leader}`);
  await sleep(TTL_MS * 2);
  split.duringSplitThroughLeader = await gets(c.client(leader), 3);
  event(`GETs through the cut-off node ${leader}: ${JSON.stringify(split.duringSplitThroughLeader)}`);
  const failedOver = await until(
    async () => {
      const states = await Promise.all(others.map((id) => stateOf(c, id)));
      return states.every((s) => s !== undefined && s.current_segment > 1 && s.leader_node !== leader);
    },
    10_000,
    100,
  );
  split.failoverMs = failedOver ? Math.round(performance.now() - cutAt) : null;
  event(`failover ${failedOver ? `visible after ${split.failoverMs} ms` : 'NOT visible within 10 s'}`);
  split.duringSplitThroughMajority = await gets(c.client(others[0]), 10);
  event(`GETs through node ${others[0]}: ${JSON.stringify(split.duringSplitThroughMajority)}`);
  await c.heal();
  event('healed');
  await c.agreedLeader(c.ids, 10_000);
  await until(async () => ((await stateOf(c, leader))?.current_segment ?? 0) > 1, 10_000, 50);
  split.afterHealThroughLeader = await gets(c.client(leader), 10);
  split.afterHealThroughMajority = await gets(c.client(others[0]), 10);
  event(
    `after the heal, GETs through ${leader}: ${JSON.stringify(split.afterHealThroughLeader)}, through ${others[0]}: ${JSON.stringify(split.afterHealThroughMajority)}`,
  );
  split.deliveries = Object.fromEntries(payloads.map((payload) => [payload, 0]));
  for (const answer of [
    ...split.duringSplitThroughLeader,
    ...split.duringSplitThroughMajority,
    ...split.afterHealThroughLeader,
    ...split.afterHealThroughMajority,
  ]) {
    if (answer !== null && !answer.startsWith('error ')) split.deliveries[answer] = (split.deliveries[answer] ?? 0) + 1;
  }
  report.ok = true;
}

// --- 2, 3. one cut under load --------------------------------------------------------------

async function underLoad(kind: 'isolate' | 'oneway-out' | 'oneway-in'): Promise<void> {
  // Three writers fill ~700 entries a second here: the open segment must outlast the scenario.
  const c = await startCluster(1_000_000, 90_000);
  report.topic = `partition-${kind}`;
  await c.client(1).register(TOPIC());
  const initial = await c.client(1).state(TOPIC());
  const leader = initial.leader_node;
  report.segmentLeaderAtStart = leader;
  const others = c.ids.filter((id) => id !== leader) as [number, number];
  event(`segment ${initial.current_segment} led by ${leader}, Raft leader ${report.raftLeaderAtStart}`);
  const history = new History();
  const writers: Writer[] = [
    writer('a', others[0], c.newClient(others[0], CLIENT_TIMEOUT_MS)),
    writer('b', others[1], c.newClient(others[1], CLIENT_TIMEOUT_MS)),
    writer('c', leader, c.newClient(leader, CLIENT_TIMEOUT_MS)),
  ];
  const majority = writers.slice(0, 2);
  const throughLeader = writers[2] as Writer;
  let stopping = false;
  const running = writers.map((w) => write(history, w, TOPIC(), () => stopping));
  await sleep(1_500);
  const before = await c.client(others[0]).state(TOPIC());
  if (before.leader_node !== leader) throw new Error(`the open segment moved from ${leader} to ${before.leader_node} before the cut`);

  // The cut's instant is when its rules are in force (one nft batch): a PUT sent before may still have reached a peer.
  if (kind === 'isolate') await c.isolate(leader);
  else await c.cutLinks(c.peersOf(leader).map((other) => (kind === 'oneway-out' ? [leader, other] : [other, leader])));
  const cutAt = performance.now();
  const phase: LoadPhase = { cut: kind, cutsInForce: c.activeCuts(), cutAt: rel(cutAt) };
  report.phases = [phase];
  event(`cut (${kind}) of node ${leader}: ${phase.cutsInForce.join(' ')}`);

  // Watch the majority's STATE for the failover while the cut holds.
  let watching = true;
  phase.failover = null;
  const watcher = (async () => {
    while (watching) {
      const state = await stateOf(c, others[0]);
      if (state !== undefined && state.current_segment > before.current_segment) {
        phase.failover = {
          afterMs: Math.round(performance.now() - cutAt),
          segment: state.current_segment,
          newLeader: state.leader_node,
        };
        event(`failover visible on node ${others[0]}: segment ${state.current_segment} led by ${state.leader_node}`);
        return;
      }
      await sleep(100);
    }
  })();
  const resumed = await until(() => firstAckAfter(majority, cutAt) !== null, 15_000);
  phase.majorityResumeMs = resumed ? Math.round(firstAckAfter(majority, cutAt) as number) : null;
  event(`majority writers ${resumed ? `resumed after ${phase.majorityResumeMs} ms` : 'did NOT resume within 15 s'}`);
  // Keep the cut a while longer: the writer through the cut-off node goes on trying.
  await sleep(2_500);
  watching = false;
  await watcher;
  phase.dropped = await c.dropped();
  phase.statesBeforeHeal = {};
  phase.viewsBeforeHeal = {};
  for (const id of c.ids) {
    phase.statesBeforeHeal[id] = await stateOf(c, id);
    phase.viewsBeforeHeal[id] = await c.raftView(id);
  }
  // The heal's instant is when the rules start to go: PUTs sent before it were sent during the cut.
  const healAt = performance.now();
  await c.heal();
  phase.healAt = rel(healAt);
  event('healed');
  await c.agreedLeader(c.ids, 15_000);
  phase.healAgreeMs = Math.round(performance.now() - healAt);
  const majorityState = await c.client(others[0]).state(TOPIC());
  const caughtUp = await until(async () => ((await stateOf(c, leader))?.current_segment ?? 0) >= majorityState.current_segment, 10_000, 50);
  phase.healCaughtUpMs = caughtUp ? Math.round(performance.now() - healAt) : null;
  event(`all agreed on the Raft leader after ${phase.healAgreeMs} ms; node ${leader}'s STATE caught up: ${phase.healCaughtUpMs} ms`);
  await until(() => firstAckAfter([throughLeader], healAt) !== null, 10_000);
  await sleep(1_000);
  stopping = true;
  await Promise.all(running);
  phase.leaderResumeAfterHealMs = (() => {
    const ms = firstAckAfter([throughLeader], healAt);
    return ms === null ? null : Math.round(ms);
  })();
  phase.majorityGapMs = Math.round(longestGap(majority, cutAt, healAt));
  phase.gapAroundCutMs = Math.round(gapAround(majority, cutAt));
  const duringCut = throughLeader.puts.filter((put) => put.sentAt >= cutAt && put.sentAt < healAt);
  phase.leaderPutsDuringCut = duringCut
    .slice(0, 40)
    .map(
      (put) =>
        `${put.payload} sent ${rel(put.sentAt)} ms, answered ${rel(put.doneAt)} ms: ${put.outcome === 'acked' ? 'OK' : `${put.outcome} ${put.error ?? '?'}`}`,
    );
  phase.leaderAcksDuringCut = duringCut
    .filter((put) => put.outcome === 'acked' && put.doneAt < healAt)
    .map((put) => `${put.payload} sent ${rel(put.sentAt)} ms, OK ${rel(put.doneAt)} ms`);
  phase.leaderAcksAfterTtl = throughLeader.puts
    .filter((put) => put.outcome === 'acked' && put.doneAt > cutAt + TTL_MS && put.doneAt < healAt)
    .map((put) => `${put.payload} sent ${rel(put.sentAt)} ms, OK ${rel(put.doneAt)} ms`);
  phase.leaderFailuresDuringCut = {};
  for (const put of duringCut) {
    if (put.outcome === 'acked') continue;
    const name = `${put.outcome}: ${put.error ?? '?'}`;
    phase.leaderFailuresDuringCut[name] = (phase.leaderFailuresDuringCut[name] ?? 0) + 1;
  }
  report.writers = writers.map(summarize);
  recorded.writers = writers;
  event(`writers stopped: ${report.writers.map((w) => `${w.name} ${w.acked}/${w.puts}`).join(', ')}`);

  const read = await readBack(c, history, [], others[0], 0);
  phase.leaderEntriesReadable = duringCut
    .filter((put) => put.outcome !== 'acked' && read.has(put.payload))
    .map((put) => `${put.payload} (${put.outcome}: ${put.error ?? '?'}, sent ${rel(put.sentAt)} ms)`);
  report.ok = true;
}

// --- 4. random faults ------------------------------------------------------------------------

async function randomFaults(): Promise<void> {
  const random = prng(SEED);
  report.seed = SEED;
  report.faultSeconds = FAULT_SECONDS;
  const between = (low: number, high: number) => low + random() * (high - low);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
  // Segments of 2,000 entries: a few rollovers (seals) happen among the faults.
  const c = await startCluster(2_000, FAULT_SECONDS * 1_000 + 120_000);
  report.topic = 'partition-random';
  await c.client(1).register(TOPIC());
  report.segmentLeaderAtStart = (await c.client(1).state(TOPIC())).leader_node;
  const history = new History();
  const writers = [1, 2, 3, 1].map((via, index) => writer(`p${index + 1}`, via, c.newClient(via, CLIENT_TIMEOUT_MS)));
  const readers = [2, 3].map((via, index) => reader(`g${index + 1}`, via, c.newClient(via, CLIENT_TIMEOUT_MS)));
  let stopping = false;
  const running = [
    ...writers.map((w) => write(history, w, TOPIC(), () => stopping)),
    ...readers.map((r) => consume(r, TOPIC(), () => stopping)),
  ];
  const viewing = watchViews(c, () => stopping);
  const faults: FaultRecord[] = [];
  report.faults = faults;
  /** The GETs in flight at a fault's start or end, by reader and send time: the replays they may cause are allowed. */
  const inFlight = new Set<string>();
  const loadFrom = performance.now();
  const faultsEnd = loadFrom + FAULT_SECONDS * 1_000;
  event(`load started; faults for ${FAULT_SECONDS} s, seed ${SEED}`);
  await sleep(1_000);

  while (performance.now() < faultsEnd) {
    await sleep(between(2_000, 4_000));
    if (performance.now() >= faultsEnd) break;
    const kind = pick(['kill', 'stop', 'isolate', 'oneway'] as const);
    const node = pick(c.ids);
    const direction = pick(['oneway-out', 'oneway-in'] as const);
    const lasting = between(1_000, 3_000);
    const downFor = between(500, 1_500);
    const healthy = c.ids.find((id) => id !== node) as number;
    const segmentLeader = (await stateOf(c, healthy))?.leader_node ?? null;
    const raftLeader = (await c.raftView(healthy))?.leader ?? null;
    const at = performance.now();
    const record: FaultRecord = {
      kind: kind === 'oneway' ? direction : kind,
      node,
      at: rel(at),
      durationMs: 0,
      inFlightGets: readers.filter((r) => r.inFlightSince !== undefined).map((r) => r.name),
      inFlightSentAt: readers.flatMap((r) => (r.inFlightSince === undefined ? [] : [rel(r.inFlightSince)])),
      inFlightAtEnd: [],
      segmentLeader,
      raftLeader,
    };
    faults.push(record);
    for (const r of readers) if (r.inFlightSince !== undefined) inFlight.add(`${r.name}@${r.inFlightSince}`);
    try {
      if (kind === 'kill') {
        await c.kill(node, 'SIGKILL');
        event(`kill -9 node ${node}`);
        await sleep(downFor);
        await c.restart(node);
        event(`node ${node} restarted and ready`);
      } else if (kind === 'stop') {
        c.pause(node);
        event(`SIGSTOP node ${node}`);
        await sleep(lasting);
        c.resume(node);
        event(`SIGCONT node ${node}`);
      } else if (kind === 'isolate') {
        await c.isolate(node);
        event(`isolated node ${node}`);
        await sleep(lasting);
        await c.heal();
        event('healed');
      } else {
        await c.cutLinks(c.peersOf(node).map((other) => (direction === 'oneway-out' ? [node, other] : [other, node])));
        event(`${direction} cut of node ${node}: ${c.activeCuts().join(' ')}`);
        await sleep(lasting);
        await c.heal();
        event('healed');
      }
    } catch (error) {
      record.error = error instanceof Error ? error.message.slice(0, 500) : String(error);
      event(`fault ${record.kind} of node ${node} failed: ${record.error}`);
      break;
    } finally {
      record.durationMs = Math.round(performance.now() - at);
      for (const r of readers) {
        if (r.inFlightSince === undefined) continue;
        record.inFlightAtEnd.push(r.name);
        inFlight.add(`${r.name}@${r.inFlightSince}`);
      }
    }
  }
  // A reply in flight when the topology changes (a fault begins or ends) may be delivered and not
  // recorded as consumed where the next GET looks: one replay each is allowed, no more.
  report.getReplaysAllowed = inFlight.size;

  // Everything back: heal, continue what is frozen, start what is down, wait for all.
  await c.heal();
  const resumed = c.pausedNodes();
  for (const id of resumed) c.resume(id);
  const restarted = c.ids.filter((id) => !c.isRunning(id));
  for (const id of restarted) c.launch(id);
  await Promise.all(c.ids.map((id) => c.ready(id, 30_000)));
  const recoveredAt = performance.now();
  event(`all healed, up and ready (restarted ${restarted.join(',') || 'none'}, continued ${resumed.join(',') || 'none'})`);
  await c.agreedLeader(c.ids, 20_000);
  const agreeMs = Math.round(performance.now() - recoveredAt);
  await until(() => firstAckAfter(writers, recoveredAt) !== null, 15_000);
  const firstAck = firstAckAfter(writers, recoveredAt);
  report.recovery = { agreeMs, firstAckMs: firstAck === null ? null : Math.round(firstAck), restarted, resumed };
  event(`agreed after ${agreeMs} ms; first acknowledgement after ${report.recovery.firstAckMs} ms`);
  await sleep(1_500);
  stopping = true;
  await Promise.all([...running, viewing]);
  for (const fault of faults) {
    const from = t0 + fault.at;
    fault.gapMs = Math.round(longestGap(writers, from, Math.min(from + fault.durationMs + 2_000, performance.now())));
  }
  report.writers = writers.map(summarize);
  recorded.writers = writers;
  event(`load stopped: ${report.writers.map((w) => `${w.name} ${w.acked}/${w.puts}`).join(', ')}`);
  await readBack(c, history, readers, 1, report.getReplaysAllowed, undefined, (d) => inFlight.has(`${d.reader}@${d.sentAt}`));
  report.ok = true;
}

// --- running --------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (scenario === 'split-brain') await splitBrain();
  else if (scenario === 'get-split') await getSplit();
  else if (scenario === 'random') await randomFaults();
  else await underLoad(scenario);
}

/**
 * <dir>/history.jsonl: every PUT (payload, sent and answered in ms since the start, outcome,
 * error), every GET delivery (reader, node, asked, answered, where FETCH found it), and in the
 * random scenario each change of a node's view of the topic (STATE sampled every 100 ms).
 */
async function writeHistory(): Promise<void> {
  const positions = recorded.positions ?? new Map<string, Position>();
  const where = (payload: string) => {
    const position = positions.get(payload);
    return position === undefined ? null : `${position.segment}/${position.offset}`;
  };
  const lines = [
    ...recorded.writers.flatMap((w) =>
      w.puts.map((put) =>
        JSON.stringify({
          put: put.payload,
          via: w.via,
          sent: rel(put.sentAt),
          done: rel(put.doneAt),
          outcome: put.outcome,
          error: put.error,
          at: where(put.payload),
        }),
      ),
    ),
    ...recorded.views.map((view) =>
      JSON.stringify({ view: view.node, at: view.at, open: view.current, leader: view.leader, sealed: view.sealed }),
    ),
    ...recorded.readers.flatMap((r) =>
      r.deliveries.map((d) =>
        JSON.stringify({
          got: d.payload,
          reader: d.reader,
          via: d.via,
          sent: rel(d.sentAt),
          done: rel(d.receivedAt),
          at: where(d.payload),
        }),
      ),
    ),
  ];
  await writeFile(join(dir, 'history.jsonl'), `${lines.join('\n')}\n`);
}

let finishing = false;

async function finish(error: unknown): Promise<void> {
  if (finishing) return;
  finishing = true;
  if (error !== undefined) report.error = error instanceof Error ? error.message.slice(0, 4_000) : String(error);
  if (cluster !== undefined) {
    const c = cluster;
    if (error !== undefined) {
      const views: Record<number, RaftView | undefined> = {};
      for (const id of c.ids) views[id] = c.pausedNodes().includes(id) ? undefined : await c.raftView(id);
      const dropped = await c.dropped().catch(() => undefined);
      report.atFailure = { views, ...(dropped === undefined ? {} : { dropped }) };
    }
    report.unexpectedExits = [...c.unexpectedExits()];
    const problems = c.problems();
    if (problems !== '') report.problems = problems.slice(0, 6_000);
    await c.close().catch(() => undefined);
    report.logsDir = join(dir, 'logs');
    await c.writeLogs(report.logsDir).catch(() => undefined);
  }
  await writeHistory().catch(() => undefined);
  report.totalMs = rel(performance.now());
  const line = JSON.stringify(report);
  await writeFile(join(dir, 'report.json'), `${line}\n`).catch(() => undefined);
  process.stdout.write(`${line}\n`, () => process.exit(report.ok && report.error === undefined ? 0 : 1));
}

process.once('SIGTERM', () => void finish(new Error('stopped by SIGTERM')));
const deadline = setTimeout(() => void finish(new Error(`the scenario did not finish within ${DEADLINE_MS} ms`)), DEADLINE_MS);
main().then(
  () => {
    clearTimeout(deadline);
    void finish(undefined);
  },
  (error: unknown) => {
    clearTimeout(deadline);
    void finish(error);
  },
);
