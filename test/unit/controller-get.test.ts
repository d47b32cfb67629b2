// GET (and STATE) in a cluster when this node's view and another's differ for a moment (after a failover or a
// restart): a GET refused because its segment is read elsewhere now has handed nothing out, so
// the controller tries it again once the metadata moves (src/node/controller.ts get), a bounded
// number of times, before the retriable error reaches the client.

import test from 'ava';
import { isWalrusError } from '../../src/kernel/errors.js';
import { type ControllerReply, NodeController } from '../../src/node/controller.js';
import { notLeaderFor } from '../../src/node/leases.js';
import { encodeCommand, MetadataStateMachine } from '../../src/node/metadata.js';
import type { NextResult, TopicReader } from '../../src/node/reader.js';
import type { SegmentStore } from '../../src/node/segment-store.js';

function controllerWith(answers: Array<() => NextResult | Promise<NextResult>>) {
  const metadata = new MetadataStateMachine();
  let index = 0;
  const apply = (): void => {
    index += 1;
    metadata.apply(
      encodeCommand({
        kind: 'UpsertNode',
        nodeId: 10 + index,
        clientAddress: `127.0.0.1:${7000 + index}`,
        raftAddress: `127.0.0.1:${8000 + index}`,
      }),
      index,
    );
  };
  apply();
  metadata.apply(encodeCommand({ kind: 'CreateTopic', topic: 't', initialLeader: 1 }), ++index);
  let asked = 0;
  const reader = {
    nextNow: () => {
      const answer = answers[Math.min(asked, answers.length - 1)] as () => NextResult | Promise<NextResult>;
      asked += 1;
      return answer();
    },
  } as unknown as TopicReader;
  const controller = new NodeController({
    nodeId: 2,
    metadata,
    consensus: {
      propose: async () => ({ ok: true }),
      metrics: () => ({}) as never,
      status: () => ({ voters: [1, 2, 3] }) as never,
    },
    store: {} as SegmentStore,
    reader,
    peers: { client: () => ({ request: async () => Promise.reject(new Error('no peers in this test')) }) },
  });
  const create = (topic: string): void => {
    metadata.apply(encodeCommand({ kind: 'CreateTopic', topic, initialLeader: 1 }), ++index);
  };
  return { controller, asked: () => asked, apply, create };
}

const text = async (reply: ControllerReply | Promise<ControllerReply>): Promise<string> => {
  const settled = await Promise.resolve(reply).catch((error: unknown) => ({ error: error as Error }));
  if (settled.error !== undefined) return isWalrusError(settled.error) ? settled.error.code : String(settled.error);
  return settled.text ?? '(frame)';
};

test('a GET that meets a segment read elsewhere, or whose confirmation ended as the segment moved, is tried again once the metadata moves', async (t) => {
  const { controller, asked, apply } = controllerWith([
    () => ({ kind: 'elsewhere', segment: 1 }),
    () => Promise.reject(notLeaderFor('t_s_1')),
    () => ({ kind: 'empty' }),
  ]);
  const reply = controller.handle({ op: 'GET', topic: 't' });
  // The first retry waits for a metadata change (or 100 ms); one comes now.
  setTimeout(apply, 10);
  t.is(await text(reply), 'EMPTY');
  t.is(asked(), 3);
});

test('a GET whose segment stays elsewhere gets the retriable refusal after a bounded number of tries', async (t) => {
  const { controller, asked } = controllerWith([() => ({ kind: 'elsewhere', segment: 1 })]);
  const started = performance.now();
  t.is(await text(controller.handle({ op: 'GET', topic: 't' })), 'NOT_LEADER_FOR_PARTITION');
  t.is(asked(), 6, 'the first try and five more');
  t.true(performance.now() - started < 2_000);
});

test('other GET failures are not tried again', async (t) => {
  const { controller, asked } = controllerWith([() => Promise.reject(new Error('disk on fire'))]);
  t.is(await text(controller.handle({ op: 'GET', topic: 't' })), 'Error: disk on fire');
  t.is(asked(), 1);
});

test('STATE of a topic registered elsewhere that this replica has not applied yet waits for it, and an unknown topic is refused after the wait', async (t) => {
  const { controller, create } = controllerWith([() => ({ kind: 'empty' })]);
  const reply = controller.handle({ op: 'STATE', topic: 'late' });
  setTimeout(() => create('late'), 20);
  const state = JSON.parse(await text(reply)) as { current_segment: number };
  t.is(state.current_segment, 1);
  const started = performance.now();
  t.is(await text(controller.handle({ op: 'STATE', topic: 'never' })), 'UNKNOWN_TOPIC');
  t.true(performance.now() - started >= 900, 'refused only after waiting for it to appear');
});
