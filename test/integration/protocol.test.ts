// Protocol conformance against a real `walrus start` process, on raw sockets (no WalrusClient):
// every error text, frames split at every byte, pipelined requests answered in order, zero and
// oversize lengths, invalid UTF-8, garbage, and 1,000 concurrent connections. The server's
// finer behaviour (limits, back-pressure) is tested in test/unit/protocol-server.test.ts.

import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frames.js';
import { withTempDir } from '../helpers/kernel.js';
import { type Running, startWalrus } from '../helpers/process.js';

/** A raw connection that collects reply frames (and notices when the server closes it). */
class Raw {
  readonly socket: Socket;
  readonly replies: string[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let frame = this.decoder.next(); frame !== undefined; frame = this.decoder.next()) {
        this.replies.push(frame.kind === 'text' ? frame.text : `<${frame.kind}>`);
      }
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  /** Waits until `count` replies have arrived (or the socket closed), then returns them. */
  async take(count: number, timeoutMs = 10_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.replies.length < count && !this.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 2));
    return this.replies.splice(0, count);
  }

  async ask(text: string): Promise<string> {
    this.socket.write(encodeFrame(text));
    return (await this.take(1))[0] ?? '<no reply>';
  }

  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A length prefix with no body (for invalid lengths). */
function prefix(length: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(length, 0);
  return buffer;
}

async function withNode(body: (port: number) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const config = join(dir, 'node.yaml');
    await writeFile(config, `node:\n  dataDir: ${join(dir, 'data')}\n  clientPort: 0\n  raftPort: 0\n`);
    const node: Running = startWalrus(['start', '--config', config], { cwd: dir, lifetimeMs: 120_000 });
    try {
      const { port } = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
      await node.waitForLine(/"msg":"ready"/);
      await body(port);
      // Whatever the test sent, the node is still up and serving.
      const check = await Raw.open(port);
      const metrics = await check.ask('METRICS');
      check.close();
      if (!metrics.startsWith('{')) throw new Error(`the node stopped serving: METRICS answered ${metrics}`);
      if (node.child.exitCode !== null) throw new Error(`the node exited: ${node.stderr()}`);
    } finally {
      if (node.child.exitCode === null) node.child.kill('SIGTERM');
      await node.exited;
    }
  });
}

test.serial('every command and error text of the protocol, on one connection', async (t) => {
  await withNode(async (port) => {
    const raw = await Raw.open(port);
    try {
      const exchanges: [string, string | RegExp][] = [
        ['REGISTER t', 'OK'],
        ['REGISTER t extra words', 'OK'],
        ['PUT t hello  world ', 'OK'],
        ['GET t junk', 'OK hello  world'],
        ['GET t', 'EMPTY'],
        ['PUT t again', 'OK'],
        ['FETCH t 1 1', 'OK 2 again'],
        ['FETCH t 1 2', 'EMPTY'],
        ['STATE t', '{"current_segment":1,"leader_node":1,"last_sealed_entry_offset":0,"sealed_segments":{},"segment_leaders":{"1":1}}'],
        ['METRICS', /^\{\n {2}"running_state": \{\n {4}"Ok": null\n {2}\},\n {2}"id": 1,/],
        ['put t x', 'ERR unknown command'],
        [' PUT t x', 'ERR unknown command'],
        ['NOPE', 'ERR unknown command'],
        ['REGISTER', 'ERR REGISTER requires a topic'],
        ['PUT', 'ERR PUT requires a topic'],
        ['PUT t', 'ERR PUT requires a payload'],
        ['GET', 'ERR GET requires a topic'],
        ['STATE', 'ERR STATE requires a topic'],
        ['FETCH', 'ERR FETCH requires a topic'],
        ['FETCH t 1', 'ERR FETCH requires a segment and an offset'],
        ['FETCH t 0 0', 'ERR FETCH segment must be a positive integer'],
        ['FETCH t 1 -1', 'ERR FETCH offset must be a non-negative integer'],
        ['PUT missing x', 'ERR unknown topic missing'],
        ['GET missing', 'ERR unknown topic missing'],
        ['STATE missing', 'ERR unknown topic missing'],
        ['FETCH missing 1 0', 'ERR unknown topic missing'],
      ];
      for (const [request, expected] of exchanges) {
        const reply = await raw.ask(request);
        if (typeof expected === 'string') t.is(reply, expected, request);
        else t.regex(reply, expected, request);
      }
      // Invalid UTF-8 is answered, and the connection stays usable.
      raw.socket.write(Buffer.concat([prefix(3), Buffer.from([0xff, 0xfe, 0x41])]));
      t.deepEqual(await raw.take(1), ['ERR invalid utf-8']);
      t.is(await raw.ask('GET t'), 'OK again');
    } finally {
      raw.close();
    }
  });
});

test.serial('frames split at every byte, and 200 pipelined requests in one write, are answered in order', async (t) => {
  await withNode(async (port) => {
    const raw = await Raw.open(port);
    try {
      t.is(await raw.ask('REGISTER p'), 'OK');
      const bytes = encodeFrame('PUT p split into single bytes');
      for (const byte of bytes) {
        raw.socket.write(Buffer.from([byte]));
        await new Promise((resolve) => setImmediate(resolve));
      }
      t.deepEqual(await raw.take(1), ['OK']);
      const puts = Array.from({ length: 200 }, (_, index) => encodeFrame(`PUT p m${index}`));
      raw.socket.write(Buffer.concat(puts));
      t.deepEqual(
        await raw.take(200),
        Array.from({ length: 200 }, () => 'OK'),
      );
      raw.socket.write(Buffer.concat(Array.from({ length: 202 }, () => encodeFrame('GET p'))));
      t.deepEqual(await raw.take(202), [
        'OK split into single bytes',
        ...Array.from({ length: 200 }, (_, index) => `OK m${index}`),
        'EMPTY',
      ]);
    } finally {
      raw.close();
    }
  });
});

test.serial('zero and oversize lengths get ERR invalid frame length and the connection is closed; 65,536 bytes are accepted', async (t) => {
  await withNode(async (port) => {
    for (const length of [0, 65_537, 0xffffffff]) {
      const raw = await Raw.open(port);
      raw.socket.write(prefix(length));
      t.deepEqual(await raw.take(1), ['ERR invalid frame length'], `length ${length}`);
      t.true(await raw.waitClosed(), `closed after length ${length}`);
      raw.close();
    }
    const raw = await Raw.open(port);
    try {
      t.is(await raw.ask('REGISTER big'), 'OK');
      const request = `PUT big ${'x'.repeat(65_536 - 'PUT big '.length)}`;
      t.is(Buffer.byteLength(request), 65_536);
      t.is(await raw.ask(request), 'OK');
      t.is((await raw.ask('GET big')).length, 'OK '.length + 65_536 - 'PUT big '.length);
    } finally {
      raw.close();
    }
  });
});

test.serial('random garbage never takes the node down', async (t) => {
  await withNode(async (port) => {
    for (let round = 0; round < 20; round++) {
      const raw = await Raw.open(port);
      raw.socket.write(randomBytes(1 + ((round * 997) % 5000)));
      await new Promise((resolve) => setTimeout(resolve, 20));
      raw.close();
    }
    const raw = await Raw.open(port);
    try {
      t.is(await raw.ask('REGISTER after'), 'OK');
    } finally {
      raw.close();
    }
  });
});

test.serial('1,000 concurrent connections each write and read', async (t) => {
  await withNode(async (port) => {
    const setup = await Raw.open(port);
    t.is(await setup.ask('REGISTER many'), 'OK');
    setup.close();
    const connections = await Promise.all(Array.from({ length: 1000 }, () => Raw.open(port)));
    try {
      const puts = await Promise.all(connections.map((raw, index) => raw.ask(`PUT many c${index}`)));
      t.true(
        puts.every((reply) => reply === 'OK'),
        `${puts.filter((reply) => reply !== 'OK').length} PUTs failed`,
      );
      const gets = await Promise.all(connections.map((raw) => raw.ask('GET many')));
      const payloads = gets.map((reply) => reply.replace(/^OK /, ''));
      t.is(new Set(payloads).size, 1000, 'each entry went to exactly one GET');
      t.deepEqual([...payloads].sort(), Array.from({ length: 1000 }, (_, index) => `c${index}`).sort());
    } finally {
      for (const raw of connections) raw.close();
    }
  });
});
