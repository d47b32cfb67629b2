// WalrusClient against a scripted fake node on 127.0.0.1 (built from the same codec): each
// method's request text and result, ERR replies, pipelining in order under the in-flight cap,
// timeouts, a server that drops the connection, reconnecting, and requests refused before
// anything is sent.

import { readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { ClientError, WalrusClient } from '../../src/client/index.js';
import { limits } from '../../src/kernel/limits.js';
import { type Script, startServer } from '../helpers/fake-node.js';

const STATE_JSON =
  '{"current_segment":2,"leader_node":1,"last_sealed_entry_offset":0,"sealed_segments":{"1":0},"segment_leaders":{"1":1,"2":1}}';
const METRICS_JSON = '{\n  "id": 1,\n  "state": "Leader",\n  "current_leader": 1\n}';

/** A small node: knows topic `logs`, holds one entry to GET, answers FETCH of segment 2. */
function scripted(): Script {
  const entries = ['hello world'];
  return (request) => {
    if (request === 'REGISTER logs' || request === 'PUT logs some payload') return 'OK';
    if (request === 'GET logs') return entries.length > 0 ? `OK ${entries.shift()}` : 'EMPTY';
    if (request === 'STATE logs') return STATE_JSON;
    if (request === 'METRICS') return METRICS_JSON;
    if (request === 'FETCH logs 2 3') return 'OK 4 a b  c';
    if (request === 'FETCH logs 2 4') return 'EMPTY';
    if (/^(PUT|GET|STATE|FETCH) nope/.test(request)) return 'ERR unknown topic nope';
    if (request === 'STATE odd') return 'OK 5';
    return 'ERR unknown command';
  };
}

/** Asserts that the promise rejects with a ClientError and returns it. */
async function rejection(t: ExecutionContext, promise: Promise<unknown>): Promise<ClientError> {
  const error = await t.throwsAsync(promise, { instanceOf: ClientError });
  return error as ClientError;
}

test('each method sends its request and returns the reply, decoded', async (t) => {
  const server = await startServer(scripted());
  const client = new WalrusClient(`127.0.0.1:${server.port}`);
  try {
    t.is(server.connections, 0, 'connecting is lazy');
    await client.register('logs');
    await client.put('logs', 'some payload');
    t.is(await client.get('logs'), 'hello world');
    t.is(await client.get('logs'), null);
    t.deepEqual(await client.state('logs'), {
      current_segment: 2,
      leader_node: 1,
      last_sealed_entry_offset: 0,
      sealed_segments: { '1': 0 },
      segment_leaders: { '1': 1, '2': 1 },
    });
    t.deepEqual(await client.metrics(), { id: 1, state: 'Leader', current_leader: 1 });
    t.deepEqual(await client.fetch('logs', 2, 3), { nextOffset: 4, payload: 'a b  c' });
    t.is(await client.fetch('logs', 2, 4), null);
    t.is(await client.raw('put logs x'), 'ERR unknown command');
    t.is(await client.raw('METRICS'), METRICS_JSON);
    t.deepEqual(server.requests, [
      'REGISTER logs',
      'PUT logs some payload',
      'GET logs',
      'GET logs',
      'STATE logs',
      'METRICS',
      'FETCH logs 2 3',
      'FETCH logs 2 4',
      'put logs x',
      'METRICS',
    ]);
    t.is(server.connections, 1, 'one connection carries every request');
    t.is(client.pendingRequests, 0);
  } finally {
    await client.close();
    await server.close();
  }
});

test('ERR replies reject with SERVER_ERROR and the server message; the connection stays usable', async (t) => {
  const server = await startServer(scripted());
  const client = await WalrusClient.connect({ host: '127.0.0.1', port: server.port });
  try {
    for (const call of [client.put('nope', 'x'), client.get('nope'), client.state('nope'), client.fetch('nope', 1, 0)]) {
      const error = await rejection(t, call);
      t.is(error.code, 'SERVER_ERROR');
      t.is(error.message, 'unknown topic nope');
      t.is(error.serverMessage, 'unknown topic nope');
    }
    const unknown = await rejection(t, client.register('other'));
    t.is(unknown.serverMessage, 'unknown command');
    // A reply of the wrong shape is a PROTOCOL error.
    t.is((await rejection(t, client.state('odd'))).code, 'PROTOCOL');
    t.is(await client.get('logs'), 'hello world');
    t.is(server.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

test('200 pipelined requests are answered in order, never more than inFlightMax at once', async (t) => {
  // Replies come after a random short delay, but in order, like a node working through its queue.
  const server = await startServer(async (request) => {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
    return `OK ${request.slice(4)}`;
  });
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port, inFlightMax: 16 });
  try {
    const topics = Array.from({ length: 200 }, (_, i) => `topic-${i}`);
    const calls = topics.map((topic) => client.get(topic));
    t.is(client.pendingRequests, 200);
    t.deepEqual(await Promise.all(calls), topics);
    t.deepEqual(
      server.requests,
      topics.map((topic) => `GET ${topic}`),
    );
    t.true(server.maxOutstanding > 1, `requests were pipelined (max ${server.maxOutstanding} outstanding)`);
    t.true(server.maxOutstanding <= 16, `the in-flight cap held (max ${server.maxOutstanding} outstanding)`);
    t.is(server.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

test('timeouts are per request: requests answered in time never time out, however long the series lasts', async (t) => {
  // Each reply takes 50 ms; with timeoutMs 400, twenty sequential requests last 1 s in all, and a
  // request queued behind a slow one is measured from its own call. (The margins are wide so that
  // a loaded machine's late timers cannot make a reply look late.)
  const server = await startServer(async () => {
    await new Promise((resolve) => setTimeout(resolve, 50));
    return 'OK';
  });
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port, timeoutMs: 400 });
  try {
    const started = Date.now();
    for (let index = 0; index < 20; index++) await client.register(`t${index}`);
    t.true(Date.now() - started >= 950, 'the series outlasted timeoutMs twice over');
    t.is(server.connections, 1, 'no timeout dropped the connection');
    // Two at once: the second waits behind the first (answered in order) and still makes it.
    await Promise.all([client.register('x'), client.register('y')]);
    t.is(server.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a server that never answers: TIMEOUT within timeoutMs for every pending request', async (t) => {
  const server = await startServer((request) => (request === 'GET slow' ? 'silent' : 'OK'));
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port, timeoutMs: 200 });
  try {
    const started = Date.now();
    const calls = [client.get('slow'), client.register('a'), client.register('b')];
    const errors = await Promise.all(calls.map((call) => rejection(t, call)));
    const elapsed = Date.now() - started;
    for (const error of errors) t.is(error.code, 'TIMEOUT');
    t.true(elapsed >= 190 && elapsed < 2000, `timed out after ${elapsed} ms`);
    t.is(client.pendingRequests, 0);
    // The connection was dropped (late replies would be mismatched); the next request uses a new one.
    await client.register('c');
    t.is(server.connections, 2);
  } finally {
    await client.close();
    await server.close();
  }
});

test('the server closing the connection: CONNECTION for pending requests, then a reconnect', async (t) => {
  const server = await startServer((request) => (request === 'GET drop' ? 'close' : 'OK x'));
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port });
  try {
    t.is(await client.get('before'), 'x');
    const calls = [client.get('drop'), client.get('queued')];
    for (const call of calls) t.is((await rejection(t, call)).code, 'CONNECTION');
    t.is(await client.get('after'), 'x');
    t.is(server.connections, 2);
  } finally {
    await client.close();
    await server.close();
  }
});

test('with reconnect off, a lost connection stays lost', async (t) => {
  const server = await startServer((request) => (request === 'GET drop' ? 'close' : 'OK x'));
  const client = await WalrusClient.connect({ host: '127.0.0.1', port: server.port, reconnect: false });
  try {
    t.is((await rejection(t, client.get('drop'))).code, 'CONNECTION');
    t.is((await rejection(t, client.get('after'))).code, 'CONNECTION');
    t.is(server.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

test('nothing listening: connect() and requests fail with CONNECTION', async (t) => {
  // A port that was free a moment ago.
  const probe = await startServer(() => 'OK');
  const port = probe.port;
  await probe.close();
  const error = await rejection(t, WalrusClient.connect({ host: '127.0.0.1', port, timeoutMs: 2000 }));
  t.is(error.code, 'CONNECTION');
  const client = new WalrusClient({ host: '127.0.0.1', port, timeoutMs: 2000 });
  try {
    t.is((await rejection(t, client.get('a'))).code, 'CONNECTION');
    // Repeated failures back off, but only within the bounded delay.
    const started = Date.now();
    t.is((await rejection(t, client.get('a'))).code, 'CONNECTION');
    t.true(Date.now() - started < limits.clientReconnectDelayMsMax + 1000);
  } finally {
    await client.close();
  }
});

test('requests the protocol cannot carry are refused before anything is sent', async (t) => {
  const server = await startServer(() => 'OK');
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port });
  try {
    const refused: Promise<unknown>[] = [
      client.put('t', 'x'.repeat(limits.frameBytesMax - 'PUT t '.length + 1)),
      client.raw('é'.repeat(limits.frameBytesMax / 2 + 1)),
      client.raw(''),
      client.register('two words'),
      client.get(''),
      client.state('tab\tbed'),
      client.put('t', ''),
      client.put('t', 'trailing space '),
      client.put('t', 'trailing newline\n'),
      client.put('t', 'lone \ud800 surrogate'),
      client.fetch('t', 0, 0),
      client.fetch('t', 1, -1),
      client.fetch('t', 1.5, 0),
    ];
    for (const call of refused) {
      const error = await rejection(t, call);
      t.is(error.code, 'PROTOCOL');
    }
    const oversize = await rejection(t, client.raw('x'.repeat(limits.frameBytesMax + 1)));
    t.regex(oversize.message, /65537 bytes.*at most 65536/);
    t.regex((await rejection(t, client.put('t', 'a '))).message, /trims trailing whitespace/);
    t.is(server.connections, 0, 'nothing was even connected');
    t.deepEqual(server.requests, []);
    // The largest request that fits goes through, with leading spaces in the payload kept.
    const payload = `  ${'x'.repeat(limits.frameBytesMax - 'PUT t '.length - 2)}`;
    await client.put('t', payload);
    t.deepEqual(server.requests, [`PUT t ${payload}`]);
  } finally {
    await client.close();
    await server.close();
  }
});

test('a closed client refuses requests; close() fails what is pending', async (t) => {
  const server = await startServer(() => 'silent');
  const client = new WalrusClient({ host: '127.0.0.1', port: server.port });
  try {
    const pending = client.get('a');
    while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await client.close();
    t.is((await rejection(t, pending)).code, 'CONNECTION');
    t.is((await rejection(t, client.get('b'))).code, 'CONNECTION');
  } finally {
    await client.close();
    await server.close();
  }
});

test('addresses and options are checked', (t) => {
  t.is(new WalrusClient('localhost:9091').port, 9091);
  t.is(new WalrusClient('[::1]:8080').host, '::1');
  t.is(new WalrusClient('127.0.0.1:1').timeoutMs, limits.clientTimeoutMsDefault);
  for (const address of ['localhost', 'localhost:', ':80', 'host:0', 'host:70000', '::1:80']) {
    t.throws(() => new WalrusClient(address), { instanceOf: TypeError }, address);
  }
  t.throws(() => new WalrusClient({ host: 'h', port: 1, timeoutMs: 0 }), { instanceOf: TypeError });
  t.throws(() => new WalrusClient({ host: 'h', port: 1, inFlightMax: 0 }), { instanceOf: TypeError });
});

/** Write system calls this process has made so far (Linux: /proc/self/io), or undefined where that cannot be read. */
function writeCalls(): number | undefined {
  try {
    const match = /^syscw: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

const canCountWrites = writeCalls() !== undefined;

(canCountWrites ? test : test.skip)(
  `requests made together leave in one write; a lone one is written before any I/O${canCountWrites ? '' : ' (skipped: /proc/self/io cannot be read here, so writes cannot be counted)'}`,
  async (t) => {
    const server = await startServer((request) => (request.startsWith('GET ') ? `OK ${request.slice(4)}` : 'OK'));
    const client = new WalrusClient({ host: '127.0.0.1', port: server.port, inFlightMax: 64 });
    try {
      await client.register('warm');
      // 40 callers in one run of code (as when a batch of replies wakes them all): nothing can run
      // in between (the server is in this process), so the count is this client's alone.
      let before = writeCalls() as number;
      const calls = Array.from({ length: 40 }, (_, index) => client.get(`t${index}`));
      await Promise.resolve();
      const burst = (writeCalls() as number) - before;
      t.is(burst, 1, `${burst} write calls for 40 requests`);
      t.deepEqual(
        await Promise.all(calls),
        calls.map((_, index) => `t${index}`),
      );
      before = writeCalls() as number;
      const lone = client.get('alone');
      await Promise.resolve();
      t.is((writeCalls() as number) - before, 1, 'the lone request was written before the event loop turned');
      t.is(await lone, 'alone');
    } finally {
      await client.close();
      await server.close();
    }
  },
);
