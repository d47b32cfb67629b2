// The one wire table (src/protocol/wire-errors.ts): each code's `ERR …` text is the original's,
// byte for byte; the controller answers failures as coded errors, not text; the server sends the
// table's text for them; WalrusClient reads the table backwards into `serverCode`; and the error
// classes that used to stand outside the error table carry codes from it.

import test from 'ava';
import { pino } from 'pino';
import { ClientError, WalrusClient } from '../../src/client/walrus-client.js';
import {
  BusyError,
  ERROR_CODES,
  type ErrorCode,
  FencedError,
  isWalrusError,
  StorageError,
  WalrusError,
  walrusError,
} from '../../src/kernel/errors.js';
import type { ControllerOptions } from '../../src/node/controller.js';
import { NodeController } from '../../src/node/controller.js';
import { ProtocolServer } from '../../src/plugins/protocol-tcp/server.js';
import { DecodeError } from '../../src/plugins/raft/adapters/codec.js';
import { NotLeaderError, RaftBusyError } from '../../src/plugins/raft/core/raft.js';
import { NONE } from '../../src/plugins/raft/core/types.js';
import { ProposalDroppedError } from '../../src/plugins/raft/node.js';
import { parseFetchReply, ReplyFormatError } from '../../src/protocol/replies.js';
import { commandErrorText, WIRE_ERRORS, wireCode, wireText } from '../../src/protocol/wire-errors.js';

test('each code in the table gives the original reply text', (t) => {
  const cases: [WalrusError, string][] = [
    [walrusError('UNKNOWN_TOPIC', 'unknown topic logs', { details: { topic: 'logs' } }), 'ERR unknown topic logs'],
    [
      walrusError('NOT_LEADER_FOR_PARTITION', 'NotLeaderForPartition: t_a_s_2', { details: { key: 't_a_s_2' } }),
      'ERR NotLeaderForPartition: t_a_s_2',
    ],
    [
      walrusError('INVALID_TOPIC_NAME', 'topic name must not contain whitespace or control characters'),
      'ERR topic name must not contain whitespace or control characters',
    ],
    [
      walrusError('SEGMENT_FULL', 'segment t_a_s_1 is full (10 entries) and is being rolled over; retry'),
      'ERR segment t_a_s_1 is full (10 entries) and is being rolled over; retry',
    ],
    [walrusError('FRAME_LENGTH', 'whatever'), 'ERR invalid frame length'],
    [walrusError('INVALID_UTF8', 'whatever'), 'ERR invalid utf-8'],
    [walrusError('TOO_MANY_CONNECTIONS', 'whatever'), 'ERR too many connections'],
    [walrusError('UNKNOWN_COMMAND', 'whatever'), 'ERR unknown command'],
    // Codes outside the table, and plain errors, reply with their message.
    [walrusError('IO', 'write-ahead log I/O failed: ENOSPC'), 'ERR write-ahead log I/O failed: ENOSPC'],
    [new NotLeaderError(NONE, 'propose'), 'ERR propose: no leader is known'],
  ];
  for (const [error, text] of cases) t.is(wireText(error), text, error.code);
  t.is(wireText(new Error('plain')), 'ERR plain');
  t.is(wireText('thrown text'), 'ERR thrown text');
  // A coded error raised without the detail the table reads still replies with its message.
  t.is(wireText(walrusError('UNKNOWN_TOPIC', 'unknown topic x')), 'ERR unknown topic x');
  t.is(commandErrorText({ error: 'unknown command' }), 'ERR unknown command');
  t.is(commandErrorText({ error: 'PUT requires a payload' }), 'ERR PUT requires a payload');
});

test('the table read backwards gives the code of each reply, and none for the fallback form', (t) => {
  t.is(wireCode('unknown topic logs'), 'UNKNOWN_TOPIC');
  t.is(wireCode('NotLeaderForPartition: t_logs_s_3'), 'NOT_LEADER_FOR_PARTITION');
  t.is(wireCode('topic name is 300 UTF-8 bytes, more than the limit of 234'), 'INVALID_TOPIC_NAME');
  t.is(wireCode('segment t_a_s_1 is full (10 entries) and is being rolled over; retry'), 'SEGMENT_FULL');
  t.is(wireCode('invalid frame length'), 'FRAME_LENGTH');
  t.is(wireCode('unknown command'), 'UNKNOWN_COMMAND');
  t.is(wireCode('FETCH offset must be a non-negative integer'), 'BAD_REQUEST');
  t.is(wireCode('propose: no leader is known'), undefined);
  t.is(wireCode('unknown topic'), undefined, 'a placeholder stands for at least one character');
  for (const [code, form] of Object.entries(WIRE_ERRORS)) {
    t.true(code in ERROR_CODES, code);
    for (const reply of form.replies) t.true(reply.startsWith('ERR '), reply);
  }
});

/** A controller over fakes: `topics` is what the metadata replica knows (node 1 is this node). */
function controller(topics: Record<string, { leaderNode: number; currentSegment: number }>): NodeController {
  const metadata = {
    topic: (name: string) => topics[name],
    stateJson: (name: string) => (topics[name] === undefined ? undefined : '{}'),
    onChange: () => () => undefined,
  };
  const store = {
    appendNow: () => 0,
    append: async () => 0,
    read: async () => null,
  };
  const reader = { nextNow: () => ({ kind: 'unknown-topic' }) };
  return new NodeController({
    nodeId: 1,
    metadata,
    consensus: { propose: async () => ({ ok: true }), metrics: () => ({}) },
    store,
    reader,
  } as unknown as ControllerOptions);
}

test('the controller answers failures as coded errors, successes as the reply values', async (t) => {
  const node = controller({ here: { leaderNode: 1, currentSegment: 1 }, there: { leaderNode: 2, currentSegment: 3 } });
  const codeOf = async (reply: unknown) => {
    const { error } = (await reply) as { error?: unknown };
    return isWalrusError(error) ? [error.code, error.details] : error;
  };
  t.deepEqual(await codeOf(node.handle({ op: 'PUT', topic: 'nope', payload: 'x' })), ['UNKNOWN_TOPIC', { topic: 'nope' }]);
  t.deepEqual(await codeOf(node.handle({ op: 'GET', topic: 'nope' })), ['UNKNOWN_TOPIC', { topic: 'nope' }]);
  t.deepEqual(await codeOf(node.handle({ op: 'STATE', topic: 'nope' })), ['UNKNOWN_TOPIC', { topic: 'nope' }]);
  t.deepEqual(await codeOf(node.handle({ op: 'FETCH', topic: 'nope', segment: 1, offset: 0 })), ['UNKNOWN_TOPIC', { topic: 'nope' }]);
  t.deepEqual(await codeOf(node.handle({ op: 'PUT', topic: 'there', payload: 'x' })), ['NOT_LEADER_FOR_PARTITION', { key: 't_there_s_3' }]);
  t.deepEqual(await codeOf(node.handle({ op: 'REGISTER', topic: 'a b' })), ['INVALID_TOPIC_NAME', { topic: 'a b' }]);
  // A PUT the engine acknowledges at once is answered synchronously, with no promise.
  const put = node.handle({ op: 'PUT', topic: 'here', payload: 'x' });
  t.false(put instanceof Promise);
  t.deepEqual({ ...(put as object) }, { text: 'OK' });
  t.deepEqual({ ...((await node.handle({ op: 'FETCH', topic: 'here', segment: 9, offset: 0 })) as object) }, { text: 'EMPTY' });
});

test('the server sends the table text for a handler error, and the client gets the code back', async (t) => {
  const server = new ProtocolServer({
    host: '127.0.0.1',
    port: 0,
    log: pino({ level: 'silent' }),
    handler: {
      handle: (command) => {
        if (command.op === 'GET') return { error: walrusError('UNKNOWN_TOPIC', 'unknown topic nope', { details: { topic: 'nope' } }) };
        if (command.op === 'PUT') return Promise.reject(new NotLeaderError(NONE, 'propose'));
        return { text: 'OK' };
      },
    },
  });
  const bound = await server.listen();
  const client = new WalrusClient({ host: '127.0.0.1', port: bound.port });
  try {
    t.is(await client.raw('GET nope'), 'ERR unknown topic nope');
    t.is(await client.raw('PUT t x'), 'ERR propose: no leader is known');
    t.is(await client.raw('get t'), 'ERR unknown command');
    const unknown = await t.throwsAsync(client.get('nope'), { instanceOf: ClientError });
    t.is(unknown?.code, 'SERVER_ERROR');
    t.is(unknown?.serverMessage, 'unknown topic nope');
    t.is(unknown?.serverCode, 'UNKNOWN_TOPIC');
    t.true(unknown instanceof WalrusError);
    const other = await t.throwsAsync(client.put('t', 'x'), { instanceOf: ClientError });
    t.is(other?.serverCode, undefined);
  } finally {
    await client.close();
    await server.close();
  }
});

test('the error classes outside the table before now carry its codes and keep their names', (t) => {
  const cases: [Error, ErrorCode, new (...args: never[]) => Error, string][] = [
    [new NotLeaderError(2, 'propose'), 'RAFT_NOT_LEADER', FencedError, 'NotLeaderError'],
    [new RaftBusyError('a change is pending'), 'RAFT_BUSY', BusyError, 'RaftBusyError'],
    [new ProposalDroppedError(7), 'PROPOSAL_DROPPED', BusyError, 'ProposalDroppedError'],
    [new DecodeError('short record'), 'RAFT_DECODE', StorageError, 'DecodeError'],
    [new ReplyFormatError('not a FETCH reply', 'OK'), 'REPLY_FORMAT', WalrusError, 'ReplyFormatError'],
    [new ClientError('TIMEOUT', 'no reply'), 'TIMEOUT', WalrusError, 'ClientError'],
  ];
  for (const [error, code, Class, name] of cases) {
    t.true(error instanceof Class, name);
    t.true(isWalrusError(error), name);
    t.is((error as WalrusError).code, code, name);
    t.is((error as WalrusError).retriable, ERROR_CODES[code].retriable, name);
    t.is(error.name, name);
  }
  t.is(new NotLeaderError(2, 'propose').leader, 2);
  t.is(new NotLeaderError(2, 'propose').message, 'propose: node 2 is the leader');
  t.is(new ProposalDroppedError(7).message, 'the proposal at index 7 was overwritten after a change of leader; retry it');
  t.throws(() => parseFetchReply('OK'), { instanceOf: ReplyFormatError });
});
