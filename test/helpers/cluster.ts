// Three (or more) real `walrus start` processes on loopback, one Raft group from one cluster
// config, each with its own data under one temp root, the original's test settings
// (WALRUS_MAX_SEGMENT_ENTRIES=10, WALRUS_MONITOR_CHECK_MS=200) and a bounded lifetime. Nodes are
// killed and restarted by id; every process is stopped by its own PID when the cluster closes.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WalrusClient } from '../../src/client/index.js';
import { startEtcd, type TestEtcd } from './etcd.js';
import { withTempDir } from './kernel.js';
import { freePorts } from './net.js';
import { type Running, startWalrus } from './process.js';

export interface ClusterOptions {
  readonly nodes?: number;
  readonly env?: Record<string, string>;
  /** Extra YAML appended to the shared config (top-level sections other than node, storage, cluster). */
  readonly extraConfig?: string;
  /** storage.fsync of every node (default: the node's default, interval). */
  readonly fsync?: 'each' | 'interval' | 'none';
  readonly lifetimeMs?: number;
  /** Give each node an admin endpoint on a free port of its own (`--admin-port`; adminPorts has them). */
  readonly admin?: boolean;
}

export class TestCluster {
  readonly ids: readonly number[];
  readonly clientPorts: Map<number, number>;
  readonly raftPorts: Map<number, number>;
  /** Each node's admin port, with ClusterOptions.admin. */
  readonly adminPorts = new Map<number, number>();
  private readonly dir: string;
  private readonly config: string;
  private readonly options: ClusterOptions;
  private readonly running = new Map<number, Running>();
  private readonly clients = new Map<number, WalrusClient>();

  /** Extra `walrus start` arguments of nodes started outside cluster.nodes (joiners). */
  private readonly extraArgs = new Map<number, readonly string[]>();
  /** The etcd the nodes keep their metadata in, when the suite runs on consensus-etcd. */
  etcd: TestEtcd | undefined;

  private constructor(
    dir: string,
    config: string,
    ids: number[],
    clientPorts: Map<number, number>,
    raftPorts: Map<number, number>,
    options: ClusterOptions,
  ) {
    this.dir = dir;
    this.config = config;
    this.ids = ids;
    this.clientPorts = clientPorts;
    this.raftPorts = raftPorts;
    this.options = options;
  }

  /** Writes the config and starts every node; resolves once each has logged "ready". */
  static async start(dir: string, options: ClusterOptions = {}): Promise<TestCluster> {
    const count = options.nodes ?? 3;
    const ports = await freePorts(2 * count);
    const ids = Array.from({ length: count }, (_, index) => index + 1);
    const clientPorts = new Map(ids.map((id) => [id, ports[count + id - 1] as number]));
    const entries = ids.map((id) => `    - { id: ${id}, clientPort: ${clientPorts.get(id)}, raftPort: ${ports[id - 1]} }`).join('\n');
    const config = join(dir, 'cluster.yaml');
    await writeFile(
      config,
      `node:\n  dataDir: ${JSON.stringify(join(dir, 'data'))}\nstorage:\n  backend: fd\n${options.fsync === undefined ? '' : `  fsync: ${options.fsync}\n`}cluster:\n  nodes:\n${entries}\n${options.extraConfig ?? ''}`,
    );
    const raftPorts = new Map(ids.map((id) => [id, ports[id - 1] as number]));
    // WALRUS_TEST_CONSENSUS=etcd runs the suite with the metadata in an etcd of the cluster's own.
    let etcd: TestEtcd | undefined;
    let env = options.env;
    if (process.env.WALRUS_TEST_CONSENSUS === 'etcd') {
      etcd = await startEtcd();
      env = { WALRUS_CONSENSUS: 'etcd', WALRUS_ETCD_ENDPOINTS: etcd.endpoint, ...options.env };
    }
    const cluster = new TestCluster(dir, config, ids, clientPorts, raftPorts, { ...options, ...(env === undefined ? {} : { env }) });
    cluster.etcd = etcd;
    if (options.admin === true) {
      const adminPorts = await freePorts(count);
      for (const id of ids) cluster.adminPorts.set(id, adminPorts[id - 1] as number);
    }
    for (const id of ids) cluster.launch(id);
    await Promise.all(ids.map((id) => cluster.ready(id)));
    return cluster;
  }

  /**
   * Starts node `id`, not in cluster.nodes, with `--join` to member `via`'s internal port, on
   * free ports of its own (kept for its restarts). Resolves once it has started (or exited).
   */
  async startJoiner(id: number, via: number, extra: readonly string[] = [], newPorts = false): Promise<Running> {
    if (newPorts || !this.clientPorts.has(id)) {
      const [client, raft] = await freePorts(2);
      this.clientPorts.set(id, client as number);
      this.raftPorts.set(id, raft as number);
    }
    this.extraArgs.set(id, [
      '--client-port',
      String(this.clientPorts.get(id)),
      '--raft-port',
      String(this.raftPorts.get(id)),
      '--join',
      `127.0.0.1:${this.raftPorts.get(via)}`,
      ...extra,
    ]);
    return this.launch(id);
  }

  /** Starts node `id` (again). */
  launch(id: number): Running {
    const admin = this.adminPorts.get(id);
    const args = ['start', '--config', this.config, '--node-id', String(id), ...(this.extraArgs.get(id) ?? [])];
    if (admin !== undefined) args.push('--admin-port', String(admin));
    const node = startWalrus(args, {
      cwd: this.dir,
      env: { WALRUS_MAX_SEGMENT_ENTRIES: '10', WALRUS_MONITOR_CHECK_MS: '200', ...this.options.env },
      lifetimeMs: this.options.lifetimeMs ?? 120_000,
    });
    this.running.set(id, node);
    return node;
  }

  async ready(id: number, timeoutMs = 15_000): Promise<void> {
    await this.node(id).waitForLine(/"msg":"ready"/, timeoutMs);
  }

  node(id: number): Running {
    const node = this.running.get(id);
    if (node === undefined) throw new Error(`node ${id} is not running`);
    return node;
  }

  /** A client of node `id` (one per node, made on first use). */
  client(id: number): WalrusClient {
    let client = this.clients.get(id);
    if (client === undefined) {
      client = new WalrusClient({ host: '127.0.0.1', port: this.clientPorts.get(id) as number, timeoutMs: 15_000 });
      this.clients.set(id, client);
    }
    return client;
  }

  /** The Raft leader as node `askId` reports it in METRICS, once one is known. */
  async leader(askId = 1, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const metrics = await this.client(askId)
        .metrics()
        .catch(() => undefined);
      const leader = metrics?.current_leader;
      if (typeof leader === 'number' && leader > 0) return leader;
      if (Date.now() > deadline) throw new Error(`no Raft leader known to node ${askId} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** SIGKILL of node `id`; resolves once it has exited. */
  async kill(id: number): Promise<void> {
    const node = this.running.get(id);
    if (node === undefined) return;
    await this.clients.get(id)?.close();
    this.clients.delete(id);
    node.child.kill('SIGKILL');
    await node.exited;
    this.running.delete(id);
  }

  /** Kills every node (SIGKILL, by PID) and closes the clients. */
  async close(): Promise<void> {
    for (const client of this.clients.values()) await client.close().catch(() => undefined);
    this.clients.clear();
    for (const node of this.running.values()) node.child.kill('SIGKILL');
    await Promise.all([...this.running.values()].map((node) => node.exited));
    this.running.clear();
    await this.etcd?.stop();
  }

  /** Every log line of every node that is a warning or worse, for failure messages. */
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
}

/** Runs `body` with a cluster started in a temp directory of its own, and stops it (and removes the directory) however `body` ends. */
export async function withCluster(options: ClusterOptions, body: (cluster: TestCluster, dir: string) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const cluster = await TestCluster.start(dir, options);
    try {
      await body(cluster, dir);
    } finally {
      await cluster.close();
    }
  });
}
