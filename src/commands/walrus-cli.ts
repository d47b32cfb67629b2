// The `walrus-cli` command: a client for one Walrus node over the client TCP protocol, through
// WalrusClient. With a subcommand it sends one request and exits (register, put, get, fetch,
// state, metrics); without one (or with `repl`) it reads requests line by line from stdin and
// prints each reply, interactively with a prompt and history when stdin is a terminal.
// The node's address comes from --addr, else WALRUS_ADDR, else 127.0.0.1:8080.
// Exit codes: 0 success, 1 the request failed (an ERR reply, no connection, a timeout),
// 2 bad usage.

import { createInterface } from 'node:readline';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { ClientError, WalrusClient } from '../client/walrus-client.js';
import { type Environment, envValue, LAUNCHER_ENV, processEnvironment } from '../kernel/env.js';
import { limits } from '../kernel/limits.js';
import { parseDecimal } from '../protocol/commands.js';
import { VERSION } from '../version.js';
import { applyProcessSwitches } from './process-switches.js';
import { runTop } from './top.js';

export interface CliIo {
  /** Writes one line of output (the newline is added). */
  readonly out: (text: string) => void;
  /** Writes one line to the error stream (the newline is added). */
  readonly err: (text: string) => void;
  readonly env: Environment;
  /** Lines for the REPL; process.stdin when absent. */
  readonly stdin?: NodeJS.ReadableStream;
  /** Where an interactive REPL draws its prompt; the REPL is interactive only when this and stdin are TTYs. */
  readonly terminal?: NodeJS.WritableStream;
  /** Called by main() with the exit code once the command is done. */
  readonly exit?: (code: number) => void;
}

export const DEFAULT_ADDR = '127.0.0.1:8080';
const ADDR_VARIABLE = LAUNCHER_ENV.cliAddress;
/** Where `top` reads when neither --admin nor WALRUS_ADMIN_ADDR says. */
export const DEFAULT_ADMIN_ADDR = '127.0.0.1:9090';

const PROMPT = 'walrus> ';
const QUIT_WORDS: ReadonlySet<string> = new Set(['exit', 'quit', 'q']);
const TIMEOUT_MS_MAX = 2 ** 31 - 1;

export const REPL_HELP = [
  'Requests (the verb may be typed in lower case; the rest of the line is sent as typed):',
  '  REGISTER <topic>                  create the topic if it does not exist',
  '  PUT <topic> <payload>             append an entry (the payload runs to the end of the line)',
  '  GET <topic>                       consume the next entry: OK <payload>, or EMPTY',
  '  FETCH <topic> <segment> <offset>  read an entry without consuming it: OK <next_offset> <payload>, or EMPTY',
  '  STATE <topic>                     the topic as this node sees it (JSON)',
  '  METRICS                           the Raft metrics of the node (JSON)',
  '  MGET <topic> <max>                consume up to max entries: OK <n> <sizes...>, a line feed, the payloads; or EMPTY',
  '  MFETCH <topic> <segment> <offset> <max>  read up to max entries without consuming them, as MGET replies',
  '  (MPUT needs a line feed inside the request: use `walrus-cli mput <topic> <payload>...` instead)',
  'Also: help (this list), exit | quit | q (leave; so does Ctrl-D).',
].join('\n');

/** Where requests go: a host and port, and how to show them. */
export interface Target {
  readonly host: string;
  readonly port: number;
  /** `host:port`, or `[v6]:port` for an IPv6 address. */
  readonly label: string;
}

/** Parses `host:port` or `[ipv6]:port`; returns an explanation instead when it is not one. */
export function parseTarget(text: string): Target | string {
  const match = /^(?:\[([0-9A-Za-z:.%]+)\]|([^\s:[\]]+)):([0-9]+)$/.exec(text);
  if (match === null) return `expected host:port or [ipv6]:port, got ${JSON.stringify(text)}`;
  const port = parseDecimal(match[3] as string);
  if (port === undefined || port < 1 || port > 65_535) return `the port must be from 1 to 65535, got ${JSON.stringify(match[3])}`;
  const v6 = match[1];
  const host = v6 ?? (match[2] as string);
  return { host, port, label: v6 === undefined ? `${host}:${port}` : `[${host}]:${port}` };
}

function addrArgument(text: string): Target {
  const target = parseTarget(text);
  if (typeof target === 'string') throw new InvalidArgumentError(target);
  return target;
}

function timeoutArgument(text: string): number {
  const value = parseDecimal(text);
  if (value === undefined || value < 1 || value > TIMEOUT_MS_MAX) {
    throw new InvalidArgumentError(`expected a whole number of milliseconds from 1 to ${TIMEOUT_MS_MAX}`);
  }
  return value;
}

function topicArgument(text: string): string {
  if (text.length === 0 || /[ \t\r\n]/.test(text)) {
    throw new InvalidArgumentError('a topic must be a non-empty word (no spaces, tabs, CRs or LFs)');
  }
  return text;
}

function segmentArgument(text: string): number {
  const value = parseDecimal(text);
  if (value === undefined || value < 1) throw new InvalidArgumentError('expected a positive integer');
  return value;
}

function offsetArgument(text: string): number {
  const value = parseDecimal(text);
  if (value === undefined) throw new InvalidArgumentError('expected a non-negative integer');
  return value;
}

function maxArgument(text: string): number {
  const value = parseDecimal(text);
  if (value === undefined || value < 1 || value > limits.batchEntriesMax) {
    throw new InvalidArgumentError(`expected an integer from 1 to ${limits.batchEntriesMax}`);
  }
  return value;
}

interface Settings {
  readonly target: Target;
  readonly timeoutMs: number;
}

/** --addr wins over WALRUS_ADDR, which wins over the default; a bad WALRUS_ADDR is bad usage. */
function settingsOf(program: Command, io: CliIo): Settings {
  const options = program.opts<{ addr?: Target; timeout: number }>();
  let target = options.addr;
  if (target === undefined) {
    const fromEnv = envValue(io.env, ADDR_VARIABLE);
    const parsed = parseTarget(fromEnv ?? DEFAULT_ADDR);
    if (typeof parsed === 'string') program.error(`error: ${ADDR_VARIABLE} is not a node address: ${parsed}`, { exitCode: 2 });
    target = parsed;
  }
  return { target, timeoutMs: options.timeout };
}

/** The `walrus-cli: …` line for a failed request. */
export function describeFailure(error: unknown, settings: Settings): string {
  if (error instanceof ClientError) {
    switch (error.code) {
      case 'SERVER_ERROR':
        return `walrus-cli: ${error.serverMessage ?? error.message}`;
      case 'CONNECTION': {
        const reason = error.cause instanceof Error ? error.cause.message : error.message;
        return `walrus-cli: cannot reach ${settings.target.label}: ${reason}`;
      }
      case 'TIMEOUT':
        return `walrus-cli: cannot reach ${settings.target.label}: no reply within ${settings.timeoutMs} ms`;
      default:
        return `walrus-cli: ${error.message}`;
    }
  }
  return `walrus-cli: ${error instanceof Error ? error.message : String(error)}`;
}

/** One request on a connection of its own; the exit code of the command. */
async function oneShot(settings: Settings, io: CliIo, work: (client: WalrusClient) => Promise<void>): Promise<number> {
  const { host, port } = settings.target;
  const client = new WalrusClient({ host, port, timeoutMs: settings.timeoutMs, reconnect: false });
  try {
    await work(client);
    return 0;
  } catch (error) {
    io.err(describeFailure(error, settings));
    return 1;
  } finally {
    await client.close();
  }
}

/** A reply as the REPL shows it: JSON objects pretty-printed, everything else as it came. */
export function formatReply(reply: string): string {
  if (!reply.startsWith('{')) return reply;
  try {
    return JSON.stringify(JSON.parse(reply), null, 2);
  } catch {
    return reply;
  }
}

/** Upper-cases the verb when it is a plain word, since the server only knows upper-case verbs. */
export function requestOf(line: string): string {
  const space = line.indexOf(' ');
  const verb = space < 0 ? line : line.slice(0, space);
  if (!/^[A-Za-z]+$/.test(verb)) return line;
  return verb.toUpperCase() + line.slice(verb.length);
}

function isTty(stream: unknown): boolean {
  return (stream as { isTTY?: boolean } | undefined)?.isTTY === true;
}

/** Reads requests until exit/quit/q or the end of input; always exits 0. */
async function repl(settings: Settings, io: CliIo): Promise<number> {
  const input = io.stdin ?? process.stdin;
  const interactive = isTty(input) && isTty(io.terminal);
  const lines = createInterface({
    input,
    ...(interactive ? { output: io.terminal } : {}),
    terminal: interactive,
    prompt: PROMPT,
    history: [],
    historySize: 1000,
    removeHistoryDuplicates: true,
  });
  // Ctrl-C at the prompt leaves, as Ctrl-D does.
  lines.on('SIGINT', () => lines.close());
  const { host, port } = settings.target;
  const client = new WalrusClient({ host, port, timeoutMs: settings.timeoutMs });
  try {
    if (interactive) {
      io.out(`walrus-cli ${VERSION}, node ${settings.target.label}; type help for the requests, exit to leave`);
      lines.prompt();
    }
    let quit = false;
    for await (const text of lines) {
      const line = text.trim();
      quit = QUIT_WORDS.has(line);
      if (quit) break;
      if (line === 'help') io.out(REPL_HELP);
      else if (line !== '') {
        try {
          io.out(formatReply(await client.raw(requestOf(line))));
        } catch (error) {
          io.err(describeFailure(error, settings));
        }
      }
      if (interactive) lines.prompt();
    }
    // Ctrl-D or Ctrl-C leaves the cursor after the prompt: end that line.
    if (interactive && !quit) io.out('');
  } finally {
    lines.close();
    await client.close();
  }
  return 0;
}

export function buildProgram(io: CliIo, done: (code: number) => void): Command {
  const program = new Command('walrus-cli')
    .description('Talk to a Walrus node: one request per run, or an interactive session when no command is given')
    .version(VERSION, '-V, --version')
    .option('--addr <host:port>', `the node's client address (default: $${ADDR_VARIABLE}, else ${DEFAULT_ADDR})`, addrArgument)
    .option('--timeout <ms>', 'time allowed for each request, connecting included', timeoutArgument, limits.clientTimeoutMsDefault)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (text) => io.out(text.trimEnd()), writeErr: (text) => io.err(text.trimEnd()) })
    .exitOverride();

  const request = async (work: (client: WalrusClient) => Promise<void>) => {
    done(await oneShot(settingsOf(program, io), io, work));
  };

  program
    .command('register')
    .description('create a topic if it does not exist (prints OK)')
    .argument('<topic>', 'topic name', topicArgument)
    .action((topic: string) =>
      request(async (client) => {
        await client.register(topic);
        io.out('OK');
      }),
    );

  const put = program
    .command('put')
    .description('append one entry to a topic (prints OK); the data words are joined with single spaces')
    .argument('<topic>', 'topic name', topicArgument)
    .argument('<data...>', 'the payload');
  put.action((topic: string, words: string[]) => {
    const payload = words.join(' ');
    if (payload.length === 0) put.error('error: the payload cannot be empty', { exitCode: 2 });
    if (/[ \t\r\n]$/.test(payload)) {
      put.error('error: the payload cannot end with a space, tab, CR or LF (the server trims them)', { exitCode: 2 });
    }
    return request(async (client) => {
      await client.put(topic, payload);
      io.out('OK');
    });
  });

  program
    .command('get')
    .description("consume the topic's next entry on this node (prints the payload, or EMPTY)")
    .argument('<topic>', 'topic name', topicArgument)
    .action((topic: string) =>
      request(async (client) => {
        io.out((await client.get(topic)) ?? 'EMPTY');
      }),
    );

  program
    .command('mput')
    .description('append several entries as one unit, each argument one payload (prints OK <n>)')
    .argument('<topic>', 'topic name', topicArgument)
    .argument('<payloads...>', 'the payloads, one per argument (quote one that has spaces)')
    .action((topic: string, payloads: string[]) =>
      request(async (client) => {
        io.out(`OK ${await client.mput(topic, payloads)}`);
      }),
    );

  program
    .command('mget')
    .description("consume up to <max> of the topic's next entries (prints one per line, or EMPTY)")
    .argument('<topic>', 'topic name', topicArgument)
    .argument('<max>', `how many at most (1 to ${limits.batchEntriesMax})`, maxArgument)
    .action((topic: string, max: number) =>
      request(async (client) => {
        const entries = await client.mget(topic, max);
        io.out(entries.length === 0 ? 'EMPTY' : entries.join('\n'));
      }),
    );

  program
    .command('fetch')
    .description('read one entry without consuming it (prints <next_offset> <payload>, or EMPTY)')
    .argument('<topic>', 'topic name', topicArgument)
    .argument('<segment>', 'segment id (from 1)', segmentArgument)
    .argument('<offset>', 'entry offset within the segment (from 0)', offsetArgument)
    .action((topic: string, segment: number, offset: number) =>
      request(async (client) => {
        const entry = await client.fetch(topic, segment, offset);
        io.out(entry === null ? 'EMPTY' : `${entry.nextOffset} ${entry.payload}`);
      }),
    );

  program
    .command('state')
    .description("print the node's view of a topic's segments (JSON)")
    .argument('<topic>', 'topic name', topicArgument)
    .action((topic: string) =>
      request(async (client) => {
        io.out(JSON.stringify(await client.state(topic), null, 2));
      }),
    );

  program
    .command('metrics')
    .description("print the node's Raft metrics (JSON)")
    .action(() =>
      request(async (client) => {
        io.out(JSON.stringify(await client.metrics(), null, 2));
      }),
    );

  program
    .command('top')
    .description("show the cluster as a node's admin endpoint sees it, refreshed (nodes, topics, segments, rates)")
    .option(
      '--admin <host:port>',
      `the node's admin address (default: $${LAUNCHER_ENV.cliAdminAddress}, else ${DEFAULT_ADMIN_ADDR})`,
      addrArgument,
    )
    .option('--interval <ms>', 'time between refreshes', timeoutArgument, 1000)
    .option('--count <n>', 'stop after this many refreshes (default: until Ctrl-C)', segmentArgument)
    .action(async (options: { admin?: Target; interval: number; count?: number }) => {
      const chosen = options.admin ?? parseTarget(envValue(io.env, LAUNCHER_ENV.cliAdminAddress) ?? DEFAULT_ADMIN_ADDR);
      if (typeof chosen === 'string') {
        io.err(`walrus-cli: ${LAUNCHER_ENV.cliAdminAddress} is not an address: ${chosen}`);
        done(2);
        return;
      }
      const target = chosen;
      const redraw = isTty(io.terminal) && options.count !== 1;
      // Until Ctrl-C: the first one ends the loop (exit 0); with --count, Ctrl-C stops it as usual.
      const interrupted = options.count === undefined ? new Promise<void>((resolve) => process.once('SIGINT', () => resolve())) : undefined;
      done(
        await runTop({
          base: `http://${target.label}`,
          label: target.label,
          intervalMs: options.interval,
          count: options.count,
          timeoutMs: program.opts<{ timeout: number }>().timeout,
          redraw,
          out: io.out,
          err: io.err,
          ...(interrupted === undefined ? {} : { interrupted }),
        }),
      );
    });

  program
    .command('repl')
    .description('read requests from stdin, one per line, and print each reply (the default)')
    .action(async () => done(await repl(settingsOf(program, io), io)));

  // No subcommand: the REPL. Words that name no subcommand reach this action and are refused here
  // (set after the subcommands, which must keep refusing extra arguments).
  program.allowExcessArguments(true).action(async () => {
    const [word] = program.args;
    if (word !== undefined) program.error(`error: unknown command '${word}'`, { exitCode: 2, code: 'commander.unknownCommand' });
    done(await repl(settingsOf(program, io), io));
  });
  return program;
}

/** Runs the command line; resolves with the exit code. */
export async function runWalrusCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (result) => {
    code = result;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    io.err(`walrus-cli: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

function processIo(): CliIo {
  return {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    env: processEnvironment(),
    terminal: process.stdout,
    // Exit explicitly: stdin may still hold the event loop after the REPL ends.
    exit: (code) => process.exit(code),
  };
}

/** Entry point for bin/walrus-cli; tests pass their own argv and io. Resolves with the exit code. */
export async function main(argv: readonly string[] = process.argv.slice(2), io: CliIo = processIo()): Promise<number> {
  applyProcessSwitches();
  const code = await runWalrusCli(argv, io);
  io.exit?.(code);
  return code;
}
