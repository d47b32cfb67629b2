// Three Walrus nodes on loopback, one Raft group from one static cluster.nodes config: what it
// costs that any node serves any request (issue 13). One topic per repetition, its open segment
// led by node L (STATE <topic> names it: REGISTER places topics by a hash over the live nodes);
// F is another node. Four rows of 256 B entries, 64 requests in flight on one connection:
// - PUT direct:    PUTs through L, which appends them itself;
// - PUT forwarded: PUTs through F, which forwards each to L (one node-to-node `append`);
// - GET local:     GETs through L of entries L holds;
// - GET remote:    GETs through F, served from L's segment (a `take` and then a `settle` per entry).
// The two GET rows read what the two PUT rows wrote, in that order, so each reads its own count.
// Then a second cluster with replication.factor 3 (acks quorum; issue 14) runs the direct rows
// again: PUT and GET through L, each PUT acknowledged once two of the three nodes hold it.
// Each figure is the median of the repetitions; CPU per operation is the sum over the three node
// processes (/proc/<pid>/stat). Targets: forwarded PUT ≥ 0.5 × direct PUT ops/s, remote GET ≥
// 0.5 × local GET ops/s; PUT direct with factor 3 ≥ 0.5 × PUT direct (factor 1).
//
// The nodes are started by bench/walrus-nodes.ts: each a `walrus start --config FILE --node-id N` child of this process with its own temp
// data directory, storage.fsync interval every 1000 ms (as the server benchmark's node; `--fsync each` syncs every entry) and
// segments.maxEntries large enough that no rollover happens during a row; all are stopped by PID
// (SIGTERM, then SIGKILL) however the run ends.
//
//   npm run bench -- cluster            # full run
//   npm run bench -- cluster --smoke    # a few seconds (CI)
//   npm run bench -- cluster --fsync each   # every entry synced before its acknowledgement

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WalrusClient } from '../src/client/index.js';
import {
  drive,
  formatMs,
  formatRate,
  installExitHook,
  loadAverage,
  markdownTable,
  type Operation,
  percentile,
  randomPayload,
  type Sizes,
  temporary,
} from './server.bench.js';
import { registerTopic, startWalrusNodes, type WalrusNodes } from './walrus-nodes.js';

export interface ClusterBenchOptions {
  readonly smoke: boolean;
  /** storage.fsync of the nodes: `interval` (every 1000 ms, the default) or `each` (every entry synced before its acknowledgement). */
  readonly fsync?: 'interval' | 'each';
}

const FULL: Sizes = { ops: 30_000, repetitions: 3, warmUpOps: 3_000 };
const SMOKE: Sizes = { ops: 1_000, repetitions: 1, warmUpOps: 200 };

const NODES = 3;
const PAYLOAD_BYTES = 256;
const PIPELINE_DEPTH = 64;
/** Targets of issue 13: the cross-node row against its one-node counterpart. */
const TARGET_RATIO = 0.5;

type RowName = 'PUT direct' | 'PUT forwarded' | 'GET local' | 'GET remote' | 'PUT factor 3' | 'GET factor 3';
const ROWS: readonly RowName[] = ['PUT direct', 'PUT forwarded', 'GET local', 'GET remote', 'PUT factor 3', 'GET factor 3'];
/** The rows of the replicated cluster: PUT and GET through the segment's leader. */
const REPLICATED_ROWS: readonly RowName[] = ['PUT factor 3', 'GET factor 3'];

interface Sample {
  readonly opsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU µs per operation, summed over the three nodes. */
  readonly nodesCpuUs: number;
  /** CPU µs per operation of this (client) process. */
  readonly clientCpuUs: number;
}

async function timeRow(cluster: WalrusNodes, count: number, operation: Operation, latencies: Float64Array): Promise<Sample> {
  const cpuBefore = cluster.cpuSeconds();
  const clientBefore = process.cpuUsage();
  const lanes = Array.from({ length: PIPELINE_DEPTH }, () => operation);
  const ms = await drive(count, lanes, latencies);
  const client = process.cpuUsage(clientBefore);
  const cpu = cluster.cpuSeconds() - cpuBefore;
  const sorted = latencies.slice(0, count).sort();
  return {
    opsPerSecond: (count * 1000) / ms,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    nodesCpuUs: (cpu * 1e6) / count,
    clientCpuUs: (client.user + client.system) / count,
  };
}

/** The four rows on a fresh topic: returns the samples and the nodes used. */
async function measureTopic(
  cluster: WalrusNodes,
  topic: string,
  count: number,
  payload: string,
  latencies: Float64Array,
): Promise<{ samples: Map<RowName, Sample>; leader: number; other: number }> {
  const leader = await registerTopic(cluster, topic, 1);
  const other = cluster.ids.find((id) => id !== leader) ?? 0;
  const direct = cluster.client(leader);
  const forwarded = cluster.client(other);
  const put =
    (client: WalrusClient): Operation =>
    () =>
      client.put(topic, payload);
  const get =
    (client: WalrusClient): Operation =>
    async () => {
      const value = await client.get(topic);
      if (value === null || value.length !== PAYLOAD_BYTES)
        throw new Error(`GET ${topic} returned ${value === null ? 'EMPTY' : `${value.length} chars`}`);
    };
  const samples = new Map<RowName, Sample>();
  samples.set('PUT direct', await timeRow(cluster, count, put(direct), latencies));
  samples.set('PUT forwarded', await timeRow(cluster, count, put(forwarded), latencies));
  samples.set('GET local', await timeRow(cluster, count, get(direct), latencies));
  samples.set('GET remote', await timeRow(cluster, count, get(forwarded), latencies));
  const after = await forwarded.state(topic);
  if (after.leader_node !== leader)
    throw new Error(`the open segment of ${topic} moved from node ${leader} to ${after.leader_node} during the rows`);
  if ((await direct.get(topic)) !== null) throw new Error(`${topic} still had entries after its GET rows`);
  return { samples, leader, other };
}

/** The replicated cluster's rows on a fresh topic: PUTs, then GETs, through the segment's leader. */
async function measureReplicated(
  cluster: WalrusNodes,
  topic: string,
  count: number,
  payload: string,
  latencies: Float64Array,
): Promise<{ samples: Map<RowName, Sample>; leader: number; other: number }> {
  const leader = await registerTopic(cluster, topic, 1);
  const client = cluster.client(leader);
  const samples = new Map<RowName, Sample>();
  samples.set('PUT factor 3', await timeRow(cluster, count, () => client.put(topic, payload), latencies));
  samples.set(
    'GET factor 3',
    await timeRow(
      cluster,
      count,
      async () => {
        const value = await client.get(topic);
        if (value === null || value.length !== PAYLOAD_BYTES)
          throw new Error(`GET ${topic} returned ${value === null ? 'EMPTY' : 'a short entry'}`);
      },
      latencies,
    ),
  );
  if ((await client.get(topic)) !== null) throw new Error(`${topic} still had entries after its GET row`);
  return { samples, leader, other: leader };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function medianSample(samples: readonly Sample[]): Sample {
  const of = (field: keyof Sample): number => median(samples.map((sample) => sample[field]));
  return { opsPerSecond: of('opsPerSecond'), p50: of('p50'), p99: of('p99'), nodesCpuUs: of('nodesCpuUs'), clientCpuUs: of('clientCpuUs') };
}

function table(rows: ReadonlyMap<RowName, Sample>): string {
  const header = ['row (64 in flight, 1 connection)', 'ops/s', 'p50 ms', 'p99 ms', 'nodes CPU µs/op', 'client CPU µs/op'];
  const lines = ROWS.map((name) => {
    const sample = rows.get(name);
    if (sample === undefined) return [name, '—', '—', '—', '—', '—'];
    return [
      name,
      formatRate(sample.opsPerSecond),
      formatMs(sample.p50),
      formatMs(sample.p99),
      sample.nodesCpuUs.toFixed(1),
      sample.clientCpuUs.toFixed(1),
    ];
  });
  return markdownTable(header, lines);
}

function target(rows: ReadonlyMap<RowName, Sample>, cross: RowName, base: RowName): string {
  const ratio = (rows.get(cross)?.opsPerSecond ?? Number.NaN) / (rows.get(base)?.opsPerSecond ?? Number.NaN);
  return `  target ${cross} ≥ ${TARGET_RATIO} × ${base}: ${ratio.toFixed(2)}× — ${ratio >= TARGET_RATIO ? 'MET' : 'NOT MET'}`;
}

export async function runClusterBench(options: ClusterBenchOptions): Promise<void> {
  const sizes = options.smoke ? SMOKE : FULL;
  const each = options.fsync === 'each';
  const storage = each ? 'storage: { fsync: each }' : 'storage: { fsync: interval, fsyncIntervalMs: 1000 }';
  const fsyncText = each ? 'storage.fsync each' : 'storage.fsync interval 1000 ms';
  const log = (line: string): void => console.log(line);
  log(
    `cluster: three Walrus nodes on loopback, any node serves any request (${options.smoke ? 'smoke sizes: indicative only' : 'full sizes'})`,
  );
  log(
    `  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${loadAverage()} (three nodes and this client share the cores; other processes skew every figure)`,
  );
  log(
    `  ${sizes.ops.toLocaleString('en-US')} operations of ${PAYLOAD_BYTES} B per row, ${PIPELINE_DEPTH} in flight on one connection; medians of ${sizes.repetitions} repetition(s), a fresh topic each; latency from call to reply`,
  );
  installExitHook();
  const root = mkdtempSync(join(tmpdir(), 'walrus-cluster-bench-'));
  temporary.add(root);
  const payload = randomPayload(PAYLOAD_BYTES);
  const latencies = new Float64Array(Math.max(sizes.ops, sizes.warmUpOps));
  const samples = new Map<RowName, Sample[]>();
  const phase = async (factor: number, names: readonly RowName[], measure: typeof measureTopic): Promise<void> => {
    let cluster: WalrusNodes | undefined;
    try {
      cluster = await startWalrusNodes(root, [storage, 'segments: { maxEntries: 1000000000 }', `replication: { factor: ${factor} }`], {
        count: NODES,
        inFlightMax: PIPELINE_DEPTH,
        clientTimeoutMs: 30_000,
      });
      log(
        `  nodes: ${cluster.nodes.map((node) => `${node.id} (pid ${node.child.process.pid})`).join(', ')}; replication.factor ${factor}, ${fsyncText}, segments.maxEntries 1e9`,
      );
      // Untimed warm-up: the JIT of every process, the node-to-node connections.
      await measure(cluster, `cluster-warm-${Date.now()}`, sizes.warmUpOps, payload, latencies);
      for (let repetition = 1; repetition <= sizes.repetitions; repetition++) {
        const topic = `cluster-${Date.now()}-${repetition}`;
        const measured = await measure(cluster, topic, sizes.ops, payload, latencies);
        for (const name of names) {
          const sample = measured.samples.get(name);
          if (sample === undefined) continue;
          samples.set(name, [...(samples.get(name) ?? []), sample]);
          const through = name === 'PUT forwarded' || name === 'GET remote' ? measured.other : measured.leader;
          log(
            `    #${repetition} ${name.padEnd(14)} via node ${through} (L = ${measured.leader}) ${formatRate(sample.opsPerSecond).padStart(8)} ops/s  p50 ${formatMs(sample.p50).padStart(7)} ms  p99 ${formatMs(sample.p99).padStart(7)} ms  nodes CPU ${sample.nodesCpuUs.toFixed(1).padStart(6)} µs/op`,
          );
        }
      }
      for (const node of cluster.nodes) {
        for (const line of node.child.matching(/"level":[4-6]\d/, 5, /"msg":"ready"/))
          log(`  node ${node.id} logged: ${line.slice(0, 300)}`);
      }
    } finally {
      await cluster?.stop().catch((error: unknown) => log(`  could not stop a node: ${String(error)}`));
    }
  };
  try {
    await phase(
      1,
      ROWS.filter((name) => !REPLICATED_ROWS.includes(name)),
      measureTopic,
    );
    await phase(3, REPLICATED_ROWS, measureReplicated);
  } finally {
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  const rows = new Map<RowName, Sample>();
  for (const [name, list] of samples) rows.set(name, medianSample(list));
  log(`\n  load average at end: ${loadAverage()}`);
  log(`\n${table(rows)}\n`);
  log(target(rows, 'PUT forwarded', 'PUT direct'));
  log(target(rows, 'GET remote', 'GET local'));
  log(target(rows, 'PUT factor 3', 'PUT direct'));
}
