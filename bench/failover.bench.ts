// How long writes stop when the node leading a topic's open segment is killed (issue 14): three
// Walrus nodes on loopback (bench/walrus-nodes.ts), replication.factor 3 with acks quorum,
// storage.fsync each, failover.timeoutMs 1500 (the default; operations.md, "Failover").
//
// Each round registers a fresh topic (its open segment then has a replica set of all three
// nodes), reads its segment leader L from STATE `leader_node` and the Raft leader from METRICS
// `current_leader`, and runs one writer through a node W ≠ L: sequential PUTs, each awaited,
// pausing 20 ms after an error before the next. Once writes flow, L gets SIGKILL (by its PID).
// Measured per kill:
// - failover: from the kill to the first acknowledgement of a PUT sent after it;
// - gap: from the last acknowledgement before the kill to that one.
// With L also the Raft leader, a Raft election comes first (electionTimeout 1–2 s) and the new
// Raft leader then waits failover.timeoutMs itself, so those kills are marked. The node's own
// report of the seal (`tookMs` of its "failover: segment sealed …" line, from detection to seal)
// is shown too. Then L is started again on its data directory (its "ready" line awaited), the
// cluster settles (every node names the same Raft leader, L has applied its log, then 2 s), and
// the next round begins. Targets, printed next to the figures and not enforced: median failover
// ≤ 1.5 s, max ≤ 3 s.
//
//   npm run bench -- failover            # 20 kills (a few minutes)
//   npm run bench -- failover --smoke    # 2 kills (CI)
//   npm run bench -- failover --consensus etcd   # the same with the metadata in etcd

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClientError } from '../src/client/index.js';
import { etcdMissing, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { formatRate, installExitHook, loadAverage, temporary } from './server.bench.js';
import { registerTopic, sleep, startWalrusNodes, type WalrusNodes } from './walrus-nodes.js';

export interface FailoverBenchOptions {
  readonly smoke: boolean;
  /** Where the metadata is kept: the built-in Raft, or an etcd of the run's own (`--consensus etcd`). */
  readonly consensus?: 'raft' | 'etcd';
}

const KILLS_FULL = 20;
const KILLS_SMOKE = 2;
const TIMEOUT_MS = 1500;
const TARGET_MEDIAN_MS = 1500;
const TARGET_MAX_MS = 3000;
/** Writes must flow this long (and at least MIN_ACKS) before the kill. */
const STEADY_MS = 1000;
const MIN_ACKS = 20;
const RETRY_PAUSE_MS = 20;
/** Bound of the wait for the first acknowledgement after a kill. */
const RESUME_TIMEOUT_MS = 30_000;
/** The writer goes on this long after writes resumed. */
const AFTER_MS = 300;
const SETTLE_TIMEOUT_MS = 20_000;
const SETTLE_EXTRA_MS = 2000;
const PAYLOAD = 'x'.repeat(256);

interface Put {
  readonly sentAt: number;
  ackedAt?: number;
  error?: string;
}

interface Kill {
  readonly round: number;
  readonly killed: number;
  readonly pid: number | undefined;
  readonly via: number;
  readonly raftLeaderBefore: number | undefined;
  readonly killedRaftLeader: boolean;
  /** ms from the kill to the first ack of a PUT sent after it; undefined: none within RESUME_TIMEOUT_MS. */
  readonly failoverMs: number | undefined;
  /** ms from the last ack before the kill to that ack. */
  readonly gapMs: number | undefined;
  readonly errors: ReadonlyMap<string, number>;
  readonly nextLeader: number | undefined;
  readonly raftLeaderAfter: number | undefined;
  /** tookMs of the live nodes' "failover: segment sealed" line for this topic. */
  readonly sealTookMs: number | undefined;
}

async function raftLeader(cluster: WalrusNodes, ask: number): Promise<number | undefined> {
  const metrics = await cluster
    .client(ask)
    .metrics()
    .catch(() => undefined);
  const leader = metrics?.current_leader;
  return typeof leader === 'number' && leader > 0 ? leader : undefined;
}

/** Sequential PUTs through `via` until `stop()`; records each. Never rejects. */
async function writer(cluster: WalrusNodes, via: number, topic: string, puts: Put[], stop: () => boolean): Promise<void> {
  const client = cluster.client(via);
  while (!stop()) {
    const put: Put = { sentAt: performance.now() };
    puts.push(put);
    try {
      await client.put(topic, PAYLOAD);
      put.ackedAt = performance.now();
    } catch (error) {
      put.error = error instanceof ClientError ? `${error.code}/${error.serverCode ?? '-'}` : String(error);
      await sleep(RETRY_PAUSE_MS);
    }
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 10): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
}

/** After a restart: every node names the same Raft leader and `restarted` has applied what it had committed; then SETTLE_EXTRA_MS. */
async function settle(cluster: WalrusNodes, restarted: number): Promise<boolean> {
  const settled = await until(
    async () => {
      const all = await Promise.all(
        cluster.ids.map((id) =>
          cluster
            .client(id)
            .metrics()
            .catch(() => undefined),
        ),
      );
      const leaders = new Set(all.map((metrics) => metrics?.current_leader));
      const [leader] = [...leaders];
      if (leaders.size !== 1 || typeof leader !== 'number' || leader < 1) return false;
      const lastIndex = Number(all[cluster.ids.indexOf(leader)]?.last_log_index ?? Number.NaN);
      const applied = (all[cluster.ids.indexOf(restarted)]?.last_applied as { index?: number } | null | undefined)?.index ?? -1;
      return applied >= lastIndex;
    },
    SETTLE_TIMEOUT_MS,
    100,
  );
  await sleep(SETTLE_EXTRA_MS);
  return settled;
}

async function round(cluster: WalrusNodes, index: number, log: (line: string) => void): Promise<Kill> {
  const topic = `failover-${index}-${Date.now()}`;
  const register = cluster.ids[index % cluster.ids.length] as number;
  const leader = await registerTopic(cluster, topic, register);
  const via = cluster.ids.find((id) => id !== leader) as number;
  const puts: Put[] = [];
  let stopping = false;
  const running = writer(cluster, via, topic, puts, () => stopping);
  try {
    const started = performance.now();
    const flowing = await until(
      () => performance.now() - started >= STEADY_MS && puts.filter((put) => put.ackedAt !== undefined).length >= MIN_ACKS,
      15_000,
    );
    if (!flowing) throw new Error(`round ${index}: fewer than ${MIN_ACKS} PUTs acknowledged within 15 s before the kill`);
    const state = await cluster.client(via).state(topic);
    if (state.leader_node !== leader)
      throw new Error(`round ${index}: the open segment moved from node ${leader} to ${state.leader_node} before the kill`);
    const raftLeaderBefore = await raftLeader(cluster, via);
    const pid = cluster.node(leader).child.process.pid;
    const killAt = performance.now();
    const killing = cluster.kill(leader);
    const resumed = await until(() => puts.some((put) => put.sentAt >= killAt && put.ackedAt !== undefined), RESUME_TIMEOUT_MS);
    await killing;
    const firstAfter = puts.find((put) => put.sentAt >= killAt && put.ackedAt !== undefined)?.ackedAt;
    const lastBefore = puts
      .map((put) => put.ackedAt)
      .filter((at): at is number => at !== undefined && at <= killAt)
      .pop();
    if (resumed) await sleep(AFTER_MS);
    stopping = true;
    await running;
    const errors = new Map<string, number>();
    for (const put of puts) if (put.error !== undefined) errors.set(put.error, (errors.get(put.error) ?? 0) + 1);
    const after = await cluster
      .client(via)
      .state(topic)
      .catch(() => undefined);
    const nextLeader = after === undefined ? undefined : after.leader_node;
    const raftLeaderAfter = await raftLeader(cluster, via);
    const sealTookMs = cluster.nodes
      .filter((node) => node.id !== leader)
      .flatMap((node) => node.child.matching(/"msg":"failover: segment sealed/, 100))
      .filter((line) => line.includes(`"topic":"${topic}"`))
      .map((line) => Number(/"tookMs":(\d+)/.exec(line)?.[1] ?? Number.NaN))
      .find((value) => !Number.isNaN(value));
    const kill: Kill = {
      round: index,
      killed: leader,
      pid,
      via,
      raftLeaderBefore,
      killedRaftLeader: raftLeaderBefore === leader,
      failoverMs: firstAfter === undefined ? undefined : firstAfter - killAt,
      gapMs: firstAfter === undefined || lastBefore === undefined ? undefined : firstAfter - lastBefore,
      errors,
      nextLeader,
      raftLeaderAfter,
      sealTookMs,
    };
    log(describeKill(kill, puts.filter((put) => put.ackedAt !== undefined).length));
    return kill;
  } finally {
    stopping = true;
    await running;
    const restarted = cluster.node(leader);
    if (restarted.child.process.exitCode !== null || restarted.child.process.signalCode !== null) {
      await cluster.restart(leader);
      if (!(await settle(cluster, leader)))
        log(`      node ${leader} restarted, but the cluster did not settle within ${SETTLE_TIMEOUT_MS} ms; going on`);
    }
  }
}

const whole = (value: number | undefined): string => (value === undefined ? '—' : formatRate(value));

function describeKill(kill: Kill, acked: number): string {
  const errors = [...kill.errors].map(([code, count]) => `${code} ×${count}`).join(', ') || 'none';
  return (
    `    #${String(kill.round).padStart(2)} kill node ${kill.killed} (pid ${kill.pid})${kill.killedRaftLeader ? ' = Raft leader' : '               '}` +
    `  writer via ${kill.via}: failover ${whole(kill.failoverMs).padStart(6)} ms, gap ${whole(kill.gapMs).padStart(6)} ms` +
    `  (seal took ${whole(kill.sealTookMs)} ms on the node; next segment led by ${kill.nextLeader ?? '?'}, Raft leader ${kill.raftLeaderBefore ?? '?'} → ${kill.raftLeaderAfter ?? '?'}; ${acked} acked; errors: ${errors})`
  );
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function summary(name: string, kills: readonly Kill[], field: 'failoverMs' | 'gapMs'): string {
  const values = kills.map((kill) => kill[field]).filter((value): value is number => value !== undefined);
  const missing = kills.length - values.length;
  const mid = median(values);
  const max = missing > 0 ? Number.POSITIVE_INFINITY : Math.max(...values);
  return `${name.padEnd(30)} n ${values.length}${missing > 0 ? ` (+${missing} never resumed)` : ''}  median ${whole(mid).padStart(6)} ms  max ${Number.isFinite(max) ? whole(max).padStart(6) : '     ∞'} ms  min ${whole(values.length === 0 ? undefined : Math.min(...values)).padStart(6)} ms`;
}

export async function runFailoverBench(options: FailoverBenchOptions): Promise<void> {
  const kills = options.smoke ? KILLS_SMOKE : KILLS_FULL;
  const log = (line: string): void => console.log(line);
  log(
    `failover: SIGKILL of the open segment's leader, ${kills} times, three Walrus nodes on loopback (${options.smoke ? 'smoke: indicative only' : 'full run'})`,
  );
  log(
    `  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${loadAverage()} (other processes skew every figure)`,
  );
  log(
    `  replication.factor 3, acks quorum, storage.fsync each, failover.timeoutMs ${TIMEOUT_MS}; one sequential writer through a node other than the segment's leader, ${RETRY_PAUSE_MS} ms pause after an error; a fresh topic per kill`,
  );
  installExitHook();
  const root = mkdtempSync(join(tmpdir(), 'walrus-failover-bench-'));
  temporary.add(root);
  const results: Kill[] = [];
  let cluster: WalrusNodes | undefined;
  let etcd: TestEtcd | undefined;
  try {
    if (options.consensus === 'etcd') {
      if (etcdMissing !== undefined) throw new Error(`--consensus etcd: ${etcdMissing}`);
      etcd = await startEtcd();
      log(
        `  consensus: etcd (one member on ${etcd.endpoint}, the run's own); "R" below marks kills of the node holding the etcd leader key`,
      );
    }
    cluster = await startWalrusNodes(
      root,
      [
        'storage: { fsync: each }',
        'segments: { maxEntries: 1000000000 }',
        'replication: { factor: 3, acks: quorum }',
        `failover: { timeoutMs: ${TIMEOUT_MS} }`,
        ...(etcd === undefined ? [] : ['consensus: etcd', `etcd: { endpoints: ["${etcd.endpoint}"] }`]),
      ],
      { clientTimeoutMs: 10_000 },
    );
    log(`  nodes: ${cluster.nodes.map((node) => `${node.id} (pid ${node.child.process.pid})`).join(', ')}`);
    let failed = 0;
    for (let index = 1; index <= kills; index++) {
      try {
        results.push(await round(cluster, index, log));
      } catch (error) {
        // A round that could not be set up or measured: said, not counted; three end the run.
        log(`    #${String(index).padStart(2)} failed: ${String(error).slice(0, 600)}`);
        if (++failed >= 3) {
          log('  three rounds failed: stopping');
          break;
        }
      }
    }
    for (const node of cluster.nodes) {
      for (const line of node.child.matching(/"level":[56]\d/, 5, /"msg":"ready"/)) log(`  node ${node.id} logged: ${line.slice(0, 300)}`);
    }
  } finally {
    await cluster?.stop().catch((error: unknown) => log(`  could not stop a node: ${String(error)}`));
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  const failover = results.map((kill) => kill.failoverMs).filter((value): value is number => value !== undefined);
  const mid = median(failover);
  const max = failover.length < results.length ? Number.POSITIVE_INFINITY : Math.max(...failover);
  log(`\n  load average at end: ${loadAverage()}`);
  log(
    `  per kill, failover ms (R: the killed node was the Raft leader): ${results.map((kill) => `${whole(kill.failoverMs)}${kill.killedRaftLeader ? ' R' : ''}`).join(', ')}`,
  );
  log(`  ${summary('failover (kill → first ack)', results, 'failoverMs')}`);
  log(`  ${summary('gap (last ack → first ack)', results, 'gapMs')}`);
  const raft = results.filter((kill) => kill.killedRaftLeader);
  const plain = results.filter((kill) => !kill.killedRaftLeader);
  if (plain.length > 0) log(`  ${summary('- killed node not Raft leader', plain, 'failoverMs')}`);
  if (raft.length > 0) log(`  ${summary('- killed node the Raft leader', raft, 'failoverMs')}`);
  log(`  target median ≤ ${TARGET_MEDIAN_MS} ms: ${whole(mid)} ms — ${mid <= TARGET_MEDIAN_MS ? 'MET' : 'NOT MET'}`);
  log(
    `  target max ≤ ${TARGET_MAX_MS} ms: ${Number.isFinite(max) ? `${whole(max)} ms` : 'a kill never resumed'} — ${max <= TARGET_MAX_MS ? 'MET' : 'NOT MET'}`,
  );
}
