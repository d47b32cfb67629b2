// Node-to-node requests on loopback (src/node/peer-*.ts, internal-port.ts): replies matched by
// id whatever their order, payload bytes intact, requests started in the order sent, typed
// failures that say whether the request may have taken effect, bounded and malformed input,
// Raft traffic and node requests sharing one port, and connections that leave from the
// node's own address.

import { connect, type Socket } from 'node:net';
import test from 'ava';
import { isWalrusError, walrusError } from '../../src/kernel/errors.js';
import { InternalListener, NODE_HELLO } from '../../src/node/internal-port.js';
import { PeerClient } from '../../src/node/peer-client.js';
import { encodePeerFrame, PEER_KIND, PeerFrameDecoder } from '../../src/node/peer-codec.js';
import { type PeerHandler, PeerServer } from '../../src/node/peer-server.js';
import type { WireMessage } from '../../src/plugins/raft/adapters/messages.js';
import { TcpTransport } from '../../src/plugins/raft/adapters/transport.js';
import { freePorts, until } from '../helpers/net.js';

interface Serving {
  readonly listener: InternalListener;
  readonly server: PeerServer;
  readonly remotes: string[];
  close(): Promise<void>;
}

async function serve(handlers: Record<string, PeerHandler>, host = '127.0.0.1'): Promise<Serving> {
  const listener = await InternalListener.listen({ host, port: 0, onOther: (socket) => socket.destroy() });
  const server = new PeerServer({ handlers });
  const remotes: string[] = [];
  listener.takeNodeConnections((socket, rest) => {
    remotes.push(socket.remoteAddress ?? '');
    server.adopt(socket, rest);
  });
  return {
    listener,
    server,
    remotes,
    async close() {
      server.close();
      await listener.close();
    },
  };
}

function clientOf(serving: Serving, options: { timeoutMs?: number; localHost?: string } = {}): PeerClient {
  return new PeerClient({
    peer: 2,
    address: () => ({ host: serving.listener.host, port: serving.listener.port }),
    ...(options.timeoutMs === undefined ? {} : { requestTimeoutMs: options.timeoutMs }),
    ...(options.localHost === undefined ? {} : { localHost: options.localHost }),
  });
}

async function rejection(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; retriable?: boolean; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

test('a reply carries its head and bytes back; slow and fast answers meet their own requests', async (t) => {
  const serving = await serve({
    echo: async (head, data) => {
      await new Promise((resolve) => setTimeout(resolve, Number(head.delayMs)));
      return { head: { n: head.n }, data: Buffer.concat([data, Buffer.from('!')]) };
    },
  });
  const client = clientOf(serving);
  try {
    const payload = Buffer.from([0, 255, 10, 13, 0x7b, 0xc3]);
    const slow = client.request('echo', { n: 1, delayMs: 150 }, payload);
    const fast = client.request('echo', { n: 2, delayMs: 0 }, Buffer.from('fast'));
    const [first, second] = await Promise.all([slow, fast]);
    t.is(first.head.n, 1);
    t.deepEqual([...first.data], [...payload, 0x21]);
    t.is(second.head.n, 2);
    t.is(second.data.toString(), 'fast!');
    t.is(client.pendingRequests, 0);
  } finally {
    client.close();
    await serving.close();
  }
});

test('2,000 pipelined requests reach their handler in the order they were sent, over one connection', async (t) => {
  const seen: number[] = [];
  const serving = await serve({
    put: (head) => {
      seen.push(Number(head.n));
      return { head: { ok: true } };
    },
  });
  const client = clientOf(serving);
  try {
    const sends = Array.from({ length: 2000 }, (_, n) => client.request('put', { n }));
    await Promise.all(sends);
    t.deepEqual(
      seen,
      Array.from({ length: 2000 }, (_, n) => n),
    );
    t.deepEqual(serving.remotes.length, 1, 'one connection');
  } finally {
    client.close();
    await serving.close();
  }
});

test("a handler's coded failure arrives with its code and retriable flag; an unknown op is refused", async (t) => {
  const serving = await serve({
    fenced: () => {
      throw walrusError('NOT_LEADER_FOR_PARTITION', 'not the leader of t_x_s_2', { details: { key: 't_x_s_2' } });
    },
    broken: async () => {
      throw new Error('disk on fire');
    },
  });
  const client = clientOf(serving);
  try {
    const fenced = await rejection(client.request('fenced', {}));
    t.true(isWalrusError(fenced));
    t.is(fenced.code, 'NOT_LEADER_FOR_PARTITION');
    t.true(fenced.retriable);
    t.is(fenced.details?.key, 't_x_s_2');
    t.is(fenced.details?.peer, '2');
    const broken = await rejection(client.request('broken', {}));
    t.regex(broken.message, /disk on fire/);
    const unknown = await rejection(client.request('nope', {}));
    t.is(unknown.code, 'PEER_PROTOCOL');
    // The connection survives all three.
    t.is(serving.remotes.length, 1);
  } finally {
    client.close();
    await serving.close();
  }
});

test('nothing listening: PEER_UNAVAILABLE (not sent), and the next request within the retry delay fails the same way without a new attempt', async (t) => {
  const [port] = await freePorts(1);
  let lookups = 0;
  const client = new PeerClient({
    peer: 3,
    address: () => {
      lookups += 1;
      return { host: '127.0.0.1', port: port as number };
    },
  });
  try {
    const first = await rejection(client.request('put', {}));
    t.is(first.code, 'PEER_UNAVAILABLE');
    t.true(first.retriable);
    t.is(first.details?.sent, false);
    t.regex(first.message, /node 3 .*not reachable \(ECONNREFUSED\).*not sent/);
    const second = await rejection(client.request('put', {}));
    t.is(second.code, 'PEER_UNAVAILABLE');
    t.is(lookups, 1, 'no second connection attempt inside the retry delay');
  } finally {
    client.close();
  }
});

test('a peer that never answers: PEER_TIMEOUT (sent, outcome unknown) after the timeout; later answers are dropped', async (t) => {
  let release: (() => void) | undefined;
  const serving = await serve({
    hang: () =>
      new Promise((resolve) => {
        release = () => resolve({ head: { late: true } });
      }),
    quick: () => ({ head: { quick: true } }),
  });
  const client = clientOf(serving, { timeoutMs: 200 });
  try {
    const hung = await rejection(client.request('hang', {}));
    t.is(hung.code, 'PEER_TIMEOUT');
    t.true(hung.retriable);
    t.is(hung.details?.sent, true);
    t.regex(hung.message, /within 200 ms.*unknown/);
    release?.();
    // The same connection still serves, and the late answer did not land on this request.
    t.deepEqual((await client.request('quick', {})).head, { quick: true });
    t.is(client.pendingRequests, 0);
  } finally {
    client.close();
    await serving.close();
  }
});

test('the peer going away mid-request: PEER_TIMEOUT (outcome unknown) for what was sent, at once rather than at the timeout', async (t) => {
  const serving = await serve({
    hang: () => new Promise(() => undefined),
    ok: () => ({ head: { ok: true } }),
  });
  const client = clientOf(serving, { timeoutMs: 5000 });
  try {
    const hung = client.request('hang', {});
    await until('the request is being handled', () => (serving.server.connectionCount === 1 ? true : undefined));
    serving.server.close();
    const error = await rejection(hung);
    t.is(error.code, 'PEER_TIMEOUT');
    t.is(error.details?.sent, true);
    t.regex(error.message, /closed before node 2 answered/);
  } finally {
    client.close();
    await serving.close();
  }
});

test('a malformed frame closes that connection only; other connections are still served', async (t) => {
  const serving = await serve({ ok: () => ({ head: { ok: true } }) });
  const client = clientOf(serving);
  try {
    const raw: Socket = connect({ host: '127.0.0.1', port: serving.listener.port });
    await new Promise((resolve) => raw.once('connect', resolve));
    const closed = new Promise((resolve) => raw.once('close', resolve));
    raw.write(NODE_HELLO);
    const bad = Buffer.alloc(8);
    bad.writeUInt32LE(0xffff_fff0, 0);
    raw.write(bad);
    await closed;
    t.deepEqual((await client.request('ok', {})).head, { ok: true });
  } finally {
    client.close();
    await serving.close();
  }
});

test('a frame announcing more than the limit is refused by the decoder before it is buffered', (t) => {
  const decoder = new PeerFrameDecoder();
  const header = Buffer.alloc(4);
  header.writeUInt32LE(64 * 1024 * 1024, 0);
  const error = t.throws(() => decoder.push(header));
  t.is((error as { code?: string }).code, 'PEER_PROTOCOL');
  const good = encodePeerFrame(PEER_KIND.request, 7, { op: 'x', n: 1 }, Buffer.from('abc'));
  const fresh = new PeerFrameDecoder();
  const frames = [...fresh.push(good.subarray(0, 5)), ...fresh.push(good.subarray(5))];
  t.is(frames.length, 1);
  t.is(frames[0]?.id, 7);
  t.is(frames[0]?.data.toString(), 'abc');
});

test('Raft traffic and node requests share one port: each reaches its own side', async (t) => {
  const inbox: WireMessage[] = [];
  const one = await TcpTransport.listen({ id: 1, host: '127.0.0.1', port: 0, onMessage: (message) => inbox.push(message) });
  const two = await TcpTransport.listen({ id: 2, host: '127.0.0.1', port: 0, onMessage: () => undefined });
  const server = new PeerServer({ handlers: { ping: () => ({ head: { pong: true } }) } });
  one.internalPort.takeNodeConnections((socket, rest) => server.adopt(socket, rest));
  const client = new PeerClient({ peer: 1, address: () => ({ host: '127.0.0.1', port: one.port }) });
  try {
    two.setPeer(1, { host: '127.0.0.1', port: one.port });
    two.send({ type: 'timeoutNow', from: 2, to: 1, term: 4 });
    const reply = await client.request('ping', {});
    t.deepEqual(reply.head, { pong: true });
    await until('the raft message arrives', () => (inbox.length > 0 ? true : undefined));
    t.is(inbox[0]?.type, 'timeoutNow');
    t.is(one.stats.rejectedFrames, 0);
  } finally {
    client.close();
    server.close();
    await one.close();
    await two.close();
  }
});

test('a node request before anyone takes them: the connection is closed and the request fails as possibly sent', async (t) => {
  const listener = await InternalListener.listen({ host: '127.0.0.1', port: 0, onOther: (socket) => socket.destroy() });
  const client = new PeerClient({ peer: 5, address: () => ({ host: '127.0.0.1', port: listener.port }), requestTimeoutMs: 3000 });
  try {
    const error = await rejection(client.request('ping', {}));
    t.true(error.code === 'PEER_TIMEOUT' || error.code === 'PEER_UNAVAILABLE', String(error.code));
    t.true(error.retriable);
  } finally {
    client.close();
    await listener.close();
  }
});

test("outgoing connections leave from the node's own internal host", async (t) => {
  const serving = await serve({ ok: () => ({ head: { ok: true } }) }, '127.0.0.1');
  const client = clientOf(serving, { localHost: '127.0.0.2' });
  try {
    await client.request('ok', {});
    t.deepEqual(serving.remotes, ['127.0.0.2']);
  } finally {
    client.close();
    await serving.close();
  }
});
