// The scenario of test/cluster/netns.test.ts, run INSIDE `unshare -rn` (a private user and
// network namespace): three nodes on 127.0.0.1..3 (./netns.ts); the metadata leader (Raft's, or
// the etcd leader key's holder with WALRUS_TEST_CONSENSUS=etcd), found by METRICS, is cut off
// from the other two (and from etcd) with nftables; the other two must elect another leader
// while the cut-off one still answers its client; after the cut heals all three must name one
// leader again. Prints one JSON line on stdout (the Report below) and exits 0, or 1 when the
// scenario failed (the report then has `error`). Every node's PID goes to stderr as
// `netns-node <id> <pid>` when it starts, so the parent can stop what is left if this process dies.
// Usage: node netns-leader-child.js <dir> [deadlineMs (default 25000)]

import { type NamespaceInfo, NetnsCluster, prepareNamespace, type RaftView, type SourceCheck } from './netns.js';

const [dir, deadlineArg] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: netns-leader-child <dir> [deadlineMs]');
const DEADLINE_MS = Number(deadlineArg ?? 25_000);
/** How long the two others get to name a new leader, and all three to agree after the heal. */
const ELECTION_BOUND_MS = 10_000;
/** How long the cut-off leader gets to step down (Raft's check-quorum: about one election timeout; etcd: the lease's TTL, 2 s). */
const STEP_DOWN_BOUND_MS = 5_000;

export interface Report {
  ok: boolean;
  error?: string;
  /** Where the metadata lived: the nodes' Raft, or an etcd in the namespace. */
  consensus?: 'raft' | 'etcd';
  namespace?: NamespaceInfo;
  pids: Record<number, number>;
  /** From the first launch to every node's "ready". */
  startMs?: number;
  initialLeader?: number;
  /** From "ready" to all three naming one leader. */
  initialAgreeMs?: number;
  /** Connections as they were before the cut. */
  sources?: SourceCheck;
  isolated?: number;
  /** The leader the other two agreed on while the old one was cut off. */
  newLeader?: number;
  /** From the cut to both others naming newLeader. */
  electionMs?: number;
  othersViews?: Record<number, RaftView | undefined>;
  /** The cut-off node's METRICS over its client connection, taken once the others had agreed. */
  isolatedAnswered?: boolean;
  isolatedView?: RaftView;
  /** From the cut to the cut-off node no longer reporting itself leader (null if it did not within the bound). */
  stepDownMs?: number | null;
  isolatedViewAfterStepDown?: RaftView;
  /** Packets each cut (`from>to`) dropped before the heal. */
  dropped?: Record<string, number>;
  cutsInForce?: string[];
  /** The leader all three named after the heal, and how long that took from the heal. */
  healedLeader?: number;
  healMs?: number;
  healedViews?: Record<number, RaftView | undefined>;
  /** Connections after the heal, once all three agreed. */
  sourcesAfterHeal?: SourceCheck;
  unexpectedExits: { id: number; code: number | null; signal: NodeJS.Signals | null }[];
  /** When the scenario failed: the cuts' counters, every node's view and the connections at that moment. */
  atFailure?: { dropped?: Record<string, number>; views: Record<number, RaftView | undefined>; connections: string[] };
  /** Warning-or-worse log lines of the nodes (truncated), for a failure's message. */
  problems?: string;
  totalMs?: number;
}

const started = Date.now();
const report: Report = { ok: false, pids: {}, unexpectedExits: [] };
let cluster: NetnsCluster | undefined;

async function scenario(): Promise<void> {
  report.namespace = await prepareNamespace(3);
  const launchAt = Date.now();
  cluster = await NetnsCluster.start(dir as string, {
    nodes: 3,
    onLaunch: (id, pid) => {
      report.pids[id] = pid;
      process.stderr.write(`netns-node ${id} ${pid}\n`);
    },
  });
  const readyAt = Date.now();
  report.startMs = readyAt - launchAt;
  const c = cluster;
  report.consensus = c.consensus;

  const initial = await c.agreedLeader(c.ids, ELECTION_BOUND_MS);
  report.initialLeader = initial.leader;
  report.initialAgreeMs = Date.now() - readyAt;
  report.sources = await c.sourceCheck();

  const isolated = initial.leader;
  const others = c.ids.filter((id) => id !== isolated);
  report.isolated = isolated;
  const cutAt = Date.now();
  await c.isolate(isolated);
  report.cutsInForce = c.activeCuts();

  // The step-down of the cut-off leader is watched meanwhile (over its client port, which is not cut).
  const stepDown = (async () => {
    const bound = cutAt + STEP_DOWN_BOUND_MS;
    while (Date.now() < bound) {
      const view = await c.raftView(isolated);
      if (view !== undefined && view.state !== 'Leader') {
        report.stepDownMs = Date.now() - cutAt;
        report.isolatedViewAfterStepDown = view;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    report.stepDownMs = null;
  })();

  const elected = await c.agreedLeader(others, ELECTION_BOUND_MS, (leader) => leader !== isolated);
  report.electionMs = Date.now() - cutAt;
  report.newLeader = elected.leader;
  report.othersViews = elected.views;

  const isolatedView = await c.raftView(isolated);
  report.isolatedAnswered = isolatedView !== undefined;
  if (isolatedView !== undefined) report.isolatedView = isolatedView;
  await stepDown;
  report.dropped = await c.dropped();

  const healAt = Date.now();
  await c.heal();
  const healed = await c.agreedLeader(c.ids, ELECTION_BOUND_MS);
  report.healMs = Date.now() - healAt;
  report.healedLeader = healed.leader;
  report.healedViews = healed.views;
  report.sourcesAfterHeal = await c.sourceCheck();
  report.ok = true;
}

let finishing = false;

async function finish(error: unknown): Promise<void> {
  if (finishing) return;
  finishing = true;
  if (error !== undefined) report.error = error instanceof Error ? error.message : String(error);
  if (cluster !== undefined && error !== undefined) {
    const c = cluster;
    const views: Record<number, RaftView | undefined> = {};
    for (const id of c.ids) views[id] = await c.raftView(id);
    const dropped = await c.dropped().catch((problem: unknown) => {
      report.problems = `nft counters: ${problem instanceof Error ? problem.message : String(problem)}`;
      return undefined;
    });
    const connections = (await c.tcpEnds().catch(() => [])).map(
      (end) => `${end.local}:${end.localPort} -> ${end.remote}:${end.remotePort} (pid ${end.pid ?? '?'})`,
    );
    report.atFailure = { views, connections, ...(dropped === undefined ? {} : { dropped }) };
  }
  if (cluster !== undefined) {
    report.unexpectedExits = [...cluster.unexpectedExits()];
    const problems = [report.problems ?? '', cluster.problems()].filter((text) => text !== '').join('\n');
    if (problems !== '') report.problems = problems.slice(0, 4_000);
    await cluster.close().catch(() => undefined);
  }
  report.totalMs = Date.now() - started;
  const ok = report.ok && report.error === undefined;
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(ok ? 0 : 1));
}

process.once('SIGTERM', () => void finish(new Error('stopped by SIGTERM')));
const deadline = setTimeout(() => void finish(new Error(`the scenario did not finish within ${DEADLINE_MS} ms`)), DEADLINE_MS);
scenario().then(
  () => {
    clearTimeout(deadline);
    void finish(undefined);
  },
  (error: unknown) => {
    clearTimeout(deadline);
    void finish(error);
  },
);
