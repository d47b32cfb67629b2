// A Walrus node against Redis Streams over loopback, side by side in the same run: PUT and GET
// throughput and per-operation latency with 256 B payloads, driven the same way on both.
//
// Both servers run as child processes of this one, each with its own temp directory, and are
// stopped by their PIDs (SIGTERM, then SIGKILL after 5 s) however the run ends:
// - Walrus: `walrus start --config FILE` (one node, storage.fsync interval every 1000 ms);
// - Redis: `redis-server` with an append-only file synced every second (appendfsync everysec),
//   no RDB snapshots and no automatic AOF rewrite (Walrus never compacts either, and a rewrite is
//   a background fork that would land in whichever row happens to be running).
// When redis-server is not installed the Redis columns stay empty and the run says so.
// A third server, the floor (node-floor-server.ts), is a bare node:net server that answers the
// same framing with fixed replies and does no work: driven the same way, it shows what the
// Node.js runtime alone costs per request, which no Node.js server can go below.
//
// Workloads, each a PUT row and then a GET row that reads exactly what the PUT row wrote, on a
// fresh topic (Walrus) or stream (Redis):
// - sequential: one connection, each request awaited before the next;
// - 64 in flight: one connection, 64 requests outstanding at all times;
// - 16 connections: 16 connections on the same topic, each sequential (16 in flight in all).
// Walrus: `PUT <topic> <payload>` and `GET <topic>` (consumes the topic's next entry) through
// WalrusClient. Redis: `XADD <stream> * d <payload>` and `XREAD COUNT 1 STREAMS <stream> <id>`
// through ioredis (one ioredis connection per Walrus connection, auto-pipelining off, so in-flight
// requests are concurrent commands on the connection). XREAD does not consume: the reader names
// the id it read last, and gets the next entry. GET number i names the id of entry i − 1 (0-0 for
// the first), taken from the XADD replies of the PUT row in stream order, so requests in flight
// need not wait for each other's replies. Walrus GET instead moves the topic's one shared position,
// kept and made durable by the server (a small record per GET in its log); XREAD writes nothing.
//
// Each repetition runs every workload on both servers back to back (the order of the two servers
// alternates between repetitions); each figure is the median of the repetitions.
//
// Then the admin endpoint's cost (issue 17's target: < 3 % of PUT throughput): a second Walrus
// node with its admin endpoint on runs each workload in pairs of rows, one while this process
// scrapes its /metrics once a second and one while it does not, the order alternating from pair
// to pair. Two nodes differ from each other by more than that (up to ±30 % a row here), so both
// rows of a pair run on the same node, one right after the other, and the figure is the median of
// the pairs' ratios. The requests are counted (NodeStats) whether or not anything scrapes; that
// part costs about 25 ns a request (docs/operations.md).
//
// After them, the flood row (Walrus only): 200 connections write 60 KB PUTs as fast as the node
// takes them (from a child process, test/helpers/flood-child.ts, so that this process only times)
// while a new client connects, sends STATE and times its first reply, again and again
// for 5 s (smoke: 10 connections, 0.5 s); p50 and p99 against a target of 100 ms.
//
//   npm run bench -- server            # full run
//   npm run bench -- server --smoke    # a few seconds (CI)
//   npm run bench -- flood             # the flood row alone, on a node of its own

import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { WalrusClient } from '../src/client/index.js';
import { firstReply, startFlood } from '../test/helpers/flood.js';
import { freePorts } from '../test/helpers/net.js';

export interface ServerBenchOptions {
  /** A few thousand operations per row and one repetition: seconds in all; figures only indicative. */
  readonly smoke: boolean;
}

export interface Sizes {
  /** Operations per row (PUTs in a PUT row, GETs in a GET row). */
  readonly ops: number;
  readonly repetitions: number;
  /** Operations per row of the untimed warm-up pass before the first repetition. */
  readonly warmUpOps: number;
}

const FULL: Sizes = { ops: 100_000, repetitions: 3, warmUpOps: 5_000 };
const SMOKE: Sizes = { ops: 3_000, repetitions: 1, warmUpOps: 500 };

/** The flood row: connections keeping 60 KB PUTs in flight while a new client connects again and again. */
interface FloodSizes {
  readonly connections: number;
  readonly payloadBytes: number;
  /** How long the probes run once the flood is going. */
  readonly ms: number;
}
const FLOOD_FULL: FloodSizes = { connections: 200, payloadBytes: 60 * 1024, ms: 5_000 };
const FLOOD_SMOKE: FloodSizes = { connections: 10, payloadBytes: 60 * 1024, ms: 500 };
/** Target for the new client's first reply under the flood (issue 12). */
const FLOOD_P99_TARGET_MS = 100;

const PAYLOAD_BYTES = 256;
const PIPELINE_DEPTH = 64;
const CONNECTIONS = 16;
const STOP_GRACE_MS = 5_000;
const START_TIMEOUT_MS = 20_000;
/** The launcher, found from this module (build/bench/) rather than the working directory. */
const WALRUS_BIN = fileURLToPath(new URL('../../bin/walrus', import.meta.url));
/** The name of the third server: the least any Node.js server does per request. */
const FLOOR = 'floor';

interface Workload {
  readonly name: string;
  /** Connections used. */
  readonly connections: number;
  /** Requests outstanding per connection. */
  readonly depth: number;
}

const WORKLOADS: readonly Workload[] = [
  { name: 'sequential, 1 connection', connections: 1, depth: 1 },
  { name: `${PIPELINE_DEPTH} in flight, 1 connection`, connections: 1, depth: PIPELINE_DEPTH },
  { name: `${CONNECTIONS} connections, each sequential`, connections: CONNECTIONS, depth: 1 },
];

type Kind = 'PUT' | 'GET';

/** One operation, told its index in the row (0 … ops − 1). */
export type Operation = (index: number) => Promise<void>;

interface Sample {
  readonly opsPerSecond: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** CPU time (user + system) per operation, µs: the server process's and this (client) process's. */
  readonly serverCpuUs: number;
  readonly clientCpuUs: number;
  /** read- and write-family system calls of the server process per operation (/proc/<pid>/io). */
  readonly serverReads: number;
  readonly serverWrites: number;
}

/** The read- and write-family system calls `pid` has made so far; NaN where /proc cannot tell. */
function processSyscalls(pid: number | undefined): { reads: number; writes: number } {
  if (pid === undefined) return { reads: Number.NaN, writes: Number.NaN };
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? Number.NaN);
    return { reads: field('syscr'), writes: field('syscw') };
  } catch {
    return { reads: Number.NaN, writes: Number.NaN };
  }
}

/** CPU seconds (user + system) `pid` has used so far, from /proc; NaN where that cannot be read. */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/** USER_HZ: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

// --- child processes -------------------------------------------------------------------------

export interface Child {
  readonly process: ChildProcess;
  /** The first stdout line matching `pattern` (lines already seen included). */
  line(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Stdout lines that match `pattern`, at most `limit`; with `after`, only those following the first line matching it. */
  matching(pattern: RegExp, limit: number, after?: RegExp): string[];
  /** SIGTERM by PID, SIGKILL after STOP_GRACE_MS; resolves once it has exited. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
/** Temp directories to remove if this process exits without reaching a finally block. */
export const temporary = new Set<string>();
let exitHookInstalled = false;

export function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort when this process dies early (an uncaught error, process.exit elsewhere, EPIPE on
  // stdout): no child and no temp directory outlives it.
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
    for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
  });
}

/** Starts `command` with stdout and stderr piped; every line is kept for error reports. */
export function startChild(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Child {
  installExitHook();
  const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const lines: string[] = [];
  let partial = '';
  let errors = '';
  const waiters: Array<() => void> = [];
  const notify = (): void => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (errors.length < 16_384) errors += chunk;
  });
  let exited = false;
  const exit = new Promise<void>((done) => {
    child.once('exit', () => {
      exited = true;
      running.delete(child);
      notify();
      done();
    });
  });
  const describe = (): string => `${command} ${args.join(' ')}\nstdout:\n${lines.slice(-20).join('\n')}\nstderr:\n${errors}`;
  return {
    process: child,
    line(pattern, timeoutMs) {
      return new Promise<string>((resolveLine, reject) => {
        const deadline = setTimeout(
          () => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms from ${describe()}`)),
          timeoutMs,
        );
        const check = (): void => {
          const found = lines.find((line) => pattern.test(line));
          if (found !== undefined) {
            clearTimeout(deadline);
            resolveLine(found);
          } else if (exited) {
            clearTimeout(deadline);
            reject(new Error(`exited before a line matched ${pattern}: ${describe()}`));
          } else {
            waiters.push(check);
          }
        };
        check();
      });
    },
    matching(pattern, limit, after) {
      const from = after === undefined ? 0 : lines.findIndex((line) => after.test(line)) + 1;
      return lines
        .slice(from)
        .filter((line) => pattern.test(line))
        .slice(0, limit);
    },
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exit;
      clearTimeout(killer);
    },
  };
}

function findExecutable(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

// --- the two servers -------------------------------------------------------------------------

interface Server {
  readonly name: string;
  /** The client port (Walrus only: the flood row). */
  readonly port?: number;
  readonly pid: number | undefined;
  /** What the machine line says about this server. */
  readonly description: string;
  /** Opens `count` connections (untimed). */
  connect(count: number): Promise<Connection[]>;
  /** Untimed: up to five warnings or errors the server logged after it became ready. */
  complaints(): string[];
  /** Walrus+admin: the /metrics scrapes answered so far. */
  scrapes?(): number;
  /** Walrus+admin: scrape once a second (true) or not at all. */
  setScraping?(on: boolean): void;
  stop(): Promise<void>;
}

interface Connection {
  /** Untimed, before the PUT row: makes `key` usable. */
  prepare(key: string): Promise<void>;
  put(key: string, payload: string): Operation;
  get(key: string): Operation;
  /** Untimed, after the GET row: checks that nothing is left, releases what the row left behind. */
  finish(key: string): Promise<void>;
  close(): Promise<void>;
}

/** A Walrus node of its own: a temp dir under `root` (`prefix`), its config with `storage`, no WALRUS_* variables; resolves once it is ready. */
export async function launchWalrusNode(
  root: string,
  prefix: string,
  storage: string,
  extra: readonly string[] = [],
): Promise<{ readonly port: number; readonly child: Child; readonly backend: string }> {
  const dir = mkdtempSync(join(root, prefix));
  const config = join(dir, 'walrus.yaml');
  writeFileSync(
    config,
    [
      `node: { dataDir: ${JSON.stringify(join(dir, 'data'))}, clientPort: 0, raftPort: 0 }`,
      storage,
      'segments: { maxEntries: 1000000000 }',
      ...extra,
      '',
    ].join('\n'),
  );
  // WALRUS_* variables would override the file: the node gets none of them.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('WALRUS_')));
  const child = startChild(process.execPath, [WALRUS_BIN, 'start', '--config', config], dir, env);
  try {
    const listening = JSON.parse(await child.line(/"msg":"client protocol listening"/, START_TIMEOUT_MS)) as { port?: unknown };
    await child.line(/"msg":"ready"/, START_TIMEOUT_MS);
    const port = listening.port;
    if (typeof port !== 'number') throw new Error('walrus: the "client protocol listening" line has no port');
    const plane = child.matching(/"msg":"data plane open"/, 1)[0];
    const backend = plane === undefined ? 'unknown' : String((JSON.parse(plane) as { backend?: unknown }).backend);
    return { port, child, backend };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

/** The node with its admin endpoint on and scraped once a second (its rows against the plain node's). */
const WITH_ADMIN = 'Walrus+admin';
const SCRAPE_EVERY_MS = 1_000;

async function startWalrus(root: string, admin = false): Promise<Server> {
  const storage = 'storage: { fsync: interval, fsyncIntervalMs: 1000 }';
  const { port, child, backend } = await launchWalrusNode(
    root,
    admin ? 'walrus-admin-' : 'walrus-',
    storage,
    admin ? ['admin: { port: 0 }'] : [],
  );
  let scraper: NodeJS.Timeout | undefined;
  let scrapes = 0;
  let scrape: (() => void) | undefined;
  if (admin) {
    const line = JSON.parse(await child.line(/"msg":"admin endpoint listening"/, START_TIMEOUT_MS)) as { port?: unknown };
    if (typeof line.port !== 'number') throw new Error('walrus: the "admin endpoint listening" line has no port');
    const url = `http://127.0.0.1:${line.port}/metrics`;
    scrape = () => {
      fetch(url)
        .then((reply) => reply.text())
        .then(
          () => {
            scrapes += 1;
          },
          () => undefined,
        );
    };
  }
  /** Scraping on: one scrape now and one every SCRAPE_EVERY_MS; off: none. */
  const setScraping = (on: boolean): void => {
    clearInterval(scraper);
    scraper = undefined;
    if (!on || scrape === undefined) return;
    scrape();
    scraper = setInterval(scrape, SCRAPE_EVERY_MS);
  };
  return {
    name: admin ? WITH_ADMIN : 'Walrus',
    ...(admin ? {} : { port }),
    pid: child.process.pid,
    description: `walrus node (pid ${child.process.pid}, backend ${backend}, storage.fsync interval 1000 ms${admin ? `, admin endpoint scraped every ${SCRAPE_EVERY_MS} ms` : ''})`,
    scrapes: () => scrapes,
    setScraping,
    async connect(count) {
      const clients = await Promise.all(
        Array.from({ length: count }, () => WalrusClient.connect({ host: '127.0.0.1', port, inFlightMax: PIPELINE_DEPTH })),
      );
      return clients.map((client) => walrusConnection(client));
    },
    complaints: () => child.matching(/"level":[4-6]\d/, 5, /"msg":"ready"/),
    stop: () => {
      clearInterval(scraper);
      return child.stop();
    },
  };
}

/** The floor: a bare node:net server answering the same protocol with no work (node-floor-server.ts). */
async function startNodeFloor(root: string, payload: string): Promise<Server> {
  const script = fileURLToPath(new URL('./node-floor-server.js', import.meta.url));
  const child = startChild(process.execPath, [script, payload], root);
  try {
    const port = (JSON.parse(await child.line(/^\{"port":\d+\}$/, START_TIMEOUT_MS)) as { port: number }).port;
    return {
      name: FLOOR,
      pid: child.process.pid,
      description: `bare node:net server (pid ${child.process.pid}): same framing, no storage, no parsing; the cost of the runtime alone`,
      async connect(count) {
        const clients = await Promise.all(
          Array.from({ length: count }, () => WalrusClient.connect({ host: '127.0.0.1', port, inFlightMax: PIPELINE_DEPTH })),
        );
        return clients.map((client) => ({
          ...walrusConnection(client),
          // It keeps nothing, so there is nothing left to check after a GET row.
          finish: async () => undefined,
        }));
      },
      complaints: () => [],
      stop: () => child.stop(),
    };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

function walrusConnection(client: WalrusClient): Connection {
  return {
    prepare: (key) => client.register(key),
    put: (key, payload) => () => client.put(key, payload),
    get: (key) => async () => {
      const payload = await client.get(key);
      if (payload === null || payload.length !== PAYLOAD_BYTES)
        throw new Error(`walrus: GET ${key} returned ${payload === null ? 'EMPTY' : `${payload.length} chars`}`);
    },
    async finish(key) {
      const extra = await client.get(key);
      if (extra !== null) throw new Error(`walrus: ${key} still had entries after its GET row`);
    },
    close: () => client.close(),
  };
}

/** XADD ids per stream, in stream order once the PUT row is over: what the GET rows read after. */
const streamIds = new Map<string, string[]>();

function compareIds(a: string, b: string): number {
  const [aMs = 0, aSeq = 0] = a.split('-').map(Number);
  const [bMs = 0, bSeq = 0] = b.split('-').map(Number);
  return aMs - bMs || aSeq - bSeq;
}

/** A redis-server of its own: a temp dir under `root`, a free port, an append-only file synced `appendfsync`; resolves once it is ready. */
export async function launchRedis(
  root: string,
  executable: string,
  appendfsync: 'everysec' | 'always',
): Promise<{ readonly port: number; readonly child: Child; readonly version: string }> {
  const dir = mkdtempSync(join(root, `redis-${appendfsync}-`));
  const [port = 0] = await freePorts(1);
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    appendfsync,
    '--save',
    '',
    '--auto-aof-rewrite-percentage',
    '0',
    '--daemonize',
    'no',
  ];
  const child = startChild(executable, args, dir);
  try {
    await child.line(/Ready to accept connections/, START_TIMEOUT_MS);
    const version = child.matching(/Redis version=/, 1)[0]?.match(/version=([^,\s]+)/)?.[1] ?? 'unknown';
    return { port, child, version };
  } catch (error) {
    await child.stop();
    throw error;
  }
}

async function startRedis(root: string, executable: string): Promise<Server> {
  const { port, child, version } = await launchRedis(root, executable, 'everysec');
  return {
    name: 'Redis',
    pid: child.process.pid,
    description: `redis-server ${version} (pid ${child.process.pid}, appendonly yes, appendfsync everysec)`,
    async connect(count) {
      const clients = Array.from(
        { length: count },
        () =>
          new Redis({
            host: '127.0.0.1',
            port,
            lazyConnect: true,
            enableAutoPipelining: false,
            retryStrategy: () => null,
            maxRetriesPerRequest: 0,
          }),
      );
      await Promise.all(clients.map((client) => client.connect()));
      return clients.map((client) => redisConnection(client));
    },
    complaints: () => child.matching(/ # /, 5, /Ready to accept connections/),
    stop: () => child.stop(),
  };
}

function redisConnection(client: Redis): Connection {
  return {
    async prepare(key) {
      await client.del(key);
      streamIds.set(key, []);
    },
    put: (key, payload) => {
      const ids = streamIds.get(key) ?? [];
      return async (index) => {
        const id = await client.xadd(key, '*', 'd', payload);
        if (id === null) throw new Error(`redis: XADD ${key} returned nil`);
        ids[index] = id;
      };
    },
    get: (key) => {
      const ids = streamIds.get(key) ?? [];
      return async (index) => {
        const after = index === 0 ? '0-0' : (ids[index - 1] ?? '0-0');
        const reply = await client.xread('COUNT', 1, 'STREAMS', key, after);
        const entry = reply?.[0]?.[1][0];
        if (entry === undefined || entry[0] !== ids[index])
          throw new Error(`redis: XREAD ${key} after ${after} did not return entry ${index}`);
      };
    },
    async finish(key) {
      const length = await client.xlen(key);
      const ids = streamIds.get(key) ?? [];
      if (length !== ids.length) throw new Error(`redis: ${key} holds ${length} entries, the PUT row acknowledged ${ids.length}`);
      // Redis keeps every stream in memory: drop it so later rows run on the same footprint.
      await client.del(key);
      streamIds.delete(key);
    },
    async close() {
      await client.quit();
    },
  };
}

// --- measurement -----------------------------------------------------------------------------

/**
 * Runs `count` operations over `lanes`, each lane awaiting its operations one after another and
 * taking the next index when done; records each operation's latency. Returns the elapsed ms.
 */
export async function drive(count: number, lanes: readonly Operation[], latencies: Float64Array): Promise<number> {
  let next = 0;
  const lane = async (operation: Operation): Promise<void> => {
    for (;;) {
      const index = next;
      if (index >= count) return;
      next = index + 1;
      const started = performance.now();
      await operation(index);
      latencies[index] = performance.now() - started;
    }
  };
  const started = performance.now();
  await Promise.all(lanes.map(lane));
  return performance.now() - started;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: Float64Array, fraction: number): number {
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] ?? Number.NaN;
}

/** Times one row: `drive` plus the CPU both processes used meanwhile. */
async function timeRow(
  serverPid: number | undefined,
  count: number,
  lanes: readonly Operation[],
  latencies: Float64Array,
): Promise<Sample> {
  const serverBefore = processCpuSeconds(serverPid);
  const syscallsBefore = processSyscalls(serverPid);
  const clientBefore = process.cpuUsage();
  const ms = await drive(count, lanes, latencies);
  const client = process.cpuUsage(clientBefore);
  const serverSeconds = processCpuSeconds(serverPid) - serverBefore;
  const syscalls = processSyscalls(serverPid);
  const sorted = latencies.slice(0, count).sort();
  return {
    opsPerSecond: (count * 1000) / ms,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[count - 1] ?? Number.NaN,
    serverCpuUs: (serverSeconds * 1e6) / count,
    clientCpuUs: (client.user + client.system) / count,
    serverReads: (syscalls.reads - syscallsBefore.reads) / count,
    serverWrites: (syscalls.writes - syscallsBefore.writes) / count,
  };
}

function lanesFor(workload: Workload, connections: readonly Connection[], build: (connection: Connection) => Operation): Operation[] {
  const lanes: Operation[] = [];
  for (const connection of connections.slice(0, workload.connections)) {
    const operation = build(connection);
    for (let slot = 0; slot < workload.depth; slot++) lanes.push(operation);
  }
  return lanes;
}

interface Measured {
  readonly put: Sample;
  readonly get: Sample;
}

/** The PUT row and then the GET row of one workload on one server, on a fresh key. */
async function measurePair(
  serverPid: number | undefined,
  workload: Workload,
  connections: readonly Connection[],
  key: string,
  count: number,
  payload: string,
  latencies: Float64Array,
): Promise<Measured> {
  const first = connections[0];
  if (first === undefined) throw new Error('invariant: no connection');
  await first.prepare(key);
  const put = await timeRow(
    serverPid,
    count,
    lanesFor(workload, connections, (connection) => connection.put(key, payload)),
    latencies,
  );
  streamIds.get(key)?.sort(compareIds);
  const get = await timeRow(
    serverPid,
    count,
    lanesFor(workload, connections, (connection) => connection.get(key)),
    latencies,
  );
  await first.finish(key);
  return { put, get };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function medianSample(samples: readonly Sample[]): Sample {
  return {
    opsPerSecond: median(samples.map((sample) => sample.opsPerSecond)),
    p50: median(samples.map((sample) => sample.p50)),
    p99: median(samples.map((sample) => sample.p99)),
    max: median(samples.map((sample) => sample.max)),
    serverCpuUs: median(samples.map((sample) => sample.serverCpuUs)),
    clientCpuUs: median(samples.map((sample) => sample.clientCpuUs)),
    serverReads: median(samples.map((sample) => sample.serverReads)),
    serverWrites: median(samples.map((sample) => sample.serverWrites)),
  };
}

/**
 * The flood row: `connections` raw sockets write 60 KB PUTs as fast as the node takes them
 * (its own limits and TCP are the only brake), and for `ms` a new client connects, sends STATE
 * and waits for its first reply, one after another. Reports that first-reply latency.
 */
async function floodRow(port: number, sizes: FloodSizes): Promise<string> {
  const topic = `flood-${Date.now()}`;
  const client = await WalrusClient.connect({ host: '127.0.0.1', port });
  await client.register(topic);
  await client.close();
  const flood = await startFlood({ port, topic, connections: sizes.connections, payloadBytes: sizes.payloadBytes, depth: 'unbounded' });
  const latencies: number[] = [];
  const started = performance.now();
  let acknowledged = 0;
  try {
    while (performance.now() - started < sizes.ms) {
      const { ms } = await firstReply(port, `STATE ${topic}`, 60_000);
      latencies.push(ms);
    }
    acknowledged = flood.acknowledged();
  } finally {
    flood.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  const p99 = percentile(sorted, 0.99);
  return (
    `  flood: ${sizes.connections} connections writing ${sizes.payloadBytes / 1024} KB PUTs (${formatRate(acknowledged / seconds)} acknowledged/s) while a new client connects ${latencies.length} times:\n` +
    `  first reply p50 ${formatMs(percentile(sorted, 0.5))} ms  p99 ${formatMs(p99)} ms  max ${formatMs(sorted[sorted.length - 1] ?? Number.NaN)} ms` +
    `  (target p99 ≤ ${FLOOD_P99_TARGET_MS} ms: ${p99 <= FLOOD_P99_TARGET_MS ? 'MET' : 'MISSED'}${latencies.length < 100 ? '; few samples' : ''})`
  );
}

// --- output ----------------------------------------------------------------------------------

/** A Markdown table of `header` and `lines`, each column padded to its widest cell. */
export function markdownTable(header: readonly string[], lines: readonly (readonly string[])[]): string {
  const all = [header, ...lines];
  const widths = header.map((_, column) => Math.max(...all.map((cells) => (cells[column] ?? '').length)));
  const render = (cells: readonly string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [render(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...lines.map(render)].join('\n');
}

export function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatMs(value: number): string {
  return value.toFixed(value < 10 ? 3 : 1);
}

export function loadAverage(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

interface Row {
  readonly workload: string;
  readonly walrus: Sample;
  readonly redis: Sample | undefined;
  readonly floor: Sample | undefined;
}

function table(rows: readonly Row[]): string {
  const header = [
    'workload',
    'Walrus ops/s',
    'p50 ms',
    'p99 ms',
    'Redis ops/s',
    'p50 ms',
    'p99 ms',
    'Walrus/Redis',
    'result',
    'floor ops/s',
  ];
  const lines = rows.map((row) => {
    const ratio = row.redis === undefined ? undefined : row.walrus.opsPerSecond / row.redis.opsPerSecond;
    return [
      row.workload,
      formatRate(row.walrus.opsPerSecond),
      formatMs(row.walrus.p50),
      formatMs(row.walrus.p99),
      row.redis === undefined ? '—' : formatRate(row.redis.opsPerSecond),
      row.redis === undefined ? '—' : formatMs(row.redis.p50),
      row.redis === undefined ? '—' : formatMs(row.redis.p99),
      ratio === undefined ? '—' : `${ratio.toFixed(2)}×`,
      ratio === undefined ? '—' : ratio >= 1 ? 'MET' : 'MISSED',
      row.floor === undefined ? '—' : formatRate(row.floor.opsPerSecond),
    ];
  });
  return markdownTable(header, lines);
}

/**
 * Costs per operation (medians), to tell where the time goes: CPU of the server and of the client
 * library (this process), and the server's read and write system calls.
 */
function cpuTable(rows: readonly Row[]): string {
  const header = [
    'workload',
    'Walrus node CPU µs',
    'WalrusClient CPU µs',
    'node reads / writes',
    'redis-server CPU µs',
    'ioredis CPU µs',
    'redis reads / writes',
    'floor server CPU µs',
  ];
  const calls = (sample: Sample): string => `${sample.serverReads.toFixed(2)} / ${sample.serverWrites.toFixed(2)}`;
  const lines = rows.map((row) => [
    row.workload,
    formatCpu(row.walrus.serverCpuUs).trim(),
    formatCpu(row.walrus.clientCpuUs).trim(),
    calls(row.walrus),
    row.redis === undefined ? '—' : formatCpu(row.redis.serverCpuUs).trim(),
    row.redis === undefined ? '—' : formatCpu(row.redis.clientCpuUs).trim(),
    row.redis === undefined ? '—' : calls(row.redis),
    row.floor === undefined ? '—' : formatCpu(row.floor.serverCpuUs).trim(),
  ]);
  return markdownTable(header, lines);
}

function describeSample(sample: Sample): string {
  return (
    `${formatRate(sample.opsPerSecond).padStart(9)} ops/s  p50 ${formatMs(sample.p50).padStart(7)} ms  p99 ${formatMs(sample.p99).padStart(7)} ms` +
    `  max ${formatMs(sample.max).padStart(7)} ms  cpu/op server ${formatCpu(sample.serverCpuUs)} client ${formatCpu(sample.clientCpuUs)} µs`
  );
}

function formatCpu(us: number): string {
  return Number.isNaN(us) ? '—' : us.toFixed(1).padStart(5);
}

// --- the run ---------------------------------------------------------------------------------

export function randomPayload(bytes: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let text = '';
  for (let index = 0; index < bytes; index++) text += alphabet[Math.floor(Math.random() * alphabet.length)];
  return text;
}

export async function runServerBench(options: ServerBenchOptions): Promise<void> {
  const sizes = options.smoke ? SMOKE : FULL;
  const log = (line: string): void => console.log(line);
  log(
    `server: Walrus against Redis Streams over loopback (${options.smoke ? 'smoke sizes: the results are only indicative' : 'full sizes'})`,
  );
  log(
    `  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), load average ${loadAverage()} (other processes on this machine skew every figure)`,
  );
  log(
    `  ${sizes.ops.toLocaleString('en-US')} PUTs then ${sizes.ops.toLocaleString('en-US')} GETs of ${PAYLOAD_BYTES} B per row and server; medians of ${sizes.repetitions} repetition(s); latency from call to reply`,
  );
  const redisExecutable = findExecutable('redis-server');
  if (redisExecutable === undefined) log('  redis-server not found: apt-get install redis-server (the Redis columns are left out)');
  installExitHook();
  const root = mkdtempSync(join(tmpdir(), 'walrus-server-bench-'));
  temporary.add(root);
  const servers: Server[] = [];
  const connections = new Map<Server, Connection[]>();
  const payload = randomPayload(PAYLOAD_BYTES);
  const latencies = new Float64Array(Math.max(sizes.ops, sizes.warmUpOps));
  const samples = new Map<string, Sample[]>();
  let floodLine = '';
  let adminLine = '';
  const record = (name: string, sample: Sample): void => {
    const list = samples.get(name) ?? [];
    list.push(sample);
    samples.set(name, list);
  };
  try {
    servers.push(await startWalrus(root));
    if (redisExecutable !== undefined) servers.push(await startRedis(root, redisExecutable));
    servers.push(await startNodeFloor(root, payload));
    for (const server of servers) {
      log(`  ${server.name}: ${server.description}`);
      connections.set(server, await server.connect(CONNECTIONS));
    }
    let keys = 0;
    const pair = (server: Server, workload: Workload, count: number): Promise<Measured> =>
      measurePair(server.pid, workload, connections.get(server) ?? [], `bench-${++keys}`, count, payload, latencies);
    // Untimed warm-up: the JIT of this process and of the Walrus node, the servers' allocators.
    for (const workload of WORKLOADS) for (const server of servers) await pair(server, workload, sizes.warmUpOps);
    for (let repetition = 1; repetition <= sizes.repetitions; repetition++) {
      // Alternate which server goes first, so neither always runs right after the other's writes.
      const order = repetition % 2 === 1 ? servers : [...servers].reverse();
      for (const workload of WORKLOADS) {
        for (const server of order) {
          const measured = await pair(server, workload, sizes.ops);
          for (const kind of ['PUT', 'GET'] as const) {
            const sample = kind === 'PUT' ? measured.put : measured.get;
            record(`${kind} ${workload.name} ${server.name}`, sample);
            log(`    #${repetition} ${`${kind} ${workload.name}`.padEnd(40)} ${server.name.padEnd(7)}${describeSample(sample)}`);
          }
        }
      }
    }
    adminLine = await adminCostPhase(root, sizes, payload, latencies, log);
    const walrus = servers[0];
    if (walrus?.port !== undefined) floodLine = await floodRow(walrus.port, options.smoke ? FLOOD_SMOKE : FLOOD_FULL);
    for (const server of servers) {
      for (const line of server.complaints()) log(`  ${server.name} logged: ${line.slice(0, 300)}`);
    }
  } finally {
    for (const server of servers) {
      for (const connection of connections.get(server) ?? []) await connection.close().catch(() => undefined);
    }
    for (const server of servers) await server.stop().catch((error: unknown) => log(`  could not stop ${server.name}: ${String(error)}`));
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  const rows: Row[] = [];
  for (const kind of ['PUT', 'GET'] as Kind[]) {
    for (const workload of WORKLOADS) {
      const of = (name: string): Sample | undefined => {
        const list = samples.get(`${kind} ${workload.name} ${name}`);
        return list === undefined ? undefined : medianSample(list);
      };
      const walrus = of('Walrus');
      if (walrus === undefined) throw new Error('invariant: no Walrus samples');
      rows.push({ workload: `${kind} ${workload.name}`, walrus, redis: of('Redis'), floor: of(FLOOR) });
    }
  }
  log(`\n  load average at end: ${loadAverage()}`);
  log(`\n${table(rows)}`);
  log(
    "\n  Per operation: CPU time (user + system) of each server (/proc/<pid>/stat) and of its client library (this process,\n  process.cpuUsage()), and the server's read- and write-family system calls (/proc/<pid>/io syscr, syscw):",
  );
  log(`\n${cpuTable(rows)}`);
  log(`\n${adminLine}`);
  if (floodLine !== '') log(`\n${floodLine}`);
  const compared = rows.filter((row) => row.redis !== undefined);
  if (compared.length > 0) {
    const met = compared.filter((row) => row.redis !== undefined && row.walrus.opsPerSecond >= row.redis.opsPerSecond).length;
    log(
      `\n  target (Walrus ops/s ≥ Redis ops/s in each row): ${met} met, ${compared.length - met} missed${options.smoke ? ' (smoke sizes: indicative only)' : ''}`,
    );
  }
}

/** The admin cost phase: windows per PUT workload (a multiple of 4: ABBA), and their length. */
const ADMIN_WINDOWS_FULL = { windows: 16, ms: 2_000 };
const ADMIN_WINDOWS_SMOKE = { windows: 4, ms: 300 };
/** Scraped or not in window w: on, off, off, on, again and again (a linear drift cancels within each four). */
const ABBA = [true, false, false, true] as const;

/**
 * The admin endpoint's cost: on a node of its own with the endpoint on, each PUT workload runs
 * without a pause while scraping is turned on and off in windows (on, off, off, on, ...); the
 * PUTs acknowledged in each window give its rate. Each four windows give one ratio (the two
 * scraped against the two not), and the figure is their median, with the ratio of all windows.
 * Adjacent windows of one uninterrupted row compare far better than separate rows (pairs of
 * 20,000-PUT rows on one node differed by up to ±25 %).
 */
async function adminCostPhase(
  root: string,
  sizes: Sizes,
  payload: string,
  latencies: Float64Array,
  log: (line: string) => void,
): Promise<string> {
  const plan = sizes.repetitions === 1 ? ADMIN_WINDOWS_SMOKE : ADMIN_WINDOWS_FULL;
  const node = await startWalrus(root, true);
  const connections = await node.connect(CONNECTIONS);
  const lines = [
    `  admin endpoint (${node.description}): each PUT workload for ${plan.windows} windows of ${plan.ms} ms, scraped once a second in half of them (on, off, off, on, ...) (target: PUT throughput cost < 3 %):`,
  ];
  try {
    let keys = 0;
    // Warm-up, scraped: the JIT and the node's allocator as for the main rows, and the first
    // scrapes (this process's first fetch() loads its HTTP client, tens of milliseconds).
    node.setScraping?.(true);
    for (const workload of WORKLOADS)
      await measurePair(node.pid, workload, connections, `admin-${++keys}`, sizes.warmUpOps, payload, latencies);
    node.setScraping?.(false);
    for (const workload of WORKLOADS) {
      const first = connections[0];
      if (first === undefined) throw new Error('invariant: no connection');
      const key = `admin-${++keys}`;
      await first.prepare(key);
      let acknowledged = 0;
      let stop = false;
      let index = 0;
      const lane = async (operation: Operation): Promise<void> => {
        while (!stop) {
          await operation(index++);
          acknowledged += 1;
        }
      };
      const running = Promise.all(lanesFor(workload, connections, (connection) => connection.put(key, payload)).map(lane));
      const windows: { on: boolean; rate: number; cpuUs: number }[] = [];
      for (let window = 0; window < plan.windows; window++) {
        const on = ABBA[window % 4] as boolean;
        node.setScraping?.(on);
        const before = acknowledged;
        const cpuBefore = processCpuSeconds(node.pid);
        const started = performance.now();
        await new Promise((resolve) => setTimeout(resolve, plan.ms));
        const done = acknowledged - before;
        windows.push({
          on,
          rate: (done * 1000) / (performance.now() - started),
          cpuUs: ((processCpuSeconds(node.pid) - cpuBefore) * 1e6) / done,
        });
      }
      node.setScraping?.(false);
      stop = true;
      await running;
      const ratios: number[] = [];
      for (let quad = 0; quad + 4 <= windows.length; quad += 4) {
        const group = windows.slice(quad, quad + 4);
        const sum = (scraped: boolean) => group.filter((entry) => entry.on === scraped).reduce((total, entry) => total + entry.rate, 0);
        ratios.push(sum(true) / sum(false));
      }
      const of = (scraped: boolean) => windows.filter((entry) => entry.on === scraped);
      const mean = (values: readonly number[]) => values.reduce((total, value) => total + value, 0) / values.length;
      const onRate = mean(of(true).map((entry) => entry.rate));
      const offRate = mean(of(false).map((entry) => entry.rate));
      const ratio = median(ratios);
      const cost = (1 - ratio) * 100;
      const line =
        `    ${`PUT ${workload.name}`.padEnd(40)} scraped ${formatRate(onRate)} / not ${formatRate(offRate)} ops/s (all windows ${(onRate / offRate).toFixed(3)}); ` +
        `median of ${ratios.length} ratios ${ratio.toFixed(3)}: cost ${cost.toFixed(1)} % (${cost < 3 ? 'met' : 'not met'}); ` +
        `node CPU ${formatCpu(mean(of(true).map((entry) => entry.cpuUs)))} / ${formatCpu(mean(of(false).map((entry) => entry.cpuUs)))} µs/op; ratios ${ratios.map((value) => value.toFixed(3)).join(', ')}`;
      lines.push(line);
      log(line);
    }
    lines.push(
      `    ${node.scrapes?.() ?? 0} /metrics scrapes answered during the phase${plan === ADMIN_WINDOWS_SMOKE ? ' (smoke sizes: indicative only)' : ''}`,
    );
  } finally {
    for (const connection of connections) await connection.close().catch(() => undefined);
    await node.stop();
  }
  return lines.join('\n');
}

/** The flood row alone, on a fresh node (`npm run bench -- flood [--smoke]`): seconds instead of minutes. */
export async function runFloodBench(options: ServerBenchOptions): Promise<void> {
  const sizes = options.smoke ? FLOOD_SMOKE : FLOOD_FULL;
  console.log(`flood: a Walrus node under a write flood over loopback (${options.smoke ? 'smoke sizes' : 'full sizes'})`);
  console.log(
    `  node ${process.version}, ${availableParallelism()} cores, load average ${loadAverage()} (other processes on this machine skew every figure)`,
  );
  installExitHook();
  const root = mkdtempSync(join(tmpdir(), 'walrus-flood-bench-'));
  temporary.add(root);
  let line = '';
  try {
    const walrus = await startWalrus(root);
    try {
      console.log(`  ${walrus.description}`);
      if (walrus.port === undefined) throw new Error('invariant: the Walrus server has no port');
      line = await floodRow(walrus.port, sizes);
      for (const complaint of walrus.complaints()) console.log(`  Walrus logged: ${complaint.slice(0, 300)}`);
    } finally {
      await walrus.stop();
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
    temporary.delete(root);
  }
  console.log(`  load average at end: ${loadAverage()}\n${line}`);
}
