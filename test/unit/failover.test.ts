// The failover monitor (src/node/failover.ts) over a fake cluster: it acts only on the Raft
// leader and only once a node has been silent for timeoutMs; it seals an open segment at the
// largest count a majority of its replicas holds (fencing them first) and hands the next segment
// to the replica holding that many; it needs a majority to answer; it moves a sealed segment to
// a replica that holds all of it; a segment kept by one node is left alone (and logged); and a
// fenced segment whose leader came back is still finished.

import test from 'ava';
import { type FailoverLog, FailoverMonitor, type FailoverTarget, majority, sealPoint } from '../../src/node/failover.js';
import { encodeCommand, type MetadataCommand, MetadataStateMachine } from '../../src/node/metadata.js';
import { REAL_CLOCK } from '../../src/node/replicator.js';

class FakeCluster {
  readonly metadata = new MetadataStateMachine();
  private index = 0;
  leader = true;
  readonly silence = new Map<number, number>();
  /** What each node's copy holds, by segment key; a node missing here does not answer. */
  readonly held = new Map<number, Map<string, number>>();
  readonly fenced: string[] = [];
  readonly proposed: MetadataCommand[] = [];
  readonly warnings: string[] = [];

  run(command: MetadataCommand): void {
    this.index += 1;
    this.metadata.apply(encodeCommand(command), this.index);
  }

  target(): FailoverTarget {
    return {
      isLeader: () => this.leader,
      silenceMs: (id) => this.silence.get(id) ?? 0,
      voters: () => [1, 2, 3],
      metadata: this.metadata,
      fence: async (id, topic, segment) => {
        const copy = this.held.get(id);
        if (copy === undefined) throw new Error(`node ${id} does not answer`);
        this.fenced.push(`${id}:${topic}/${segment}`);
        return copy.get(`${topic}/${segment}`) ?? 0;
      },
      propose: async (command) => {
        this.proposed.push(command);
        this.index += 1;
        return this.metadata.apply(encodeCommand(command), this.index);
      },
    };
  }

  log(): FailoverLog {
    return { info: () => undefined, warn: (_fields, message) => this.warnings.push(message) };
  }

  monitor(factor = 3): FailoverMonitor {
    // Each look at the clock is a second later: every check may look at the sealed segments.
    let now = 0;
    const clock = { ...REAL_CLOCK, now: () => (now += 1_000) };
    return new FailoverMonitor({ nodeId: 3, timeoutMs: 1_000, replicationFactor: factor, target: this.target(), log: this.log(), clock });
  }
}

test('majority and sealPoint: the largest count among a majority, held by the first such replica', (t) => {
  t.is(majority(1), 1);
  t.is(majority(2), 2);
  t.is(majority(3), 2);
  t.is(majority(5), 3);
  t.is(sealPoint([1, 2, 3], new Map([[2, 5]])), undefined, 'one answer of three is not a majority');
  t.deepEqual(
    sealPoint(
      [1, 2, 3],
      new Map([
        [3, 9],
        [2, 7],
      ]),
    ),
    { count: 9, owner: 3 },
  );
  t.deepEqual(
    sealPoint(
      [1, 2, 3],
      new Map([
        [3, 9],
        [2, 9],
      ]),
    ),
    { count: 9, owner: 2 },
    'ties go to the first in the set',
  );
});

test('an open segment whose leader is silent is sealed at what the fenced majority holds, and a live replica leads the next one', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'f', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.held.set(2, new Map([['f/1', 12]]));
  cluster.held.set(3, new Map([['f/1', 10]]));
  const monitor = cluster.monitor();
  cluster.silence.set(1, 999);
  await monitor.tick();
  t.deepEqual(cluster.proposed, [], 'not yet silent for timeoutMs');
  cluster.silence.set(1, 1_000);
  cluster.leader = false;
  await monitor.tick();
  t.deepEqual(cluster.proposed, [], 'only the Raft leader acts');
  cluster.leader = true;
  await monitor.tick();
  t.deepEqual(cluster.fenced.sort(), ['2:f/1', '3:f/1']);
  t.deepEqual(cluster.proposed, [
    { kind: 'RolloverTopic', topic: 'f', expectedSegment: 1, sealedCount: 12, newLeader: 2, sealedOwner: 2, replicas: [2, 3] },
  ]);
  t.is(cluster.metadata.segmentLeader('f', 1), 2, 'the replica holding all 12 serves the sealed segment');
  t.is(cluster.metadata.topic('f')?.leaderNode, 2);
  // Applied: nothing more to do for it.
  await monitor.tick();
  t.is(cluster.proposed.length, 1);
});

test('without a majority of the replica set answering nothing is sealed, and why is logged once', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'f', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.held.set(3, new Map([['f/1', 4]]));
  cluster.silence.set(1, 5_000);
  const monitor = cluster.monitor();
  await monitor.tick();
  await monitor.tick();
  t.deepEqual(cluster.proposed, []);
  t.is(cluster.warnings.filter((message) => message.includes('too few replicas answered')).length, 1);
  // Node 2 is silent too: only one of three replicas is up.
  cluster.silence.set(2, 5_000);
  await monitor.tick();
  t.true(cluster.warnings.some((message) => message.includes('1 of its 3 replicas are up and 2 are needed')));
  t.deepEqual(cluster.proposed, []);
});

test('a segment kept by its leader alone is left alone and logged', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'solo', initialLeader: 1 });
  cluster.held.set(2, new Map());
  cluster.held.set(3, new Map());
  cluster.silence.set(1, 5_000);
  await cluster.monitor(1).tick();
  t.deepEqual(cluster.proposed, []);
  t.deepEqual(cluster.fenced, []);
  t.true(cluster.warnings.some((message) => message.includes('alone')));
});

test('a sealed segment of a silent node moves to a replica holding all of it, never to one holding less', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 's', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.run({ kind: 'RolloverTopic', topic: 's', expectedSegment: 1, sealedCount: 10, newLeader: 3, replicas: [3, 1, 2] });
  cluster.held.set(2, new Map([['s/1', 9]]));
  cluster.held.set(3, new Map([['s/1', 9]]));
  cluster.silence.set(1, 5_000);
  const monitor = cluster.monitor();
  await monitor.tick();
  t.deepEqual(cluster.proposed, [], 'no live copy holds all 10');
  t.true(cluster.warnings.some((message) => message.includes('no live replica holds all 10')));
  cluster.held.get(3)?.set('s/1', 10);
  await monitor.tick();
  t.deepEqual(cluster.proposed, [{ kind: 'MoveSegment', topic: 's', segment: 1, expectedOwner: 1, owner: 3 }]);
  t.is(cluster.metadata.segmentLeader('s', 1), 3);
});

test('a fenced segment whose leader answers again is still sealed (else it would take no writes), and an old leader can ask for it', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'f', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.run({ kind: 'CreateTopic', topic: 'g', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.held.set(
    3,
    new Map([
      ['f/1', 3],
      ['g/1', 5],
    ]),
  );
  cluster.silence.set(1, 5_000);
  const monitor = cluster.monitor();
  await monitor.tick(); // node 2 does not answer: fenced at 3 only, no majority
  t.deepEqual(cluster.proposed, []);
  cluster.silence.set(1, 0); // node 1 is back
  cluster.held.set(
    2,
    new Map([
      ['f/1', 4],
      ['g/1', 5],
    ]),
  );
  await monitor.tick();
  t.deepEqual(cluster.proposed.map((command) => command.kind === 'RolloverTopic' && [command.topic, command.sealedCount]).sort(), [
    ['f', 4],
    ['g', 5],
  ]);
  // finish() (an old leader's request) on a segment not sealed yet seals it at once.
  cluster.run({ kind: 'CreateTopic', topic: 'h', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.held.get(2)?.set('h/1', 2);
  await monitor.finish('h', 1);
  t.is(cluster.metadata.sealedCount('h', 1), 2);
  cluster.leader = false;
  await t.throwsAsync(monitor.finish('f', 2), { message: /does not lead the Raft group/ });
});

test('repair: a sealed segment kept on a node that is no longer a voter gets a copy on a live voter outside its set; one that serves it moves first', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'r', initialLeader: 2, replicas: [2, 3, 4] });
  cluster.run({ kind: 'RolloverTopic', topic: 'r', expectedSegment: 1, sealedCount: 5, newLeader: 4, replicas: [4, 1, 2] });
  cluster.run({ kind: 'RolloverTopic', topic: 'r', expectedSegment: 2, sealedCount: 5, newLeader: 1, replicas: [1, 2, 3] });
  cluster.held.set(1, new Map([['r/2', 5]]));
  cluster.held.set(2, new Map([['r/2', 5]]));
  // Node 4 was removed: the voters are 1, 2, 3 (the fake's list).
  const monitor = cluster.monitor();
  await monitor.tick();
  await monitor.tick();
  const kinds = cluster.proposed.map((command) => JSON.stringify(command));
  t.true(kinds.includes(JSON.stringify({ kind: 'ReplaceReplica', topic: 'r', segment: 1, removed: 4, added: 1 })), kinds.join('\n'));
  t.true(kinds.includes(JSON.stringify({ kind: 'MoveSegment', topic: 'r', segment: 2, expectedOwner: 4, owner: 1 })), kinds.join('\n'));
  await monitor.tick();
  t.deepEqual(cluster.metadata.segmentReplicas('r', 1), [2, 3, 1]);
  t.deepEqual(cluster.metadata.segmentReplicas('r', 2), [3, 1, 2], 'moved, then repaired onto node 3');
  t.is(cluster.metadata.segmentLeader('r', 2), 1);
});

test('a silent voter whose port refuses connections fails over before the timeout, and only while it stays silent', async (t) => {
  const cluster = new FakeCluster();
  cluster.run({ kind: 'CreateTopic', topic: 'f', initialLeader: 1, replicas: [1, 2, 3] });
  cluster.held.set(2, new Map([['f/1', 6]]));
  cluster.held.set(3, new Map([['f/1', 6]]));
  let now = 0;
  const clock = { ...REAL_CLOCK, now: () => now };
  const probes: number[] = [];
  let refusing = true;
  const target: FailoverTarget = {
    ...cluster.target(),
    refused: async (id) => {
      probes.push(id);
      return refusing;
    },
  };
  const monitor = new FailoverMonitor({ nodeId: 3, timeoutMs: 1_000, replicationFactor: 3, target, log: cluster.log(), clock });
  cluster.silence.set(1, 150);
  await monitor.tick();
  t.deepEqual(probes, [], 'not probed before probeAfterMs (200 ms of silence by default)');
  // Silent 250 ms, heard again before the answer counts: the refusal is no evidence any more.
  cluster.silence.set(1, 250);
  await monitor.tick();
  t.deepEqual(probes, [1]);
  await Promise.resolve();
  now = 100;
  cluster.silence.set(1, 20);
  await monitor.tick();
  t.deepEqual(cluster.proposed, [], 'heard from after the refusal: not down');
  // Silent again; the probe answers (a frozen or slow process accepts connections): no failover.
  refusing = false;
  now = 400;
  cluster.silence.set(1, 300);
  await monitor.tick();
  await new Promise((resolve) => setImmediate(resolve));
  now = 450;
  cluster.silence.set(1, 350);
  await monitor.tick();
  t.deepEqual(cluster.proposed, [], 'an accepted connection is no evidence');
  t.is(probes.length, 2, 'probed at most every 200 ms');
  // Refused, and still silent at the next check: sealed at once, long before timeoutMs.
  refusing = true;
  now = 700;
  cluster.silence.set(1, 600);
  await monitor.tick();
  await new Promise((resolve) => setImmediate(resolve));
  now = 750;
  cluster.silence.set(1, 650);
  await monitor.tick();
  t.is(probes.length, 3);
  t.deepEqual(cluster.proposed, [
    { kind: 'RolloverTopic', topic: 'f', expectedSegment: 1, sealedCount: 6, newLeader: 2, sealedOwner: 2, replicas: [2, 3] },
  ]);
});
