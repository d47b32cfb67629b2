// A cluster of real `walrus start` processes inside a private network namespace, with nftables
// to cut the links between them. Everything here runs INSIDE the namespace: the test starts its
// scenario script with `unshare -rn node <script>` (a user and network namespace that has only
// `lo`), and the script uses this module to set the namespace up, start the nodes, talk to them
// and cut links. Nothing here sends a packet outside the namespace's loopback.
//
// Addresses: node i binds its client port and its internal (Raft and node-to-node) port on
// 127.0.0.i; the test driver's own connections leave from 127.0.0.100 (DRIVER_ADDRESS), which is
// no node's. 127.0.0.0/8 is all local on `lo` once it is up. An unbound connection to 127.0.0.x
// would leave from 127.0.0.1 (the loopback route's source), so every process binds its outgoing
// connections to its own address through ./netns-bind.ts (nodes: `--import` of it with
// NETNS_LOCAL_ADDRESS; the driver: prepareNamespace() calls bindOutgoingTcp). A link fault is
// then a rule on addresses alone: `ip saddr 127.0.0.a ip daddr 127.0.0.b drop` in the output
// hook of one table, `inet walrus_test`. Client traffic (from 127.0.0.100) matches no rule.
// NetnsCluster.sourceCheck() reads /proc/net/tcp to show that every connection left from where
// the rules expect.
//
// Ports are fixed (the namespace is private): node i's client port is 9090 + i, its internal
// port 7070 + i. Each node's data is under the cluster's temp dir; every node is stopped by its
// own PID; every wait is bounded.
//
// With `consensus: 'etcd'` (default: WALRUS_TEST_CONSENSUS), the metadata lives in one etcd
// member inside the namespace, on ETCD_ADDRESS (no node's), started before the nodes on a data
// directory under the cluster's temp dir and stopped by its PID after them. etcd stands with the
// majority in every fault: isolate() cuts the node from etcd too, and peersOf() names etcd (as
// ETCD, in cuts `3>etcd`) for one-way cuts. A node cut from its peers but not from etcd is a
// different fault, which these scenarios do not make (docs/operations.md says what it does).

import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { WalrusClient } from '../../src/client/index.js';
import { ipTool, nftTool } from './namespaces.js';
import { bindOutgoingTcp } from './netns-bind.js';
import { type Finished, NODE_FLAGS, type Running, startProcess, WALRUS_BIN } from './process.js';

/** The source address of the test driver's connections: no node's. */
export const DRIVER_ADDRESS = '127.0.0.100';
/** The one nftables table the harness writes (family inet). */
export const NFT_TABLE = 'walrus_test';
export const MAX_NODES = 50;
/** etcd's address in the namespace (with consensus 'etcd'): no node's, not the driver's. */
export const ETCD_ADDRESS = '127.0.0.200';
export const ETCD_CLIENT_PORT = 2379;
const ETCD_PEER_PORT = 2380;
/** etcd's place in a cut (cutLinks, peersOf): not a node id. */
export const ETCD = 0;

/** Where the metadata lives: WALRUS_TEST_CONSENSUS (raft unless it says etcd). */
export function testConsensus(): 'raft' | 'etcd' {
  const chosen = process.env.WALRUS_TEST_CONSENSUS ?? 'raft';
  if (chosen !== 'raft' && chosen !== 'etcd') throw new Error(`WALRUS_TEST_CONSENSUS must be raft or etcd, got ${chosen}`);
  return chosen;
}

/** Node `id`'s address: 127.0.0.<id>. */
export function nodeAddress(id: number): string {
  if (!Number.isInteger(id) || id < 1 || id > MAX_NODES) throw new Error(`node ids are 1..${MAX_NODES}, got ${id}`);
  return `127.0.0.${id}`;
}
export const clientPortOf = (id: number): number => 9090 + id;
export const raftPortOf = (id: number): number => 7070 + id;

/** The node module that binds a process's outgoing connections (see netns-bind.ts). */
const BIND_MODULE = new URL('./netns-bind.js', import.meta.url).href;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a tool to completion (SIGKILL after `timeoutMs`), with `input` on its stdin; resolves with its stdout. */
export function runTool(file: string, args: readonly string[], input = '', timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      err += chunk;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${file} cannot run: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${file} ${args.join(' ')} exited ${code ?? signal}: ${err.trim()}`));
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** netfilter's nft by its absolute path (never node_modules/.bin/nft, see namespaces.ts). */
function nftPath(): string {
  const path = nftTool();
  if (path === undefined) throw new Error('nft (nftables) is not installed');
  return path;
}

function ipPath(): string {
  const path = ipTool();
  if (path === undefined) throw new Error('ip (iproute2) is not installed');
  return path;
}

/** Runs an nft script (`nft -f -`): one atomic batch. */
function nft(script: string): Promise<string> {
  return runTool(nftPath(), ['-f', '-'], script);
}

export interface NamespaceInfo {
  /** The namespace's interfaces (only `lo`). */
  readonly interfaces: readonly string[];
  /** This process's uid_map: a user namespace maps a small range, never the whole. */
  readonly uidMap: string;
  /** Addresses that were listened on and reached from DRIVER_ADDRESS, each with the source the listener saw. */
  readonly reached: Readonly<Record<string, string>>;
}

let prepared: NamespaceInfo | undefined;

/**
 * Checks that this process is in a private network namespace (only `lo`, inside a user
 * namespace) and refuses otherwise, so nothing here ever touches the machine's own network;
 * brings `lo` up; checks that 127.0.0.1..`nodes` and DRIVER_ADDRESS can be listened on and
 * reached (from DRIVER_ADDRESS); makes the nft table afresh; binds this process's outgoing
 * connections to DRIVER_ADDRESS. Idempotent.
 */
export async function prepareNamespace(nodes = 3): Promise<NamespaceInfo> {
  if (prepared !== undefined && Object.keys(prepared.reached).length >= nodes + 1) return prepared;
  const links = await runTool(ipPath(), ['-o', 'link', 'show']);
  const interfaces = links
    .split('\n')
    .map((line) => /^\d+:\s*([^:@\s]+)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined);
  if (interfaces.length !== 1 || interfaces[0] !== 'lo') {
    throw new Error(`refusing to run: not a private network namespace (interfaces: ${interfaces.join(', ')}); run under \`unshare -rn\``);
  }
  const uidMap = (await readFile('/proc/self/uid_map', 'utf8')).trim().replace(/\s+/g, ' ');
  if (/^0 0 4294967295$/.test(uidMap)) throw new Error('refusing to run: not inside a user namespace (run under `unshare -rn`)');
  await runTool(ipPath(), ['link', 'set', 'lo', 'up']);
  const reached: Record<string, string> = {};
  for (const address of [...Array.from({ length: nodes }, (_, index) => nodeAddress(index + 1)), DRIVER_ADDRESS]) {
    reached[address] = await reachFromDriver(address);
    if (reached[address] !== DRIVER_ADDRESS) throw new Error(`${address} saw a connection from ${reached[address]}, not ${DRIVER_ADDRESS}`);
  }
  // Declaring the table first makes the delete succeed whether or not it existed: one atomic batch.
  await nft(
    `table inet ${NFT_TABLE} {}\ndelete table inet ${NFT_TABLE}\n` +
      `table inet ${NFT_TABLE} {\n  chain output {\n    type filter hook output priority 0; policy accept;\n  }\n}\n`,
  );
  bindOutgoingTcp(DRIVER_ADDRESS);
  prepared = { interfaces, uidMap, reached };
  return prepared;
}

/** Listens on `address` (a free port), connects to it from DRIVER_ADDRESS; resolves with the source address the listener saw. */
function reachFromDriver(address: string, timeoutMs = 3_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let server: Server | undefined;
    const timer = setTimeout(() => {
      server?.close();
      reject(new Error(`${address}: no connection from ${DRIVER_ADDRESS} within ${timeoutMs} ms`));
    }, timeoutMs);
    server = createServer((socket) => {
      const seen = socket.remoteAddress ?? '?';
      socket.destroy();
      clearTimeout(timer);
      server?.close(() => resolve(seen));
    });
    server.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot listen on ${address}: ${error.message}`));
    });
    server.listen(0, address, () => {
      const bound = server?.address();
      if (bound === null || bound === undefined || typeof bound === 'string') return;
      const socket = netConnect({ host: address, port: bound.port, localAddress: DRIVER_ADDRESS });
      socket.on('error', (error) => {
        clearTimeout(timer);
        server?.close();
        reject(new Error(`cannot reach ${address} from ${DRIVER_ADDRESS}: ${error.message}`));
      });
    });
  });
}

export interface NetnsClusterOptions {
  /** Nodes, on 127.0.0.1..nodes (default 3). */
  readonly nodes?: number;
  /** Environment of every node, over the defaults WALRUS_MAX_SEGMENT_ENTRIES=10, WALRUS_MONITOR_CHECK_MS=200. */
  readonly env?: Record<string, string>;
  /** Extra YAML appended to the shared config (top-level sections other than node, storage, cluster). */
  readonly extraConfig?: string;
  readonly fsync?: 'each' | 'interval' | 'none';
  /** Each node process is SIGKILLed after this long whatever happens (default 60 s). */
  readonly lifetimeMs?: number;
  /** Timeout of the driver's clients' requests (default 2 s, so that a probe of a cut-off node returns soon). */
  readonly clientTimeoutMs?: number;
  /** How long a start waits for a node's "ready" line (default 15 s). */
  readonly readyTimeoutMs?: number;
  /** Called with (id, pid) at every node start (and with ETCD for etcd's), e.g. to tell a parent which PIDs to clean up. */
  readonly onLaunch?: (id: number, pid: number) => void;
  /** Where the metadata lives (default testConsensus()): the nodes' Raft, or an etcd in the namespace. */
  readonly consensus?: 'raft' | 'etcd';
}

/** One run of a node process (a restart is a new one), with what it wrote so far. */
export interface Incarnation {
  readonly id: number;
  /** 1 for the first start of node `id`, 2 for its first restart, ... */
  readonly run: number;
  readonly pid: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
}

/** A node's view of the Raft group, from its METRICS. */
export interface RaftView {
  readonly state: string;
  readonly leader: number | null;
  readonly term: number;
}

/** An established TCP connection in the namespace (one end of it), with the PID owning that end. */
export interface TcpEnd {
  readonly local: string;
  readonly localPort: number;
  readonly remote: string;
  readonly remotePort: number;
  readonly pid: number | undefined;
}

export interface SourceCheck {
  /** Outgoing node-to-node connection ends that left from their node's own address. */
  readonly nodeToNode: number;
  /** Nodes' connections to etcd (consensus 'etcd'), each of which must leave from its node's own address. */
  readonly nodeToEtcd: number;
  /** Client connections (driver → a node's client port), counted at the node's end. */
  readonly clientConnections: number;
  /** Every connection end that left from, or came from, an address the rules do not expect. */
  readonly wrong: readonly string[];
}

export class NetnsCluster {
  readonly ids: readonly number[];
  private readonly dir: string;
  private readonly config: string;
  private readonly options: NetnsClusterOptions;
  private readonly running = new Map<number, Running>();
  private readonly stopping = new Set<Running>();
  private readonly clients = new Map<number, WalrusClient>();
  /** Clients made by newClient(), closed with the cluster. */
  private readonly extraClients = new Set<WalrusClient>();
  /** Every node process started, in order (for logs()). */
  private readonly incarnations: { readonly id: number; readonly run: number; readonly node: Running }[] = [];
  /** Nodes stopped by pause() and not resumed yet. */
  private readonly paused = new Set<number>();
  private readonly cuts = new Set<string>();
  private readonly exits: { id: number; code: number | null; signal: NodeJS.Signals | null }[] = [];
  /** The etcd process, with consensus 'etcd'. */
  private etcd: Running | undefined;
  readonly consensus: 'raft' | 'etcd';

  private constructor(dir: string, config: string, ids: number[], options: NetnsClusterOptions) {
    this.dir = dir;
    this.config = config;
    this.ids = ids;
    this.options = options;
    this.consensus = options.consensus ?? testConsensus();
  }

  /** Prepares the namespace, writes the config into `dir`, starts every node; resolves once each has logged "ready". */
  static async start(dir: string, options: NetnsClusterOptions = {}): Promise<NetnsCluster> {
    const count = options.nodes ?? 3;
    if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) throw new Error(`nodes must be 1..${MAX_NODES}, got ${count}`);
    await prepareNamespace(count);
    const ids = Array.from({ length: count }, (_, index) => index + 1);
    const entries = ids
      .map((id) => {
        const host = nodeAddress(id);
        return `    - { id: ${id}, clientHost: ${host}, clientPort: ${clientPortOf(id)}, raftHost: ${host}, raftPort: ${raftPortOf(id)} }`;
      })
      .join('\n');
    const config = join(dir, 'cluster.yaml');
    const consensus = options.consensus ?? testConsensus();
    const metadata =
      consensus === 'etcd' ? `consensus: etcd\netcd:\n  endpoints: [${JSON.stringify(`${ETCD_ADDRESS}:${ETCD_CLIENT_PORT}`)}]\n` : '';
    await writeFile(
      config,
      `node:\n  dataDir: ${JSON.stringify(join(dir, 'data'))}\nstorage:\n  backend: fd\n${options.fsync === undefined ? '' : `  fsync: ${options.fsync}\n`}cluster:\n  nodes:\n${entries}\n${metadata}${options.extraConfig ?? ''}`,
    );
    const cluster = new NetnsCluster(dir, config, ids, options);
    try {
      if (consensus === 'etcd') await cluster.startEtcd();
      for (const id of ids) cluster.launch(id);
      await Promise.all(ids.map((id) => cluster.ready(id)));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  host(id: number): string {
    return nodeAddress(id);
  }

  /** Starts etcd on ETCD_ADDRESS (data under the cluster's dir) and waits until it answers a read, at most 15 s. */
  private async startEtcd(): Promise<void> {
    const client = `http://${ETCD_ADDRESS}:${ETCD_CLIENT_PORT}`;
    const peer = `http://${ETCD_ADDRESS}:${ETCD_PEER_PORT}`;
    const etcd = startProcess(
      'etcd',
      [
        '--name',
        'netns',
        '--data-dir',
        join(this.dir, 'etcd'),
        '--listen-client-urls',
        client,
        '--advertise-client-urls',
        client,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `netns=${peer}`,
      ],
      { cwd: this.dir, env: {}, lifetimeMs: (this.options.lifetimeMs ?? 60_000) + 30_000 },
    );
    this.etcd = etcd;
    if (etcd.child.pid !== undefined) this.options.onLaunch?.(ETCD, etcd.child.pid);
    const probe = new Etcd3({ hosts: `${ETCD_ADDRESS}:${ETCD_CLIENT_PORT}`, dialTimeout: 1_000 });
    try {
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (etcd.child.exitCode !== null) throw new Error(`etcd exited with ${etcd.child.exitCode}:\n${etcd.stderr().slice(-5_000)}`);
        try {
          await probe.get('netns-probe').string();
          return;
        } catch (error) {
          if (Date.now() > deadline)
            throw new Error(
              `etcd did not answer on ${ETCD_ADDRESS} within 15 s (${(error as Error).message}):\n${etcd.stderr().slice(-5_000)}`,
            );
          await sleep(100);
        }
      }
    } finally {
      probe.close();
    }
  }

  /** The other ends node `id` talks to: every other node, and etcd with consensus 'etcd' (as ETCD). */
  peersOf(id: number): number[] {
    return [...this.ids.filter((other) => other !== id), ...(this.etcd === undefined ? [] : [ETCD])];
  }

  /** Starts node `id` (again), bound to 127.0.0.<id>. Throws when it is running. */
  launch(id: number): Running {
    if (!this.ids.includes(id)) throw new Error(`node ${id} is not in this cluster`);
    if (this.running.has(id)) throw new Error(`node ${id} is running`);
    const node = startProcess(
      process.execPath,
      [...NODE_FLAGS, `--import=${BIND_MODULE}`, WALRUS_BIN, 'start', '--config', this.config, '--node-id', String(id)],
      {
        cwd: this.dir,
        env: {
          WALRUS_MAX_SEGMENT_ENTRIES: '10',
          WALRUS_MONITOR_CHECK_MS: '200',
          ...this.options.env,
          NETNS_LOCAL_ADDRESS: nodeAddress(id),
        },
        lifetimeMs: this.options.lifetimeMs ?? 60_000,
      },
    );
    this.running.set(id, node);
    this.incarnations.push({ id, run: this.incarnations.filter((known) => known.id === id).length + 1, node });
    if (node.child.pid !== undefined) this.options.onLaunch?.(id, node.child.pid);
    void node.exited.then((finished) => {
      if (!this.stopping.has(node)) this.exits.push({ id, code: finished.code, signal: finished.signal });
      if (this.running.get(id) === node) this.running.delete(id);
    });
    return node;
  }

  async ready(id: number, timeoutMs = this.options.readyTimeoutMs ?? 15_000): Promise<void> {
    await this.node(id).waitForLine(/"msg":"ready"/, timeoutMs);
  }

  node(id: number): Running {
    const node = this.running.get(id);
    if (node === undefined) throw new Error(`node ${id} is not running`);
    return node;
  }

  pid(id: number): number | undefined {
    return this.running.get(id)?.child.pid;
  }

  /** Node exits the harness did not cause (kill, close), in order. */
  unexpectedExits(): readonly { id: number; code: number | null; signal: NodeJS.Signals | null }[] {
    return [...this.exits];
  }

  /** Sends `signal` to node `id` by its PID; resolves once it has exited (SIGKILL after `timeoutMs` if it has not). */
  async kill(id: number, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<Finished> {
    const node = this.node(id);
    await this.clients.get(id)?.close();
    this.clients.delete(id);
    this.stopping.add(node);
    node.child.kill(signal);
    // A stopped process acts on no signal but SIGKILL until it is continued.
    if (this.paused.delete(id) && signal !== 'SIGKILL') node.child.kill('SIGCONT');
    const timer = setTimeout(() => node.child.kill('SIGKILL'), timeoutMs);
    const finished = await node.exited;
    clearTimeout(timer);
    this.running.delete(id);
    return finished;
  }

  /** Freezes node `id` (SIGSTOP by its PID): it keeps its sockets and answers nothing until resume(). */
  pause(id: number): void {
    const node = this.node(id);
    if (!node.child.kill('SIGSTOP')) throw new Error(`node ${id} could not be sent SIGSTOP`);
    this.paused.add(id);
  }

  /** Continues node `id` after pause() (SIGCONT by its PID). */
  resume(id: number): void {
    const node = this.node(id);
    node.child.kill('SIGCONT');
    this.paused.delete(id);
  }

  /** Nodes paused and not resumed. */
  pausedNodes(): number[] {
    return [...this.paused].sort((a, b) => a - b);
  }

  /** Whether node `id` has a running process (it may be paused). */
  isRunning(id: number): boolean {
    return this.running.has(id);
  }

  /** Starts node `id` again (it must be stopped) and waits for its "ready". */
  async restart(id: number): Promise<void> {
    this.launch(id);
    await this.ready(id);
  }

  /** The driver's client of node `id` (one per node, made on first use), from DRIVER_ADDRESS. */
  client(id: number): WalrusClient {
    let client = this.clients.get(id);
    if (client === undefined) {
      client = new WalrusClient({ host: nodeAddress(id), port: clientPortOf(id), timeoutMs: this.options.clientTimeoutMs ?? 2_000 });
      this.clients.set(id, client);
    }
    return client;
  }

  /**
   * Another client of node `id` (from DRIVER_ADDRESS), on a connection of its own: a writer or
   * reader that must not share the harness client's connection (a TIMEOUT fails every request
   * of a connection). Closed with the cluster; kill() leaves it (it reconnects by itself).
   */
  newClient(id: number, timeoutMs = this.options.clientTimeoutMs ?? 2_000): WalrusClient {
    const client = new WalrusClient({ host: nodeAddress(id), port: clientPortOf(id), timeoutMs });
    this.extraClients.add(client);
    return client;
  }

  /** Node `id`'s METRICS, or undefined when it does not answer. */
  async metrics(id: number): Promise<Record<string, unknown> | undefined> {
    return this.client(id)
      .metrics()
      .catch(() => undefined);
  }

  /** Node `id`'s view of the Raft group, or undefined when it does not answer. */
  async raftView(id: number): Promise<RaftView | undefined> {
    const metrics = await this.metrics(id);
    if (metrics === undefined) return undefined;
    const leader = metrics.current_leader;
    return {
      state: String(metrics.state),
      leader: typeof leader === 'number' && leader > 0 ? leader : null,
      term: typeof metrics.current_term === 'number' ? metrics.current_term : -1,
    };
  }

  /**
   * Polls every 50 ms until every node of `ids` names the same Raft leader, one that `accept`
   * takes (default: any); resolves with it and the views. Throws after `timeoutMs`, with the last views.
   */
  async agreedLeader(
    ids: readonly number[] = this.ids,
    timeoutMs = 15_000,
    accept: (leader: number) => boolean = () => true,
  ): Promise<{ leader: number; views: Record<number, RaftView | undefined> }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const views: Record<number, RaftView | undefined> = {};
      await Promise.all(
        ids.map(async (id) => {
          views[id] = await this.raftView(id);
        }),
      );
      const leaders = new Set(ids.map((id) => views[id]?.leader ?? null));
      const [leader] = leaders;
      if (leaders.size === 1 && typeof leader === 'number' && accept(leader)) return { leader, views };
      if (Date.now() > deadline)
        throw new Error(`nodes ${ids.join(', ')} named no common leader within ${timeoutMs} ms: ${JSON.stringify(views)}`);
      await sleep(50);
    }
  }

  // --- link faults (nftables) ------------------------------------------------------------------

  /** Drops every packet from node `from`'s address to node `to`'s (TCP needs both ways, so connections between them stall too). */
  async cutOneWay(from: number, to: number): Promise<void> {
    await this.addCuts([[from, to]]);
  }

  /** Drops every packet between nodes `a` and `b`, both ways. */
  async cut(a: number, b: number): Promise<void> {
    await this.addCuts([
      [a, b],
      [b, a],
    ]);
  }

  /** Drops every packet of each directed link `[from, to]` (ETCD for etcd), all in one nft batch (so they take effect together). */
  async cutLinks(links: readonly (readonly [number, number])[]): Promise<void> {
    await this.addCuts(links);
  }

  /** Cuts node `id` from every other node (and from etcd, with consensus 'etcd'), both ways; its clients (from DRIVER_ADDRESS) still reach it. */
  async isolate(id: number): Promise<void> {
    await this.addCuts(
      this.peersOf(id).flatMap((other): [number, number][] => [
        [id, other],
        [other, id],
      ]),
    );
  }

  /** Removes every cut (flushes the table). */
  async heal(): Promise<void> {
    await nft(`flush table inet ${NFT_TABLE}\n`);
    this.cuts.clear();
  }

  /** The directed cuts in force, as `from>to`. */
  activeCuts(): string[] {
    return [...this.cuts].sort();
  }

  /** Packets dropped so far by each cut in force (`from>to` → packets), from the rules' counters. */
  async dropped(): Promise<Record<string, number>> {
    const listing = JSON.parse(await runTool(nftPath(), ['-j', 'list', 'table', 'inet', NFT_TABLE])) as {
      nftables: { rule?: { comment?: string; expr?: { counter?: { packets: number } }[] } }[];
    };
    const counts: Record<string, number> = {};
    for (const item of listing.nftables) {
      const rule = item.rule;
      if (rule?.comment === undefined) continue;
      const counter = rule.expr?.find((expr) => expr.counter !== undefined)?.counter;
      counts[rule.comment] = counter?.packets ?? 0;
    }
    return counts;
  }

  private async addCuts(pairs: readonly (readonly [number, number])[]): Promise<void> {
    const fresh = pairs.filter(([from, to]) => {
      if (from === to) throw new Error(`cannot cut node ${from} from itself`);
      for (const id of [from, to])
        if (!this.ids.includes(id) && !(id === ETCD && this.etcd !== undefined)) throw new Error(`node ${id} is not in this cluster`);
      return !this.cuts.has(cutName(from, to));
    });
    if (fresh.length === 0) return;
    await nft(
      fresh
        .map(
          ([from, to]) =>
            `add rule inet ${NFT_TABLE} output ip saddr ${endAddress(from)} ip daddr ${endAddress(to)} counter drop comment "${cutName(from, to)}"\n`,
        )
        .join(''),
    );
    for (const [from, to] of fresh) this.cuts.add(cutName(from, to));
  }

  // --- what the connections look like ----------------------------------------------------------

  /** The namespace's established TCP connection ends, each with the PID (of a node or this driver) that owns it. */
  async tcpEnds(): Promise<TcpEnd[]> {
    const owners = new Map<number, number>();
    const pids = [process.pid, ...[...this.running.values()].map((node) => node.child.pid)].filter(
      (pid): pid is number => pid !== undefined,
    );
    for (const pid of pids) {
      const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
      for (const fd of fds) {
        const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
        const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
        if (inode !== undefined) owners.set(Number(inode), pid);
      }
    }
    const table = await readFile('/proc/net/tcp', 'utf8');
    const ends: TcpEnd[] = [];
    for (const line of table.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '01') continue; // 01: ESTABLISHED
      const [local, localPort] = hexEndpoint(fields[1] as string);
      const [remote, remotePort] = hexEndpoint(fields[2] as string);
      ends.push({ local, localPort, remote, remotePort, pid: owners.get(Number(fields[9])) });
    }
    return ends;
  }

  /**
   * Whether every established connection left from the address the rules expect: a node's
   * outgoing connections to another node's internal port from its own address, the driver's
   * connections to client ports from DRIVER_ADDRESS, and nothing else reaching a client port.
   */
  async sourceCheck(): Promise<SourceCheck> {
    const nodeOf = new Map([...this.running.entries()].map(([id, node]) => [node.child.pid, id]));
    const raftPorts = new Set(this.ids.map(raftPortOf));
    const clientPorts = new Set(this.ids.map(clientPortOf));
    let nodeToNode = 0;
    let nodeToEtcd = 0;
    let clientConnections = 0;
    const wrong: string[] = [];
    for (const end of await this.tcpEnds()) {
      const text = `${end.local}:${end.localPort} -> ${end.remote}:${end.remotePort} (pid ${end.pid ?? '?'})`;
      const id = end.pid === undefined ? undefined : nodeOf.get(end.pid);
      if (id !== undefined && end.localPort === clientPortOf(id)) {
        clientConnections += 1;
        if (end.remote !== DRIVER_ADDRESS) wrong.push(`client connection to node ${id} from ${end.remote}: ${text}`);
      } else if (id !== undefined && end.localPort === raftPortOf(id)) {
        if (end.remote === DRIVER_ADDRESS) wrong.push(`driver connected to node ${id}'s internal port: ${text}`);
      } else if (id !== undefined && raftPorts.has(end.remotePort)) {
        nodeToNode += 1;
        if (end.local !== nodeAddress(id)) wrong.push(`node ${id} reached another node from ${end.local}: ${text}`);
      } else if (id !== undefined && end.remote === ETCD_ADDRESS && end.remotePort === ETCD_CLIENT_PORT && this.etcd !== undefined) {
        nodeToEtcd += 1;
        if (end.local !== nodeAddress(id)) wrong.push(`node ${id} reached etcd from ${end.local}: ${text}`);
      } else if (end.pid === process.pid && clientPorts.has(end.remotePort)) {
        if (end.local !== DRIVER_ADDRESS) wrong.push(`driver client left from ${end.local}: ${text}`);
      } else if (id !== undefined) {
        wrong.push(`node ${id} has an unexpected connection: ${text}`);
      }
    }
    return { nodeToNode, nodeToEtcd, clientConnections, wrong };
  }

  /** Every log line of every running node that is a warning or worse, for failure messages. */
  problems(): string {
    return [...this.running.entries()]
      .flatMap(([id, node]) =>
        node
          .stdout()
          .split('\n')
          .filter((line) => /"level":(40|50|60)/.test(line))
          .map((line) => `node ${id}: ${line}`),
      )
      .join('\n');
  }

  /** What every node process started so far wrote (stopped ones included), in start order. */
  logs(): Incarnation[] {
    return this.incarnations.map(({ id, run, node }) => ({ id, run, pid: node.child.pid, stdout: node.stdout(), stderr: node.stderr() }));
  }

  /** Writes logs() into `dir` as node-<id>-run<run>.log (stdout) and .err (stderr, when not empty); resolves with the file names. */
  async writeLogs(dir: string): Promise<string[]> {
    await mkdir(dir, { recursive: true });
    const names: string[] = [];
    for (const { id, run, stdout, stderr } of this.logs()) {
      const base = `node-${id}-run${run}`;
      await writeFile(join(dir, `${base}.log`), stdout);
      names.push(`${base}.log`);
      if (stderr !== '') {
        await writeFile(join(dir, `${base}.err`), stderr);
        names.push(`${base}.err`);
      }
    }
    return names;
  }

  /** Closes the clients, removes every cut, SIGKILLs every node by its PID and waits for each to exit. */
  async close(): Promise<void> {
    for (const client of [...this.clients.values(), ...this.extraClients]) await client.close().catch(() => undefined);
    this.clients.clear();
    this.extraClients.clear();
    this.paused.clear();
    await this.heal().catch(() => undefined);
    const nodes = [...this.running.values()];
    for (const node of nodes) {
      this.stopping.add(node);
      node.child.kill('SIGKILL');
    }
    await Promise.all(nodes.map((node) => node.exited));
    this.running.clear();
    const etcd = this.etcd;
    this.etcd = undefined;
    if (etcd !== undefined) {
      etcd.child.kill('SIGKILL');
      await etcd.exited;
    }
  }
}

/** The address of a cut's end: a node's, or etcd's for ETCD. */
function endAddress(id: number): string {
  return id === ETCD ? ETCD_ADDRESS : nodeAddress(id);
}

/** A directed cut's name, as activeCuts() and the rules' comments have it: `1>2`, `3>etcd`. */
function cutName(from: number, to: number): string {
  const name = (id: number) => (id === ETCD ? 'etcd' : String(id));
  return `${name(from)}>${name(to)}`;
}

/** `0100007F:1F91` (an entry of /proc/net/tcp) → ['127.0.0.1', 8081]. */
function hexEndpoint(text: string): [string, number] {
  const [addressHex = '0', portHex = '0'] = text.split(':');
  const value = Number.parseInt(addressHex, 16);
  const bytes = [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
  // The kernel prints the address as a host-order number of the network-order bytes.
  if (endianness() === 'LE') bytes.reverse();
  return [bytes.join('.'), Number.parseInt(portHex, 16)];
}
