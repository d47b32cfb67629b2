// Forwarded PUTs travel in runs (src/node/forwarding.ts ForwardedAppends): PUTs for one segment
// of one node made in the same turn go as one `append`, in the order made; each PUT gets its
// own outcome from the answer, and a run with no answer fails every PUT in it alike.

import test from 'ava';
import { isWalrusError, walrusError } from '../../src/kernel/errors.js';
import { limits } from '../../src/kernel/limits.js';
import { ForwardedAppends, PEER_OPS, type PeerRequests, splitRun } from '../../src/node/forwarding.js';
import { failureHead, type PeerFrame } from '../../src/node/peer-codec.js';

interface Sent {
  readonly to: number;
  readonly op: string;
  readonly head: Readonly<Record<string, unknown>>;
  readonly payloads: string[];
}

/** Peers that record what is sent and answer with `answer` (a head, or a thrown failure). */
function recording(answer: (sent: Sent) => Readonly<Record<string, unknown>>): { peers: PeerRequests; sent: Sent[] } {
  const sent: Sent[] = [];
  const peers: PeerRequests = {
    client: (to) => ({
      request: async (op, head, data) => {
        const bytes = Buffer.from(data ?? new Uint8Array());
        const payloads = head.sizes === undefined ? [bytes.toString()] : (splitRun(head.sizes, bytes) ?? []).map(String);
        const request = { to, op, head, payloads };
        sent.push(request);
        const frame: PeerFrame = { kind: 2, id: sent.length, head: answer(request), data: Buffer.alloc(0) };
        return frame;
      },
    }),
  };
  return { peers, sent };
}

const outcome = (promise: Promise<void>): Promise<string> =>
  promise.then(
    () => 'ok',
    (error: unknown) => (isWalrusError(error) ? error.code : String(error)),
  );

test('PUTs made in one turn for one segment go as one append, in order; other segments and nodes get their own', async (t) => {
  const { peers, sent } = recording(() => ({}));
  const appends = new ForwardedAppends(peers);
  const results = await Promise.all([
    appends.send(2, 'a', 1, Buffer.from('a0')),
    appends.send(2, 'a', 1, Buffer.from('a1')),
    appends.send(3, 'a', 1, Buffer.from('elsewhere')),
    appends.send(2, 'a', 2, Buffer.from('next segment')),
    appends.send(2, 'a', 1, Buffer.from('a2')),
  ]);
  t.deepEqual(results, [undefined, undefined, undefined, undefined, undefined]);
  t.deepEqual(
    sent.map(({ to, op, head, payloads }) => ({ to, op, segment: head.segment, payloads })),
    [
      { to: 2, op: PEER_OPS.append, segment: 1, payloads: ['a0', 'a1', 'a2'] },
      { to: 3, op: PEER_OPS.append, segment: 1, payloads: ['elsewhere'] },
      { to: 2, op: PEER_OPS.append, segment: 2, payloads: ['next segment'] },
    ],
  );
  t.is(sent[1]?.head.sizes, undefined, 'a lone PUT goes as a plain append');
  // A later turn starts a new run.
  await appends.send(2, 'a', 1, Buffer.from('later'));
  t.deepEqual(sent[3]?.payloads, ['later']);
});

test('each PUT of a run gets its own outcome: the failures the answer lists by index, with their codes', async (t) => {
  const refused = failureHead(walrusError('NOT_LEADER_FOR_PARTITION', 'NotLeaderForPartition: t_a_s_1'));
  const { peers } = recording(() => ({ failures: [2, 3].map((index) => ({ index, ...refused })) }));
  const appends = new ForwardedAppends(peers);
  const outcomes = await Promise.all(['p0', 'p1', 'p2', 'p3'].map((word) => outcome(appends.send(2, 'a', 1, Buffer.from(word)))));
  t.deepEqual(outcomes, ['ok', 'ok', 'NOT_LEADER_FOR_PARTITION', 'NOT_LEADER_FOR_PARTITION']);
});

test('a run that got no answer fails every PUT in it with the same error; a malformed answer fails them as PEER_PROTOCOL', async (t) => {
  const timedOut = walrusError('PEER_TIMEOUT', 'node 2 did not answer within 5000 ms; whether it took effect there is unknown');
  const silent: PeerRequests = { client: () => ({ request: () => Promise.reject(timedOut) }) };
  const appends = new ForwardedAppends(silent);
  t.deepEqual(await Promise.all([1, 2, 3].map((n) => outcome(appends.send(2, 'a', 1, Buffer.from(`p${n}`))))), [
    'PEER_TIMEOUT',
    'PEER_TIMEOUT',
    'PEER_TIMEOUT',
  ]);
  const garbled = new ForwardedAppends(recording(() => ({ failures: [{ index: 7, code: 'INTERNAL' }] })).peers);
  t.deepEqual(await Promise.all([1, 2].map((n) => outcome(garbled.send(2, 'a', 1, Buffer.from(`p${n}`))))), [
    'PEER_PROTOCOL',
    'PEER_PROTOCOL',
  ]);
});

test('a run holds at most forwardRunEntriesMax PUTs and forwardRunBytesMax bytes; the next run follows it in order', async (t) => {
  const { peers, sent } = recording(() => ({}));
  const appends = new ForwardedAppends(peers);
  const count = limits.forwardRunEntriesMax + 3;
  await Promise.all(Array.from({ length: count }, (_, index) => appends.send(2, 'a', 1, Buffer.from(`p${index}`))));
  t.deepEqual(
    sent.map((request) => request.payloads.length),
    [limits.forwardRunEntriesMax, 3],
  );
  t.deepEqual(
    sent.flatMap((request) => request.payloads),
    Array.from({ length: count }, (_, index) => `p${index}`),
  );
  sent.length = 0;
  const big = Buffer.alloc(limits.forwardRunBytesMax / 2 + 1, 0x61);
  await Promise.all([appends.send(2, 'a', 1, big), appends.send(2, 'a', 1, big), appends.send(2, 'a', 1, Buffer.from('small'))]);
  t.deepEqual(
    sent.map((request) => request.payloads.length),
    [1, 2],
    'a PUT that would take the run past the byte bound starts the next one',
  );
});
