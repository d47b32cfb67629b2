// What a node counts (NodeStats, FixedHistogram) and what /api/cluster makes of a node's
// metadata (clusterView, notReadyReasons), on a real metadata state machine and a fake consensus.

import test from 'ava';
import type { ConsensusStatus } from '../../src/contracts/consensus.js';
import { clusterView, notReadyReasons, SEGMENTS_LISTED_MAX } from '../../src/node/cluster-view.js';
import { encodeCommand, type MetadataCommand, MetadataStateMachine } from '../../src/node/metadata.js';
import { FixedHistogram, NodeStats } from '../../src/node/node-stats.js';

test('a histogram puts a value in the first bucket whose bound it does not exceed, and above every bound in +Inf', (t) => {
  const histogram = new FixedHistogram([0.001, 0.01, 0.1]);
  for (const value of [0.0005, 0.001, 0.002, 0.01, 0.5, 7]) histogram.observe(value);
  t.deepEqual([...histogram.counts], [2, 2, 0, 2]);
  t.deepEqual(histogram.cumulative(), [2, 4, 4, 6]);
  t.is(histogram.count, 6);
  t.is(Math.round(histogram.sum * 1e6) / 1e6, 7.5135);
});

test('requests count by command and result; an unknown command counts as INVALID', (t) => {
  const stats = new NodeStats();
  stats.request('PUT', 'ok', 0.0002);
  stats.request('PUT', 'ok', 0.003);
  stats.request('PUT', 'NOT_LEADER_FOR_PARTITION', 0.004);
  stats.request('GET', 'empty', 0.0001);
  stats.request('BOGUS', 'UNKNOWN_COMMAND', 0);
  const put = stats.byCommand().get('PUT');
  t.deepEqual(Object.fromEntries(put?.results ?? []), { ok: 2, NOT_LEADER_FOR_PARTITION: 1 });
  t.is(put?.latency.count, 3);
  t.deepEqual(Object.fromEntries(stats.byCommand().get('INVALID')?.results ?? []), { UNKNOWN_COMMAND: 1 });
  t.is(stats.requestsTotal(), 5);
  stats.appended(3, 30);
  stats.appended(1, 5);
  stats.read(2, 12);
  stats.peerRequest('append');
  stats.peerRequest('append');
  stats.synced(0.002);
  t.deepEqual([stats.appendedEntries, stats.appendedBytes, stats.readEntries, stats.readBytes], [4, 35, 2, 12]);
  t.deepEqual(Object.fromEntries(stats.peerRequests), { append: 2 });
  t.is(stats.syncs.count, 1);
});

function metadataWith(commands: readonly MetadataCommand[]): MetadataStateMachine {
  const metadata = new MetadataStateMachine();
  commands.forEach((command, index) => {
    const result = metadata.apply(encodeCommand(command), index + 1) as { ok: boolean; error?: string };
    if (!result.ok) throw new Error(result.error);
  });
  return metadata;
}

const status = (over: Partial<ConsensusStatus> = {}): ConsensusStatus => ({
  id: 2,
  role: 'follower',
  term: 3,
  leader: 1,
  commitIndex: 10,
  appliedIndex: 10,
  voters: [1, 2, 3],
  learners: [],
  ...over,
});

test('the cluster view lists every node with its state, each topic newest segment first, and lag where this node leads', (t) => {
  const metadata = metadataWith([
    { kind: 'UpsertNode', nodeId: 1, clientAddress: '127.0.0.1:9091', raftAddress: '127.0.0.1:6001' },
    { kind: 'UpsertNode', nodeId: 2, clientAddress: '127.0.0.1:9092', raftAddress: '127.0.0.1:6002' },
    { kind: 'CreateTopic', topic: 'orders', initialLeader: 1, replicas: [1, 2, 3] },
    { kind: 'RolloverTopic', topic: 'orders', expectedSegment: 1, sealedCount: 10, newLeader: 2, replicas: [2, 3, 1] },
    { kind: 'CreateTopic', topic: 'audit', initialLeader: 3 },
  ]);
  const view = clusterView({
    nodeId: 2,
    version: '1.2.3',
    consensus: { status: () => status(), liveMembers: () => [1, 2] },
    metadata,
    localCount: (topic, segment) => (topic === 'orders' && segment === 2 ? 7 : 0),
    followers: () => [
      { topic: 'orders', segment: 2, follower: 3, held: 4, leader: 7 },
      { topic: 'orders', segment: 2, follower: 1, held: 7, leader: 7 },
    ],
    clientAddress: () => '127.0.0.1:9092',
    adminAddress: () => '127.0.0.1:9192',
    storageOutage: () => undefined,
    startedAt: 1_000,
    now: () => 6_500,
  });
  t.deepEqual(view.node, {
    id: 2,
    clientAddress: '127.0.0.1:9092',
    adminAddress: '127.0.0.1:9192',
    uptimeSeconds: 5.5,
    storageOutage: null,
  });
  t.deepEqual(view.nodes, [
    { id: 1, clientAddress: '127.0.0.1:9091', raftAddress: '127.0.0.1:6001', role: 'leader', up: true, self: false },
    { id: 2, clientAddress: '127.0.0.1:9092', raftAddress: '127.0.0.1:6002', role: 'follower', up: true, self: true },
    { id: 3, clientAddress: null, raftAddress: null, role: 'follower', up: false, self: false },
  ]);
  t.deepEqual(
    view.topics.map((topic) => topic.name),
    ['audit', 'orders'],
  );
  const orders = view.topics[1];
  t.like(orders, { currentSegment: 2, leader: 2, entries: 17, entriesExact: true, segmentsListed: 2 });
  t.deepEqual(orders?.segments, [
    {
      segment: 2,
      sealed: false,
      leader: 2,
      replicas: [2, 3, 1],
      entries: 7,
      followers: [
        { node: 3, held: 4, lag: 3 },
        { node: 1, held: 7, lag: 0 },
      ],
    },
    { segment: 1, sealed: true, leader: 1, replicas: [1, 2, 3], entries: 10 },
  ]);
  // audit lives on node 3 alone: its open segment's count is not known here.
  t.like(view.topics[0], { entries: 0, entriesExact: false });
  t.is(view.topics[0]?.segments[0]?.entries, null);
  t.deepEqual(view.counts, { nodes: 3, nodesUp: 2, topics: 2, segments: 3, openSegments: 2, sealedSegments: 1, ledHere: 1 });
});

test('a topic with many segments lists only the newest ones', (t) => {
  const commands: MetadataCommand[] = [{ kind: 'CreateTopic', topic: 'long', initialLeader: 1 }];
  for (let segment = 1; segment < SEGMENTS_LISTED_MAX + 20; segment++) {
    commands.push({ kind: 'RolloverTopic', topic: 'long', expectedSegment: segment, sealedCount: 2, newLeader: 1 });
  }
  const view = clusterView({
    nodeId: 1,
    version: 'x',
    consensus: { status: () => status({ id: 1, role: 'leader', leader: 1, voters: [1] }), liveMembers: () => [1] },
    metadata: metadataWith(commands),
    localCount: () => 1,
    followers: () => [],
    clientAddress: () => undefined,
    adminAddress: () => undefined,
    storageOutage: () => 'EIO on write',
    startedAt: 0,
  });
  const topic = view.topics[0];
  t.is(topic?.currentSegment, SEGMENTS_LISTED_MAX + 20);
  t.is(topic?.segmentsListed, SEGMENTS_LISTED_MAX);
  t.is(topic?.segments[0]?.segment, SEGMENTS_LISTED_MAX + 20);
  t.is(topic?.segments.at(-1)?.segment, 21);
  t.is(topic?.entries, (SEGMENTS_LISTED_MAX + 19) * 2 + 1);
  t.is(view.node.storageOutage, 'EIO on write');
});

test('readiness needs a leader, the metadata applied, the client port open and the node still a member', (t) => {
  t.deepEqual(notReadyReasons(status(), true, false), []);
  t.deepEqual(notReadyReasons(status({ leader: 0 }), true, false), ['no Raft leader is known']);
  t.deepEqual(notReadyReasons(status({ appliedIndex: 7 }), false, true), [
    'the metadata is not applied yet (applied 7 of 10 committed)',
    'the client port is not listening',
    'this node was removed from the cluster',
  ]);
});
