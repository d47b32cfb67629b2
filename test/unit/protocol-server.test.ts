// The client protocol server on loopback with a fake command handler: replies and error texts,
// frames split anywhere, bad frames (invalid UTF-8 keeps the connection, bad lengths close it),
// random garbage, pipelining with replies in request order, the `written` callback, many
// connections at once, the connection limit, backpressure against a client that never reads,
// the per-connection and node-wide reply budgets, the idle and frame timeouts, and a graceful
// close().

import { randomBytes } from 'node:crypto';
import { connect, Socket } from 'node:net';
import test from 'ava';
import { pino } from 'pino';
import { limits } from '../../src/kernel/limits.js';
import {
  type CommandHandler,
  type HandledReply,
  ProtocolServer,
  type ServerLimits,
  type ServerTimeouts,
} from '../../src/plugins/protocol-tcp/server.js';
import type { Command } from '../../src/protocol/commands.js';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frames.js';

const HOST = '127.0.0.1';
/** Size of the fake STATE reply for topic `big`. */
const BIG_REPLY_CHARS = 4096;
/** Size of the FETCH reply for topic `large` (given a moment later, as the node's FETCH is): one 60 KB entry. */
const LARGE_REPLY_CHARS = 60 * 1024;

/**
 * REGISTER and PUT answer OK (PUT on topic `now` synchronously, with its payload); GET answers `OK <n>` from a counter and records `written`; STATE
 * `boom` rejects, `sync` throws synchronously, `big` answers 4 KiB, others answer JSON; any command
 * on topic `hold` waits until the test releases it (FETCH by its offset, GET by 'get').
 */
class FakeHandler implements CommandHandler {
  private counter = 0;
  /** `written` calls of GET replies, as [reply text, ok]. */
  readonly writes: Array<[string, boolean]> = [];
  private readonly held = new Map<string, () => void>();

  handle(command: Command): HandledReply | Promise<HandledReply> {
    switch (command.op) {
      case 'REGISTER':
        return Promise.resolve({ text: 'OK' });
      case 'PUT':
        // Topic `now` answers synchronously, as the node does when nothing has to be waited for.
        return command.topic === 'now' ? { text: `OK ${command.payload}` } : Promise.resolve({ text: 'OK' });
      case 'GET':
        return this.maybeHold(command.topic, 'get', () => {
          this.counter += 1;
          const text = `OK ${this.counter}`;
          return { text, written: (ok) => this.writes.push([text, ok]) };
        });
      case 'STATE':
        if (command.topic === 'boom') return Promise.reject(new Error('boom'));
        if (command.topic === 'sync') throw new Error('thrown synchronously');
        if (command.topic === 'big') return Promise.resolve({ text: 'x'.repeat(BIG_REPLY_CHARS) });
        return Promise.resolve({ text: JSON.stringify({ topic: command.topic }) });
      case 'METRICS':
        return Promise.resolve({ text: '{"metrics":true}' });
      case 'FETCH':
        if (command.topic === 'large')
          return new Promise((resolve) => setImmediate(() => resolve({ text: 'y'.repeat(LARGE_REPLY_CHARS) })));
        return this.maybeHold(command.topic, String(command.offset), () => ({ text: `OK ${command.offset + 1} p${command.offset}` }));
      case 'MPUT':
        return Promise.resolve({ text: `OK ${command.batch.count}` });
      case 'MGET':
      case 'MFETCH':
        return Promise.resolve({ text: 'EMPTY' });
    }
  }

  /** Keys of requests waiting to be released. */
  heldKeys(): string[] {
    return [...this.held.keys()];
  }

  release(key: string): void {
    const resolve = this.held.get(key);
    if (resolve === undefined) throw new Error(`nothing held under ${key}`);
    this.held.delete(key);
    resolve();
  }

  private maybeHold(topic: string, key: string, reply: () => HandledReply): Promise<HandledReply> {
    if (topic !== 'hold') return Promise.resolve(reply());
    return new Promise((resolve) => this.held.set(key, () => resolve(reply())));
  }
}

/** A raw socket client that decodes reply frames and lets a test await them one by one. */
class Client {
  readonly replies: string[] = [];
  private readonly decoder = new FrameDecoder();
  private wake: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let frame = this.decoder.next(); frame !== undefined; frame = this.decoder.next()) {
        this.replies.push(frame.kind === 'text' ? frame.text : `<${frame.kind}>`);
      }
      this.wake?.();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: HOST, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new Client(socket));
      });
    });
  }

  send(...texts: string[]): void {
    this.socket.write(Buffer.concat(texts.map((text) => encodeFrame(text))));
  }

  /** The next `count` replies (waiting up to timeoutMs); fails if the server closes first. */
  async take(count = 1, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count) {
      if (this.ended) throw new Error(`connection closed after ${this.replies.length} of ${count} replies`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${this.replies.length} of ${count} replies`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    return this.replies.splice(0, count);
  }

  async request(text: string): Promise<string> {
    this.send(text);
    return (await this.take(1))[0] as string;
  }

  /** Waits for the server to close the connection (up to timeoutMs). */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await withTimeout(this.closed, timeoutMs, 'the server did not close the connection');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const silent = pino({ level: 'silent' });

/** Runs `body` with a started server and closes everything it opened, even on failure. */
async function withServer(
  body: (context: { server: ProtocolServer; handler: FakeHandler; port: number; open: () => Promise<Client> }) => Promise<void>,
  serverLimits: Partial<ServerLimits> = {},
  timeouts: Partial<ServerTimeouts> = {},
  consumingRepliesUncorked = false,
): Promise<void> {
  const handler = new FakeHandler();
  const server = new ProtocolServer({
    host: HOST,
    port: 0,
    handler,
    log: silent,
    limits: serverLimits,
    timeouts,
    consumingRepliesUncorked,
  });
  const clients: Client[] = [];
  try {
    const { port } = await server.listen();
    const open = async (): Promise<Client> => {
      const client = await Client.open(port);
      clients.push(client);
      return client;
    };
    await body({ server, handler, port, open });
  } finally {
    for (const client of clients) client.destroy();
    await server.close();
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function header(length: number): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32LE(length, 0);
  return prefix;
}

// --- replies -----------------------------------------------------------------------------------

test('every command gets its reply; unknown and malformed commands get ERR texts', async (t) => {
  await withServer(async ({ open }) => {
    const client = await open();
    const expected: Array<[string, string]> = [
      ['REGISTER logs', 'OK'],
      ['PUT logs hello world', 'OK'],
      ['GET logs', 'OK 1'],
      ['GET logs', 'OK 2'],
      ['STATE logs', '{"topic":"logs"}'],
      ['METRICS', '{"metrics":true}'],
      ['FETCH logs 1 0', 'OK 1 p0'],
      ['put logs x', 'ERR unknown command'],
      [' PUT logs x', 'ERR unknown command'],
      ['', 'ERR unknown command'],
      ['REGISTER', 'ERR REGISTER requires a topic'],
      ['PUT logs', 'ERR PUT requires a payload'],
      ['GET', 'ERR GET requires a topic'],
      ['FETCH logs 0 1', 'ERR FETCH segment must be a positive integer'],
      ['STATE boom', 'ERR boom'],
      ['STATE sync', 'ERR thrown synchronously'],
      ['GET logs', 'OK 3'],
    ];
    for (const [request, reply] of expected) {
      // '' cannot be framed (length 0 is invalid): send a lone space, trimmed to the empty op.
      t.is(await client.request(request === '' ? ' ' : request), reply, request);
    }
  });
});

test('a request split at every byte, or sent one byte at a time, is still answered', async (t) => {
  await withServer(async ({ open }) => {
    const client = await open();
    const frame = encodeFrame('PUT topic some payload');
    for (let at = 1; at < frame.length; at += 1) {
      client.socket.write(frame.subarray(0, at));
      await new Promise((resolve) => setImmediate(resolve));
      client.socket.write(frame.subarray(at));
      t.deepEqual(await client.take(1), ['OK'], `split at ${at}`);
    }
    const get = encodeFrame('GET topic');
    for (const byte of get) {
      client.socket.write(Buffer.from([byte]));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    t.deepEqual(await client.take(1), ['OK 1']);
  });
});

// --- bad frames ----------------------------------------------------------------------------------

test('invalid UTF-8 gets ERR invalid utf-8 and the connection stays usable', async (t) => {
  await withServer(async ({ open }) => {
    const client = await open();
    const body = Buffer.from([0x50, 0x55, 0x54, 0x20, 0xff, 0xfe, 0x20, 0x78]);
    client.socket.write(Buffer.concat([header(body.length), body]));
    t.deepEqual(await client.take(1), ['ERR invalid utf-8']);
    t.is(await client.request('REGISTER t'), 'OK');
  });
});

test('lengths 0 and 65,537 get ERR invalid frame length, after earlier replies, then the socket closes', async (t) => {
  await withServer(async ({ open, handler }) => {
    for (const [round, length] of [0, limits.frameBytesMax + 1].entries()) {
      const client = await open();
      // An earlier request still held by the handler: its reply must come first.
      client.socket.write(Buffer.concat([encodeFrame('GET hold'), header(length), Buffer.alloc(16, 0x41)]));
      await waitFor(() => handler.heldKeys().includes('get'), 'the held GET');
      handler.release('get');
      t.deepEqual(await client.take(2), [`OK ${round + 1}`, 'ERR invalid frame length'], `length ${length}`);
      await client.waitClosed();
      t.deepEqual(client.replies, []);
    }
  });
});

test('a body of exactly 65,536 bytes is accepted', async (t) => {
  await withServer(async ({ open }) => {
    const client = await open();
    const prefix = 'PUT big ';
    const request = prefix + 'p'.repeat(limits.frameBytesMax - prefix.length);
    t.is(Buffer.byteLength(request), limits.frameBytesMax);
    t.is(await client.request(request), 'OK');
    t.is(await client.request('REGISTER next'), 'OK');
  });
});

test('random garbage never crashes the server: it answers or closes, and new connections work', async (t) => {
  await withServer(async ({ open }) => {
    for (let round = 0; round < 60; round += 1) {
      const client = await open();
      // Half the rounds are pure noise, half are well-framed random bodies (mostly invalid UTF-8).
      let bytes: Buffer;
      if (round % 2 === 0) {
        bytes = randomBytes(1 + (round % 37) * 7);
      } else {
        const body = randomBytes(1 + (round % 23));
        bytes = Buffer.concat([header(body.length), body, randomBytes(round % 5)]);
      }
      client.socket.write(bytes);
      // Whatever the server made of it, it must still be alive: either it closed this connection
      // (bad length) or it keeps waiting for more bytes / answered. EOF then closes it quietly.
      await new Promise((resolve) => setTimeout(resolve, 5));
      client.socket.end();
      await client.waitClosed();
      for (const reply of client.replies) t.regex(reply, /^(ERR |OK|\{)/);
    }
    const fresh = await open();
    t.is(await fresh.request('REGISTER still-alive'), 'OK');
  });
});

// --- pipelining and `written` -----------------------------------------------------------------------

test('100 pipelined requests resolved in reverse order are answered in request order', async (t) => {
  await withServer(async ({ open, handler }) => {
    const client = await open();
    const count = 100;
    const chunks: Buffer[] = [];
    client.socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    client.send(...Array.from({ length: count }, (_, offset) => `FETCH hold 1 ${offset}`));
    await waitFor(() => handler.heldKeys().length === count, 'all requests held');
    for (let offset = count - 1; offset >= 0; offset -= 1) {
      handler.release(String(offset));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const replies = await client.take(count);
    t.deepEqual(
      replies,
      Array.from({ length: count }, (_, offset) => `OK ${offset + 1} p${offset}`),
    );
    // Nothing but those frames is on the wire.
    const raw = Buffer.concat(chunks);
    t.is(
      raw.length,
      replies.reduce((sum, reply) => sum + 4 + Buffer.byteLength(reply), 0),
    );
  });
});

test('replies given synchronously and replies given later go out in request order', async (t) => {
  await withServer(async ({ open, handler }) => {
    const client = await open();
    client.send('FETCH hold 1 0', 'PUT now a', 'PUT now b', 'FETCH hold 1 1', 'PUT now c');
    await waitFor(() => handler.heldKeys().length === 2, 'both FETCHes held');
    handler.release('1');
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.deepEqual(client.replies, [], 'nothing may overtake the first, held request');
    handler.release('0');
    t.deepEqual(await client.take(5), ['OK 1 p0', 'OK a', 'OK b', 'OK 2 p1', 'OK c']);
    client.send('PUT now alone');
    t.deepEqual(await client.take(1), ['OK alone'], 'a lone synchronous reply goes out at once');
  });
});

test('written(true) after a reply is delivered; written(false) exactly once when the client left first', async (t) => {
  await withServer(async ({ server, open, handler }) => {
    const client = await open();
    t.is(await client.request('GET t'), 'OK 1');
    await waitFor(() => handler.writes.length === 1, 'the written callback');
    t.deepEqual(handler.writes, [['OK 1', true]]);

    const leaving = await open();
    leaving.send('GET hold');
    await waitFor(() => handler.heldKeys().includes('get'), 'the held GET');
    leaving.destroy();
    await waitFor(() => server.connections === 1, 'the server to notice the disconnect');
    handler.release('get');
    await waitFor(() => handler.writes.length === 2, 'the written callback');

    // Same when the reply is ready but stuck behind an earlier one still being handled.
    const stuck = await open();
    stuck.send('FETCH hold 1 0', 'GET t');
    await waitFor(() => handler.heldKeys().includes('0') && handler.writes.length === 2, 'the held FETCH');
    await new Promise((resolve) => setTimeout(resolve, 20)); // GET t has its reply by now
    stuck.socket.end(); // EOF: the client is gone
    await waitFor(() => server.connections === 1, 'the server to notice the EOF');
    handler.release('0');
    await new Promise((resolve) => setTimeout(resolve, 50));
    t.deepEqual(handler.writes, [
      ['OK 1', true],
      ['OK 2', false],
      ['OK 3', false],
    ]);
  });
});

// --- connections -------------------------------------------------------------------------------------

test('1,000 concurrent connections are all answered', async (t) => {
  await withServer(async ({ open }) => {
    const started = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 1000 }, async (_, index) => {
        const client = await open();
        // The test's own bound (20 s for all), not take()'s 5 s per reply: Node accepts one queued
        // connection per turn of the event loop, and this process runs the 1,000 clients too, so
        // on a loaded machine the last ones are accepted seconds after their connect completed.
        client.send(`PUT t message-${index}`);
        const [reply] = await client.take(1, 20_000);
        client.destroy();
        return reply;
      }),
    );
    t.true(replies.every((reply) => reply === 'OK'));
    t.true(Date.now() - started < 20_000);
  });
});

test('beyond connectionsMax a connection gets ERR too many connections and is closed', async (t) => {
  await withServer(
    async ({ server, open }) => {
      const first = await Promise.all([open(), open(), open()]);
      for (const client of first) t.is(await client.request('REGISTER t'), 'OK');
      const extra = await open();
      t.deepEqual(await extra.take(1), ['ERR too many connections']);
      await extra.waitClosed();
      t.is(server.connections, 3);
      // A slot that frees up can be used again.
      first[0]?.destroy();
      await waitFor(() => server.connections === 2, 'a connection to go');
      const next = await open();
      t.is(await next.request('REGISTER t'), 'OK');
    },
    { connectionsMax: 3 },
  );
});

test('a client that never reads is paused with bounded buffers, and catches up once it reads', async (t) => {
  const serverLimits = { inFlightPerConnection: 16, bufferedBytesPerConnection: 64 * 1024 };
  await withServer(async ({ server, open }) => {
    const client = await open();
    client.socket.pause(); // never read: replies pile up in the kernel, then on the server
    const count = 10_000; // 40 MiB of replies: more than loopback socket buffers hold
    client.send(...Array.from({ length: count }, () => 'STATE big'));
    await waitFor(() => server.stats().pausedConnections === 1, 'the connection to be paused', 10_000);
    // Bounded: the budget, one read chunk (at most a frame), plus replies of requests in flight.
    const bound =
      serverLimits.bufferedBytesPerConnection + 4 + limits.frameBytesMax + serverLimits.inFlightPerConnection * (4 + BIG_REPLY_CHARS);
    const samples: number[] = [];
    for (let sample = 0; sample < 20; sample += 1) {
      samples.push(server.stats().bufferedBytes);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    t.true(
      samples.every((bytes) => bytes <= bound),
      `buffered ${Math.max(...samples)} > ${bound}`,
    );
    t.is(server.stats().pausedConnections, 1);
    // Reading again drains everything, in order and complete.
    client.socket.resume();
    const replies = await client.take(count, 30_000);
    t.true(replies.every((reply) => reply.length === BIG_REPLY_CHARS));
    t.is(await client.request('REGISTER after'), 'OK');
  }, serverLimits);
});

test('clients that never read FETCH replies stay within the reply budgets, and a reading client is still served', async (t) => {
  // FETCH replies come a moment after the request, as on a node: without reservations every
  // request in flight (128 per connection) would add an unbudgeted 60 KB once it settles.
  const serverLimits = { bufferedBytesPerConnection: 256 * 1024, replyBytesTotal: 1024 * 1024 };
  const connections = 8;
  await withServer(async ({ server, open }) => {
    const flooders: Client[] = [];
    for (let index = 0; index < connections; index += 1) {
      const client = await open();
      client.socket.pause(); // never read
      client.send(...Array.from({ length: 300 }, (_, offset) => `FETCH large 1 ${offset}`));
      flooders.push(client);
    }
    await waitFor(() => server.stats().pausedConnections === connections, 'every flooding connection to be paused', 20_000);
    // The node-wide bound: the total budget, plus at most one reply per connection started
    // while the total was under it (docs/protocol.md).
    const replyBound = serverLimits.replyBytesTotal + connections * limits.serverReadReplyReserveBytes;
    // Everything held, input included: each connection may also hold its unparsed input.
    const bufferedBound = replyBound + connections * (serverLimits.bufferedBytesPerConnection + 64 * 1024);
    const samples: Array<{ bufferedBytes: number; replyBytes: number }> = [];
    for (let sample = 0; sample < 20; sample += 1) {
      samples.push(server.stats());
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const maxReply = Math.max(...samples.map((sample) => sample.replyBytes));
    const maxBuffered = Math.max(...samples.map((sample) => sample.bufferedBytes));
    t.true(maxReply <= replyBound, `reply bytes ${maxReply} > ${replyBound}`);
    t.true(maxBuffered <= bufferedBound, `buffered ${maxBuffered} > ${bufferedBound}`);
    // A client that reads gets its replies although the others hold the node-wide budget.
    const reader = await open();
    t.is((await reader.request('FETCH large 1 0')).length, LARGE_REPLY_CHARS);
    t.is(await reader.request('REGISTER t'), 'OK');
    // The flooders get everything once they read, in order and complete.
    for (const client of flooders) client.socket.resume();
    for (const client of flooders) {
      const replies = await client.take(300, 30_000);
      t.true(replies.every((reply) => reply.length === LARGE_REPLY_CHARS));
    }
  }, serverLimits);
});

test('an idle connection is closed after idleTimeoutMs; one with a request in flight is not', async (t) => {
  await withServer(
    async ({ server, open, handler }) => {
      const started = Date.now();
      const idle = await open();
      const busy = await open();
      busy.send('GET hold');
      await waitFor(() => handler.heldKeys().includes('get'), 'the held GET');
      await idle.waitClosed(2000);
      t.true(Date.now() - started >= 150, 'closed before the idle timeout');
      t.is(server.stats().idleClosed, 1);
      // The busy one waited longer than the timeout for its reply and is still there.
      await new Promise((resolve) => setTimeout(resolve, 400));
      handler.release('get');
      t.deepEqual(await busy.take(1), ['OK 1']);
      t.is(await busy.request('REGISTER t'), 'OK');
      // Once idle itself, it goes too.
      await busy.waitClosed(2000);
    },
    {},
    { idleTimeoutMs: 200, frameTimeoutMs: 0 },
  );
});

test('a frame dribbled one byte at a time gets ERR frame timeout after earlier replies, then the socket closes', async (t) => {
  await withServer(
    async ({ server, open }) => {
      const client = await open();
      t.is(await client.request('REGISTER a'), 'OK');
      const body = Buffer.from('PUT a dribbled');
      const frame = Buffer.concat([header(body.length), body]);
      let sent = 0;
      // One byte every 50 ms: never idle, but the frame would take 900 ms.
      const dribble = setInterval(() => {
        if (sent < frame.length && !client.socket.destroyed) client.socket.write(frame.subarray(sent, ++sent));
      }, 50);
      try {
        t.deepEqual(await client.take(1, 3000), ['ERR frame timeout']);
        await client.waitClosed(2000);
      } finally {
        clearInterval(dribble);
      }
      t.true(sent < frame.length, 'the frame was completed before the timeout');
      t.is(server.stats().frameTimeouts, 1);
      // Slow but complete frames are fine: one in two pieces 100 ms apart.
      const other = await open();
      other.socket.write(frame.subarray(0, 5));
      await new Promise((resolve) => setTimeout(resolve, 100));
      other.socket.write(frame.subarray(5));
      t.is((await other.take(1))[0], 'OK');
    },
    {},
    { idleTimeoutMs: 0, frameTimeoutMs: 300 },
  );
});

test('a connection flooding pipelined requests gets its share of each turn; another connection is answered meanwhile', async (t) => {
  await withServer(
    async ({ open }) => {
      const flooder = await open();
      const count = 5000;
      flooder.send(...Array.from({ length: count }, (_, index) => `PUT now ${index}`));
      const other = await open();
      t.is(await other.request('PUT now other'), 'OK other');
      const replies = await flooder.take(count, 30_000);
      t.deepEqual(
        replies,
        Array.from({ length: count }, (_, index) => `OK ${index}`),
      );
    },
    { framesPerTurn: 4 },
  );
});

test('all connections together start at most frameBytesPerTurnTotal per turn; every flooder progresses and a new client is answered', async (t) => {
  const flooders = 8;
  const count = 400;
  // 100-byte bodies, 1,000 bytes a turn: at most 10 requests, plus the one that crosses the bound.
  const payload = (index: number): string => `${index}`.padEnd(100 - 'PUT now '.length, '.');
  await withServer(
    async ({ open, handler }) => {
      // The test shares the server's event loop: a setImmediate ticker counts its turns.
      let tick = 0;
      let ticking = true;
      const onTick = (): void => {
        tick += 1;
        if (ticking) setImmediate(onTick);
      };
      setImmediate(onTick);
      const perTick = new Map<number, number>();
      const handle = handler.handle.bind(handler);
      handler.handle = (command) => {
        perTick.set(tick, (perTick.get(tick) ?? 0) + 1);
        return handle(command);
      };
      try {
        const clients = await Promise.all(Array.from({ length: flooders }, () => open()));
        for (const client of clients) client.send(...Array.from({ length: count }, (_, index) => `PUT now ${payload(index)}`));
        const other = await open();
        // 9 bytes: small (smallFrameBytes), from a connection with nothing in flight.
        t.is(await other.request('PUT now o'), 'OK o');
        for (const client of clients) {
          t.deepEqual(
            await client.take(count, 30_000),
            Array.from({ length: count }, (_, index) => `OK ${payload(index)}`),
          );
        }
      } finally {
        ticking = false;
      }
      // A tick of the test may straddle two of the server's turns: twice the bound, at most.
      const most = Math.max(...perTick.values());
      t.true(most <= 2 * 11, `${most} requests were started in one turn`);
    },
    { frameBytesPerTurnTotal: 1000, smallFrameBytes: 16 },
  );
});

test('tiny limits slow a pipelined connection down but never stall it', async (t) => {
  await withServer(
    async ({ open }) => {
      const client = await open();
      const requests = Array.from({ length: 60 }, (_, index) => (index % 3 === 0 ? 'STATE big' : `FETCH t 1 ${index}`));
      client.send(...requests);
      const replies = await client.take(requests.length);
      t.deepEqual(
        replies.map((reply, index) => (index % 3 === 0 ? reply.length : reply)),
        requests.map((_, index) => (index % 3 === 0 ? BIG_REPLY_CHARS : `OK ${index + 1} p${index}`)),
      );
    },
    { inFlightPerConnection: 1, bufferedBytesPerConnection: 1 },
  );
});

test('close() lets a pending reply be written, then stops listening', async (t) => {
  await withServer(async ({ server, port, open, handler }) => {
    const client = await open();
    client.send('GET hold');
    await waitFor(() => handler.heldKeys().includes('get'), 'the held GET');
    const closing = server.close();
    setTimeout(() => handler.release('get'), 50);
    t.deepEqual(await client.take(1), ['OK 1']);
    await withTimeout(closing, 5000, 'close() did not finish');
    await client.waitClosed();
    t.deepEqual(handler.writes, [['OK 1', true]]);
    await t.throwsAsync(() => Client.open(port));
  });
});

test.serial(
  'pipelined GET replies are corked together by default; with consumingRepliesUncorked each goes to the kernel before it counts as written',
  async (t) => {
    // Each write's cork state, read in the GET reply's written(), which follows its write at once.
    const write = Socket.prototype.write;
    let lastWriteCorked = 0;
    Socket.prototype.write = function (this: Socket, ...args: Parameters<Socket['write']>) {
      lastWriteCorked = this.writableCorked;
      return write.apply(this, args);
    } as Socket['write'];
    try {
      for (const uncorked of [false, true]) {
        await withServer(
          async ({ open, handler }) => {
            const corkedAtWritten: number[] = [];
            const handle = handler.handle.bind(handler);
            handler.handle = (command) =>
              Promise.resolve(handle(command)).then((reply): HandledReply => {
                const written = reply.written;
                if (written === undefined) return reply;
                return {
                  ...reply,
                  written: (ok: boolean) => {
                    corkedAtWritten.push(lastWriteCorked);
                    written(ok);
                  },
                };
              });
            const client = await open();
            client.send(...Array.from({ length: 20 }, () => 'GET t'));
            t.deepEqual(
              await client.take(20),
              Array.from({ length: 20 }, (_, index) => `OK ${index + 1}`),
            );
            if (uncorked) t.deepEqual(corkedAtWritten, new Array(20).fill(0), 'every consuming reply written uncorked');
            else
              t.true(
                corkedAtWritten.some((corked) => corked > 0),
                'pipelined replies share a corked write',
              );
          },
          {},
          {},
          uncorked,
        );
      }
    } finally {
      Socket.prototype.write = write;
    }
  },
);
