// The `walrus` command: `start`, `cluster start` (in cluster.ts), `plugins` and `config print`.
// Flags map to config paths through FLAG_TABLE (the highest config layer); the config file comes
// from --config or WALRUS_CONFIG. Exit codes: 0 success, 1 a runtime failure, 2 bad usage or configuration.

import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import type { NodeConfig } from '../contracts/config.js';
import { DEFAULT_SOURCE, sourceOf as sourceOfPath, type TextSetting } from '../kernel/config.js';
import { envValue, LAUNCHER_ENV, processEnvironment } from '../kernel/env.js';
import { describeError, type ErrorCode, isWalrusError } from '../kernel/errors.js';
import { Kernel, type KernelOptions, LOG_LEVELS } from '../kernel/kernel.js';
import type { PluginStatus } from '../kernel/plan.js';
import { isPlainObject } from '../kernel/schema.js';
import { stopOnSignals } from '../kernel/signals.js';
import { lockNodeDirectory, type NodeLock } from '../node/node-lock.js';
import { STORAGE_BACKENDS, walrusCatalog } from '../plugins/catalog.js';
import { WALRUS_COMMANDS } from '../plugins/cli/index.js';
import { VERSION } from '../version.js';
import { addClusterCommand } from './cluster.js';
import type { Io } from './io.js';
import { applyProcessSwitches } from './process-switches.js';

export type { Io } from './io.js';

interface FlagSpec {
  readonly flags: string;
  readonly path: string;
  readonly help: string;
  readonly choices?: readonly string[];
  readonly hidden?: boolean;
}

/** Command-line flags of `walrus start` (also accepted by `plugins` and `config print`). */
export const FLAG_TABLE: readonly FlagSpec[] = [
  { flags: '--node-id <id>', path: 'node.id', help: "this node's id (picks its cluster.nodes entry)" },
  { flags: '--data-dir <dir>', path: 'node.dataDir', help: "root folder for this node's data" },
  { flags: '--client-host <host>', path: 'node.clientHost', help: 'client listener address' },
  { flags: '--client-port <port>', path: 'node.clientPort', help: 'client listener port' },
  { flags: '--port <port>', path: 'node.clientPort', help: 'alias of --client-port', hidden: true },
  { flags: '--raft-host <host>', path: 'node.raftHost', help: 'Raft listener address' },
  { flags: '--raft-port <port>', path: 'node.raftPort', help: 'Raft listener port' },
  { flags: '--join <host:port>', path: 'node.join', help: 'Raft address of a member to join' },
  { flags: '--admin-port <port>', path: 'admin.port', help: 'HTTP admin port (/metrics, /healthz, /readyz, /api/cluster, status page)' },
  { flags: '--storage <backend>', path: 'storage.backend', help: 'storage backend', choices: STORAGE_BACKENDS },
  { flags: '--log-level <level>', path: 'log.level', help: 'log level', choices: LOG_LEVELS },
  { flags: '--plugins <list>', path: 'plugins', help: 'comma-separated plugins to load (replaces the list)' },
];

function addConfigOptions(command: Command): Command {
  command.option('-c, --config <file>', `YAML config file (default: $${LAUNCHER_ENV.config}, else the embedded default)`);
  for (const spec of FLAG_TABLE) {
    const option = new Option(spec.flags, spec.help);
    if (spec.choices !== undefined) option.choices(spec.choices);
    if (spec.hidden === true) option.hideHelp();
    command.addOption(option);
  }
  return command;
}

function flagSettings(command: Command): TextSetting[] {
  const settings: TextSetting[] = [];
  for (const spec of FLAG_TABLE) {
    const option = command.options.find((candidate) => candidate.flags === spec.flags);
    if (option === undefined) continue;
    const text = command.getOptionValue(option.attributeName()) as string | undefined;
    if (text !== undefined) settings.push({ path: spec.path, text, source: `flag ${option.long}` });
  }
  return settings;
}

function kernelOptions(command: Command, io: Io, logLevel?: 'silent'): KernelOptions {
  const configFile = (command.getOptionValue('config') as string | undefined) ?? envValue(io.env, LAUNCHER_ENV.config);
  return {
    catalog: walrusCatalog,
    configFile,
    flags: flagSettings(command),
    env: io.env,
    ...(logLevel === undefined ? {} : { logger: pino({ level: logLevel }) }),
  };
}

/** Codes that arise while plugins run (start, stop), not from what the configuration says. */
const RUNTIME_CODES: ReadonlySet<ErrorCode> = new Set([
  'PLUGIN_START_FAILED',
  'PLUGIN_START_TIMEOUT',
  'PLUGIN_STOP_FAILED',
  'KERNEL_STATE',
  'DIRECTORY_LOCKED',
  'IO',
]);

/**
 * Exit code for an error: 2 for problems found in the configuration before anything starts
 * (config errors, unknown or unfit plugins, impossible plans); 1 for runtime failures and
 * anything that is not a WalrusError.
 */
export function exitCodeFor(error: unknown): number {
  return isWalrusError(error) && !RUNTIME_CODES.has(error.code) ? 2 : 1;
}

function pad(text: string, width: number): string {
  return text.length >= width ? `${text}  ` : text.padEnd(width);
}

export function formatStatuses(statuses: readonly PluginStatus[]): string {
  const rows = statuses.map((status) => [status.name, status.state, status.origin, status.reason]);
  const header = ['PLUGIN', 'STATUS', 'ORIGIN', 'WHY'];
  const widths = [0, 1, 2].map((column) => Math.max(...[header, ...rows].map((row) => (row[column] ?? '').length)) + 2);
  const line = (row: readonly string[]) => row.map((cell, index) => (index < 3 ? pad(cell, widths[index] ?? 0) : cell)).join('');
  return [line(header), ...rows.map(line)].join('\n');
}

/** Every leaf of the effective config as `path = value  # source`. */
export function formatConfig(value: unknown, sourceOf: (path: string) => string, path = ''): string[] {
  if (isPlainObject(value)) {
    return Object.entries(value).flatMap(([key, child]) => formatConfig(child, sourceOf, path === '' ? key : `${path}.${key}`));
  }
  const source = sourceOf(path);
  return [`${path} = ${JSON.stringify(value)}${source === DEFAULT_SOURCE ? '  # default' : `  # ${source}`}`];
}

async function startNode(command: Command, io: Io): Promise<number> {
  const kernel = await Kernel.create(kernelOptions(command, io));
  // Before any plugin starts: a second node on this directory must fail before it touches the
  // first one's files (Raft would otherwise open the same log and bump its term).
  const node = kernel.config.node as NodeConfig;
  const lock: NodeLock = lockNodeDirectory(node.dataDir, node.id);
  kernel.log.info({ dir: lock.dir, lock: lock.kind }, 'node directory locked');
  // Nothing else may hold the event loop while only placeholders load; the node stays up until a signal.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let signalled = false;
  const finished = new Promise<number>((resolve) => {
    stopOnSignals(kernel, {
      exit: (code) => {
        clearInterval(keepAlive);
        lock.release();
        resolve(code);
      },
      onSignal: () => {
        signalled = true;
      },
    });
  });
  try {
    await kernel.start();
  } catch (error) {
    // A signal during start interrupts it on purpose: report the stop, not the interruption.
    if (signalled) return finished;
    clearInterval(keepAlive);
    lock.release();
    throw error;
  }
  return finished;
}

async function listPlugins(command: Command, io: Io, json: boolean): Promise<number> {
  const inspection = await Kernel.inspect(kernelOptions(command, io, 'silent'));
  const error = inspection.error === undefined ? null : { code: inspection.error.code, message: inspection.error.message };
  if (json) io.out(JSON.stringify({ plugins: inspection.statuses, error }, null, 2));
  else io.out(formatStatuses(inspection.statuses));
  if (inspection.error === undefined) return 0;
  if (!json) io.err(`walrus: this configuration cannot start: ${describeError(inspection.error)}`);
  return exitCodeFor(inspection.error);
}

async function printConfig(command: Command, io: Io, json: boolean): Promise<number> {
  const inspection = await Kernel.inspect(kernelOptions(command, io, 'silent'));
  const { resolved } = inspection;
  const sourceOf = (path: string) => sourceOfPath(resolved.sources, path);
  if (json) {
    io.out(JSON.stringify({ file: resolved.file, config: resolved.value, sources: Object.fromEntries(resolved.sources) }, null, 2));
  } else {
    io.out(`# config file: ${resolved.file ?? 'none (embedded default)'}`);
    io.out(formatConfig(resolved.value, sourceOf).join('\n'));
  }
  return 0;
}

function summary(name: string): string {
  return WALRUS_COMMANDS.find((command) => command.name === name)?.summary ?? '';
}

export function buildProgram(io: Io, done: (code: number) => void): Command {
  const program = new Command('walrus')
    .description('Walrus: a distributed message-streaming platform built on a fast write-ahead log')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) })
    .exitOverride();

  const start = addConfigOptions(program.command('start').description(summary('start')));
  start.action(async () => done(await startNode(start, io)));

  addClusterCommand(program, io, done, summary('cluster start'), summary('cluster remove'));

  const plugins = addConfigOptions(program.command('plugins').description(summary('plugins')).option('--json', 'print JSON'));
  plugins.action(async () => done(await listPlugins(plugins, io, plugins.getOptionValue('json') === true)));

  const config = program.command('config').description('inspect the configuration');
  const print = addConfigOptions(config.command('print').description(summary('config print')).option('--json', 'print JSON'));
  print.action(async () => done(await printConfig(print, io, print.getOptionValue('json') === true)));
  return program;
}

/** Runs the command line; resolves with the exit code. */
export async function runWalrus(argv: readonly string[], io: Io): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (result) => {
    code = result;
  });
  // `npx walrus -- --help` passes the `--` on (npm needs it to leave --help alone): skip it.
  const args = argv[0] === '--' ? argv.slice(1) : argv;
  try {
    if (args.length === 0) {
      program.outputHelp();
      return 2;
    }
    await program.parseAsync([...args], { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    io.err(`walrus: ${describeError(error)}`);
    return exitCodeFor(error);
  }
}

/** Entry point for bin/walrus. */
export async function main(): Promise<void> {
  applyProcessSwitches();
  const io: Io = {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: processEnvironment(),
  };
  // Exit explicitly: a stopped node must not linger on a handle some plugin forgot to close.
  process.exit(await runWalrus(process.argv.slice(2), io));
}
