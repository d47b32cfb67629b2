// Walrus against NATS JetStream, both as three replicated servers on loopback, the same workload
// in the same run on the same machine: 256 B messages published with 64 outstanding at a time,
// each acknowledged once a majority of three replicas holds it, then read back.
//
// - Walrus: three `walrus start` nodes (bench/walrus-nodes.ts) with `replication: { factor: 3,
//   acks: quorum }`; PUTs through the node leading the topic's open segment (as the cluster
//   suite's "PUT factor 3" row), 64 in flight on one connection; then GETs through it, 64 in flight.
// - JetStream: three `nats-server` processes (Debian's; PATH, then /usr/sbin; NATS_SERVER_BIN names
//   another) as one cluster with JetStream on, each with its own config file, store directory,
//   client port and route port; one file stream with num_replicas 3 on one subject. `js.publish`
//   through the official client (npm `nats`) connected to the stream's leader, 64 publishes
//   outstanding (a publish resolves with the stream's ack: stored on a quorum); then a durable
//   pull consumer (explicit acks) read with `consume({ max_messages: 64 })`, which keeps pull
//   requests for up to 64 messages outstanding and refills them as they drain; every message is
//   acked (the last one with ackAck, inside the row's time).
// No nats-server here: the suite prints a skip line and returns.
//
// Durability: neither side waits for the disk before it acknowledges. JetStream syncs its file
// store on a timer: `sync_interval` (2.10 and later; default 2 min) or, before 2.10, a fixed 2 min.
// Walrus runs `storage.fsync: interval`. The pairing printed at the top:
// - nats-server ≥ 2.10: JetStream `sync_interval: 1s` against Walrus `fsyncIntervalMs: 1000`;
// - older (Debian bookworm ships 2.9.10, which has no `sync_interval`): JetStream's fixed 2 min
//   against Walrus `fsyncIntervalMs: 60000`, the longest Walrus takes (so Walrus syncs at least as
//   often). A third row then runs Walrus with 1000 ms, to show what that interval costs.
//
// Each repetition starts each system afresh (a new temp directory, new ports), runs an untimed
// warm-up (PUTs and reads of warm-up messages, then gone: GETs drain them, the stream is purged),
// the timed PUT row and then the timed read row, and stops it by PID before the next system
// starts, so only one system runs at a time; the order alternates between repetitions. Figures
// are medians of the repetitions. Server CPU is summed over the three server processes.
//
//   npm run bench -- jetstream            # 50,000 messages per row, 3 repetitions
//   npm run bench -- jetstream --smoke    # 300 per row, 1 repetition (CI)

import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  type JetStreamManager,
  type NatsConnection,
  RetentionPolicy,
  StorageType,
  type StreamInfo,
} from 'nats';
import { freePorts } from '../test/helpers/net.js';
import {
  type Child,
  drive,
  formatMs,
  formatRate,
  installExitHook,
  loadAverage,
  markdownTable,
  type Operation,
  percentile,
  processCpuSeconds,
  randomPayload,
  startChild,
  temporary,
} from './server.bench.js';
import { registerTopic, sleep, startWalrusNodes } from './walrus-nodes.js';

export interface JetStreamBenchOptions {
  readonly smoke: boolean;
}

interface Sizes {
  readonly ops: number;
  readonly repetitions: number;
  readonly warmUpOps: number;
}

const FULL: Sizes = { ops: 50_000, repetitions: 3, warmUpOps: 5_000 };
const SMOKE: Sizes = { ops: 300, repetitions: 1, warmUpOps: 100 };

const SERVERS = 3;
const PAYLOAD_BYTES = 256;
const WINDOW = 64;
const STREAM = 'BENCH';
export const SUBJECT = 'bench.put';
const CONSUMER = 'bench';
/** Bound of each wait for a server or a cluster to come up. */
const READY_TIMEOUT_MS = 30_000;
/** Bound of one timed row: well past a full row at a few hundred ops/s. */
const ROW_TIMEOUT_MS = 600_000;

interface Sample {
  readonly opsPerSecond: number;
  /** Milliseconds; NaN where there is no per-message request to time (the JetStream consume row). */
  readonly p50: number;
  readonly p99: number;
  /** CPU µs per message, summed over the three servers. */
  readonly serversCpuUs: number;
  /** CPU µs per message of this (client) process. */
  readonly clientCpuUs: number;
}

interface Measured {
  readonly put: Sample;
  readonly read: Sample;
  /** What the repetition line says about where the rows ran. */
  readonly note: string;
}

interface System {
  readonly name: string;
  /** Runs one repetition on a fresh cluster under `root`. */
  measure(root: string, sizes: Sizes, latencies: Float64Array): Promise<Measured>;
}

/** How the two sides' disk syncs are matched (see the header). */
export interface Pairing {
  readonly walrusFsyncIntervalMs: number;
  /** The `sync_interval` written to each server's config; undefined: the server cannot take one. */
  readonly jetStreamSyncInterval: string | undefined;
  readonly description: string;
}

// --- nats-server -----------------------------------------------------------------------------

export function findNatsServer(): string | undefined {
  const named = process.env.NATS_SERVER_BIN;
  const candidates = [
    ...(named === undefined || named === '' ? [] : [named]),
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .filter((dir) => dir !== '')
      .map((dir) => join(dir, 'nats-server')),
    '/usr/sbin/nats-server',
  ];
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `nats-server --version`: [major, minor, patch], or undefined when it does not say. */
export function natsServerVersion(executable: string): { text: string; parts: [number, number, number] | undefined } {
  const text = execFileSync(executable, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  const match = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return { text, parts: match === null ? undefined : [Number(match[1]), Number(match[2]), Number(match[3])] };
}

export function pairingFor(version: [number, number, number] | undefined): Pairing {
  const [major, minor] = version ?? [0, 0, 0];
  if (major > 2 || (major === 2 && minor >= 10))
    return {
      walrusFsyncIntervalMs: 1000,
      jetStreamSyncInterval: '1s',
      description: 'Walrus storage.fsync interval every 1000 ms  ↔  JetStream sync_interval 1s',
    };
  return {
    walrusFsyncIntervalMs: 60_000,
    jetStreamSyncInterval: undefined,
    description:
      'Walrus storage.fsync interval every 60000 ms (the longest it takes)  ↔  JetStream file store synced every 2 min (fixed before nats-server 2.10, which has no sync_interval)',
  };
}

export interface NatsServer {
  readonly name: string;
  readonly clientPort: number;
  readonly child: Child;
  /** Its log file (nats-server logs to stderr otherwise, which startChild does not scan). */
  readonly logFile: string;
}

function logLines(server: NatsServer): string[] {
  try {
    return readFileSync(server.logFile, 'utf8').split('\n');
  } catch {
    return [];
  }
}

/** Polls the server's log file for `pattern` every 50 ms; throws when it exits first or after `ms`. */
async function logLine(server: NatsServer, pattern: RegExp, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (logLines(server).some((line) => pattern.test(line))) return;
    const exited = server.child.process.exitCode !== null || server.child.process.signalCode !== null;
    if (exited || Date.now() > deadline)
      throw new Error(
        `nats-server ${server.name} ${exited ? 'exited' : `did not log ${pattern} within ${ms} ms`}; its log ends:\n${logLines(server).slice(-20).join('\n')}`,
      );
    await sleep(50);
  }
}

export async function startNatsCluster(executable: string, root: string, pairing: Pairing): Promise<NatsServer[]> {
  const ports = await freePorts(2 * SERVERS);
  const names = Array.from({ length: SERVERS }, (_, index) => `n${index + 1}`);
  const routePort = (index: number): number => ports[SERVERS + index] as number;
  const servers: NatsServer[] = [];
  try {
    for (const [index, name] of names.entries()) {
      const dir = mkdtempSync(join(root, `${name}-`));
      const routes = names.flatMap((_, other) => (other === index ? [] : [`"nats-route://127.0.0.1:${routePort(other)}"`]));
      const config = join(dir, 'nats.conf');
      writeFileSync(
        config,
        [
          `server_name: "${name}"`,
          `listen: "127.0.0.1:${ports[index]}"`,
          `log_file: ${JSON.stringify(join(dir, 'nats.log'))}`,
          `jetstream { store_dir: ${JSON.stringify(join(dir, 'store'))}${pairing.jetStreamSyncInterval === undefined ? '' : `, sync_interval: "${pairing.jetStreamSyncInterval}"`} }`,
          `cluster { name: "walrus-bench", listen: "127.0.0.1:${routePort(index)}", routes: [${routes.join(', ')}] }`,
          '',
        ].join('\n'),
      );
      servers.push({
        name,
        clientPort: ports[index] as number,
        child: startChild(executable, ['-c', config], dir),
        logFile: join(dir, 'nats.log'),
      });
    }
    await Promise.all(servers.map((server) => logLine(server, /Server is ready/, READY_TIMEOUT_MS)));
    return servers;
  } catch (error) {
    await Promise.all(servers.map((server) => server.child.stop()));
    throw error;
  }
}

/** Retries `attempt` every 250 ms until it succeeds; throws the last error after `ms`. */
async function retry<T>(what: string, ms: number, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${ms} ms: ${String(error)}`);
      await sleep(250);
    }
  }
}

/** Creates the R3 stream once the cluster has a JetStream meta leader; returns its info once every replica is current. */
async function createStream(admin: NatsConnection): Promise<{ jsm: JetStreamManager; info: StreamInfo }> {
  const jsm = await retry('JetStream API', READY_TIMEOUT_MS, () => admin.jetstreamManager());
  await retry('creating the stream (waiting for a meta leader)', READY_TIMEOUT_MS, () =>
    jsm.streams.add({
      name: STREAM,
      subjects: [SUBJECT],
      num_replicas: SERVERS,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
    }),
  );
  const info = await retry('waiting for the stream leader and current replicas', READY_TIMEOUT_MS, async () => {
    const info = await jsm.streams.info(STREAM);
    const replicas = info.cluster?.replicas ?? [];
    if (info.cluster?.leader === undefined || replicas.length !== SERVERS - 1 || !replicas.every((replica) => replica.current))
      throw new Error(`stream cluster ${JSON.stringify(info.cluster)}`);
    return info;
  });
  return { jsm, info };
}

/**
 * Creates the R3 stream on `servers` and connects to its leader (the runs go through the
 * stream's leader, as Walrus goes through its segment's leader); the admin connection, the
 * leader's, and the stream. Nothing is left open when it throws.
 */
export async function openStream(
  servers: readonly NatsServer[],
): Promise<{ admin: NatsConnection; nc: NatsConnection; jsm: JetStreamManager; info: StreamInfo }> {
  const admin = await connect({ servers: servers.map((server) => `127.0.0.1:${server.clientPort}`), timeout: READY_TIMEOUT_MS });
  try {
    const { jsm, info } = await createStream(admin);
    const leader = servers.find((server) => server.name === info.cluster?.leader);
    if (leader === undefined) throw new Error(`the stream leader ${info.cluster?.leader} is not a server of this run`);
    const nc = await connect({
      servers: `127.0.0.1:${leader.clientPort}`,
      noRandomize: true,
      ignoreClusterUpdates: true,
      timeout: READY_TIMEOUT_MS,
    });
    return { admin, nc, jsm, info };
  } catch (error) {
    await admin.close().catch(() => undefined);
    throw error;
  }
}

function jetStream(executable: string, pairing: Pairing): System {
  return {
    name: 'JetStream',
    async measure(root, sizes, latencies) {
      const payload = new TextEncoder().encode(randomPayload(PAYLOAD_BYTES));
      const servers = await startNatsCluster(executable, root, pairing);
      const connections: NatsConnection[] = [];
      const cpu = (): number => servers.reduce((sum, server) => sum + processCpuSeconds(server.child.process.pid), 0);
      try {
        const { admin, nc, jsm, info } = await openStream(servers);
        connections.push(admin, nc);
        const js = nc.jetstream({ timeout: 30_000 });
        const publish: Operation = async () => {
          await js.publish(SUBJECT, payload);
        };
        const consume = async (count: number, consumer: string): Promise<number> => {
          await jsm.consumers.add(STREAM, { durable_name: consumer, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
          const reader = await js.consumers.get(STREAM, consumer);
          const started = performance.now();
          const messages = await reader.consume({ max_messages: WINDOW });
          const guard = setTimeout(
            () => messages.stop(new Error(`consume of ${count} messages took over ${ROW_TIMEOUT_MS} ms`)),
            ROW_TIMEOUT_MS,
          );
          let received = 0;
          let last = 0;
          try {
            for await (const message of messages) {
              if (message.redelivered) throw new Error(`message ${message.seq} was redelivered`);
              if (message.data.length !== PAYLOAD_BYTES) throw new Error(`message ${message.seq} has ${message.data.length} bytes`);
              if (message.seq <= last) throw new Error(`message ${message.seq} after ${last}`);
              last = message.seq;
              received += 1;
              if (received < count) {
                message.ack();
              } else {
                await message.ackAck();
                break;
              }
            }
          } finally {
            clearTimeout(guard);
            messages.stop();
          }
          const ms = performance.now() - started;
          if (received !== count) throw new Error(`consumed ${received} of ${count} messages`);
          const state = await jsm.consumers.info(STREAM, consumer);
          if (state.num_pending !== 0) throw new Error(`consumer ${consumer} still has ${state.num_pending} messages pending`);
          return ms;
        };
        // Untimed warm-up: every process's JIT, the routes, the client paths; then gone.
        await drive(
          sizes.warmUpOps,
          Array.from({ length: WINDOW }, () => publish),
          latencies,
        );
        await consume(sizes.warmUpOps, `${CONSUMER}-warm`);
        await jsm.consumers.delete(STREAM, `${CONSUMER}-warm`);
        await jsm.streams.purge(STREAM);

        const put = await timed(cpu, sizes.ops, latencies, () =>
          drive(
            sizes.ops,
            Array.from({ length: WINDOW }, () => publish),
            latencies,
          ),
        );
        const stored = (await jsm.streams.info(STREAM)).state.messages;
        if (stored !== sizes.ops) throw new Error(`the stream holds ${stored} messages after ${sizes.ops} acknowledged publishes`);
        const read = await timed(cpu, sizes.ops, undefined, () => consume(sizes.ops, CONSUMER));
        for (const server of servers) {
          const lines = logLines(server);
          const ready = lines.findIndex((line) => /Server is ready/.test(line));
          // Route dials before the other servers listen are expected at start: not shown.
          const complaints = lines
            .slice(ready + 1)
            .filter((line) => /\[(ERR|WRN|FTL)\]/.test(line) && !/connect to route|routing to be established/.test(line));
          for (const line of complaints.slice(0, 3)) console.log(`    ${server.name} logged: ${line.slice(0, 300)}`);
        }
        return { put, read, note: `through ${info.cluster?.leader} (stream leader)` };
      } finally {
        for (const connection of connections) await connection.close().catch(() => undefined);
        await Promise.all(servers.map((server) => server.child.stop()));
      }
    },
  };
}

// --- Walrus ----------------------------------------------------------------------------------

function walrus(name: string, fsyncIntervalMs: number): System {
  return {
    name,
    async measure(root, sizes, latencies) {
      const payload = randomPayload(PAYLOAD_BYTES);
      const cluster = await startWalrusNodes(
        root,
        [
          `storage: { fsync: interval, fsyncIntervalMs: ${fsyncIntervalMs} }`,
          // No rollover during a row: the open segment stays on its leader.
          'segments: { maxEntries: 1000000000 }',
          'replication: { factor: 3, acks: quorum }',
        ],
        { inFlightMax: WINDOW },
      );
      try {
        const topic = `jetstream-${Date.now()}`;
        const leader = await registerTopic(cluster, topic, 1);
        const client = cluster.client(leader);
        const put: Operation = () => client.put(topic, payload);
        const get: Operation = async () => {
          const value = await client.get(topic);
          if (value === null || value.length !== PAYLOAD_BYTES)
            throw new Error(`GET ${topic} returned ${value === null ? 'EMPTY' : `${value.length} chars`}`);
        };
        const lanes = (operation: Operation): Operation[] => Array.from({ length: WINDOW }, () => operation);
        const cpu = (): number => cluster.cpuSeconds();
        // Untimed warm-up on the same topic, drained again by its GETs.
        await drive(sizes.warmUpOps, lanes(put), latencies);
        await drive(sizes.warmUpOps, lanes(get), latencies);
        const putSample = await timed(cpu, sizes.ops, latencies, () => drive(sizes.ops, lanes(put), latencies));
        const readSample = await timed(cpu, sizes.ops, latencies, () => drive(sizes.ops, lanes(get), latencies));
        if ((await client.get(topic)) !== null) throw new Error(`${topic} still had entries after its GET row`);
        const after = await client.state(topic);
        if (after.leader_node !== leader) throw new Error(`the open segment of ${topic} moved from node ${leader} to ${after.leader_node}`);
        for (const node of cluster.nodes) {
          for (const line of node.child.matching(/"level":[4-6]\d/, 3, /"msg":"ready"/))
            console.log(`    node ${node.id} logged: ${line.slice(0, 300)}`);
        }
        return { put: putSample, read: readSample, note: `through node ${leader} (segment leader)` };
      } finally {
        await cluster.stop();
      }
    },
  };
}

// --- timing and output -----------------------------------------------------------------------

/** Times `run` (which returns its elapsed ms); with `latencies`, p50 and p99 of its first `count`. */
async function timed(cpu: () => number, count: number, latencies: Float64Array | undefined, run: () => Promise<number>): Promise<Sample> {
  const cpuBefore = cpu();
  const clientBefore = process.cpuUsage();
  const ms = await run();
  const client = process.cpuUsage(clientBefore);
  const used = cpu() - cpuBefore;
  const sorted = latencies === undefined ? undefined : latencies.slice(0, count).sort();
  return {
    opsPerSecond: (count * 1000) / ms,
    p50: sorted === undefined ? Number.NaN : percentile(sorted, 0.5),
    p99: sorted === undefined ? Number.NaN : percentile(sorted, 0.99),
    serversCpuUs: (used * 1e6) / count,
    clientCpuUs: (client.user + client.system) / count,
  };
}

function median(values: readonly number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function medianSample(samples: readonly Sample[]): Sample {
  const of = (field: keyof Sample): number => median(samples.map((sample) => sample[field]));
  return {
    opsPerSecond: of('opsPerSecond'),
    p50: of('p50'),
    p99: of('p99'),
    serversCpuUs: of('serversCpuUs'),
    clientCpuUs: of('clientCpuUs'),
  };
}

const ms = (value: number): string => (Number.isNaN(value) ? '—' : formatMs(value));

function describe(sample: Sample): string {
  return `${formatRate(sample.opsPerSecond).padStart(8)} msg/s  p50 ${ms(sample.p50).padStart(7)} ms  p99 ${ms(sample.p99).padStart(7)} ms  servers CPU ${sample.serversCpuUs.toFixed(1).padStart(6)} µs/msg  client CPU ${sample.clientCpuUs.toFixed(1).padStart(6)} µs/msg`;
}

function table(systems: readonly System[], results: ReadonlyMap<string, { put: Sample; read: Sample }>, pairing: Pairing): string {
  const header = ['system', 'fsync', 'row', 'msg/s', 'p50 ms', 'p99 ms', 'servers CPU µs/msg', 'client CPU µs/msg'];
  const lines: string[][] = [];
  for (const system of systems) {
    const result = results.get(system.name);
    const fsync =
      system.name === 'JetStream'
        ? pairing.jetStreamSyncInterval === undefined
          ? 'sync every 2 min'
          : `sync_interval ${pairing.jetStreamSyncInterval}`
        : system.name === 'Walrus'
          ? `interval ${pairing.walrusFsyncIntervalMs} ms`
          : 'interval 1000 ms';
    for (const [row, sample] of [
      ['publish → ack (64 outstanding)', result?.put],
      [system.name === 'JetStream' ? 'consume (pull, 64 per request)' : 'GET (64 in flight)', result?.read],
    ] as const) {
      lines.push(
        sample === undefined
          ? [system.name, fsync, row, '—', '—', '—', '—', '—']
          : [
              system.name,
              fsync,
              row,
              formatRate(sample.opsPerSecond),
              ms(sample.p50),
              ms(sample.p99),
              sample.serversCpuUs.toFixed(1),
              sample.clientCpuUs.toFixed(1),
            ],
      );
    }
  }
  return markdownTable(header, lines);
}

export async function runJetStreamBench(options: JetStreamBenchOptions): Promise<void> {
  const log = (line: string): void => console.log(line);
  log(
    `jetstream: Walrus against NATS JetStream, three replicated servers each on loopback (${options.smoke ? 'smoke sizes: indicative only' : 'full sizes'})`,
  );
  const executable = findNatsServer();
  if (executable === undefined) {
    log(
      '  skipped: no nats-server found (PATH, /usr/sbin/nats-server, NATS_SERVER_BIN); install it (Debian: apt-get install nats-server) to run this suite',
    );
    return;
  }
  const version = natsServerVersion(executable);
  const pairing = pairingFor(version.parts);
  const sizes = options.smoke ? SMOKE : FULL;
  log(
    `  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${loadAverage()} (three servers and this client share the cores; other processes skew every figure)`,
  );
  log(`  ${executable}: ${version.text}; client: npm nats (js.publish, consumer.consume)`);
  log(`  durability: ${pairing.description}; acks from a majority of 3 replicas on both sides`);
  log(
    `  ${sizes.ops.toLocaleString('en-US')} messages of ${PAYLOAD_BYTES} B per row, ${WINDOW} outstanding on one connection; medians of ${sizes.repetitions} repetition(s), each system on a fresh cluster, one system at a time; latency from call to ack`,
  );
  const systems: System[] = [walrus('Walrus', pairing.walrusFsyncIntervalMs), jetStream(executable, pairing)];
  if (pairing.walrusFsyncIntervalMs !== 1000) systems.push(walrus('Walrus (fsync 1 s)', 1000));
  installExitHook();
  const root = mkdtempSync(join(tmpdir(), 'walrus-jetstream-bench-'));
  temporary.add(root);
  const latencies = new Float64Array(Math.max(sizes.ops, sizes.warmUpOps));
  const samples = new Map<string, { put: Sample[]; read: Sample[] }>();
  try {
    for (let repetition = 1; repetition <= sizes.repetitions; repetition++) {
      // The compared pair alternates; the reference row (if any) runs last.
      const pair = repetition % 2 === 1 ? [systems[0], systems[1]] : [systems[1], systems[0]];
      for (const system of [...pair, ...systems.slice(2)]) {
        if (system === undefined) continue;
        const dir = mkdtempSync(join(root, 'run-'));
        try {
          const measured = await system.measure(dir, sizes, latencies);
          const list = samples.get(system.name) ?? { put: [], read: [] };
          list.put.push(measured.put);
          list.read.push(measured.read);
          samples.set(system.name, list);
          log(`    #${repetition} ${system.name.padEnd(18)} ${measured.note}`);
          log(`       publish → ack ${describe(measured.put)}`);
          log(`       ${system.name === 'JetStream' ? 'consume      ' : 'GET          '} ${describe(measured.read)}`);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  const results = new Map<string, { put: Sample; read: Sample }>();
  for (const [name, list] of samples) results.set(name, { put: medianSample(list.put), read: medianSample(list.read) });
  log(`\n  load average at end: ${loadAverage()}`);
  log(`  durability: ${pairing.description}`);
  log(`\n${table(systems, results, pairing)}\n`);
  const ratio = (row: 'put' | 'read', base = 'Walrus'): string => {
    const value = (results.get(base)?.[row].opsPerSecond ?? Number.NaN) / (results.get('JetStream')?.[row].opsPerSecond ?? Number.NaN);
    return `${value.toFixed(2)}×`;
  };
  log(`  Walrus/JetStream msg/s, publish → ack: ${ratio('put')}; GET/consume: ${ratio('read')}`);
  if (results.has('Walrus (fsync 1 s)'))
    log(
      `  (Walrus with fsync every 1 s)/JetStream, publish → ack: ${ratio('put', 'Walrus (fsync 1 s)')}; GET/consume: ${ratio('read', 'Walrus (fsync 1 s)')}`,
    );
  log('  The consume row has no per-message latency (a pull request brings up to 64 messages); its time ends with the last ack confirmed.');
}
