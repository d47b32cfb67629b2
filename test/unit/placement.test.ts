// Topic placement: the hash is the original's (its test vectors, reference/cluster.md §4.2), a
// name is placed the same way every time, names spread over the live nodes, a node that is not
// live never gets one, and with nothing known the topic stays on the node that registers it.
// REGISTER through the controller puts the chosen node into the CreateTopic it proposes.

import test from 'ava';
import { type ControllerOptions, NodeController } from '../../src/node/controller.js';
import { decodeCommand, MetadataStateMachine } from '../../src/node/metadata.js';
import { placeTopic, topicHash } from '../../src/node/placement.js';

test("the topic hash is the original's: SipHash-1-3 with zero keys over the name and 0xFF", (t) => {
  const vectors: readonly [string, string, number][] = [
    ['logs', '11064062190595134705', 1],
    ['rollover_demo', '10788113459415209632', 2],
    ['recovery_test_topic', '8661647034663752385', 1],
    ['partition_test_topic', '11995685001749659559', 3],
    ['stress_test_topic', '11607967773046461938', 3],
    ['stress_topic_0', '12707147916091874096', 3],
    ['resilience_topic_0', '11039436899076442217', 3],
    ['demo', '5462496961788829434', 1],
  ];
  for (const [topic, hash, node] of vectors) {
    t.is(topicHash(topic).toString(), hash, topic);
    t.is(placeTopic(topic, [1, 2, 3], 1), node, `${topic} with nodes 1, 2 and 3 up`);
  }
  t.is(placeTopic('', [3, 1, 2], 1), 2, 'the empty name, in any order of the live set');
});

test('placement is deterministic, spreads names over the live nodes and never picks one that is down', (t) => {
  const names = Array.from({ length: 600 }, (_, index) => `topic-${index}`);
  const counts = new Map<number, number>();
  for (const name of names) {
    const node = placeTopic(name, [1, 2, 3], 1);
    t.is(placeTopic(name, [3, 2, 1, 2], 3), node, 'the same node whoever places it and however the set is listed');
    counts.set(node, (counts.get(node) ?? 0) + 1);
  }
  t.deepEqual([...counts.keys()].sort(), [1, 2, 3]);
  for (const [node, count] of counts) t.true(count > 120, `node ${node} got ${count} of 600 names`);
  // Node 2 is down: every name goes to 1 or 3, and both get some.
  const withoutTwo = new Set(names.map((name) => placeTopic(name, [1, 3], 1)));
  t.deepEqual([...withoutTwo].sort(), [1, 3]);
  t.is(placeTopic('anything', [4], 1), 4, 'the only live node gets it');
  t.is(placeTopic('anything', [], 7), 7, 'nothing known: the registering node');
});

test('REGISTER proposes the topic on the node placement picks among the live nodes', async (t) => {
  const metadata = new MetadataStateMachine();
  let index = 0;
  const proposed: unknown[] = [];
  let live: readonly number[] = [1, 2, 3];
  const consensus = {
    propose: async (command: Uint8Array) => {
      proposed.push(decodeCommand(command));
      index += 1;
      return metadata.apply(command, index);
    },
    metrics: () => {
      throw new Error('not asked');
    },
  };
  const controller = new NodeController({
    nodeId: 1,
    metadata,
    consensus,
    store: {} as ControllerOptions['store'],
    reader: {} as ControllerOptions['reader'],
    liveNodes: () => live,
  });
  t.deepEqual(await controller.handle({ op: 'REGISTER', topic: 'partition_test_topic' }), { text: 'OK' });
  t.is(metadata.topic('partition_test_topic')?.leaderNode, 3);
  live = [1, 2];
  await controller.handle({ op: 'REGISTER', topic: 'stress_topic_0' });
  t.is(metadata.topic('stress_topic_0')?.leaderNode, placeTopic('stress_topic_0', [1, 2], 1), 'node 3 is down: not a candidate');
  t.not(metadata.topic('stress_topic_0')?.leaderNode, 3);
  live = [];
  await controller.handle({ op: 'REGISTER', topic: 'demo-alone' });
  t.is(metadata.topic('demo-alone')?.leaderNode, 1, 'nothing known: this node');
  t.deepEqual(
    proposed.map((command) => (command as { initialLeader: number }).initialLeader),
    [3, placeTopic('stress_topic_0', [1, 2], 1), 1],
  );
});
