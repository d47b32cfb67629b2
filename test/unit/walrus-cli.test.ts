// walrus-cli against a fake node on 127.0.0.1 that parses requests with the server's codec: each
// one-shot command's request, output and exit code, ERR replies, unreachable and silent nodes,
// --addr / WALRUS_ADDR precedence and validation, the REPL fed by a piped script, and the real
// bin/walrus-cli launcher in a child process.

import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { type CliIo, formatReply, main, parseTarget, requestOf } from '../../src/commands/walrus-cli.js';
import { isCommandError, parseCommand } from '../../src/protocol/commands.js';
import { EMPTY, err, fetched, OK, okPayload } from '../../src/protocol/replies.js';
import { startServer } from '../helpers/fake-node.js';

const STATE_JSON =
  '{"current_segment":2,"leader_node":1,"last_sealed_entry_offset":0,"sealed_segments":{"1":0},"segment_leaders":{"1":1,"2":1}}';
const METRICS_JSON = '{"id":1,"state":"Leader","current_leader":1,"last_log_index":7}';

interface FakeNode {
  readonly addr: string;
  /** Every request text received, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/** The fake node's answer; undefined means "never answer" (topic `slow`). */
function answer(text: string, gets: Set<string>): string | undefined {
  const command = parseCommand(text);
  if (isCommandError(command)) return err(command.error);
  if (command.op !== 'METRICS') {
    if (command.topic === 'missing') return err('unknown topic missing');
    if (command.topic === 'slow') return undefined;
  }
  switch (command.op) {
    case 'REGISTER':
    case 'PUT':
      return OK;
    case 'GET':
      // The first GET of a topic finds an entry, later ones find nothing.
      if (gets.has(command.topic)) return EMPTY;
      gets.add(command.topic);
      return okPayload('hello world');
    case 'FETCH':
      return fetched(1, 'x');
    case 'STATE':
      return STATE_JSON;
    case 'METRICS':
      return METRICS_JSON;
    case 'MPUT':
      return `OK ${command.batch.count}`;
    case 'MGET':
      // Two entries once, then nothing.
      if (gets.has(command.topic)) return EMPTY;
      gets.add(command.topic);
      return 'OK 2 3 9\nonetwo words';
    case 'MFETCH':
      return EMPTY;
  }
}

async function startNode(t: ExecutionContext): Promise<FakeNode> {
  const gets = new Set<string>();
  const server = await startServer((request) => answer(request, gets) ?? 'silent');
  t.teardown(() => server.close());
  return { addr: `127.0.0.1:${server.port}`, requests: server.requests, close: () => server.close() };
}

/** An address where nothing listens: a port that was just bound and released. */
async function closedAddr(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${address.port}`;
}

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

async function run(argv: readonly string[], options: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const out: string[] = [];
  const errors: string[] = [];
  let exited: number | undefined;
  const io: CliIo = {
    out: (text) => out.push(text),
    err: (text) => errors.push(text),
    env: options.env ?? {},
    ...(options.stdin === undefined ? {} : { stdin: Readable.from([options.stdin]) }),
    exit: (code) => {
      exited = code;
    },
  };
  const code = await main(argv, io);
  if (exited !== code) throw new Error(`io.exit got ${exited}, main resolved ${code}`);
  return { code, out: out.join('\n'), err: errors.join('\n') };
}

test('register and put print OK; put joins its data words with single spaces', async (t) => {
  const node = await startNode(t);
  t.deepEqual(await run(['--addr', node.addr, 'register', 'logs']), { code: 0, out: 'OK', err: '' });
  t.deepEqual(await run(['--addr', node.addr, 'put', 't', 'hello', 'world']), { code: 0, out: 'OK', err: '' });
  t.deepEqual(node.requests, ['REGISTER logs', 'PUT t hello world']);
});

test('get prints the payload, then EMPTY when the topic has nothing more', async (t) => {
  const node = await startNode(t);
  t.deepEqual(await run(['--addr', node.addr, 'get', 't']), { code: 0, out: 'hello world', err: '' });
  t.deepEqual(await run(['--addr', node.addr, 'get', 't']), { code: 0, out: 'EMPTY', err: '' });
  t.deepEqual(node.requests, ['GET t', 'GET t']);
});

test('mput sends each argument as one payload and prints OK <n>; mget prints one entry per line, then EMPTY', async (t) => {
  const node = await startNode(t);
  t.deepEqual(await run(['--addr', node.addr, 'mput', 't', 'one', 'two words']), { code: 0, out: 'OK 2', err: '' });
  t.deepEqual(await run(['--addr', node.addr, 'mget', 't', '10']), { code: 0, out: 'one\ntwo words', err: '' });
  t.deepEqual(await run(['--addr', node.addr, 'mget', 't', '10']), { code: 0, out: 'EMPTY', err: '' });
  t.deepEqual(node.requests, ['MPUT t 3 9\nonetwo words', 'MGET t 10', 'MGET t 10']);
  const refused = await run(['--addr', node.addr, 'mget', 't', '0']);
  t.is(refused.code, 2);
  t.regex(refused.err, /expected an integer from 1 to 2000/);
});

test('fetch prints the next offset and the payload', async (t) => {
  const node = await startNode(t);
  t.deepEqual(await run(['--addr', node.addr, 'fetch', 't', '1', '0']), { code: 0, out: '1 x', err: '' });
  t.deepEqual(node.requests, ['FETCH t 1 0']);
});

test('state and metrics print the JSON with a 2-space indent', async (t) => {
  const node = await startNode(t);
  const state = await run(['--addr', node.addr, 'state', 't']);
  t.is(state.code, 0);
  t.is(state.out, JSON.stringify(JSON.parse(STATE_JSON), null, 2));
  t.true(state.out.includes('\n  "leader_node": 1,\n'));
  const metrics = await run(['--addr', node.addr, 'metrics']);
  t.is(metrics.code, 0);
  t.is(metrics.out, JSON.stringify(JSON.parse(METRICS_JSON), null, 2));
  t.deepEqual(node.requests, ['STATE t', 'METRICS']);
});

test("an ERR reply exits 1 with the server's message on stderr", async (t) => {
  const node = await startNode(t);
  for (const argv of [
    ['get', 'missing'],
    ['put', 'missing', 'x'],
    ['state', 'missing'],
    ['fetch', 'missing', '1', '0'],
  ]) {
    t.deepEqual(await run(['--addr', node.addr, ...argv]), { code: 1, out: '', err: 'walrus-cli: unknown topic missing' }, argv.join(' '));
  }
});

test('an unreachable node exits 1 with "cannot reach"', async (t) => {
  const addr = await closedAddr();
  const result = await run(['--addr', addr, 'get', 't']);
  t.is(result.code, 1);
  t.is(result.out, '');
  t.regex(result.err, new RegExp(`^walrus-cli: cannot reach ${addr.replaceAll('.', '\\.')}: .*ECONNREFUSED`));
});

test('a node that does not answer in time exits 1 with "cannot reach"', async (t) => {
  const node = await startNode(t);
  const result = await run(['--addr', node.addr, '--timeout', '200', 'get', 'slow']);
  t.deepEqual(result, { code: 1, out: '', err: `walrus-cli: cannot reach ${node.addr}: no reply within 200 ms` });
});

test('bad usage exits 2 with the reason', async (t) => {
  for (const [argv, message] of [
    [['--addr', 'nohostport', 'get', 't'], "option '--addr <host:port>' argument 'nohostport' is invalid"],
    [['--addr', 'h:70000', 'get', 't'], 'the port must be from 1 to 65535'],
    [['--addr', 'h:0', 'metrics'], 'the port must be from 1 to 65535'],
    [['get'], "missing required argument 'topic'"],
    [['put', 't'], "missing required argument 'data'"],
    [['put', 't', 'x '], 'the payload cannot end with a space'],
    [['fetch', 't', '0', '0'], "argument 'segment'"],
    [['fetch', 't', '1', '-1'], "argument 'offset'"],
    [['register', 'a', 'b'], 'too many arguments'],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [['--timeout', 'soon', 'metrics'], "option '--timeout <ms>' argument 'soon' is invalid"],
  ] as const) {
    const result = await run(argv);
    t.is(result.code, 2, argv.join(' '));
    t.is(result.out, '');
    t.true(result.err.includes(message), `${argv.join(' ')}: ${result.err}`);
  }
  const badEnv = await run(['get', 't'], { env: { WALRUS_ADDR: 'nope' } });
  t.is(badEnv.code, 2);
  t.true(badEnv.err.includes('WALRUS_ADDR is not a node address'));
});

test('--help and --version exit 0 on stdout', async (t) => {
  const help = await run(['--help']);
  t.is(help.code, 0);
  t.true(help.out.startsWith('Usage: walrus-cli [options] [command]'));
  for (const command of ['register', 'put', 'mput', 'get', 'mget', 'fetch', 'state', 'metrics', 'repl'])
    t.true(help.out.includes(`\n  ${command}`), command);
  t.true(help.out.includes('127.0.0.1:8080'));
  const version = await run(['--version']);
  t.is(version.code, 0);
  t.regex(version.out, /^\d+\.\d+\.\d+/);
});

test('WALRUS_ADDR is used without --addr, and --addr wins over it', async (t) => {
  const node = await startNode(t);
  const closed = await closedAddr();
  t.deepEqual(await run(['register', 't'], { env: { WALRUS_ADDR: node.addr } }), { code: 0, out: 'OK', err: '' });
  t.deepEqual(await run(['--addr', node.addr, 'register', 'u'], { env: { WALRUS_ADDR: closed } }), { code: 0, out: 'OK', err: '' });
  const viaEnv = await run(['register', 'v'], { env: { WALRUS_ADDR: closed } });
  t.is(viaEnv.code, 1);
  t.true(viaEnv.err.startsWith(`walrus-cli: cannot reach ${closed}:`));
  t.deepEqual(node.requests, ['REGISTER t', 'REGISTER u']);
});

test('the REPL sends each piped line and prints the replies in order', async (t) => {
  const node = await startNode(t);
  const script = 'register t\nput t a b\nget t\nget t\nbogus\n\n   \nstate t\nquit\nget t\n';
  const result = await run(['--addr', node.addr], { stdin: script });
  t.is(result.code, 0);
  t.is(result.err, '');
  t.deepEqual(result.out.split('\n'), [
    'OK',
    'OK',
    'OK hello world',
    'EMPTY',
    'ERR unknown command',
    ...JSON.stringify(JSON.parse(STATE_JSON), null, 2).split('\n'),
  ]);
  // Verbs are upper-cased, everything else goes as typed; blank lines are skipped; nothing after quit.
  t.deepEqual(node.requests, ['REGISTER t', 'PUT t a b', 'GET t', 'GET t', 'BOGUS', 'STATE t']);
});

test('the REPL ends at the end of input, prints help, and survives an unreachable node', async (t) => {
  const node = await startNode(t);
  const done = await run(['repl', '--addr', node.addr], { stdin: 'METRICS\nGET missing' });
  t.is(done.code, 0);
  t.is(done.out, `${JSON.stringify(JSON.parse(METRICS_JSON), null, 2)}\nERR unknown topic missing`);

  const help = await run(['--addr', node.addr], { stdin: 'help\nexit\n' });
  t.is(help.code, 0);
  t.true(help.out.includes('FETCH <topic> <segment> <offset>'));

  const closed = await closedAddr();
  const down = await run(['--addr', closed], { stdin: 'get t\nget t\nq\n' });
  t.is(down.code, 0);
  t.is(down.out, '');
  const lines = down.err.split('\n');
  t.is(lines.length, 2);
  for (const line of lines) t.true(line.startsWith(`walrus-cli: cannot reach ${closed}:`), line);
});

test('requestOf upper-cases only a plain verb; formatReply pretty-prints JSON objects only', (t) => {
  t.is(requestOf('put t Hello World'), 'PUT t Hello World');
  t.is(requestOf('metrics'), 'METRICS');
  t.is(requestOf('ge7 t'), 'ge7 t');
  t.is(formatReply('OK {x'), 'OK {x');
  t.is(formatReply('{not json'), '{not json');
  t.is(formatReply('{"a":[1]}'), '{\n  "a": [\n    1\n  ]\n}');
  t.deepEqual(parseTarget('[::1]:9'), { host: '::1', port: 9, label: '[::1]:9' });
  t.is(typeof parseTarget('::1:9'), 'string');
});

/** Runs bin/walrus-cli as a child process (the build must exist: tests run from it), killed after 20 s at most. */
function spawnCli(args: readonly string[], input: string, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [resolvePath('bin/walrus-cli'), ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    let out = '';
    let errText = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      errText += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code: code ?? -1, out, err: errText });
    });
    child.stdin.end(input);
  });
}

test('the bin/walrus-cli launcher runs a one-shot command', async (t) => {
  const node = await startNode(t);
  t.deepEqual(await spawnCli(['--addr', node.addr, 'get', 't'], ''), { code: 0, out: 'hello world\n', err: '' });
  t.deepEqual(await spawnCli(['get', 'missing'], '', { WALRUS_ADDR: node.addr }), {
    code: 1,
    out: '',
    err: 'walrus-cli: unknown topic missing\n',
  });
});

test('the bin/walrus-cli launcher runs the REPL on a piped stdin and exits 0 at its end', async (t) => {
  const node = await startNode(t);
  const result = await spawnCli(['--addr', node.addr], 'register t\nput t a b\nget t\nget t\n');
  t.deepEqual(result, { code: 0, out: 'OK\nOK\nOK hello world\nEMPTY\n', err: '' });
});
