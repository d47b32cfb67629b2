// The metadata state machine as the cluster sees it: topics are created once, rollovers seal
// exactly the segment they name (a duplicate seals nothing), STATE replies keep the original's
// JSON shape, bad commands give error results without touching the state, logical offsets map
// across sealed segments, and snapshots restore the same state byte for byte.

import test from 'ava';
import fc from 'fast-check';
import {
  decodeCommand,
  encodeCommand,
  type MetadataChange,
  type MetadataCommand,
  type MetadataResult,
  MetadataStateMachine,
  metadataLimits,
  parseSegmentKey,
  type RolloverTopic,
  segmentKey,
} from '../../src/node/metadata.js';

/** A machine fed like Raft feeds it: one command per log index, starting at 1. */
class Replica {
  readonly machine = new MetadataStateMachine();
  private index = 0;

  run(command: MetadataCommand): MetadataResult {
    return this.raw(encodeCommand(command));
  }

  raw(bytes: Uint8Array): MetadataResult {
    this.index += 1;
    return this.machine.apply(bytes, this.index);
  }

  snapshotText(): string {
    return Buffer.from(this.machine.snapshot()).toString('utf8');
  }
}

const create = (topic: string, initialLeader: number): MetadataCommand => ({ kind: 'CreateTopic', topic, initialLeader });
const rollover = (topic: string, expectedSegment: number, sealedCount: number, newLeader: number): RolloverTopic => ({
  kind: 'RolloverTopic',
  topic,
  expectedSegment,
  sealedCount,
  newLeader,
});
const upsert = (nodeId: number, port: number): MetadataCommand => ({
  kind: 'UpsertNode',
  nodeId,
  clientAddress: `127.0.0.1:${port}`,
  raftAddress: `127.0.0.1:${port + 1000}`,
});

test('CreateTopic creates segment 1 on the initial leader, and a second create reports exists', (t) => {
  const replica = new Replica();
  t.deepEqual(replica.run(create('logs', 2)), { ok: true, outcome: 'created' });
  t.deepEqual(replica.run(create('logs', 3)), { ok: true, outcome: 'exists' });
  t.deepEqual(replica.machine.topic('logs'), { currentSegment: 1, leaderNode: 2, lastSealedEntryOffset: 0 });
  t.is(
    replica.machine.stateJson('logs'),
    '{"current_segment":1,"leader_node":2,"last_sealed_entry_offset":0,"sealed_segments":{},"segment_leaders":{"1":2}}',
  );
  t.is(replica.machine.topic('other'), undefined);
  t.is(replica.machine.stateJson('other'), undefined);
});

test('a rollover seals the open segment with its exact count and hands the next one to the new leader', (t) => {
  const replica = new Replica();
  replica.run(create('logs', 1));
  t.deepEqual(replica.run(rollover('logs', 1, 10, 2)), { ok: true, outcome: 'rolled' });
  t.is(
    replica.machine.stateJson('logs'),
    '{"current_segment":2,"leader_node":2,"last_sealed_entry_offset":10,"sealed_segments":{"1":10},"segment_leaders":{"1":1,"2":2}}',
  );
  // The field order is the original's, not merely the same fields.
  const state = JSON.parse(replica.machine.stateJson('logs') ?? '{}') as Record<string, unknown>;
  t.deepEqual(Object.keys(state), ['current_segment', 'leader_node', 'last_sealed_entry_offset', 'sealed_segments', 'segment_leaders']);
  t.is(replica.machine.sealedCount('logs', 1), 10);
  t.is(replica.machine.sealedCount('logs', 2), undefined, 'the open segment has no sealed count');
  t.is(replica.machine.segmentLeader('logs', 1), 1);
  t.is(replica.machine.segmentLeader('logs', 2), 2);
  t.is(replica.machine.segmentLeader('logs', 3), undefined, 'segment 3 is not open yet');
  t.deepEqual(replica.machine.ownedOpenSegments(2), [{ topic: 'logs', segment: 2 }]);
  t.deepEqual(replica.machine.ownedOpenSegments(1), [], 'the old leader no longer owns an open segment');
});

test('a duplicate rollover for an already sealed segment is a stale no-op', (t) => {
  const replica = new Replica();
  replica.run(create('x', 2));
  t.deepEqual(replica.run(rollover('x', 1, 10, 3)), { ok: true, outcome: 'rolled' });
  const before = replica.machine.stateJson('x');
  const epoch = replica.machine.epoch;
  // The original sealed segment 2 here with segment 1's count and rotated again (§6.2).
  t.deepEqual(replica.run(rollover('x', 1, 10, 1)), { ok: true, outcome: 'stale' });
  t.deepEqual(replica.run(rollover('x', 5, 10, 1)), { ok: true, outcome: 'stale' }, 'a segment not open yet is stale too');
  t.is(replica.machine.stateJson('x'), before);
  t.is(replica.machine.epoch, epoch);
});

test('60 entries at threshold 10 seal six segments of 10, even when every rollover is proposed twice', (t) => {
  const replica = new Replica();
  const voters = [1, 2, 3];
  replica.run(create('rollover_demo', 2));
  for (let written = 10; written <= 60; written += 10) {
    const open = replica.machine.topic('rollover_demo');
    if (open === undefined) throw new Error('topic vanished');
    const next = voters[(voters.indexOf(open.leaderNode) + 1) % voters.length] ?? 1;
    // Inline check and monitor both propose with the segment they saw open.
    replica.run(rollover('rollover_demo', open.currentSegment, 10, next));
    replica.run(rollover('rollover_demo', open.currentSegment, 10, next));
  }
  t.is(
    replica.machine.stateJson('rollover_demo'),
    '{"current_segment":7,"leader_node":2,"last_sealed_entry_offset":60,' +
      '"sealed_segments":{"1":10,"2":10,"3":10,"4":10,"5":10,"6":10},' +
      '"segment_leaders":{"1":2,"2":3,"3":1,"4":2,"5":3,"6":1,"7":2}}',
  );
});

test('STATE orders segment keys numerically, past 9', (t) => {
  const replica = new Replica();
  replica.run(create('t', 1));
  for (let segment = 1; segment <= 11; segment++) replica.run(rollover('t', segment, segment, 1));
  const json = replica.machine.stateJson('t') ?? '';
  const sealed = (JSON.parse(json) as { sealed_segments: Record<string, number> }).sealed_segments;
  t.deepEqual(Object.keys(sealed), ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
  t.true(json.includes('"sealed_segments":{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9,"10":10,"11":11}'));
  t.is(replica.machine.topic('t')?.lastSealedEntryOffset, 66);
});

test('bad commands give error results, never throw, and leave the state unchanged', (t) => {
  const replica = new Replica();
  replica.run(upsert(1, 9091));
  replica.run(create('logs', 1));
  const before = replica.machine.snapshot();
  const epoch = replica.machine.epoch;
  const text = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));
  const refused: [string, Uint8Array][] = [
    ['rollover of an unknown topic', encodeCommand(rollover('nope', 1, 10, 2))],
    ['garbage bytes', Uint8Array.from([0xff, 0xfe, 0x00, 0x7b])],
    ['empty bytes', new Uint8Array(0)],
    ['JSON that is not an object', text([1, 2])],
    ['no version', text({ kind: 'CreateTopic', topic: 'a', initialLeader: 1 })],
    ['a future version', text({ v: 2, kind: 'CreateTopic', topic: 'a', initialLeader: 1 })],
    ['an unknown kind', text({ v: 1, kind: 'DeleteTopic', topic: 'logs' })],
    ['a wrong field type', text({ v: 1, kind: 'CreateTopic', topic: 'a', initialLeader: '1' })],
    ['a missing field', text({ v: 1, kind: 'RolloverTopic', topic: 'logs', expectedSegment: 1, newLeader: 2 })],
    ['an unknown field', text({ v: 1, kind: 'CreateTopic', topic: 'a', initialLeader: 1, color: 3 })],
    ['replicas that are not a list', text({ v: 1, kind: 'CreateTopic', topic: 'a', initialLeader: 1, replicas: 3 })],
    ['replicas without the leader first', encodeCommand({ kind: 'CreateTopic', topic: 'a', initialLeader: 1, replicas: [2, 1] })],
    ['replicas twice the same node', encodeCommand({ ...rollover('logs', 1, 1, 2), replicas: [2, 3, 3] })],
    ['an empty replica set', encodeCommand({ ...rollover('logs', 1, 1, 2), replicas: [] })],
    ['too many replicas', encodeCommand({ kind: 'CreateTopic', topic: 'a', initialLeader: 1, replicas: [1, 2, 3, 4, 5, 6, 7, 8] })],
    ['a negative count', encodeCommand(rollover('logs', 1, -1, 2))],
    ['a fractional count', encodeCommand(rollover('logs', 1, 1.5, 2))],
    ['segment 0', encodeCommand(rollover('logs', 0, 1, 2))],
    ['leader 0', encodeCommand(rollover('logs', 1, 1, 0))],
    ['an unsafe integer', text({ v: 1, kind: 'CreateTopic', topic: 'a', initialLeader: 2 ** 53 })],
    ['a topic with a space', encodeCommand(create('a b', 1))],
    ['a topic with a newline', encodeCommand(create('a\nb', 1))],
    ['an empty topic', encodeCommand(create('', 1))],
    ['a topic too long for its segment keys', encodeCommand(create('x'.repeat(metadataLimits.topicNameBytesMax + 1), 1))],
    ['a lone surrogate in a topic', encodeCommand(create('a\ud800', 1))],
    ['an address without a port', encodeCommand({ kind: 'UpsertNode', nodeId: 2, clientAddress: 'host', raftAddress: 'host:1' })],
    ['an oversized command', new Uint8Array(metadataLimits.commandBytesMax + 1)],
  ];
  for (const [what, bytes] of refused) {
    let result: MetadataResult | undefined;
    t.notThrows(() => {
      result = replica.raw(bytes);
    }, what);
    t.is(result?.ok, false, what);
    if (result !== undefined && !result.ok) t.true(result.error.length > 0, what);
  }
  t.deepEqual(replica.raw(encodeCommand(rollover('nope', 1, 10, 2))), { ok: false, error: 'unknown topic nope' });
  // Only the applied index moved: compare the snapshot with it rewound.
  const after = JSON.parse(Buffer.from(replica.machine.snapshot()).toString()) as Record<string, unknown>;
  const original = JSON.parse(Buffer.from(before).toString()) as Record<string, unknown>;
  t.is(after.lastAppliedIndex, (original.lastAppliedIndex as number) + refused.length + 1);
  t.deepEqual({ ...after, lastAppliedIndex: 0 }, { ...original, lastAppliedIndex: 0 });
  t.is(replica.machine.epoch, epoch);
  t.true(replica.machine.topic('a b') === undefined && replica.machine.topic('a') === undefined);
});

test('the longest allowed topic name still gives segment keys within the engine limit', (t) => {
  const replica = new Replica();
  const name = 'é'.repeat(Math.floor(metadataLimits.topicNameBytesMax / 2));
  t.deepEqual(replica.run(create(name, 1)), { ok: true, outcome: 'created' });
  t.true(Buffer.byteLength(segmentKey(name, Number.MAX_SAFE_INTEGER)) <= 255);
});

test('an index at or below the last applied one is refused without a change', (t) => {
  const machine = new MetadataStateMachine();
  t.deepEqual(machine.apply(encodeCommand(create('a', 1)), 5), { ok: true, outcome: 'created' });
  const result = machine.apply(encodeCommand(create('b', 1)), 5);
  t.false(result.ok);
  t.is(machine.topic('b'), undefined);
  t.is(machine.lastAppliedIndex, 5);
  t.deepEqual(machine.apply(encodeCommand(create('b', 1)), 9), { ok: true, outcome: 'created' }, 'gaps (Raft no-ops) are fine');
});

test('locate maps logical offsets across sealed segments, skipping those sealed empty, into the open one', (t) => {
  const replica = new Replica();
  replica.run(create('q', 1));
  // Segments: 1 → 3 entries, 2 → 0, 3 → 0, 4 → 2, 5 → open.
  for (const [segment, count] of [
    [1, 3],
    [2, 0],
    [3, 0],
    [4, 2],
  ] as const)
    replica.run(rollover('q', segment, count, 1));
  const where = (offset: number) => replica.machine.locate('q', offset);
  t.deepEqual(where(0), { segment: 1, offsetInSegment: 0 });
  t.deepEqual(where(2), { segment: 1, offsetInSegment: 2 });
  t.deepEqual(where(3), { segment: 4, offsetInSegment: 0 });
  t.deepEqual(where(4), { segment: 4, offsetInSegment: 1 });
  t.deepEqual(where(5), { segment: 5, offsetInSegment: 0 });
  t.deepEqual(where(42), { segment: 5, offsetInSegment: 37 });
  t.is(replica.machine.locate('unknown', 0), undefined);
  t.throws(() => replica.machine.locate('q', -1), { instanceOf: RangeError });
  t.deepEqual(
    [1, 2, 3, 4, 5, 6].map((segment) => replica.machine.segmentStart('q', segment)),
    [0, 3, 3, 3, 5, undefined],
  );

  const fresh = new Replica();
  fresh.run(create('new', 1));
  t.deepEqual(fresh.machine.locate('new', 0), { segment: 1, offsetInSegment: 0 }, 'a topic with nothing sealed');
});

test('segment keys are t_<topic>_s_<segment> and parse back even when the topic contains _s_', (t) => {
  t.is(segmentKey('logs', 2), 't_logs_s_2');
  t.is(new MetadataStateMachine().segmentKey('logs', 2), 't_logs_s_2');
  t.deepEqual(parseSegmentKey(segmentKey('a_s_b', 12)), { topic: 'a_s_b', segment: 12 });
  t.deepEqual(parseSegmentKey(segmentKey('a_s', 1)), { topic: 'a_s', segment: 1 });
  for (const bad of ['logs_s_1', 't_logs_s_', 't_logs_s_0', 't_logs_s_01', 't_logs', 't_logs_s_x'])
    t.is(parseSegmentKey(bad), undefined, bad);
});

test('nodes are inserted and overwritten; the map lists them by id', (t) => {
  const replica = new Replica();
  t.deepEqual(replica.run(upsert(3, 9093)), { ok: true, outcome: 'node' });
  replica.run(upsert(1, 9091));
  const epoch = replica.machine.epoch;
  t.deepEqual(replica.run(upsert(1, 9091)), { ok: true, outcome: 'node' });
  t.is(replica.machine.epoch, epoch, 'the same addresses again change nothing');
  replica.run({ kind: 'UpsertNode', nodeId: 3, clientAddress: 'walrus-3:9000', raftAddress: '[::1]:7000' });
  t.deepEqual(
    [...replica.machine.nodes()],
    [
      [1, { clientAddress: '127.0.0.1:9091', raftAddress: '127.0.0.1:10091' }],
      [3, { clientAddress: 'walrus-3:9000', raftAddress: '[::1]:7000' }],
    ],
  );
});

test('snapshot → restore into a fresh machine gives the same STATE, nodes, epoch and applied index', (t) => {
  const replica = new Replica();
  replica.run(upsert(2, 9092));
  replica.run(upsert(1, 9091));
  replica.run(create('logs', 1));
  replica.run(create('123', 2));
  replica.run(rollover('logs', 1, 0, 1));
  replica.run(rollover('logs', 2, 7, 2));
  replica.run(rollover('123', 1, 4, 3));
  replica.raw(Buffer.from('garbage'));

  const restored = new MetadataStateMachine();
  restored.restore(replica.machine.snapshot());
  for (const topic of ['logs', '123']) t.is(restored.stateJson(topic), replica.machine.stateJson(topic), topic);
  t.deepEqual(restored.topics(), ['123', 'logs']);
  t.deepEqual([...restored.nodes()], [...replica.machine.nodes()]);
  t.is(restored.epoch, replica.machine.epoch);
  t.is(restored.lastAppliedIndex, replica.machine.lastAppliedIndex);
  t.is(Buffer.from(restored.snapshot()).toString(), replica.snapshotText());
  t.deepEqual(restored.locate('logs', 5), replica.machine.locate('logs', 5));
  // The restored machine goes on from the snapshot's index.
  t.deepEqual(restored.apply(encodeCommand(rollover('logs', 3, 1, 3)), replica.machine.lastAppliedIndex + 1), {
    ok: true,
    outcome: 'rolled',
  });
});

test('a corrupt snapshot throws a clear error on restore and leaves the state as it was', (t) => {
  const replica = new Replica();
  replica.run(create('logs', 1));
  replica.run(rollover('logs', 1, 10, 2));
  const good = JSON.parse(replica.snapshotText()) as { topics: Record<string, unknown>[] };
  const edit = (change: (snapshot: { topics: Record<string, unknown>[] }) => void): Uint8Array => {
    const copy = structuredClone(good);
    change(copy);
    return Buffer.from(JSON.stringify(copy));
  };
  const target = new Replica();
  target.run(create('kept', 3));
  const corrupt: [string, Uint8Array, RegExp][] = [
    ['not JSON', Buffer.from('{"v":1,'), /not UTF-8 JSON/],
    ['wrong version', edit((s) => Object.assign(s, { v: 9 })), /unsupported version 9/],
    ['sum mismatch', edit((s) => Object.assign(s.topics[0] ?? {}, { lastSealedEntryOffset: 11 })), /not the sum/],
    ['missing leader', edit((s) => Object.assign(s.topics[0] ?? {}, { segmentLeaders: [1] })), /segment leaders/],
    ['bad topic name', edit((s) => Object.assign(s.topics[0] ?? {}, { name: 'a b' })), /whitespace/],
    ['duplicate topic', edit((s) => s.topics.push(s.topics[0] ?? {})), /appears twice/],
    ['unknown field', edit((s) => Object.assign(s, { extra: 1 })), /unknown field extra/],
  ];
  for (const [what, bytes, message] of corrupt) {
    const error = t.throws(() => target.machine.restore(bytes), { instanceOf: Error }, what);
    t.regex(error?.message ?? '', /^corrupt metadata snapshot: /, what);
    t.regex(error?.message ?? '', message, what);
  }
  t.deepEqual(target.machine.topics(), ['kept']);
  t.is(target.machine.lastAppliedIndex, 1);
});

test('onChange fires once per apply with its result; the epoch moves only on changes', (t) => {
  const replica = new Replica();
  const seen: MetadataChange[] = [];
  const unsubscribe = replica.machine.onChange((change) => seen.push(change));
  replica.run(create('a', 1));
  replica.run(create('a', 2));
  replica.run(rollover('a', 1, 3, 2));
  replica.run(rollover('a', 1, 3, 2));
  replica.raw(Buffer.from('nonsense'));
  replica.run(upsert(1, 9091));
  t.deepEqual(
    seen.map(({ index, result, changed, epoch }) => ({ index, result, changed, epoch })),
    [
      { index: 1, result: { ok: true, outcome: 'created' }, changed: true, epoch: 1 },
      { index: 2, result: { ok: true, outcome: 'exists' }, changed: false, epoch: 1 },
      { index: 3, result: { ok: true, outcome: 'rolled' }, changed: true, epoch: 2 },
      { index: 4, result: { ok: true, outcome: 'stale' }, changed: false, epoch: 2 },
      { index: 5, result: { ok: false, error: 'command is not UTF-8 JSON' }, changed: false, epoch: 2 },
      { index: 6, result: { ok: true, outcome: 'node' }, changed: true, epoch: 3 },
    ],
  );
  t.deepEqual(seen[2]?.command, rollover('a', 1, 3, 2));
  t.is(seen[4]?.command, undefined);
  unsubscribe();
  replica.run(create('b', 1));
  t.is(seen.length, 6, 'no calls after unsubscribing');
});

test('a throwing listener does not make apply throw, and the other listeners still run', (t) => {
  const problems: unknown[] = [];
  const machine = new MetadataStateMachine({ onListenerError: (error) => problems.push(error) });
  let calls = 0;
  machine.onChange(() => {
    throw new Error('listener bug');
  });
  machine.onChange(() => {
    calls += 1;
  });
  t.deepEqual(machine.apply(encodeCommand(create('a', 1)), 1), { ok: true, outcome: 'created' });
  t.is(calls, 1);
  t.is((problems[0] as Error).message, 'listener bug');
});

test('restore tells the listeners the state was replaced', (t) => {
  const source = new Replica();
  source.run(create('a', 1));
  const machine = new MetadataStateMachine();
  const seen: MetadataChange[] = [];
  machine.onChange((change) => seen.push(change));
  machine.restore(source.machine.snapshot());
  t.deepEqual(seen, [{ index: 1, command: undefined, result: { ok: true, outcome: 'restored' }, changed: true, epoch: 1 }]);
});

test('commands round-trip through their encoding', (t) => {
  const commands = [create('logs', 1), rollover('a_s_b', 3, 0, 2), upsert(7, 9097)];
  for (const command of commands) t.deepEqual(decodeCommand(encodeCommand(command)), command);
  t.is(Buffer.from(encodeCommand(create('logs', 1))).toString(), '{"v":1,"kind":"CreateTopic","topic":"logs","initialLeader":1}');
});

// Commands drawn from a small alphabet so that creates, rollovers, stale rollovers, unknown topics
// and garbage all occur often.
const commandArbitrary: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc
    .record({ topic: fc.constantFrom('a', 'b', '7'), leader: fc.integer({ min: 1, max: 3 }) })
    .map(({ topic, leader }) => encodeCommand(create(topic, leader))),
  fc
    .record({
      topic: fc.constantFrom('a', 'b', '7', 'missing'),
      segment: fc.integer({ min: 1, max: 4 }),
      count: fc.integer({ min: 0, max: 20 }),
      leader: fc.integer({ min: 1, max: 3 }),
    })
    .map(({ topic, segment, count, leader }) => encodeCommand(rollover(topic, segment, count, leader))),
  fc.integer({ min: 1, max: 4 }).map((id) => encodeCommand(upsert(id, 9000 + id))),
  fc.uint8Array({ maxLength: 12 }),
);

test('determinism: the same commands give byte-identical snapshots, also through a snapshot taken midway', (t) => {
  fc.assert(
    fc.property(fc.array(commandArbitrary, { maxLength: 60 }), fc.nat(), (commands, cut) => {
      const first = new Replica();
      const second = new Replica();
      for (const command of commands) {
        const a = first.raw(command);
        const b = second.raw(command);
        if (JSON.stringify(a) !== JSON.stringify(b)) return false;
      }
      // A third replica restores a snapshot taken after `split` commands, then applies the rest.
      const split = commands.length === 0 ? 0 : cut % (commands.length + 1);
      const prefix = new MetadataStateMachine();
      for (const [position, command] of commands.slice(0, split).entries()) prefix.apply(command, position + 1);
      const third = new MetadataStateMachine();
      third.restore(prefix.snapshot());
      for (const [position, command] of commands.slice(split).entries()) third.apply(command, split + position + 1);
      const expected = first.snapshotText();
      return expected === second.snapshotText() && expected === Buffer.from(third.snapshot()).toString();
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('replica sets: each segment keeps the set its CreateTopic or RolloverTopic named (the leader alone when none), through a snapshot', (t) => {
  const replica = new Replica();
  replica.run({ kind: 'CreateTopic', topic: 'r', initialLeader: 2, replicas: [2, 3, 1] });
  replica.run(create('single', 1));
  replica.run({ ...rollover('r', 1, 5, 3), replicas: [3, 1, 2] });
  replica.run(rollover('r', 2, 5, 1));
  const sets = (machine: MetadataStateMachine) => [1, 2, 3, 4].map((segment) => machine.segmentReplicas('r', segment));
  t.deepEqual(sets(replica.machine), [[2, 3, 1], [3, 1, 2], [1], undefined]);
  t.deepEqual(replica.machine.segmentReplicas('single', 1), [1]);
  t.is(replica.machine.segmentReplicas('nope', 1), undefined);
  const restored = new MetadataStateMachine();
  restored.restore(replica.machine.snapshot());
  t.deepEqual(sets(restored), sets(replica.machine));
  t.is(Buffer.from(restored.snapshot()).toString(), replica.snapshotText());
});

test('a version 1 snapshot (before replica sets) restores with every segment kept by its leader alone', (t) => {
  const replica = new Replica();
  replica.run(create('old', 2));
  replica.run(rollover('old', 1, 3, 1));
  const current = JSON.parse(replica.snapshotText()) as { v: number; topics: Record<string, unknown>[] };
  current.v = 1;
  for (const topic of current.topics) delete topic.segmentReplicas;
  const restored = new MetadataStateMachine();
  restored.restore(Buffer.from(JSON.stringify(current)));
  t.deepEqual([restored.segmentReplicas('old', 1), restored.segmentReplicas('old', 2)], [[2], [1]]);
  t.is(restored.stateJson('old'), replica.machine.stateJson('old'));
  // A version 2 snapshot without them is corrupt.
  const broken = JSON.parse(replica.snapshotText()) as { topics: Record<string, unknown>[] };
  for (const topic of broken.topics) delete topic.segmentReplicas;
  t.throws(() => new MetadataStateMachine().restore(Buffer.from(JSON.stringify(broken))), { message: /has no field segmentReplicas/ });
});

test('a failover rollover names the replica that serves the sealed segment; MoveSegment moves a sealed one; both survive a snapshot', (t) => {
  const replica = new Replica();
  replica.run({ kind: 'CreateTopic', topic: 'f', initialLeader: 1, replicas: [1, 2, 3] });
  // Node 1 is gone: node 2 holds the most, serves segment 1 and leads segment 2.
  t.deepEqual(replica.run({ ...rollover('f', 1, 7, 2), replicas: [2, 3], sealedOwner: 2 }), { ok: true, outcome: 'rolled' });
  t.is(replica.machine.segmentLeader('f', 1), 2);
  t.deepEqual(replica.machine.segmentReplicas('f', 1), [1, 2, 3]);
  t.is(replica.machine.sealedCount('f', 1), 7);
  t.is(replica.machine.segmentLeader('f', 2), 2);
  // A sealed owner must be one of the sealed segment's replicas; a refusal changes nothing.
  const before = replica.machine.stateJson('f');
  const refused = replica.run({ ...rollover('f', 2, 3, 3), replicas: [3, 1], sealedOwner: 1 });
  t.false(refused.ok);
  t.regex((refused as { error: string }).error, /not one of its replicas/);
  t.is(replica.machine.stateJson('f'), before);
  t.deepEqual(replica.run(rollover('f', 2, 3, 3)), { ok: true, outcome: 'rolled' });
  // Segment 1's node 2 is gone too: node 3 serves it. A second move naming the old owner is stale.
  t.deepEqual(replica.run({ kind: 'MoveSegment', topic: 'f', segment: 1, expectedOwner: 2, owner: 3 }), { ok: true, outcome: 'moved' });
  t.deepEqual(replica.run({ kind: 'MoveSegment', topic: 'f', segment: 1, expectedOwner: 2, owner: 1 }), { ok: true, outcome: 'stale' });
  t.is(replica.machine.segmentLeader('f', 1), 3);
  t.false(replica.run({ kind: 'MoveSegment', topic: 'f', segment: 1, expectedOwner: 3, owner: 4 }).ok, 'not a replica');
  t.false(replica.run({ kind: 'MoveSegment', topic: 'f', segment: 3, expectedOwner: 3, owner: 1 }).ok, 'the open segment does not move');
  t.is(
    replica.machine.stateJson('f'),
    '{"current_segment":3,"leader_node":3,"last_sealed_entry_offset":10,"sealed_segments":{"1":7,"2":3},"segment_leaders":{"1":3,"2":2,"3":3}}',
  );
  const restored = new MetadataStateMachine();
  restored.restore(replica.machine.snapshot());
  t.is(restored.stateJson('f'), replica.machine.stateJson('f'));
  t.deepEqual(restored.segmentReplicas('f', 1), [1, 2, 3]);
  for (const command of [
    { ...rollover('f', 3, 1, 1), replicas: [1, 2], sealedOwner: 3 },
    { kind: 'MoveSegment', topic: 'f', segment: 2, expectedOwner: 2, owner: 3 },
  ] as MetadataCommand[]) {
    t.deepEqual(decodeCommand(encodeCommand(command)), command);
  }
});

test("ReplaceReplica swaps a removed node out of a sealed segment's replica set; open segments, unknown members and the server are refused", (t) => {
  const replica = new Replica();
  replica.run({ kind: 'CreateTopic', topic: 'r', initialLeader: 2, replicas: [2, 3, 4] });
  t.false(
    replica.run({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 4, added: 1 }).ok,
    'the open segment waits for its rollover',
  );
  replica.run({ ...rollover('r', 1, 6, 3), replicas: [3, 4, 1] });
  t.deepEqual(replica.run({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 4, added: 1 }), { ok: true, outcome: 'replaced' });
  t.deepEqual(replica.machine.segmentReplicas('r', 1), [2, 3, 1]);
  t.deepEqual(replica.run({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 4, added: 5 }), { ok: true, outcome: 'stale' });
  t.false(replica.run({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 3, added: 2 }).ok, 'node 2 keeps it already');
  t.false(replica.run({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 2, added: 4 }).ok, 'node 2 serves it: move it first');
  const restored = new MetadataStateMachine();
  restored.restore(replica.machine.snapshot());
  t.deepEqual(restored.segmentReplicas('r', 1), [2, 3, 1]);
  const command: MetadataCommand = { kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 3, added: 4 };
  t.deepEqual(decodeCommand(encodeCommand(command)), command);
});
