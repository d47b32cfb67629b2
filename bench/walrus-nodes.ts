// Walrus nodes on loopback for the `jetstream` and `failover` suites (the `cluster` suite keeps its
// own copy): `walrus start --config FILE --node-id N` children of this process, one static
// cluster.nodes config on explicit free ports of 127.0.0.1, each node with its own data directory
// under the caller's temp root. Nodes are stopped by their own PID (SIGTERM, then SIGKILL), killed
// by PID, and started again on the same directory; every wait is bounded.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WalrusClient } from '../src/client/index.js';
import { freePorts } from '../test/helpers/net.js';
import { type Child, processCpuSeconds, startChild } from './server.bench.js';

const WALRUS_BIN = fileURLToPath(new URL('../../bin/walrus', import.meta.url));
/** How long a node may take to log "ready". */
export const START_TIMEOUT_MS = 30_000;
const READY = /"msg":"ready"/;

export interface WalrusNode {
  readonly id: number;
  readonly clientPort: number;
  /** The running process; replaced by restart(). */
  child: Child;
}

export interface WalrusNodes {
  readonly ids: readonly number[];
  readonly nodes: readonly WalrusNode[];
  node(id: number): WalrusNode;
  /** A client of node `id` (one per node, made on first use). */
  client(id: number): WalrusClient;
  /** SIGKILL of node `id` by its PID; resolves once it has exited (at most 10 s). */
  kill(id: number): Promise<void>;
  /** Starts node `id` again on its data directory; resolves once it has logged "ready". */
  restart(id: number): Promise<void>;
  /** CPU seconds the running nodes have used so far (/proc). */
  cpuSeconds(): number;
  /** Closes the clients and stops every node by its PID. */
  stop(): Promise<void>;
}

/**
 * Starts `count` nodes with `settings` (top-level YAML lines other than `cluster`) and resolves
 * once every one has logged "ready". `inFlightMax` is each client's requests on the wire at once.
 */
export async function startWalrusNodes(
  root: string,
  settings: readonly string[],
  options: { readonly count?: number; readonly inFlightMax?: number; readonly clientTimeoutMs?: number } = {},
): Promise<WalrusNodes> {
  const count = options.count ?? 3;
  const ports = await freePorts(2 * count);
  const ids = Array.from({ length: count }, (_, index) => index + 1);
  const clientPort = (id: number): number => ports[count + id - 1] as number;
  const config = join(root, `walrus-${Date.now()}.yaml`);
  writeFileSync(
    config,
    [
      ...settings,
      'cluster:',
      '  nodes:',
      ...ids.map((id) => `    - { id: ${id}, clientPort: ${clientPort(id)}, raftPort: ${ports[id - 1]} }`),
      '',
    ].join('\n'),
  );
  // WALRUS_* variables would override the file: the nodes get none of them.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('WALRUS_')));
  const dirs = new Map(ids.map((id) => [id, mkdtempSync(join(root, `node${id}-`))]));
  const launch = (id: number): Child => {
    const dir = dirs.get(id) as string;
    return startChild(
      process.execPath,
      [WALRUS_BIN, 'start', '--config', config, '--node-id', String(id), '--data-dir', join(dir, 'data')],
      dir,
      env,
    );
  };
  const nodes: WalrusNode[] = [];
  const clients = new Map<number, WalrusClient>();
  const node = (id: number): WalrusNode => {
    const found = nodes.find((candidate) => candidate.id === id);
    if (found === undefined) throw new Error(`no node ${id}`);
    return found;
  };
  const exited = (child: Child, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve(true);
      const timer = setTimeout(() => resolve(false), ms);
      child.process.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  const cluster: WalrusNodes = {
    ids,
    nodes,
    node,
    client(id) {
      let client = clients.get(id);
      if (client === undefined) {
        client = new WalrusClient({
          host: '127.0.0.1',
          port: node(id).clientPort,
          ...(options.inFlightMax === undefined ? {} : { inFlightMax: options.inFlightMax }),
          timeoutMs: options.clientTimeoutMs ?? 30_000,
        });
        clients.set(id, client);
      }
      return client;
    },
    async kill(id) {
      const { child } = node(id);
      child.process.kill('SIGKILL');
      if (!(await exited(child, 10_000))) throw new Error(`node ${id} (pid ${child.process.pid}) did not exit within 10 s of SIGKILL`);
    },
    async restart(id) {
      const target = node(id);
      if (!(await exited(target.child, 10_000))) throw new Error(`node ${id} is still running: stop it before a restart`);
      target.child = launch(id);
      await target.child.line(READY, START_TIMEOUT_MS);
    },
    cpuSeconds() {
      return nodes.reduce((sum, each) => sum + processCpuSeconds(each.child.process.pid), 0);
    },
    async stop() {
      for (const client of clients.values()) await client.close().catch(() => undefined);
      clients.clear();
      await Promise.all(nodes.map((each) => each.child.stop()));
    },
  };
  try {
    for (const id of ids) nodes.push({ id, clientPort: clientPort(id), child: launch(id) });
    await Promise.all(nodes.map((each) => each.child.line(READY, START_TIMEOUT_MS)));
    return cluster;
  } catch (error) {
    await cluster.stop();
    throw error;
  }
}

/**
 * Registers `topic` through node `via` and returns the node leading its open segment, once every
 * running node in `ids` knows the topic (each asked with STATE until it does, at most 30 s).
 */
export async function registerTopic(cluster: WalrusNodes, topic: string, via: number, ids = cluster.ids): Promise<number> {
  await cluster.client(via).register(topic);
  let leader = 0;
  for (const id of ids) {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      const state = await cluster
        .client(id)
        .state(topic)
        .catch(() => undefined);
      if (state !== undefined) {
        leader = state.leader_node;
        break;
      }
      if (Date.now() > deadline) throw new Error(`topic ${topic} unknown to node ${id} after ${START_TIMEOUT_MS} ms`);
      await sleep(50);
    }
  }
  if (!cluster.ids.includes(leader)) throw new Error(`STATE ${topic} names leader_node ${leader}, not a node of this run`);
  return leader;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
