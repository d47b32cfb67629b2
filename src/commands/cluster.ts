// `walrus cluster start`: N `walrus start` processes on this machine as one static cluster. It
// plans ids 1..N with ports counted up from two bases, refuses clashing or busy ports before
// anything starts, writes one cluster config into the data folder and starts each node with
// `--config <it> --node-id <i>`. Every line a node prints comes out whole, prefixed `[node <i>] `.
// A signal stops all nodes by PID (SIGTERM, SIGKILL past a deadline); a node that exits on its
// own is reported and the others keep running, so a user can try failover.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { stringify } from 'yaml';
import type { NodeConfig } from '../contracts/config.js';
import { readConfigFile, type TextSetting } from '../kernel/config.js';
import { ENV_TABLE, type Environment, envValue, LAUNCHER_ENV } from '../kernel/env.js';
import { ConfigError, isWalrusError } from '../kernel/errors.js';
import { Kernel } from '../kernel/kernel.js';
import { isModulePath } from '../kernel/load.js';
import { isPlainObject } from '../kernel/schema.js';
import { lockNodeDirectory } from '../node/node-lock.js';
import { walrusCatalog } from '../plugins/catalog.js';
import { clusterRemove } from './cluster-remove.js';
import type { Io } from './io.js';

/** More nodes than this on one machine is a typo, not a test. */
export const clusterNodesMax = 9;
/** Past the nodes' own stop deadline (kernel.stopTimeoutMs), how long before SIGKILL. */
const STOP_GRACE_MS = 5000;
/** With a log level that hides the `ready` line, how often a node's client port is tried instead. */
const READY_PROBE_INTERVAL_MS = 200;
/** Log levels at which the kernel's `ready` line (info) is written. */
const READY_LOGGED_LEVELS: ReadonlySet<string> = new Set(['info', 'debug', 'trace']);
const PORT_MAX = 65_535;
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** The launcher the nodes run: bin/walrus, three folders up from build/src/commands/. */
const WALRUS_BIN = fileURLToPath(new URL('../../../bin/walrus', import.meta.url));

/** One member: what its `cluster.nodes` entry says. */
export interface Member {
  readonly id: number;
  readonly clientHost: string;
  readonly clientPort: number;
  readonly raftHost: string;
  readonly raftPort: number;
}

export interface PlanOptions {
  readonly nodes: number;
  readonly clientPortBase: number;
  readonly raftPortBase: number;
  /** One address for all nodes, or one per node. */
  readonly hosts: readonly string[];
  /** Node i's admin endpoint on this port + i - 1 (absent: no admin endpoints). */
  readonly adminPortBase?: number;
}

/** Each node's admin port (`--admin-port-base`), by id; empty without one. */
export function adminPorts(options: Pick<PlanOptions, 'nodes' | 'adminPortBase'>): Map<number, number> {
  const base = options.adminPortBase;
  if (base === undefined) return new Map();
  if (base + options.nodes - 1 > PORT_MAX) {
    throw new ClusterUsageError(
      `--admin-port-base ${base} with ${options.nodes} nodes needs ports up to ${base + options.nodes - 1}, past ${PORT_MAX}`,
    );
  }
  return new Map(Array.from({ length: options.nodes }, (_, index) => [index + 1, base + index] as const));
}

/** Bad input found before anything starts: printed as is, exit 2. */
export class ClusterUsageError extends Error {}

/** Ids 1..N, node i on ports base+i-1 of its host. Throws ClusterUsageError for a plan that cannot work. */
export function planMembers(options: PlanOptions): Member[] {
  const { nodes, hosts } = options;
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > clusterNodesMax) {
    throw new ClusterUsageError(`--nodes must be 1..${clusterNodesMax}, got ${nodes}`);
  }
  if (hosts.length !== 1 && hosts.length !== nodes) {
    throw new ClusterUsageError(`--hosts lists ${hosts.length} addresses for ${nodes} nodes: give exactly one per node`);
  }
  for (const [flag, base] of [
    ['--client-port-base', options.clientPortBase],
    ['--raft-port-base', options.raftPortBase],
  ] as const) {
    if (base + nodes - 1 > PORT_MAX) {
      throw new ClusterUsageError(`${flag} ${base} with ${nodes} nodes needs ports up to ${base + nodes - 1}, past ${PORT_MAX}`);
    }
  }
  const members = Array.from({ length: nodes }, (_, index) => {
    const host = hosts.length === 1 ? (hosts[0] as string) : (hosts[index] as string);
    return {
      id: index + 1,
      clientHost: host,
      clientPort: options.clientPortBase + index,
      raftHost: host,
      raftPort: options.raftPortBase + index,
    };
  });
  const clash = portClash(members, adminPorts(options));
  if (clash !== undefined) throw new ClusterUsageError(clash);
  return members;
}

interface Listener {
  readonly host: string;
  readonly port: number;
  /** e.g. "node 2's raft port". */
  readonly role: string;
}

function listeners(members: readonly Member[], admin: ReadonlyMap<number, number> = new Map()): Listener[] {
  return members.flatMap((member) => {
    const adminPort = admin.get(member.id);
    return [
      { host: member.clientHost, port: member.clientPort, role: `node ${member.id}'s client port` },
      { host: member.raftHost, port: member.raftPort, role: `node ${member.id}'s raft port` },
      ...(adminPort === undefined ? [] : [{ host: member.clientHost, port: adminPort, role: `node ${member.id}'s admin port` }]),
    ];
  });
}

/** The first address two listeners would share, described; undefined when all differ. */
export function portClash(members: readonly Member[], admin: ReadonlyMap<number, number> = new Map()): string | undefined {
  const seen = new Map<string, string>();
  for (const listener of listeners(members, admin)) {
    const key = `${listener.host}:${listener.port}`;
    const other = seen.get(key);
    if (other !== undefined) {
      return `${key} would be both ${other} and ${listener.role}: pick --client-port-base, --raft-port-base and --admin-port-base so that their ranges do not overlap`;
    }
    seen.set(key, listener.role);
  }
  return undefined;
}

/** Why `host:port` cannot be listened on now, or undefined when it can. */
function listenProblem(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') done('is already in use');
      else if (error.code === 'EADDRNOTAVAIL') done('is not an address of this machine');
      else if (error.code === 'EACCES') done('needs privileges to listen on');
      else done(`cannot be listened on (${error.code ?? error.message})`);
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(undefined)));
  });
}

/** Every listener's address must be free now; throws ClusterUsageError naming each one that is not. */
export async function checkPortsFree(members: readonly Member[], admin: ReadonlyMap<number, number> = new Map()): Promise<void> {
  const problems: string[] = [];
  for (const listener of listeners(members, admin)) {
    const problem = await listenProblem(listener.host, listener.port);
    if (problem !== undefined) problems.push(`${listener.host}:${listener.port} (${listener.role}) ${problem}`);
  }
  if (problems.length > 0) {
    throw new ClusterUsageError(
      `cannot start the cluster:\n  ${problems.join('\n  ')}\nstop what holds them, or pick other ports with --client-port-base / --raft-port-base`,
    );
  }
}

/** Keys of `node` that the cluster entries and the command's flags set for each node. */
const PLACEMENT_KEYS = ['id', 'clientHost', 'clientPort', 'raftHost', 'raftPort'] as const;

/** A relative plugin path, made absolute against the folder it was relative to. */
function rebasePlugin(entry: string, baseDir: string): string {
  return isModulePath(entry) && !isAbsolute(entry) ? resolve(baseDir, entry) : entry;
}

/**
 * The generated config: the base config's sections, with `node.dataDir` and `cluster.nodes` set
 * and node placement left to the entries. Relative plugin paths are made absolute, since the
 * generated file lives in another folder than the base file they were relative to.
 */
export function clusterConfig(
  base: Readonly<Record<string, unknown>>,
  baseDir: string,
  dataDir: string,
  members: readonly Member[],
): Record<string, unknown> {
  const tree: Record<string, unknown> = { ...base };
  if (Array.isArray(base.plugins)) {
    tree.plugins = base.plugins.map((entry: unknown) => (typeof entry === 'string' ? rebasePlugin(entry, baseDir) : entry));
  }
  const node: Record<string, unknown> = isPlainObject(base.node) ? { ...base.node } : {};
  for (const key of PLACEMENT_KEYS) delete node[key];
  tree.node = { ...node, dataDir };
  const cluster = isPlainObject(base.cluster) ? base.cluster : {};
  tree.cluster = { ...cluster, nodes: members.map((member) => ({ ...member })) };
  return tree;
}

/** The environment the nodes get: all of it, with WALRUS_PLUGINS paths rebased like the file's. */
export function childEnvironment(env: Environment, baseDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) out[name] = value;
  const plugins = envValue(env, 'WALRUS_PLUGINS');
  if (plugins !== undefined) {
    out.WALRUS_PLUGINS = plugins
      .split(',')
      .map((entry) => rebasePlugin(entry.trim(), baseDir))
      .join(',');
  }
  return out;
}

/** The flags each node gets on top of its config: they beat any WALRUS_* placement variable. */
function nodeFlags(member: Member, dataDir: string, adminPort?: number): [flag: string, path: string, text: string][] {
  const admin: [string, string, string][] = adminPort === undefined ? [] : [['--admin-port', 'admin.port', String(adminPort)]];
  return [
    ...admin,
    ['--node-id', 'node.id', String(member.id)],
    ['--data-dir', 'node.dataDir', dataDir],
    ['--client-host', 'node.clientHost', member.clientHost],
    ['--client-port', 'node.clientPort', String(member.clientPort)],
    ['--raft-host', 'node.raftHost', member.raftHost],
    ['--raft-port', 'node.raftPort', String(member.raftPort)],
  ];
}

export interface ClusterStartOptions extends PlanOptions {
  readonly dataDir?: string;
  readonly config?: string;
}

interface Prepared {
  readonly members: readonly Member[];
  /** Each node's admin port (`--admin-port-base`), by id. */
  readonly admin: ReadonlyMap<number, number>;
  readonly dataDir: string;
  readonly configPath: string;
  readonly env: Record<string, string>;
  readonly stopDeadlineMs: number;
  /** The nodes log their `ready` line; when not (log.level above info), readiness is an open client port. */
  readonly readyLogged: boolean;
}

/** The base config's tree and the folder its relative paths are relative to. */
function baseConfig(path: string | undefined): { readonly tree: Record<string, unknown>; readonly dir: string } {
  return path === undefined ? { tree: {}, dir: process.cwd() } : { tree: readConfigFile(path).tree, dir: dirname(resolve(path)) };
}

/** --data-dir, else WALRUS_DATA_DIR, else the base config's node.dataDir, else ./data; absolute. */
function dataDirOf(options: ClusterStartOptions, env: Environment, base: Readonly<Record<string, unknown>>): string {
  const baseNode = isPlainObject(base.node) ? base.node : {};
  const fromFile = typeof baseNode.dataDir === 'string' ? baseNode.dataDir : undefined;
  return resolve(options.dataDir ?? envValue(env, 'WALRUS_DATA_DIR') ?? fromFile ?? './data');
}

/** No node directory may be locked by a running node (a cluster from before, on other ports). */
function checkNodeDirectoriesFree(dataDir: string, members: readonly Member[]): void {
  const problems: string[] = [];
  for (const member of members) {
    try {
      lockNodeDirectory(dataDir, member.id).release();
    } catch (error) {
      if (!isWalrusError(error) || error.code !== 'DIRECTORY_LOCKED') throw error;
      problems.push(error.message);
    }
  }
  if (problems.length > 0) {
    throw new ClusterUsageError(`cannot start the cluster:\n  ${problems.join('\n  ')}`);
  }
}

/**
 * Everything before the first node starts: the plan, free ports and node directories, the
 * generated file, and a dry run of node 1's configuration (the check `walrus plugins` makes), so
 * a bad base config is one error here rather than one from each node.
 */
async function prepare(options: ClusterStartOptions, io: Io): Promise<Prepared> {
  const members = planMembers(options);
  const admin = adminPorts(options);
  const basePath = options.config ?? envValue(io.env, LAUNCHER_ENV.config);
  const base = baseConfig(basePath);
  const dataDir = dataDirOf(options, io.env, base.tree);
  const configPath = join(dataDir, 'cluster.yaml');
  if (basePath !== undefined && resolve(basePath) === configPath) {
    throw new ClusterUsageError(
      `${configPath} is where the cluster config is generated: copy your base config elsewhere or pick another --data-dir`,
    );
  }
  await checkPortsFree(members, admin);
  mkdirSync(dataDir, { recursive: true });
  checkNodeDirectoriesFree(dataDir, members);
  const header = [
    '# Generated by `walrus cluster start`, rewritten at every start; edit the base config instead.',
    `# Base config: ${basePath === undefined ? 'none' : resolve(basePath)}. Node <i> runs: walrus start --config <this file> --node-id <i>`,
    '',
  ].join('\n');
  writeFileSync(configPath, header + stringify(clusterConfig(base.tree, base.dir, dataDir, members)));
  const env = childEnvironment(io.env, base.dir);
  const resolved = await dryRun(configPath, members[0] as Member, dataDir, env, admin.get(1));
  return {
    members,
    admin,
    dataDir,
    configPath,
    env,
    stopDeadlineMs: resolved.kernel.stopTimeoutMs + STOP_GRACE_MS,
    readyLogged: READY_LOGGED_LEVELS.has(resolved.log.level),
  };
}

interface DryRunConfig {
  readonly node: NodeConfig;
  readonly kernel: { readonly stopTimeoutMs: number };
  readonly log: { readonly level: string };
}

/** Resolves and plans node 1 as `walrus start` would; throws what it would fail with. */
async function dryRun(
  configPath: string,
  member: Member,
  dataDir: string,
  env: Record<string, string>,
  adminPort: number | undefined,
): Promise<DryRunConfig> {
  const flags: TextSetting[] = nodeFlags(member, dataDir, adminPort).map(([flag, path, text]) => ({ path, text, source: `flag ${flag}` }));
  const inspection = await Kernel.inspect({
    catalog: walrusCatalog,
    configFile: configPath,
    flags,
    env,
    logger: pino({ level: 'silent' }),
  });
  if (inspection.error !== undefined) throw inspection.error;
  const config = inspection.resolved.value as unknown as DryRunConfig;
  if (config.node.join !== null) {
    throw new ConfigError(
      'CONFIG_UNSUPPORTED',
      `node.join is set (${JSON.stringify(config.node.join)}): the nodes of walrus cluster start form a static cluster; unset WALRUS_JOIN / node.join`,
    );
  }
  return config;
}

interface NodeChild {
  readonly member: Member;
  readonly child: ChildProcess;
  ready: boolean;
  exited: boolean;
  /** A connection to its client port is being tried (readiness without the log line). */
  probing: boolean;
}

/** Whether something accepts connections on host:port now. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.setTimeout(READY_PROBE_INTERVAL_MS * 5);
    const end = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.once('connect', () => end(true));
    socket.once('error', () => end(false));
    socket.once('timeout', () => end(false));
  });
}

/** How a child ended, in words. */
function ending(code: number | null, signal: NodeJS.Signals | null): string {
  return code !== null ? `exit code ${code}` : `killed by ${signal ?? 'an unknown signal'}`;
}

/** Whether a node's stdout line is the kernel's `ready` line. */
function isReadyLine(line: string): boolean {
  if (!line.includes('"msg":"ready"')) return false;
  try {
    return (JSON.parse(line) as { msg?: unknown }).msg === 'ready';
  } catch {
    return false;
  }
}

/** Runs the nodes; `finished` resolves with the command's exit code once none is left running. */
class Supervisor {
  readonly finished: Promise<number>;
  private finish: (code: number) => void = () => undefined;
  private readonly nodes: NodeChild[] = [];
  private announced = false;
  private stopping = false;
  /** A node failed to start, or had to be killed, or ended with a code other than 0. */
  private unclean = false;
  private killTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly io: Io,
    private readonly prepared: Prepared,
  ) {
    this.finished = new Promise((done) => {
      this.finish = done;
    });
  }

  private say(text: string): void {
    this.io.out(`[cluster] ${text}`);
  }

  start(): void {
    const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--inspect'));
    for (const member of this.prepared.members) {
      const flags = nodeFlags(member, this.prepared.dataDir, this.prepared.admin.get(member.id)).flatMap(([flag, , text]) => [flag, text]);
      const args = [...execArgv, WALRUS_BIN, 'start', '--config', this.prepared.configPath, ...flags];
      // Its own process group: a Ctrl-C at the terminal reaches this command only, which then
      // stops each node once (a node stopping that gets a second signal exits at once, code 1).
      const child = spawn(process.execPath, args, { env: this.prepared.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const node: NodeChild = { member, child, ready: false, exited: false, probing: false };
      this.nodes.push(node);
      this.follow(node);
    }
    this.say(`starting ${this.nodes.length} nodes (config ${this.prepared.configPath})`);
    if (!this.prepared.readyLogged) {
      this.say('the log level hides the nodes\' "ready" lines: a node counts as ready once its client port accepts connections');
      this.probeTimer = setInterval(() => this.probePorts(), READY_PROBE_INTERVAL_MS);
    }
  }

  private probePorts(): void {
    for (const node of this.nodes) {
      if (node.ready || node.exited || node.probing) continue;
      node.probing = true;
      void accepts(node.member.clientHost, node.member.clientPort).then((ok) => {
        node.probing = false;
        if (ok && !node.ready && !node.exited) this.onReady(node);
      });
    }
  }

  private follow(node: NodeChild): void {
    const prefix = `[node ${node.member.id}] `;
    const { child } = node;
    if (child.stdout !== null) {
      createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
        this.io.out(prefix + line);
        if (!node.ready && isReadyLine(line)) this.onReady(node);
      });
    }
    if (child.stderr !== null) {
      createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => this.io.err(prefix + line));
    }
    child.on('error', (error) => {
      this.say(`node ${node.member.id}: ${error.message}`);
      // A process that never started sends no 'close'.
      if (child.pid === undefined) this.onExit(node, null, null);
    });
    // 'close' comes after the pipes are drained, so every line is out before the exit is told.
    child.on('close', (code, signal) => this.onExit(node, code, signal));
  }

  private running(): NodeChild[] {
    return this.nodes.filter((node) => !node.exited);
  }

  private onReady(node: NodeChild): void {
    node.ready = true;
    if (this.announced || this.stopping || !this.nodes.every((each) => each.ready)) return;
    this.announced = true;
    clearInterval(this.probeTimer);
    // One write for the whole summary, so a script that sees the "ready" line has the node lines too.
    const first = this.prepared.members[0] as Member;
    const summary = [
      `${this.nodes.length} nodes ready (config ${this.prepared.configPath}, data under ${this.prepared.dataDir})`,
      ...this.nodes.map(
        ({ member, child }) =>
          `  node ${member.id}  client ${member.clientHost}:${member.clientPort}  raft ${member.raftHost}:${member.raftPort}` +
          `${this.prepared.admin.has(member.id) ? `  status http://${member.clientHost}:${this.prepared.admin.get(member.id)}/` : ''}  pid ${child.pid}`,
      ),
      `try: walrus-cli --addr ${first.clientHost}:${first.clientPort} metrics   (current_leader is the Raft leader)`,
      ...(this.prepared.admin.has(first.id)
        ? [
            `status page: http://${first.clientHost}:${this.prepared.admin.get(first.id)}/   (or walrus-cli top --admin ${first.clientHost}:${this.prepared.admin.get(first.id)})`,
          ]
        : []),
      'Ctrl-C stops every node',
    ];
    this.io.out(summary.map((line) => `[cluster] ${line}`).join('\n'));
  }

  private onExit(node: NodeChild, code: number | null, signal: NodeJS.Signals | null): void {
    if (node.exited) return;
    node.exited = true;
    const id = node.member.id;
    if (code !== 0) this.unclean = true;
    if (this.stopping) {
      this.say(`node ${id} stopped (${ending(code, signal)})`);
    } else if (!this.announced) {
      this.say(`node ${id} exited (${ending(code, signal)}) before the cluster was ready: stopping the others`);
      this.unclean = true;
      this.stop();
    } else {
      const left = this.running().length;
      const others = left === 0 ? '' : `; ${left} other node${left === 1 ? ' keeps' : 's keep'} running`;
      this.say(`node ${id} exited by itself (${ending(code, signal)})${others}`);
    }
    if (this.running().length > 0) return;
    clearTimeout(this.killTimer);
    clearInterval(this.probeTimer);
    this.say(this.unclean ? 'all nodes have exited, not all cleanly' : 'all nodes stopped cleanly');
    this.finish(this.unclean ? 1 : 0);
  }

  /** First signal: stop gracefully; a second one: kill now. */
  onSignal(signal: NodeJS.Signals): void {
    if (!this.stopping) {
      this.say(`${signal}: stopping ${this.running().length} nodes`);
      this.stop();
      return;
    }
    this.say(`second ${signal} while stopping: killing the nodes now`);
    this.kill();
  }

  private stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.probeTimer);
    for (const node of this.running()) node.child.kill('SIGTERM');
    this.killTimer = setTimeout(() => {
      const ids = this.running().map((node) => node.member.id);
      this.say(`node${ids.length === 1 ? '' : 's'} ${ids.join(', ')} still running after ${this.prepared.stopDeadlineMs} ms: SIGKILL`);
      this.kill();
    }, this.prepared.stopDeadlineMs);
  }

  private kill(): void {
    for (const node of this.running()) {
      this.unclean = true;
      node.child.kill('SIGKILL');
    }
  }
}

/** `walrus cluster start`: resolves with the exit code (0 all stopped cleanly, 1 otherwise, 2 bad input). */
export async function clusterStart(options: ClusterStartOptions, io: Io): Promise<number> {
  let prepared: Prepared;
  try {
    prepared = await prepare(options, io);
  } catch (error) {
    if (!(error instanceof ClusterUsageError)) throw error;
    io.err(`walrus cluster start: ${error.message}`);
    return 2;
  }
  const overridden = ENV_TABLE.filter((variable) => PLACEMENT_KEYS.some((key) => variable.path === `node.${key}`))
    .map((variable) => variable.name)
    .filter((name) => envValue(io.env, name) !== undefined);
  if (overridden.length > 0) io.out(`[cluster] ignoring ${overridden.join(', ')}: each node's id and addresses come from the cluster plan`);
  const supervisor = new Supervisor(io, prepared);
  const onSignal = (signal: NodeJS.Signals) => supervisor.onSignal(signal);
  for (const signal of SIGNALS) process.on(signal, onSignal);
  try {
    supervisor.start();
    return await supervisor.finished;
  } finally {
    for (const signal of SIGNALS) process.off(signal, onSignal);
  }
}

function integerIn(min: number, max: number, what: string): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min || value > max) throw new InvalidArgumentError(`expected ${what}: an integer in ${min}..${max}`);
    return value;
  };
}

function hostList(text: string): string[] {
  const hosts = text.split(',').map((host) => host.trim());
  if (hosts.some((host) => host === '')) throw new InvalidArgumentError('expected comma-separated addresses, none empty');
  return hosts;
}

/** Adds `walrus cluster start` and `walrus cluster remove` to the program. */
export function addClusterCommand(program: Command, io: Io, done: (code: number) => void, summary: string, removeSummary: string): void {
  const cluster = program.command('cluster').description('run several nodes on this machine as one cluster, or take a member out');
  const remove = cluster
    .command('remove')
    .description(removeSummary)
    .argument('<id>', 'the node id to remove', integerIn(1, 2 ** 31 - 1, 'a node id'))
    .requiredOption('--via <host:port>', "any member's internal address (its node.raftHost:node.raftPort)")
    .option('--force', 'remove it even if it cannot hand its topics over or holds unread entries (they are lost)');
  remove.action(async (id: number) => {
    const values = remove.opts<{ via: string; force?: boolean }>();
    done(await clusterRemove({ nodeId: id, via: values.via, force: values.force === true }, io));
  });
  const start = cluster
    .command('start')
    .description(summary)
    .addOption(
      new Option('-n, --nodes <n>', 'how many nodes (ids 1..n)').default(3).argParser(integerIn(1, clusterNodesMax, 'a node count')),
    )
    .addOption(
      new Option('--client-port-base <port>', "node 1's client port; node i gets base+i-1")
        .default(9091)
        .argParser(integerIn(1, PORT_MAX, 'a port')),
    )
    .addOption(
      new Option('--raft-port-base <port>', "node 1's Raft port; node i gets base+i-1")
        .default(6001)
        .argParser(integerIn(1, PORT_MAX, 'a port')),
    )
    .addOption(
      new Option('--admin-port-base <port>', "node 1's admin port (metrics, status page); node i gets base+i-1 (default: none)").argParser(
        integerIn(1, PORT_MAX, 'a port'),
      ),
    )
    .addOption(new Option('--host <host>', 'address every node listens on, client and Raft').default('127.0.0.1'))
    .addOption(
      new Option('--hosts <list>', 'one address per node, comma-separated (e.g. 127.0.0.1,127.0.0.2,127.0.0.3)').argParser(hostList),
    )
    .option(
      '--data-dir <dir>',
      "folder for the generated cluster.yaml and each node's node_<id>/ (default: $WALRUS_DATA_DIR, else the base config's node.dataDir, else ./data)",
    )
    .option('-c, --config <file>', `base config: its other sections reach every node (default: $${LAUNCHER_ENV.config})`);
  start.action(async () => {
    const values = start.opts<{
      nodes: number;
      clientPortBase: number;
      raftPortBase: number;
      adminPortBase?: number;
      host: string;
      hosts?: string[];
      dataDir?: string;
      config?: string;
    }>();
    if (values.hosts !== undefined && start.getOptionValueSource('host') !== 'default') {
      io.err('walrus cluster start: give --host or --hosts, not both');
      done(2);
      return;
    }
    done(
      await clusterStart(
        {
          nodes: values.nodes,
          clientPortBase: values.clientPortBase,
          raftPortBase: values.raftPortBase,
          ...(values.adminPortBase === undefined ? {} : { adminPortBase: values.adminPortBase }),
          hosts: values.hosts ?? [values.host],
          ...(values.dataDir === undefined ? {} : { dataDir: values.dataDir }),
          ...(values.config === undefined ? {} : { config: values.config }),
        },
        io,
      ),
    );
  });
}
