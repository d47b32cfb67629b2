// Runs the benchmark suites and prints their figures, side by side within each suite.
// Usage: npm run bench [-- SUITE... [--smoke] [--backend LIST] [--fsync each]]   (no names: every suite)
//        npm run bench:engine [-- --smoke] [-- --backend fd,mmap,uring]
// `kernel` is a benchmark.js suite (ops/s ± error); `engine` runs the fixed-count workloads W1–W6
// (bench/engine.bench.ts); `raft` measures commits per second and failover (bench/raft.bench.ts);
// `server` runs a Walrus node against redis-server over loopback (bench/server.bench.ts), `flood`
// only its flood row (a new client's first reply under a write flood); `cluster` three nodes on
// loopback, PUT and GET through the node that holds the topic and through another (bench/cluster.bench.ts);
// `jetstream` three replicated Walrus nodes against a three-server NATS JetStream R3 cluster, the same
// 256 B publish→ack and read workload (bench/jetstream.bench.ts; skipped without nats-server);
// `failover` SIGKILLs the open segment's leader again and again and times writes resuming (bench/failover.bench.ts);
// `metadata` times REGISTERs and rollovers on the built-in Raft and on consensus-etcd (bench/metadata.bench.ts).
// `metrics` is a benchmark.js suite: what the node's request counting and a /metrics render cost (bench/metrics.bench.ts).
// `batches` produces and consumes a million 256 B entries with Walrus's producer and consumer (MPUT, MFETCH, MGET),
// Redis Streams and NATS JetStream, and the engine's own appendBatch/readBatch (bench/throughput.bench.ts);
// `--count N` sets the entries a row, `--rounds N` the rounds of each (median shown; default 3), `--svg FILE` draws its table.
// `--smoke` applies to `engine`, `raft`, `server`, `flood`, `cluster`, `jetstream`, `failover`, `metadata` and `batches`, `--backend` to `engine` only: a comma list of
// backends to run side by side (default: every backend that can run here); `--fsync each` to `cluster`
// only: its nodes sync every entry before acknowledging it (default: interval, every 1000 ms).

import type Benchmark from 'benchmark';
import { applyProcessSwitches } from '../src/commands/process-switches.js';
import { runClusterBench } from './cluster.bench.js';
import { type EngineBackend, runEngineBench } from './engine.bench.js';
import { runFailoverBench } from './failover.bench.js';
import { runJetStreamBench } from './jetstream.bench.js';
import { kernelSuite } from './kernel.bench.js';
import { runMetadataBench } from './metadata.bench.js';
import { metricsSuite } from './metrics.bench.js';
import { runRaftBench } from './raft.bench.js';
import { runFloodBench, runServerBench } from './server.bench.js';
import { runThroughputBench } from './throughput.bench.js';

interface Options {
  smoke: boolean;
  /** Empty: every backend that can run here. */
  backends: EngineBackend[];
  /** The cluster suite's storage.fsync schedule. */
  fsync: 'interval' | 'each';
  /** The failover suite's consensus. */
  consensus: 'raft' | 'etcd';
  /** The batches suite's entries a row. */
  count?: number;
  /** Where the batches suite draws its table. */
  svg?: string;
  /** The batches suite's rounds a row. */
  rounds?: number;
}

const SUITES: Record<string, (options: Options) => Promise<void>> = {
  kernel: () => runBenchmarkSuite('kernel', kernelSuite()),
  metrics: () => runBenchmarkSuite('metrics', metricsSuite()),
  engine: (options) => runEngineBench(options),
  raft: (options) => runRaftBench(options),
  server: (options) => runServerBench(options),
  flood: (options) => runFloodBench(options),
  cluster: (options) => runClusterBench(options),
  jetstream: (options) => runJetStreamBench(options),
  failover: (options) => runFailoverBench(options),
  metadata: (options) => runMetadataBench(options),
  batches: (options) =>
    runThroughputBench({
      smoke: options.smoke,
      ...(options.count === undefined ? {} : { count: options.count }),
      ...(options.svg === undefined ? {} : { svg: options.svg }),
      ...(options.rounds === undefined ? {} : { rounds: options.rounds }),
    }),
};

const BACKENDS: readonly EngineBackend[] = ['fd', 'mmap', 'uring'];

function runBenchmarkSuite(name: string, suite: Benchmark.Suite): Promise<void> {
  return new Promise((done) => {
    console.log(`\n${name}`);
    suite
      .on('cycle', (event: Benchmark.Event) => {
        const bench = event.target;
        const hz = bench.hz ?? 0;
        const rme = bench.stats?.rme ?? 0;
        console.log(`  ${String(bench.name).padEnd(50)} ${Math.round(hz).toLocaleString('en-US').padStart(12)} ops/s  ±${rme.toFixed(1)}%`);
      })
      .on('complete', () => done())
      .run({ async: true });
  });
}

/** A batches-suite option's value as a positive integer, or the usage error. */
function positiveInteger(name: string, value: string | undefined): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 1)
    fail(`${name} takes a positive integer (for the batches suite); got ${value ?? 'nothing'}`);
  return number;
}

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function parseArguments(args: readonly string[]): { names: string[]; options: Options } {
  const names: string[] = [];
  const options: Options = { smoke: false, backends: [], fsync: 'interval', consensus: 'raft' };
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? '';
    if (arg === '--smoke') {
      options.smoke = true;
    } else if (arg === '--backend' || arg.startsWith('--backend=')) {
      const value = arg === '--backend' ? args[++index] : arg.slice('--backend='.length);
      const list = (value ?? '').split(',').filter((name) => name !== '');
      const wrong = list.filter((name) => !BACKENDS.includes(name as EngineBackend));
      if (list.length === 0 || wrong.length > 0) fail(`--backend takes a comma list of ${BACKENDS.join(', ')}; got ${value ?? 'nothing'}`);
      options.backends = [...new Set(list)] as EngineBackend[];
    } else if (arg === '--fsync' || arg.startsWith('--fsync=')) {
      const value = arg === '--fsync' ? args[++index] : arg.slice('--fsync='.length);
      if (value !== 'each' && value !== 'interval')
        fail(`--fsync takes each or interval (for the cluster suite); got ${value ?? 'nothing'}`);
      options.fsync = value;
    } else if (arg === '--consensus' || arg.startsWith('--consensus=')) {
      const value = arg === '--consensus' ? args[++index] : arg.slice('--consensus='.length);
      if (value !== 'raft' && value !== 'etcd') fail(`--consensus takes raft or etcd (for the failover suite); got ${value ?? 'nothing'}`);
      options.consensus = value;
    } else if (arg === '--count' || arg.startsWith('--count=')) {
      options.count = positiveInteger('--count', arg === '--count' ? args[++index] : arg.slice('--count='.length));
    } else if (arg === '--rounds' || arg.startsWith('--rounds=')) {
      options.rounds = positiveInteger('--rounds', arg === '--rounds' ? args[++index] : arg.slice('--rounds='.length));
    } else if (arg === '--svg' || arg.startsWith('--svg=')) {
      const value = arg === '--svg' ? args[++index] : arg.slice('--svg='.length);
      if (value === undefined || value === '') fail('--svg takes a file path (for the batches suite)');
      options.svg = value;
    } else if (arg.startsWith('-')) {
      fail(
        `unknown option ${arg}; known: --smoke, --backend fd,mmap,uring, --fsync each|interval, --consensus raft|etcd, --count N, --rounds N, --svg FILE`,
      );
    } else {
      names.push(arg);
    }
  }
  const unknown = names.filter((name) => !(name in SUITES));
  if (unknown.length > 0) fail(`unknown suite(s): ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}`);
  return { names, options };
}

// This runner owns the process: WALRUS_DISABLE_NATIVE=1 puts the engine on the zlib path, as for `walrus`.
applyProcessSwitches();
const { names, options } = parseArguments(process.argv.slice(2));
for (const name of names.length === 0 ? Object.keys(SUITES) : names) {
  const suite = SUITES[name];
  if (suite !== undefined) await suite(options);
}
