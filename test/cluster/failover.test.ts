// Failover of replicated segments on three real nodes (replication.factor 3, acks quorum, fsync
// `each`; issue 14): the node leading a topic's open segment is killed (SIGKILL) or frozen
// (SIGSTOP for 10 s) while two writers PUT through the other nodes and one through it. The Raft
// leader seals the segment at what the other replicas hold and a live replica leads the next
// one: writes resume, and the gap is measured. After the node is back, a drain through another
// node and a FETCH of every position must show every acknowledged entry exactly once, in each
// writer's order, nothing that was refused, and no entry past a seal.

import test from 'ava';
import { ClientError } from '../../src/client/index.js';
import { type TestCluster, withCluster } from '../helpers/cluster.js';
import { clean, describeReport, History } from '../helpers/history.js';

const CONFIG = 'replication:\n  factor: 3\n  commitTimeoutMs: 1500\nfailover:\n  timeoutMs: 1500\n';
const ENV = { WALRUS_MAX_SEGMENT_ENTRIES: '1000000' };

/** The outcome of a PUT that failed: whether it may have been applied. */
function outcomeOf(error: unknown): 'unsure' | 'refused' {
  if (!(error instanceof ClientError)) return 'unsure';
  if (error.code === 'TIMEOUT' || error.code === 'CONNECTION') return 'unsure';
  return ['PEER_TIMEOUT', 'NOT_COMMITTED', 'CLOSED'].includes(error.serverCode ?? '') ? 'unsure' : 'refused';
}

interface Writer {
  readonly name: string;
  readonly via: number;
  /** performance.now() of each acknowledgement. */
  readonly ackTimes: number[];
  readonly errors: Map<string, number>;
}

/** PUTs through node `via` until `stop()` says so, one at a time, each a new payload; never rejects. */
async function write(cluster: TestCluster, history: History, writer: Writer, topic: string, stop: () => boolean): Promise<void> {
  for (let sequence = 0; !stop(); sequence++) {
    const payload = `${writer.name}-${sequence}`;
    const settle = history.put(writer.name, payload);
    try {
      await cluster.client(writer.via).put(topic, payload);
      settle('acked');
      writer.ackTimes.push(performance.now());
    } catch (error) {
      settle(outcomeOf(error));
      const code = error instanceof ClientError ? `${error.code}/${error.serverCode ?? '-'}` : String(error);
      writer.errors.set(code, (writer.errors.get(code) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** The longest stretch without any acknowledgement that covers `at` (ms), over all writers. */
/** How long after a fault a stretch without acknowledgements may start and count as its gap. */
const GAP_WINDOW_MS = 5_000;
/** Acknowledgements after a fault that show writes resumed. */
const RESUMED_ACKS = 20;

function gapAround(writers: readonly Writer[], at: number): number {
  // The longest stretch between consecutive acknowledgements that ends after the fault and starts
  // within GAP_WINDOW_MS of it (the acknowledgements of PUTs in flight at the fault come first).
  const times = writers.flatMap((writer) => writer.ackTimes).sort((a, b) => a - b);
  const from = times.filter((time) => time <= at).pop() ?? at;
  let longest = 0;
  let previous = from;
  for (const time of times) {
    if (time <= from) continue;
    if (previous > at + GAP_WINDOW_MS) break;
    longest = Math.max(longest, time - previous);
    previous = time;
  }
  return previous === from ? Number.POSITIVE_INFINITY : longest;
}

/** Reads back everything: FETCH of every position of every segment (through `via`), then a GET drain. */
async function readBack(cluster: TestCluster, history: History, via: number, topic: string, t: { log(...values: unknown[]): void }) {
  const client = cluster.client(via);
  const state = await client.state(topic);
  for (let segment = 1; segment <= state.current_segment; segment++) {
    const sealed = state.sealed_segments[segment];
    for (let offset = 0; ; offset++) {
      const entry = await client.fetch(topic, segment, offset);
      if (entry === null) {
        if (sealed !== undefined && offset !== sealed) throw new Error(`segment ${segment} sealed at ${sealed} answers EMPTY at ${offset}`);
        break;
      }
      if (sealed !== undefined && offset >= sealed) throw new Error(`segment ${segment} sealed at ${sealed} has an entry at ${offset}`);
      history.fetched(entry.payload, { segment, offset });
    }
  }
  for (let index = 0; index < 100_000; index++) {
    const entry = await client.get(topic);
    if (entry === null) break;
    history.got(entry);
  }
  t.log(`segments sealed at ${JSON.stringify(state.sealed_segments)}, led by ${JSON.stringify(state.segment_leaders)}`);
}

for (const fault of ['SIGKILL', 'SIGSTOP'] as const) {
  test.serial(
    `failover: ${fault === 'SIGKILL' ? 'kill -9' : 'SIGSTOP for 10 s'} of the open segment's leader during acknowledged writes (fsync each): writes resume, nothing acknowledged is lost or doubled`,
    async (t) => {
      t.timeout(150_000);
      await withCluster({ extraConfig: CONFIG, env: ENV, fsync: 'each' }, async (cluster) => {
        const topic = `failover-${fault.toLowerCase()}`;
        await cluster.client(1).register(topic);
        // Segments of 10^6 entries: the open segment stays on its node until the fault.
        const leader = (await cluster.client(1).state(topic)).leader_node;
        const others = cluster.ids.filter((id) => id !== leader) as [number, number];
        const raftLeader = await cluster.leader(others[0]);
        t.log(`segment leader ${leader}, Raft leader ${raftLeader}`);
        const history = new History();
        const writers: Writer[] = [
          { name: 'a', via: others[0], ackTimes: [], errors: new Map() },
          { name: 'b', via: others[1], ackTimes: [], errors: new Map() },
          { name: 'c', via: leader, ackTimes: [], errors: new Map() },
        ];
        let stopping = false;
        let stopLeaderWriter = false;
        const running = writers.map((writer) =>
          write(cluster, history, writer, topic, () => stopping || (writer.via === leader && stopLeaderWriter)),
        );
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        const before = await cluster.client(others[0]).state(topic);
        t.is(before.leader_node, leader, 'the open segment is still on its first node');
        const openAtFault = before.current_segment;
        const faultAt = performance.now();
        const node = cluster.node(leader);
        if (fault === 'SIGKILL') {
          stopLeaderWriter = true;
          await cluster.kill(leader);
        } else {
          node.child.kill('SIGSTOP');
        }
        // Writes through the other nodes resume once the segment has failed over.
        // (Each writer has one PUT out at a time, so the few acknowledged just as the fault hit
        // do not count as resumed: RESUMED_ACKS do.)
        const resumed = await until(
          () =>
            writers.slice(0, 2).reduce((sum, writer) => sum + writer.ackTimes.filter((time) => time > faultAt).length, 0) >= RESUMED_ACKS,
          20_000,
        );
        t.true(resumed, `no PUT acknowledged within 20 s of the fault; ${cluster.problems()}`);
        const gap = gapAround(writers.slice(0, 2), faultAt);
        t.log(`writes resumed: ${Math.round(gap)} ms without an acknowledgement across the ${fault}`);
        if (fault === 'SIGSTOP') {
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10_000 - (performance.now() - faultAt))));
          node.child.kill('SIGCONT');
          await new Promise((resolve) => setTimeout(resolve, 3_000));
        } else {
          await new Promise((resolve) => setTimeout(resolve, 2_000));
          cluster.launch(leader);
          await cluster.ready(leader, 30_000);
          await new Promise((resolve) => setTimeout(resolve, 1_000));
        }
        stopping = true;
        await Promise.all(running);
        for (const writer of writers)
          t.log(
            `writer ${writer.name} via ${writer.via}: ${writer.ackTimes.length} acknowledged, errors ${JSON.stringify(Object.fromEntries(writer.errors))}`,
          );
        const state = await cluster.client(others[0]).state(topic);
        t.true(state.current_segment > openAtFault, 'the open segment was sealed and a new one opened');
        t.not(state.segment_leaders[openAtFault + 1], leader, 'the next segment is led by a live replica');
        await readBack(cluster, history, others[1], topic, t);
        const report = history.check({ complete: true, getReplays: 0 });
        t.log(describeReport(report));
        t.true(clean(report), describeReport(report));
        t.true(report.counts.acked > 0);
      });
    },
  );
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}
