// Scenario tests for the Raft core, in the spirit of the classic Raft lab suites: elections,
// agreement, persistence, the Figure 8 hazard, churn and pre-vote. Every scenario runs on the
// deterministic in-memory cluster with all safety properties checked at the end of every tick,
// and asserts what a user of the cluster would see: who leads, what commits, what survives.

import test, { type ExecutionContext } from 'ava';
import type { NodeId } from '../../src/plugins/raft/core/types.js';
import { appliedTexts, bytes, type CheckedCluster, type Cluster, checkedCluster, Rng, TIMING, text } from '../helpers/raft-cluster.js';

/** Generous bound for an election: several election timeouts, as pre-vote rounds may fail first. */
const ELECTION_BOUND = 10 * TIMING.electionTicksMax;

// These helpers throw rather than call t.fail: the scenario cannot go on without what they return.

function electLeader(cluster: Cluster, among: readonly NodeId[] = cluster.ids): NodeId {
  cluster.runUntil(() => cluster.leader(among) !== undefined, ELECTION_BOUND);
  const leader = cluster.leader(among);
  if (leader === undefined) throw new Error(`no leader among ${among.join(',')} after ${ELECTION_BOUND} ticks (tick ${cluster.now})`);
  return leader;
}

/** Proposes `command` (retrying across leader changes) until `count` nodes applied it; returns its index. */
function one(cluster: Cluster, command: string, count: number): number {
  const index = cluster.replicate(bytes(command), count);
  if (index === undefined) throw new Error(`"${command}" did not commit on ${count} nodes (tick ${cluster.now})`);
  return index;
}

function others(cluster: Cluster, ...ids: NodeId[]): NodeId[] {
  return cluster.ids.filter((id) => !ids.includes(id));
}

function assertSafe(t: ExecutionContext, run: CheckedCluster): void {
  t.deepEqual(run.violations(), []);
}

/** Every node applied the same commands in the same order (and at least `expected`, in order, among them). */
function assertAgree(t: ExecutionContext, cluster: Cluster, expected: readonly string[] = []): void {
  const reference = appliedTexts(cluster, cluster.ids[0] as NodeId);
  for (const id of cluster.ids) t.deepEqual(appliedTexts(cluster, id), reference, `node ${id}'s state machine`);
  const positions = expected.map((command) => reference.indexOf(command));
  t.true(
    positions.every((at, i) => at >= 0 && (i === 0 || at > (positions[i - 1] ?? -1))),
    `expected ${expected.join(', ')} in order`,
  );
}

// ---- elections ----

test('initial election: one leader, all terms agree, and it stays put while nothing fails', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 1 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  cluster.tick(10);
  t.is(cluster.leaders().length, 1);
  const term = cluster.status(leader)?.term;
  t.deepEqual(cluster.terms(), [term, term, term]);
  cluster.tick(200);
  t.is(cluster.leader(), leader);
  t.deepEqual(cluster.terms(), [term, term, term]);
  assertSafe(t, run);
});

test('re-election: a new leader when the leader is cut off, and one leader again after it returns', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 2 });
  const { cluster } = run;
  const first = electLeader(cluster);
  cluster.isolate(first);
  const second = electLeader(cluster, others(cluster, first));
  t.not(second, first);

  // The old leader rejoins: it must step down rather than split the cluster.
  cluster.reconnect(first);
  cluster.tick(50);
  t.is(cluster.leaders().length, 1);
  t.is(cluster.leader(), second);

  // Without a quorum, the lone connected node must not become leader.
  const third = others(cluster, second)[0] as NodeId;
  cluster.isolate(second);
  cluster.isolate(third);
  const lone = others(cluster, second, third);
  cluster.tick(ELECTION_BOUND);
  t.is(cluster.leader(lone), undefined);

  // A quorum again: a leader is elected among the connected pair.
  cluster.reconnect(third);
  electLeader(cluster, [...lone, third]);
  assertSafe(t, run);
});

test('no quorum, no leader: with 3 of 5 down the other 2 elect nobody, and elect once they return', (t) => {
  const run = checkedCluster({ nodes: 5, seed: 3 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  const down = [leader, ...others(cluster, leader).slice(0, 2)];
  for (const id of down) cluster.crash(id);
  cluster.tick(3 * ELECTION_BOUND);
  t.is(cluster.leader(), undefined);
  for (const id of down) cluster.restart(id);
  electLeader(cluster);
  assertSafe(t, run);
});

// ---- agreement ----

test('basic agreement: each command commits on every node, at increasing indexes', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 4 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  cluster.tick(5);
  let previous = 0;
  for (let i = 1; i <= 5; i++) {
    const next = (cluster.status(leader)?.lastIndex ?? 0) + 1;
    t.is(cluster.committedCount(next), 0, 'nothing committed ahead of the proposal');
    const index = one(cluster, `basic ${i}`, 3);
    t.is(index, next);
    t.true(index > previous);
    previous = index;
  }
  assertAgree(t, cluster, ['basic 1', 'basic 2', 'basic 3', 'basic 4', 'basic 5']);
  assertSafe(t, run);
});

test("agreement despite a follower's failure, and the follower catches up when it returns", (t) => {
  const run = checkedCluster({ nodes: 3, seed: 5 });
  const { cluster } = run;
  one(cluster, 'a', 3);
  const leader = electLeader(cluster);
  const follower = others(cluster, leader)[0] as NodeId;
  cluster.isolate(follower);
  one(cluster, 'b', 2);
  cluster.tick(ELECTION_BOUND);
  one(cluster, 'c', 2);
  cluster.reconnect(follower);
  one(cluster, 'd', 3);
  assertAgree(t, cluster, ['a', 'b', 'c', 'd']);
  assertSafe(t, run);
});

test('no agreement without a majority: nothing commits while 3 of 5 are down, then the index commits once they return', (t) => {
  const run = checkedCluster({ nodes: 5, seed: 6 });
  const { cluster } = run;
  one(cluster, 'before', 5);
  const leader = electLeader(cluster);
  const down = others(cluster, leader).slice(0, 3);
  for (const id of down) cluster.crash(id);
  const proposal = cluster.propose(leader, bytes('stalled'));
  if (proposal === undefined) return t.fail('the leader refused the proposal');
  cluster.tick(ELECTION_BOUND);
  t.is(cluster.committedCount(proposal.index), 0);
  for (const id of down) cluster.restart(id);
  t.true(cluster.waitCommitted(proposal.index, { count: 5, maxTicks: ELECTION_BOUND }));
  one(cluster, 'after', 5);
  // Check-quorum deposed the lonely leader, so a returning node may have won the next election
  // and replaced the stalled command: it commits at its index or not at all, never twice.
  assertAgree(t, cluster, ['before', 'after']);
  const stalled = cluster.applied(leader).get(proposal.index);
  const kept = stalled !== undefined && text(stalled.data) === 'stalled';
  t.is(appliedTexts(cluster, leader).filter((command) => command === 'stalled').length, kept ? 1 : 0);
  assertSafe(t, run);
});

test('concurrent proposals: 50 at once all commit exactly once, in one order everywhere', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 7 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  cluster.tick(5);
  const indexes: number[] = [];
  for (let i = 0; i < 50; i++) {
    const proposal = cluster.propose(leader, bytes(`concurrent ${i}`));
    if (proposal !== undefined) indexes.push(proposal.index);
  }
  t.is(indexes.length, 50);
  t.is(new Set(indexes).size, 50);
  t.true(cluster.waitCommitted(Math.max(...indexes), { count: 3 }));
  const applied = appliedTexts(cluster, leader);
  t.deepEqual(
    applied.filter((command) => command.startsWith('concurrent')),
    Array.from({ length: 50 }, (_, i) => `concurrent ${i}`),
  );
  assertAgree(t, cluster);
  assertSafe(t, run);
});

test('a rejoining old leader: its uncommitted entries are replaced and never applied', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 8 });
  const { cluster } = run;
  one(cluster, '101', 3);
  const first = electLeader(cluster);
  cluster.isolate(first);
  for (const command of ['stale 102', 'stale 103', 'stale 104']) cluster.propose(first, bytes(command));
  const second = electLeader(cluster, others(cluster, first));
  one(cluster, '103', 2);

  // The new leader is cut off; the old one returns to a follower that has moved on without it.
  cluster.isolate(second);
  cluster.reconnect(first);
  one(cluster, '104', 2);
  cluster.reconnect(second);
  one(cluster, '105', 3);

  assertAgree(t, cluster, ['101', '103', '104', '105']);
  for (const id of cluster.ids) t.false(appliedTexts(cluster, id).some((command) => command.startsWith('stale')));
  assertSafe(t, run);
});

test('fast backup: a long divergent log is repaired in a few append messages, not one per entry', (t) => {
  const run = checkedCluster({ nodes: 5, seed: 9 });
  const { cluster } = run;
  one(cluster, 'base', 5);
  const oldLeader = electLeader(cluster);
  const partner = others(cluster, oldLeader)[0] as NodeId;
  const majority = others(cluster, oldLeader, partner);
  cluster.partition([oldLeader, partner], majority);

  const divergent = 60;
  for (let i = 0; i < divergent; i++) cluster.propose(oldLeader, bytes(`doomed ${i}`));
  cluster.tick(5);
  const first = electLeader(cluster, majority);
  for (let i = 0; i < divergent; i++) one(cluster, `kept ${i}`, 3);
  const lastKept = cluster.status(first)?.commit ?? 0;

  // A leader elected now starts out assuming every follower's log ends where its own does, so it
  // has to find the divergence from the far end: one probe per entry without fast back-off.
  cluster.crash(first);
  cluster.counters.reset();
  cluster.heal();
  const second = electLeader(cluster, others(cluster, first, oldLeader, partner));
  t.true(cluster.waitCommitted(lastKept, { count: 4, maxTicks: ELECTION_BOUND }));
  for (const id of [oldLeader, partner]) {
    const appends = cluster.counters.sent('append', id);
    t.true(appends <= 10, `node ${id} needed ${appends} append messages to repair ${divergent} divergent entries`);
  }
  t.is(cluster.leader(), second);
  cluster.restart(first);
  one(cluster, 'after', 5);
  assertAgree(t, cluster, ['base', 'kept 0', `kept ${divergent - 1}`, 'after']);
  for (const id of cluster.ids) t.false(appliedTexts(cluster, id).some((command) => command.startsWith('doomed')));
  assertSafe(t, run);
});

test('RPC counts stay bounded: an idle cluster sends one heartbeat per follower per heartbeat interval', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 10 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  cluster.tick(20);
  cluster.counters.reset();
  const ticks = 400;
  cluster.tick(ticks);
  const expected = ticks / TIMING.heartbeatTicks;
  for (const follower of others(cluster, leader)) {
    const heartbeats = cluster.counters.sent('append', follower);
    t.true(heartbeats >= expected * 0.9 && heartbeats <= expected * 1.1 + 2, `follower ${follower} got ${heartbeats} heartbeats`);
  }
  t.is(cluster.counters.sent('preVote') + cluster.counters.sent('vote'), 0, 'no elections while the leader is healthy');
  t.is(cluster.leader(), leader);

  // Agreement costs a bounded number of messages too: a few per command, not a storm. Each
  // command is one append and its reply per follower, then one more of each that carries the new
  // commit index at once; heartbeats (and their replies) go on meanwhile.
  cluster.counters.reset();
  const start = cluster.now;
  for (let i = 0; i < 10; i++) one(cluster, `counted ${i}`, 3);
  const rounds = (cluster.now - start) / TIMING.heartbeatTicks + 10;
  const perCommand = 2 * 2 * 2;
  t.true(cluster.counters.total() <= 10 * perCommand + rounds * 2 * 2 + 10, `${cluster.counters.total()} messages for 10 commands`);
  assertSafe(t, run);
});

// ---- persistence ----

test('persistence: committed entries survive a leader crash, a follower crash, and a crash of all', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 11 });
  const { cluster } = run;
  one(cluster, 'p1', 3);

  const leader = electLeader(cluster);
  cluster.crash(leader);
  one(cluster, 'p2', 2);
  cluster.restart(leader);
  one(cluster, 'p3', 3);

  const follower = others(cluster, electLeader(cluster))[0] as NodeId;
  cluster.crash(follower);
  one(cluster, 'p4', 2);
  cluster.restart(follower);
  one(cluster, 'p5', 3);

  for (const id of cluster.ids) cluster.crash(id);
  for (const id of cluster.ids) cluster.restart(id);
  one(cluster, 'p6', 3);
  assertAgree(t, cluster, ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
  assertSafe(t, run);
});

test('persistence: a node that crashes repeatedly mid-replication rebuilds the same state machine', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 12 });
  const { cluster } = run;
  const rng = new Rng(12);
  const expected: string[] = [];
  for (let i = 0; i < 20; i++) {
    const victim = rng.pick(cluster.ids);
    cluster.propose('leader', bytes(`crashy ${i}`));
    cluster.tick(rng.between(0, 3));
    cluster.crash(victim);
    cluster.tick(rng.between(0, 3));
    cluster.restart(victim);
    one(cluster, `steady ${i}`, 3);
    expected.push(`steady ${i}`);
  }
  assertAgree(t, cluster, expected);
  assertSafe(t, run);
});

// ---- Figure 8 ----

for (const seed of [13, 113, 213]) {
  test(`Figure 8 (seed ${seed}): repeated leader crashes with partial replication never lose a committed entry`, (t) => {
    const run = checkedCluster({ nodes: 5, seed });
    const { cluster } = run;
    const rng = new Rng(seed);
    one(cluster, 'fig8 start', 1);
    let up = cluster.ids.length;
    for (let iteration = 0; iteration < 600; iteration++) {
      let leader: NodeId | undefined;
      for (const id of cluster.upNodes()) {
        if (cluster.propose(id, bytes(`fig8 ${iteration} at ${id}`)) !== undefined) leader = id;
      }
      // Mostly a short pause (partial replication), sometimes long enough for an election.
      cluster.tick(rng.chance(0.1) ? rng.between(0, 2 * TIMING.electionTicksMax) : rng.between(0, 2));
      if (leader !== undefined) {
        cluster.crash(leader);
        up--;
      }
      if (up < 3) {
        const candidate = rng.pick(cluster.ids);
        if (!cluster.isUp(candidate)) {
          cluster.restart(candidate);
          up++;
        }
      }
    }
    for (const id of cluster.downNodes()) cluster.restart(id);
    one(cluster, 'fig8 end', 5);
    assertAgree(t, cluster, ['fig8 start', 'fig8 end']);
    assertSafe(t, run);
  });
}

for (const seed of [14, 114, 214]) {
  test(`Figure 8 on an unreliable network (seed ${seed}): loss and long reordering, and still nothing committed is lost`, (t) => {
    const run = checkedCluster({ nodes: 5, seed, network: { loss: 0.1, delayMin: 0, delayMax: 1 } });
    const { cluster } = run;
    const rng = new Rng(seed);
    one(cluster, 'unreliable start', 1);
    const disconnected = new Set<NodeId>();
    for (let iteration = 0; iteration < 600; iteration++) {
      if (iteration === 150) cluster.network.options = { ...cluster.network.options, reorder: 0.6, reorderTicks: 60 };
      let leader: NodeId | undefined;
      for (const id of cluster.ids) {
        const accepted = cluster.propose(id, bytes(`unreliable ${iteration} at ${id}`)) !== undefined;
        if (accepted && !disconnected.has(id)) leader = id;
      }
      cluster.tick(rng.chance(0.1) ? rng.between(0, 2 * TIMING.electionTicksMax) : rng.between(0, 2));
      if (leader !== undefined && rng.chance(0.5)) {
        cluster.isolate(leader);
        disconnected.add(leader);
      }
      if (cluster.ids.length - disconnected.size < 3) {
        const candidate = rng.pick(cluster.ids);
        if (disconnected.delete(candidate)) cluster.reconnect(candidate);
      }
    }
    cluster.heal();
    cluster.network.options = { ...cluster.network.options, reorder: 0 };
    one(cluster, 'unreliable end', 5);
    assertAgree(t, cluster, ['unreliable start', 'unreliable end']);
    assertSafe(t, run);
  });
}

// ---- churn ----

for (const [name, network, seed] of [
  ['reliable', {}, 15],
  ['reliable', {}, 115],
  ['unreliable', { loss: 0.1, duplicate: 0.05, reorder: 0.2, reorderTicks: 6, delayMin: 0, delayMax: 2 }, 16],
  ['unreliable', { loss: 0.1, duplicate: 0.05, reorder: 0.2, reorderTicks: 6, delayMin: 0, delayMax: 2 }, 116],
] as const) {
  test(`churn (${name} network, seed ${seed}): random crashes, restarts and partitions while proposing; all nodes agree after`, (t) => {
    const run = checkedCluster({ nodes: 5, seed, network });
    const { cluster } = run;
    const rng = new Rng(seed);
    for (let round = 0; round < 300; round++) {
      const roll = rng.next();
      const id = rng.pick(cluster.ids);
      if (roll < 0.1) cluster.crash(id);
      else if (roll < 0.25) cluster.restart(id);
      else if (roll < 0.32) cluster.isolate(id);
      else if (roll < 0.45) cluster.reconnect(id);
      for (let i = rng.between(0, 3); i > 0; i--) cluster.propose(rng.pick(cluster.ids), bytes(`churn ${round}.${i}`));
      cluster.tick(rng.between(1, 5));
    }
    cluster.heal();
    cluster.network.options = { ...cluster.network.options, loss: 0, duplicate: 0 };
    for (const id of cluster.downNodes()) cluster.restart(id);
    one(cluster, 'after churn', 5);
    assertAgree(t, cluster, ['after churn']);
    assertSafe(t, run);
  });
}

// ---- pre-vote ----

test('pre-vote: a node cut off for a long time does not raise its term, and does not disrupt the leader when it returns', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 17 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  one(cluster, 'before', 3);
  const term = cluster.status(leader)?.term;
  const loner = others(cluster, leader)[0] as NodeId;
  cluster.isolate(loner);
  cluster.tick(20 * TIMING.electionTicksMax);
  t.is(cluster.status(loner)?.term, term, 'the isolated node kept its term');

  cluster.reconnect(loner);
  cluster.counters.reset();
  cluster.tick(10 * TIMING.electionTicksMax);
  t.is(cluster.leader(), leader);
  t.is(cluster.status(leader)?.term, term);
  t.deepEqual(cluster.terms(), [term, term, term]);
  t.is(cluster.counters.sent('vote'), 0, 'no real election after it returned');
  one(cluster, 'after', 3);
  assertAgree(t, cluster, ['before', 'after']);
  assertSafe(t, run);
});

test('snapshots, basic: every node compacts its log, and restarts rebuild the same state from snapshot and log', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 41 });
  const { cluster } = run;
  for (let index = 0; index < 30; index++) one(cluster, `s${index}`, 3);
  for (const id of cluster.ids) t.true(cluster.compact(id), `node ${id} compacts`);
  for (let index = 30; index < 40; index++) one(cluster, `s${index}`, 3);
  for (const id of cluster.ids) {
    t.true((cluster.persisted(id).snapshot?.index ?? 0) > 0, `node ${id} holds a snapshot`);
    t.true((cluster.status(id)?.firstIndex ?? 0) > 1, `node ${id} dropped the log before it`);
  }
  for (const id of cluster.ids) cluster.crash(id);
  for (const id of cluster.ids) cluster.restart(id);
  electLeader(cluster);
  one(cluster, 'after', 3);
  assertAgree(t, cluster, [...Array.from({ length: 40 }, (_, index) => `s${index}`), 'after']);
  assertSafe(t, run);
});

test('snapshots, install on a lagging follower: a follower behind the leader’s compacted log gets the snapshot and catches up', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 42 });
  const { cluster } = run;
  one(cluster, 'a', 3);
  const leader = electLeader(cluster);
  const lagging = others(cluster, leader)[0] as NodeId;
  cluster.isolate(lagging);
  for (let index = 0; index < 30; index++) one(cluster, `b${index}`, 2);
  // The two that are up compact past everything the lagging one has.
  for (const id of others(cluster, lagging)) t.true(cluster.compact(id));
  cluster.counters.reset();
  cluster.reconnect(lagging);
  one(cluster, 'c', 3);
  t.true(cluster.counters.sent('installSnapshot', lagging) >= 1, 'the leader sent it the snapshot');
  assertAgree(t, cluster, ['a', ...Array.from({ length: 30 }, (_, index) => `b${index}`), 'c']);
  assertSafe(t, run);
});

test('snapshots, crash during install: a follower that crashes right after receiving a snapshot recovers from what it persisted', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 43 });
  const { cluster } = run;
  one(cluster, 'a', 3);
  const leader = electLeader(cluster);
  const lagging = others(cluster, leader)[0] as NodeId;
  cluster.isolate(lagging);
  for (let index = 0; index < 20; index++) one(cluster, `b${index}`, 2);
  for (const id of others(cluster, lagging)) cluster.compact(id);
  cluster.reconnect(lagging);
  // Crash the lagging follower as soon as it has a snapshot on disk, before it does anything else.
  const installed = cluster.runUntil(() => (cluster.persisted(lagging).snapshot?.index ?? 0) > 0, ELECTION_BOUND);
  t.true(installed, 'the snapshot reached the follower');
  cluster.crash(lagging);
  cluster.tick(TIMING.electionTicksMax);
  cluster.restart(lagging);
  one(cluster, 'c', 3);
  assertAgree(t, cluster, ['a', ...Array.from({ length: 20 }, (_, index) => `b${index}`), 'c']);
  assertSafe(t, run);
});

test('quorum contact: fresh on a connected leader and followers; grows on a cut-off leader until it steps down', (t) => {
  const run = checkedCluster({ nodes: 3, seed: 7 });
  const { cluster } = run;
  const leader = electLeader(cluster);
  cluster.tick(5 * TIMING.heartbeatTicks);
  // Connected: every member heard from a quorum within about one heartbeat round trip.
  for (const id of cluster.ids)
    t.true((cluster.quorumContactTicks(id) ?? Number.POSITIVE_INFINITY) <= 2 * TIMING.heartbeatTicks, `node ${id}`);

  cluster.isolate(leader);
  cluster.tick(TIMING.electionTicksMin - 1);
  // Still leader (check-quorum has not run out yet), but its contact is as old as the cut.
  t.is(cluster.status(leader)?.role, 'leader');
  t.true((cluster.quorumContactTicks(leader) ?? 0) >= TIMING.electionTicksMin - 1 - 2 * TIMING.heartbeatTicks);
  cluster.tick(2 * TIMING.electionTicksMax);
  t.not(cluster.status(leader)?.role, 'leader');
  t.is(cluster.quorumContactTicks(leader), Number.POSITIVE_INFINITY);
  assertSafe(t, run);
});

test('quorum contact: a group of one is its own quorum', (t) => {
  const run = checkedCluster({ nodes: 1, seed: 3 });
  const leader = electLeader(run.cluster);
  run.cluster.tick(100);
  t.is(run.cluster.quorumContactTicks(leader), 0);
});
