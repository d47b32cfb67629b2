// Batched produce and consume (issue 16), side by side in one run: a Walrus node with its producer
// and consumer (MPUT, MFETCH), redis-server with its best client settings (ioredis, XADD pipelined,
// XREAD COUNT 1000) and a nats-server JetStream (the `nats` client: async publish, pull consumer
// in batches of 1000). N entries of 256 bytes each way; each server is started here on its own
// temp directory and port and stopped by its PID. Rows:
// - produce: N entries, each acknowledged (Walrus: producer, linger 1 ms; Redis: 4 lanes of
//   64-deep XADD pipelines, 256 in flight; JetStream: 64 publishes in flight);
// - consume: the same N, read back in order (Walrus: a consumer from the start, reading by
//   position with MFETCH of 1000, 2 in flight; Redis: XREAD COUNT 1000; JetStream: a durable pull
//   consumer, fetches of 1000, acknowledged once per fetch with ack policy all);
// - consume, shared position: Walrus only, the same N again with MGET of 1000 (one in flight),
//   which consumes them (each entry goes to one reader);
// - produce, fsync each: Walrus `storage.fsync: each` against Redis `appendfsync always`
//   (JetStream 2.9 has no per-message sync: nats-server 2.10 added `sync_interval: always`);
// - the engine's own appendBatch / readBatch in this process (batches of 250): the ceiling;
// - 3-node cluster produce: three Walrus nodes with replication.factor 3 (the producer through
//   the segment's leader) against a three-server JetStream cluster with an R3 stream (64 async
//   publishes in flight, through the stream's leader), synced as the jetstream suite pairs them.
// All single servers run together for the whole of the rounds, and each round runs every
// server's rows one after another: first a warm-up round, unmeasured (another topic, key or
// stream; WARMUP_SHARE), so the measured rows see warmed-up processes, then --rounds rounds
// (default 3). The table shows each row's median round; each ratio is printed with the ratios of
// the rounds' pairs. The engine's rows run in this process after the rounds (run before them,
// they slowed the clients of the rows after them: Walrus produce 591k against 935k entries/s in
// two runs of this machine).
// Latency is per acknowledgement the client waits on: one producer send (Walrus), one pipeline
// (Redis), one publish (JetStream); for consume, one read call. Server CPU per entry comes from
// /proc; client CPU per entry is this process's (its clients': the ioredis and nats clients, the
// Walrus client; for the engine's rows, the engine itself). Targets (printed, not enforced): produce ≥ 5 × Redis and ≥ 10 × JetStream; consume ≥
// 1.5 × Redis and ≥ 5 × JetStream; with fsync each, produce ≥ 5 × Redis `always`.
//
//   npm run bench -- batches                       # 1,000,000 entries a row (a few minutes)
//   npm run bench -- batches --count 100000        # shorter
//   npm run bench -- batches --smoke               # 5,000 (CI)
//   npm run bench -- batches --svg docs/batches.svg   # also draws the table

import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Redis } from 'ioredis';
import { AckPolicy, connect, DeliverPolicy, type NatsConnection, RetentionPolicy, StorageType } from 'nats';
import { WalrusClient } from '../src/client/index.js';
import { Walrus } from '../src/engine/walrus.js';
import { freePorts } from '../test/helpers/net.js';
import { natsServerVersion, openStream, pairingFor, SUBJECT, startNatsCluster } from './jetstream.bench.js';
import { withProgress } from './progress.js';
import {
  type Child,
  formatMs,
  formatRate,
  installExitHook,
  launchRedis,
  launchWalrusNode,
  loadAverage,
  markdownTable,
  percentile,
  processCpuSeconds,
  randomPayload,
  startChild,
  temporary,
} from './server.bench.js';
import { registerTopic, startWalrusNodes } from './walrus-nodes.js';

export interface ThroughputBenchOptions {
  readonly smoke: boolean;
  /** Entries a row (default 1,000,000; 5,000 with smoke). */
  readonly count?: number;
  /** Where to write the SVG chart of the table (none when absent). */
  readonly svg?: string;
  /** Rounds of each single-server row; the table shows each row's median round (default 3; 1 with smoke). */
  readonly rounds?: number;
}

const PAYLOAD_BYTES = 256;
const START_TIMEOUT_MS = 30_000;
/** Redis: lanes of pipelines, each pipeline this deep. */
const REDIS_LANES = 4;
const REDIS_PIPELINE = 64;
const NATS_IN_FLIGHT = 64;
const READ_BATCH = 1000;
/**
 * Each single server first runs its rows once unmeasured, on WARMUP_SHARE of the entries (another
 * topic, key or stream), so that the measured rows see warmed-up processes, as a long-running
 * server is: in ad-hoc runs a fresh node took its first 1,000,000 entries at 800-870k entries/s
 * and its third at 1.19-1.48M (the node and the client both spent less CPU an entry as they ran),
 * and a warm-up of a tenth was not enough. The 3-node rows have no warm-up.
 */
const WARMUP_SHARE = 1;
let warming = false;
const phase = (label: string): string => (warming ? `${label} (warm-up)` : label);

/** Runs `rows` with warming set: what they measure is thrown away. */
async function warmUp(rows: () => Promise<unknown>): Promise<void> {
  warming = true;
  try {
    await rows();
  } finally {
    warming = false;
  }
}

/** The Walrus consumer's reads in flight (by position, so reading ahead loses nothing). */
const READ_AHEAD = 2;
/** Walrus: sends not acknowledged yet, at most (64 batches of 250). */
const PRODUCER_WINDOW = 64 * 250;
const ENGINE_BATCH = 250;

interface Measured {
  readonly row: string;
  readonly server: string;
  readonly entries: number;
  readonly ms: number;
  /** Latencies of what the client waited on, in ms, sorted. */
  readonly latencies: Float64Array;
  /** Server CPU seconds over the row (undefined: in this process). */
  readonly cpuSeconds: number | undefined;
  /** CPU seconds of this process (the client's side) over the row. */
  readonly clientCpuSeconds: number;
  readonly note?: string;
  /** The round it was measured in (from 1), for the rows run in rounds. */
  readonly round?: number;
}

const log = (line: string): void => console.log(line);

/** CPU seconds this process (the benchmark's clients) has used so far. */
function clientCpu(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

function findExecutable(name: string, extra: readonly string[] = []): string | undefined {
  for (const path of [
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter((dir) => dir !== '')
      .map((dir) => join(dir, name)),
    ...extra,
  ]) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Sorted copy of the first `count` latencies. */
function sorted(latencies: number[]): Float64Array {
  return Float64Array.from(latencies).sort();
}

// --- Walrus ------------------------------------------------------------------------------------

interface WalrusServer {
  readonly port: number;
  readonly child: Child;
}

function startWalrus(root: string, fsync: 'interval' | 'each'): Promise<WalrusServer> {
  return launchWalrusNode(
    root,
    `walrus-${fsync}-`,
    fsync === 'each' ? 'storage: { fsync: each }' : 'storage: { fsync: interval, fsyncIntervalMs: 1000 }',
  );
}

async function walrusProduce(server: WalrusServer, topic: string, count: number, payload: string, row: string): Promise<Measured> {
  const client = await WalrusClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
  try {
    await client.register(topic);
    return await produceThrough(client, topic, count, payload, row, () => processCpuSeconds(server.child.process.pid));
  } finally {
    await client.close();
  }
}

/** The produce row through `client` (the topic registered); `cpu` reads the servers' CPU seconds so far. */
async function produceThrough(
  client: WalrusClient,
  topic: string,
  count: number,
  payload: string,
  row: string,
  serversCpu: () => number,
): Promise<Measured> {
  const producer = client.producer({ topic, lingerMs: 1 });
  const latencies: number[] = [];
  let acked = 0;
  const cpu = serversCpu();
  const clientBefore = clientCpu();
  const started = performance.now();
  // The sends of one batch share its promise: each batch is followed once (its first send's
  // time to its acknowledgement is the latency), and at most PRODUCER_WINDOW sends are out.
  const batches: { readonly done: Promise<void>; end: number }[] = [];
  let oldest = 0;
  let ackedUpTo = 0;
  const work = (async () => {
    for (let index = 0; index < count; index++) {
      while (index - ackedUpTo >= PRODUCER_WINDOW) {
        const first = batches[oldest] as { readonly done: Promise<void>; end: number };
        await first.done;
        ackedUpTo = Math.max(ackedUpTo, first.end);
        oldest += 1;
      }
      const done = producer.send(payload);
      const last = batches[batches.length - 1];
      if (last !== undefined && last.done === done) {
        last.end = index + 1;
        continue;
      }
      const entry = { done, end: index + 1 };
      batches.push(entry);
      const sent = performance.now();
      void done.then(() => {
        latencies.push(performance.now() - sent);
        acked = Math.max(acked, entry.end);
      });
    }
    await Promise.all(batches.slice(oldest).map((batch) => batch.done));
    acked = count;
    await producer.close();
  })();
  await withProgress(phase(`Walrus ${row}`), count, () => acked, work);
  const ms = performance.now() - started;
  return {
    row,
    server: 'Walrus',
    entries: count,
    ms,
    latencies: sorted(latencies),
    cpuSeconds: serversCpu() - cpu,
    clientCpuSeconds: clientCpu() - clientBefore,
    note: "latency: a batch's first send() to its acknowledgement",
  };
}

/** Three Walrus nodes, replication.factor 3: the produce row through the segment's leader. */
async function walrusClusterProduce(root: string, count: number, payload: string, fsyncIntervalMs: number): Promise<Measured> {
  const dir = mkdtempSync(join(root, 'walrus-cluster-'));
  const cluster = await startWalrusNodes(
    dir,
    [
      `storage: { fsync: interval, fsyncIntervalMs: ${fsyncIntervalMs} }`,
      'segments: { maxEntries: 1000000000 }',
      'replication: { factor: 3, acks: quorum }',
    ],
    { clientTimeoutMs: 60_000 },
  );
  try {
    const leader = await registerTopic(cluster, 'batches', 1);
    return {
      ...(await produceThrough(cluster.client(leader), 'batches', count, payload, CLUSTER_ROW, () => cluster.cpuSeconds())),
      server: 'Walrus',
    };
  } finally {
    await cluster.stop();
  }
}

/** Three nats-servers, an R3 stream: 64 async publishes in flight through the stream's leader. */
async function natsClusterProduce(
  executable: string,
  root: string,
  count: number,
  payload: string,
): Promise<{ measured: Measured; pairing: string }> {
  const pairing = pairingFor(natsServerVersion(executable).parts);
  const servers = await startNatsCluster(executable, root, pairing);
  const connections: NatsConnection[] = [];
  try {
    const { admin, nc } = await openStream(servers);
    connections.push(admin, nc);
    const js = nc.jetstream({ timeout: 60_000 });
    const data = new TextEncoder().encode(payload);
    const cpu = (): number => servers.reduce((sum, server) => sum + processCpuSeconds(server.child.process.pid), 0);
    const latencies: number[] = [];
    let next = 0;
    let acked = 0;
    const before = cpu();
    const clientBefore = clientCpu();
    const started = performance.now();
    const lane = async (): Promise<void> => {
      while (next < count) {
        next += 1;
        const sent = performance.now();
        await js.publish(SUBJECT, data);
        if (acked % 64 === 0) latencies.push(performance.now() - sent);
        acked += 1;
      }
    };
    await withProgress('JetStream R3 produce', count, () => acked, Promise.all(Array.from({ length: NATS_IN_FLIGHT }, () => lane())));
    return {
      measured: {
        row: CLUSTER_ROW,
        server: 'JetStream',
        entries: count,
        ms: performance.now() - started,
        latencies: sorted(latencies),
        cpuSeconds: cpu() - before,
        clientCpuSeconds: clientCpu() - clientBefore,
        note: `latency: one publish (${NATS_IN_FLIGHT} in flight, every 64th sampled); CPU of the three servers`,
      },
      pairing: pairing.description,
    };
  } finally {
    for (const connection of connections) await connection.close().catch(() => undefined);
    await Promise.all(servers.map((server) => server.child.stop()));
  }
}

/**
 * A Walrus read row through a client of its own: `read` reads `count` entries in order, calling
 * `got` with each batch, and checks that nothing is left after them.
 */
async function walrusReadRow(
  server: WalrusServer,
  count: number,
  row: string,
  note: string,
  read: (client: WalrusClient, got: (entries: readonly string[]) => number) => Promise<void>,
): Promise<Measured> {
  const client = await WalrusClient.connect({ host: '127.0.0.1', port: server.port, timeoutMs: 60_000 });
  try {
    const latencies: number[] = [];
    let received = 0;
    const cpu = processCpuSeconds(server.child.process.pid);
    const clientBefore = clientCpu();
    const started = performance.now();
    let asked = started;
    const got = (entries: readonly string[]): number => {
      const now = performance.now();
      latencies.push(now - asked);
      asked = now;
      if (entries.length === 0) throw new Error(`walrus: nothing more after ${received} of ${count} entries`);
      for (const entry of entries) if (entry.length !== PAYLOAD_BYTES) throw new Error(`walrus: an entry of ${entry.length} chars`);
      received += entries.length;
      return received;
    };
    const work = (async () => {
      await read(client, got);
      if (received !== count) throw new Error(`walrus: read ${received} entries, ${count} were written`);
    })();
    await withProgress(phase(`Walrus ${row}`), count, () => received, work);
    return {
      row,
      server: 'Walrus',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(latencies),
      cpuSeconds: processCpuSeconds(server.child.process.pid) - cpu,
      clientCpuSeconds: clientCpu() - clientBefore,
      note,
    };
  } finally {
    await client.close();
  }
}

/**
 * The consume row: a consumer reading by position from the start (MFETCH, READ_AHEAD reads in
 * flight), as XREAD reads by ID and consumes nothing. Ends with its position at the log's end.
 */
function walrusConsume(server: WalrusServer, topic: string, count: number): Promise<Measured> {
  const note = `latency: from one batch to the next (consumer from the start, MFETCH of ${READ_BATCH}, ${READ_AHEAD} in flight)`;
  return walrusReadRow(server, count, 'consume', note, async (client, got) => {
    const consumer = client.consumer({ topic, from: 'start', maxEntries: READ_BATCH, readAhead: READ_AHEAD });
    for await (const entries of consumer.batches()) if (got(entries) >= count) break;
    const { segment, offset } = consumer.position as { segment: number; offset: number };
    if ((await client.mfetch(topic, segment, offset, 1)).length !== 0) throw new Error('walrus: entries past the consume row');
  });
}

/**
 * The topic's shared position (MGET of READ_BATCH, one in flight: an MGET consumes what it reads,
 * so the consumer does not read ahead). No peer row: Redis's analogue would be XREADGROUP + XACK.
 */
function walrusConsumeShared(server: WalrusServer, topic: string, count: number): Promise<Measured> {
  return walrusReadRow(server, count, SHARED_ROW, `latency: one MGET of ${READ_BATCH}`, async (client, got) => {
    while (got(await client.mget(topic, READ_BATCH)) < count);
    if ((await client.mget(topic, 1)).length !== 0) throw new Error('walrus: entries left after the consume row');
  });
}

// --- Redis -------------------------------------------------------------------------------------

interface RedisServer {
  readonly port: number;
  readonly child: Child;
  readonly version: string;
}

function startRedis(executable: string, root: string, appendfsync: 'everysec' | 'always'): Promise<RedisServer> {
  return launchRedis(root, executable, appendfsync);
}

function redisClient(server: RedisServer): Redis {
  return new Redis({ host: '127.0.0.1', port: server.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
}

async function redisProduce(server: RedisServer, key: string, count: number, payload: string, row: string): Promise<Measured> {
  const client = redisClient(server);
  await client.connect();
  try {
    await client.del(key);
    const latencies: number[] = [];
    let next = 0;
    let acked = 0;
    const cpu = processCpuSeconds(server.child.process.pid);
    const clientBefore = clientCpu();
    const started = performance.now();
    const lane = async (): Promise<void> => {
      while (next < count) {
        const size = Math.min(REDIS_PIPELINE, count - next);
        next += size;
        const pipeline = client.pipeline();
        for (let index = 0; index < size; index++) pipeline.xadd(key, '*', 'd', payload);
        const sent = performance.now();
        const results = await pipeline.exec();
        latencies.push(performance.now() - sent);
        if (results === null || results.some(([error]) => error !== null)) throw new Error('redis: an XADD of the pipeline failed');
        acked += size;
      }
    };
    await withProgress(phase(`Redis ${row}`), count, () => acked, Promise.all(Array.from({ length: REDIS_LANES }, () => lane())));
    const ms = performance.now() - started;
    const length = await client.xlen(key);
    if (length !== count) throw new Error(`redis: the stream holds ${length} entries, ${count} were acknowledged`);
    return {
      row,
      server: 'Redis',
      entries: count,
      ms,
      latencies: sorted(latencies),
      cpuSeconds: processCpuSeconds(server.child.process.pid) - cpu,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: `latency: one pipeline of ${REDIS_PIPELINE} XADDs (${REDIS_LANES} in flight)`,
    };
  } finally {
    await client.quit();
  }
}

async function redisConsume(server: RedisServer, key: string, count: number): Promise<Measured> {
  const client = redisClient(server);
  await client.connect();
  try {
    const latencies: number[] = [];
    let received = 0;
    let after = '0-0';
    const cpu = processCpuSeconds(server.child.process.pid);
    const clientBefore = clientCpu();
    const started = performance.now();
    const work = (async () => {
      while (received < count) {
        const asked = performance.now();
        const reply = await client.xread('COUNT', READ_BATCH, 'STREAMS', key, after);
        latencies.push(performance.now() - asked);
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) throw new Error(`redis: nothing after ${after} at ${received} of ${count}`);
        for (const [, fields] of entries) if (fields[1]?.length !== PAYLOAD_BYTES) throw new Error('redis: an entry of the wrong size');
        after = (entries[entries.length - 1] as [string, string[]])[0];
        received += entries.length;
      }
    })();
    await withProgress(phase('Redis consume'), count, () => received, work);
    return {
      row: 'consume',
      server: 'Redis',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(latencies),
      cpuSeconds: processCpuSeconds(server.child.process.pid) - cpu,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: `latency: one XREAD COUNT ${READ_BATCH}`,
    };
  } finally {
    await client.quit();
  }
}

// --- NATS JetStream ----------------------------------------------------------------------------

interface NatsServer {
  readonly port: number;
  readonly child: Child;
  readonly logFile: string;
}

async function startNats(executable: string, root: string): Promise<NatsServer> {
  const dir = mkdtempSync(join(root, 'nats-'));
  const [port = 0] = await freePorts(1);
  const config = join(dir, 'nats.conf');
  const logFile = join(dir, 'nats.log');
  writeFileSync(
    config,
    [
      `listen: "127.0.0.1:${port}"`,
      `log_file: ${JSON.stringify(logFile)}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'store'))} }`,
      '',
    ].join('\n'),
  );
  const child = startChild(executable, ['-c', config], dir);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(logFile, 'utf8');
    } catch {
      // not written yet
    }
    if (/Server is ready/.test(text)) return { port, child, logFile };
    if (child.process.exitCode !== null || Date.now() > deadline) {
      await child.stop();
      throw new Error(`nats-server did not get ready: ${text.split('\n').slice(-10).join('\n')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function natsRows(server: NatsServer, count: number, payload: string, stream = 'BATCHES', subject = 'batches'): Promise<Measured[]> {
  const nc: NatsConnection = await connect({ servers: `127.0.0.1:${server.port}`, timeout: START_TIMEOUT_MS });
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name: stream, subjects: [subject], storage: StorageType.File, retention: RetentionPolicy.Limits });
    const js = nc.jetstream({ timeout: 60_000 });
    const data = new TextEncoder().encode(payload);
    const latencies: number[] = [];
    let next = 0;
    let acked = 0;
    let cpu = processCpuSeconds(server.child.process.pid);
    let clientBefore = clientCpu();
    let started = performance.now();
    const lane = async (): Promise<void> => {
      while (next < count) {
        next += 1;
        const sent = performance.now();
        await js.publish(subject, data);
        if (acked % 64 === 0) latencies.push(performance.now() - sent);
        acked += 1;
      }
    };
    await withProgress(phase('JetStream produce'), count, () => acked, Promise.all(Array.from({ length: NATS_IN_FLIGHT }, () => lane())));
    const produce: Measured = {
      row: 'produce',
      server: 'JetStream',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(latencies),
      cpuSeconds: processCpuSeconds(server.child.process.pid) - cpu,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: `latency: one publish (${NATS_IN_FLIGHT} in flight, every 64th sampled)`,
    };
    await jsm.consumers.add(stream, { durable_name: 'reader', ack_policy: AckPolicy.All, deliver_policy: DeliverPolicy.All });
    const consumer = await js.consumers.get(stream, 'reader');
    const reads: number[] = [];
    let received = 0;
    cpu = processCpuSeconds(server.child.process.pid);
    clientBefore = clientCpu();
    started = performance.now();
    const work = (async () => {
      while (received < count) {
        const asked = performance.now();
        const batch = await consumer.fetch({ max_messages: Math.min(READ_BATCH, count - received), expires: 5_000 });
        let last: { ackAck(): Promise<boolean> } | undefined;
        let got = 0;
        for await (const message of batch) {
          if (message.data.length !== PAYLOAD_BYTES) throw new Error('jetstream: a message of the wrong size');
          last = message;
          got += 1;
        }
        if (got === 0 || last === undefined) throw new Error(`jetstream: an empty fetch at ${received} of ${count}`);
        await last.ackAck();
        reads.push(performance.now() - asked);
        received += got;
      }
    })();
    await withProgress(phase('JetStream consume'), count, () => received, work);
    const consume: Measured = {
      row: 'consume',
      server: 'JetStream',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(reads),
      cpuSeconds: processCpuSeconds(server.child.process.pid) - cpu,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: `latency: one fetch of ${READ_BATCH} and its acknowledgement`,
    };
    return [produce, consume];
  } finally {
    await nc.close();
  }
}

// --- the engine alone --------------------------------------------------------------------------

async function engineRows(root: string, count: number, payload: string): Promise<Measured[]> {
  const dir = mkdtempSync(join(root, 'engine-'));
  const wal = await Walrus.open({ dataDir: dir, fsync: { everyMs: 1000 } });
  try {
    const batch = Array.from({ length: ENGINE_BATCH }, () => payload);
    const appends: number[] = [];
    let clientBefore = clientCpu();
    let started = performance.now();
    for (let written = 0; written < count; written += ENGINE_BATCH) {
      const at = performance.now();
      await wal.appendBatch('engine', written + ENGINE_BATCH <= count ? batch : batch.slice(0, count - written));
      appends.push(performance.now() - at);
    }
    const produce: Measured = {
      row: 'produce',
      server: 'engine',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(appends),
      cpuSeconds: undefined,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: `appendBatch of ${ENGINE_BATCH}, awaited one at a time`,
    };
    const reads: number[] = [];
    let received = 0;
    clientBefore = clientCpu();
    started = performance.now();
    while (received < count) {
      const at = performance.now();
      const entries = await wal.readBatch('engine', { maxBytes: 64 * 1024 });
      reads.push(performance.now() - at);
      if (entries.length === 0) throw new Error(`engine: readBatch empty at ${received} of ${count}`);
      received += entries.length;
    }
    const consume: Measured = {
      row: 'consume',
      server: 'engine',
      entries: count,
      ms: performance.now() - started,
      latencies: sorted(reads),
      cpuSeconds: undefined,
      clientCpuSeconds: clientCpu() - clientBefore,
      note: 'readBatch of 64 KiB',
    };
    return [produce, consume];
  } finally {
    await wal.close();
  }
}

// --- the rounds --------------------------------------------------------------------------------

/** The single servers of the run, all started before the first round and stopped after the last. */
interface Lineup {
  readonly walrus: WalrusServer;
  readonly walrusEach: WalrusServer;
  readonly redis?: { readonly everysec: RedisServer; readonly always: RedisServer };
  readonly nats?: NatsServer;
}

async function startLineup(root: string, redis: string | undefined, nats: string | undefined): Promise<Lineup> {
  const started: Child[] = [];
  const track = <T extends { readonly child: Child }>(server: T): T => {
    started.push(server.child);
    return server;
  };
  try {
    const walrus = track(await startWalrus(root, 'interval'));
    const walrusEach = track(await startWalrus(root, 'each'));
    const redisPair =
      redis === undefined
        ? undefined
        : { everysec: track(await startRedis(redis, root, 'everysec')), always: track(await startRedis(redis, root, 'always')) };
    const natsServer = nats === undefined ? undefined : track(await startNats(nats, root));
    return {
      walrus,
      walrusEach,
      ...(redisPair === undefined ? {} : { redis: redisPair }),
      ...(natsServer === undefined ? {} : { nats: natsServer }),
    };
  } catch (error) {
    await Promise.all(started.map((child) => child.stop()));
    throw error;
  }
}

async function stopLineup(lineup: Lineup): Promise<void> {
  const children = [lineup.walrus, lineup.walrusEach, lineup.redis?.everysec, lineup.redis?.always, lineup.nats].flatMap((server) =>
    server === undefined ? [] : [server.child],
  );
  await Promise.all(children.map((child) => child.stop()));
}

/** One round: every server's rows on `topic` (a key, a stream), one after another. */
async function roundOf(lineup: Lineup, topic: string, count: number, payload: string): Promise<Measured[]> {
  const measured: Measured[] = [];
  measured.push(await walrusProduce(lineup.walrus, topic, count, payload, 'produce'));
  measured.push(await walrusConsume(lineup.walrus, topic, count));
  measured.push(await walrusConsumeShared(lineup.walrus, topic, count));
  if (lineup.redis !== undefined) {
    measured.push(await redisProduce(lineup.redis.everysec, topic, count, payload, 'produce'));
    measured.push(await redisConsume(lineup.redis.everysec, topic, count));
  }
  if (lineup.nats !== undefined) measured.push(...(await natsRows(lineup.nats, count, payload, topic.toUpperCase(), topic)));
  measured.push(await walrusProduce(lineup.walrusEach, topic, count, payload, 'produce, fsync each'));
  if (lineup.redis !== undefined) measured.push(await redisProduce(lineup.redis.always, topic, count, payload, 'produce, fsync each'));
  return measured;
}

// --- the report --------------------------------------------------------------------------------

const CLUSTER_ROW = '3-node produce, R3';
const SHARED_ROW = 'consume, shared position';
const ROWS = ['produce', 'consume', SHARED_ROW, 'produce, fsync each', CLUSTER_ROW] as const;
const SERVERS = ['Walrus', 'Redis', 'JetStream', 'engine'] as const;

function rate(measured: Measured): number {
  return measured.entries / (measured.ms / 1000);
}

function tableLine(measured: Measured): string[] {
  const perEntryUs = measured.cpuSeconds === undefined ? '—' : ((measured.cpuSeconds * 1e6) / measured.entries).toFixed(2);
  return [
    measured.row,
    measured.server,
    formatRate(rate(measured)),
    ((rate(measured) * PAYLOAD_BYTES) / 1e6).toFixed(1),
    formatMs(percentile(measured.latencies, 0.5)),
    formatMs(percentile(measured.latencies, 0.99)),
    perEntryUs,
    ((measured.clientCpuSeconds * 1e6) / measured.entries).toFixed(2),
  ];
}

/**
 * Walrus against `peer` on `row`: the ratio of the two median rounds (the table's rows), with the
 * ratio of each round's pair after it (the rows of one round ran minutes apart at most).
 */
function ratio(
  results: readonly Measured[],
  rounds: readonly Measured[],
  row: string,
  peer: string,
  target: number | undefined,
  label = peer,
): string {
  const ours = results.find((measured) => measured.row === row && measured.server === 'Walrus');
  const theirs = results.find((measured) => measured.row === row && measured.server === peer);
  const goal = target === undefined ? 'no target' : `target ≥ ${target}×`;
  if (ours === undefined || theirs === undefined) return `  ${row}: Walrus / ${label}: not measured (${goal})`;
  const value = rate(ours) / rate(theirs);
  const verdict = target === undefined ? '' : `: ${value >= target ? 'met' : 'not met'}`;
  const paired = rounds.flatMap((measured) => {
    if (measured.row !== row || measured.server !== 'Walrus' || measured.round === undefined) return [];
    const pair = rounds.find((other) => other.row === row && other.server === peer && other.round === measured.round);
    return pair === undefined ? [] : [`${(rate(measured) / rate(pair)).toFixed(2)}×`];
  });
  const byRound = paired.length > 1 ? `; by round ${paired.join(', ')}` : '';
  return `  ${row}: Walrus / ${label} = ${value.toFixed(2)}× (${goal}${verdict}${byRound})`;
}

/** A grouped bar chart of entries/s: one group a row, one bar a server. */
function chart(results: readonly Measured[]): string {
  const colours: Record<string, string> = { Walrus: '#1f77b4', Redis: '#d62728', JetStream: '#2ca02c', engine: '#7f7f7f' };
  const max = Math.max(...results.map(rate));
  const width = 760;
  const left = 170;
  const barHeight = 16;
  const gap = 6;
  const groupGap = 18;
  let y = 40;
  const parts: string[] = [];
  for (const row of ROWS) {
    const inRow = SERVERS.map((server) => results.find((measured) => measured.row === row && measured.server === server)).filter(
      (measured): measured is Measured => measured !== undefined,
    );
    if (inRow.length === 0) continue;
    parts.push(`<text x="10" y="${y + barHeight}" font-size="13" font-weight="bold">${row}</text>`);
    for (const measured of inRow) {
      const length = Math.max(1, ((width - left - 120) * rate(measured)) / max);
      parts.push(
        `<rect x="${left}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="${colours[measured.server] ?? '#999'}"/>`,
        `<text x="${(left + length + 6).toFixed(1)}" y="${y + barHeight - 3}" font-size="12">${measured.server} ${formatRate(rate(measured))}/s</text>`,
      );
      y += barHeight + gap;
    }
    y += groupGap;
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 10}" font-family="sans-serif" role="img">`,
    '<title>Entries per second of each server, by row, in one run of the batches benchmark</title>',
    `<text x="10" y="22" font-size="15">Entries per second, 256 B each (more is better)</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

export async function runThroughputBench(options: ThroughputBenchOptions): Promise<void> {
  installExitHook();
  const count = options.count ?? (options.smoke ? 5_000 : 1_000_000);
  if (!Number.isSafeInteger(count) || count < ENGINE_BATCH) throw new Error(`--count must be an integer ≥ ${ENGINE_BATCH}, got ${count}`);
  const rounds = options.rounds ?? (options.smoke ? 1 : 3);
  if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${rounds}`);
  log(
    `\nbatches: produce and consume ${count.toLocaleString('en-US')} entries of ${PAYLOAD_BYTES} B, side by side, ${rounds} round${rounds === 1 ? '' : 's'} a row (load ${loadAverage()})`,
  );
  const redis = findExecutable('redis-server');
  const nats = findExecutable('nats-server', ['/usr/sbin/nats-server']);
  if (redis === undefined) log('  redis-server not found (apt-get install redis-server): the Redis rows are left out');
  if (nats === undefined) log('  nats-server not found (apt-get install nats-server): the JetStream rows are left out');
  else log('  JetStream produce with fsync each is left out: nats-server 2.9 has no per-message sync (2.10 added sync_interval: always)');
  const root = mkdtempSync(join(tmpdir(), 'walrus-batches-bench-'));
  temporary.add(root);
  const payload = randomPayload(PAYLOAD_BYTES);
  const measuredRounds: Measured[] = [];
  const done = (measured: Measured): void => {
    measuredRounds.push(measured);
    log(
      `  ${measured.row.padEnd(20)} ${measured.server.padEnd(10)} ${formatRate(rate(measured)).padStart(10)} entries/s  p50 ${formatMs(percentile(measured.latencies, 0.5))}  p99 ${formatMs(percentile(measured.latencies, 0.99))}`,
    );
  };
  try {
    const warm = Math.max(ENGINE_BATCH, Math.round(count * WARMUP_SHARE));
    // A topic (key, stream) a round, each written and read back within its round.
    const topics = Array.from({ length: rounds }, (_, index) => `batches_${index + 1}`);
    // Every server runs for the whole of the rounds (an idle one costs nothing), and each round
    // runs every server's rows, one after another: a round's rows meet the machine as it is then,
    // so a server is compared with the others of its own rounds, not with rows run minutes
    // apart. (This machine's speed drifts: run server after server, the Walrus produce rows gave
    // 756-862k entries/s, and the same rows run alone minutes later 1.14-1.37M; performance.md.)
    const lineup = await startLineup(root, redis, nats);
    try {
      await warmUp(() => roundOf(lineup, 'warmup', warm, payload));
      for (const [index, topic] of topics.entries()) {
        if (rounds > 1) log(`  round ${index + 1} of ${rounds}`);
        for (const measured of await roundOf(lineup, topic, count, payload)) done({ ...measured, round: index + 1 });
      }
    } finally {
      await stopLineup(lineup);
    }
    // The engine's own rows run in this process, after the servers' rows (whose clients run here).
    for (let round = 1; round <= rounds; round++) for (const measured of await engineRows(root, count, payload)) done(measured);
    // The cluster row: JetStream first, for its sync pairing (the Walrus nodes sync as its servers can).
    let fsyncIntervalMs = 1000;
    if (nats !== undefined) {
      const { measured, pairing } = await natsClusterProduce(nats, root, count, payload);
      log(`  3-node row pairing: ${pairing}`);
      fsyncIntervalMs = pairingFor(natsServerVersion(nats).parts).walrusFsyncIntervalMs;
      done(measured);
    }
    done(await walrusClusterProduce(root, count, payload, fsyncIntervalMs));
  } finally {
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  // Each row's median round (by entries/s); the 3-node rows ran once.
  const results = ROWS.flatMap((row) =>
    SERVERS.flatMap((server) => {
      const runs = measuredRounds
        .filter((measured) => measured.row === row && measured.server === server)
        .sort((a, b) => rate(a) - rate(b));
      const median = runs[Math.floor((runs.length - 1) / 2)];
      if (median === undefined) return [];
      const spread = runs.length > 1 ? ` (${runs.length} rounds: ${runs.map((run) => formatRate(rate(run))).join(', ')} entries/s)` : '';
      return [{ ...median, note: `${median.note ?? ''}${spread}` }];
    }),
  );
  const ordered = results;
  log('');
  log(
    markdownTable(
      ['row', 'server', 'entries/s', 'MB/s', 'p50 ms', 'p99 ms', 'server CPU µs/entry', 'client CPU µs/entry'],
      ordered.map((measured) => tableLine(measured)),
    ),
  );
  log('');
  for (const measured of ordered) if (measured.note !== undefined) log(`  ${measured.row} / ${measured.server}: ${measured.note}`);
  log('');
  log(ratio(results, measuredRounds, 'produce', 'Redis', 5));
  log(ratio(results, measuredRounds, 'produce', 'JetStream', 10));
  log(ratio(results, measuredRounds, 'consume', 'Redis', 1.5));
  log(ratio(results, measuredRounds, 'consume', 'JetStream', 5));
  log(ratio(results, measuredRounds, 'produce, fsync each', 'Redis', 5, 'Redis appendfsync always'));
  log(ratio(results, measuredRounds, CLUSTER_ROW, 'JetStream', undefined, 'JetStream R3'));
  if (options.svg !== undefined) {
    writeFileSync(options.svg, chart(ordered));
    log(`  chart: ${options.svg}`);
  }
}
