// The Raft wire format and TCP transport on loopback: every message type survives a round trip,
// messages flow between two nodes, a peer that starts late still gets what was queued for it,
// and malformed frames close the connection without reaching Raft.

import { connect } from 'node:net';
import test from 'ava';
import { decodeMessage, encodeMessage, type WireMessage } from '../../src/plugins/raft/adapters/messages.js';
import { TcpTransport } from '../../src/plugins/raft/adapters/transport.js';

const SAMPLES: WireMessage[] = [
  { type: 'preVote', from: 1, to: 2, term: 7, lastIndex: 10, lastTerm: 6 },
  { type: 'preVoteReply', from: 2, to: 1, term: 7, granted: true },
  { type: 'vote', from: 1, to: 3, term: 7, lastIndex: 10, lastTerm: 6, transfer: true },
  { type: 'voteReply', from: 3, to: 1, term: 7, granted: false },
  {
    type: 'append',
    from: 1,
    to: 2,
    term: 7,
    prevIndex: 9,
    prevTerm: 6,
    commit: 8,
    readId: 3,
    entries: [
      { index: 10, term: 7, kind: 'noop', data: new Uint8Array(0) },
      { index: 11, term: 7, kind: 'command', data: new Uint8Array([1, 2, 3]) },
      { index: 12, term: 7, kind: 'membership', data: new Uint8Array(0), membership: { voters: [1, 2, 3], learners: [4] } },
    ],
  },
  { type: 'appendReply', from: 2, to: 1, term: 7, success: false, matchIndex: 9, hintIndex: 5, hintTerm: 4, readId: 3 },
  {
    type: 'installSnapshot',
    from: 1,
    to: 2,
    term: 7,
    snapshot: { index: 100, term: 6, membership: { voters: [1, 2], learners: [] }, data: new Uint8Array([9, 9]) },
  },
  { type: 'installSnapshotReply', from: 2, to: 1, term: 7, index: 100 },
  { type: 'timeoutNow', from: 1, to: 2, term: 7 },
  { type: 'forward', from: 2, to: 1, term: 0, id: 12, command: new Uint8Array([7, 8]) },
  { type: 'forwardReply', from: 1, to: 2, term: 0, id: 12, index: 40, entryTerm: 7, error: '', leader: 1 },
  { type: 'forwardReply', from: 3, to: 2, term: 0, id: 13, index: 0, entryTerm: 0, error: 'propose: node 1 is the leader', leader: 1 },
  { type: 'live', from: 1, to: 3, term: 7, members: [1, 3] },
  { type: 'live', from: 1, to: 2, term: 8, members: [] },
];

/** Comparable form: byte arrays (Buffers included, which JSON sees through toJSON) as plain arrays. */
function plain(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_key, item: unknown) => {
      if (item instanceof Uint8Array) return [...item];
      const json = item as { type?: unknown; data?: unknown } | null;
      return typeof json === 'object' && json !== null && json.type === 'Buffer' ? json.data : item;
    }),
  );
}

test('every message type encodes and decodes to itself', (t) => {
  for (const message of SAMPLES) t.deepEqual(plain(decodeMessage(encodeMessage(message))), plain(message), message.type);
});

test('truncated or padded bodies are refused', (t) => {
  const body = encodeMessage(SAMPLES[4] as WireMessage);
  t.throws(() => decodeMessage(body.subarray(0, body.length - 1)));
  t.throws(() => decodeMessage(Buffer.concat([body, Buffer.from([0])])));
  t.throws(() => decodeMessage(Buffer.from([99, 0, 0, 0, 0])));
  const live = encodeMessage({ type: 'live', from: 1, to: 2, term: 3, members: [1, 2] });
  t.throws(() => decodeMessage(live.subarray(0, live.length - 1)));
  t.throws(() => decodeMessage(Buffer.concat([live, Buffer.from([0])])));
  // A count far past what the body holds is refused before anything is read for it.
  const huge = Buffer.from(live);
  huge.writeUInt32LE(0xffff_ffff, 17);
  t.throws(() => decodeMessage(huge), { message: /implausible member count/ });
});

function inbox(): { messages: WireMessage[]; next: (count: number) => Promise<WireMessage[]>; push: (message: WireMessage) => void } {
  const messages: WireMessage[] = [];
  const waiters: (() => void)[] = [];
  return {
    messages,
    push(message) {
      messages.push(message);
      for (const wake of waiters.splice(0)) wake();
    },
    async next(count) {
      const deadline = Date.now() + 5000;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${messages.length} of ${count} messages arrived`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 50);
        });
      }
      return messages.slice(0, count);
    },
  };
}

test('two nodes exchange messages in order over loopback', async (t) => {
  const box1 = inbox();
  const box2 = inbox();
  const one = await TcpTransport.listen({ id: 1, host: '127.0.0.1', port: 0, onMessage: box1.push });
  const two = await TcpTransport.listen({ id: 2, host: '127.0.0.1', port: 0, onMessage: box2.push });
  try {
    one.setPeer(2, { host: '127.0.0.1', port: two.port });
    two.setPeer(1, { host: '127.0.0.1', port: one.port });
    for (let term = 1; term <= 100; term++) one.send({ type: 'timeoutNow', from: 1, to: 2, term });
    two.send({ type: 'voteReply', from: 2, to: 1, term: 5, granted: true });
    const received = await box2.next(100);
    t.deepEqual(
      received.map((message) => message.term),
      Array.from({ length: 100 }, (_, index) => index + 1),
    );
    t.is((await box1.next(1))[0]?.type, 'voteReply');
  } finally {
    await one.close();
    await two.close();
  }
});

test('messages queued for a peer that is not up yet arrive once it listens', async (t) => {
  const box = inbox();
  // Find a free port, then leave it closed for a while.
  const probe = await TcpTransport.listen({ id: 9, host: '127.0.0.1', port: 0, onMessage: () => undefined });
  const port = probe.port;
  await probe.close();
  const one = await TcpTransport.listen({
    id: 1,
    host: '127.0.0.1',
    port: 0,
    onMessage: () => undefined,
    reconnectMinMs: 20,
    reconnectMaxMs: 100,
  });
  try {
    one.setPeer(2, { host: '127.0.0.1', port });
    one.send({ type: 'timeoutNow', from: 1, to: 2, term: 1 });
    await new Promise((resolve) => setTimeout(resolve, 150));
    one.send({ type: 'timeoutNow', from: 1, to: 2, term: 2 });
    const two = await TcpTransport.listen({ id: 2, host: '127.0.0.1', port, onMessage: box.push });
    try {
      const received = await box.next(2);
      t.deepEqual(
        received.map((message) => message.term),
        [1, 2],
      );
      t.true(one.stats.connects >= 1);
    } finally {
      await two.close();
    }
  } finally {
    await one.close();
  }
});

test('an oversized or undecodable frame closes the connection and reaches nobody', async (t) => {
  const box = inbox();
  const problems: string[] = [];
  const node = await TcpTransport.listen({
    id: 1,
    host: '127.0.0.1',
    port: 0,
    onMessage: box.push,
    onProblem: (problem) => problems.push(problem),
    maxFrameBytes: 1024,
  });
  try {
    for (const bytes of [Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2]), Buffer.from([3, 0, 0, 0, 99, 1, 2]), Buffer.from([0, 0, 0, 0])]) {
      await new Promise<void>((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port: node.port }, () => socket.write(bytes));
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
    }
    t.is(node.stats.rejectedFrames, 3);
    t.is(box.messages.length, 0);
    t.is(problems.length, 3);
    // A message for another node id is dropped, not delivered.
    const sender = await TcpTransport.listen({ id: 5, host: '127.0.0.1', port: 0, onMessage: () => undefined });
    sender.setPeer(7, { host: '127.0.0.1', port: node.port });
    sender.send({ type: 'timeoutNow', from: 5, to: 7, term: 1 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.is(box.messages.length, 0);
    t.is(node.stats.dropped, 1);
    await sender.close();
  } finally {
    await node.close();
  }
});
