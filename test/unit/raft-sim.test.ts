// The randomized simulator, run in-process over fixed seed ranges: every seed must finish with no
// safety violation and with the healed cluster still making progress. The last tests feed the
// checker deliberately broken histories, so a checker that silently passes everything fails here.

import test from 'ava';
import type { Entry, Message } from '../../src/plugins/raft/core/types.js';
import { DEFAULT_STEPS, simulate } from '../../src/plugins/raft/sim/simulator.js';
import { NodeStorage } from '../../src/plugins/raft/sim/storage.js';
import { bytes, SafetyChecker } from '../helpers/raft-cluster.js';

function runSeeds(nodes: number, count: number) {
  const failures: string[] = [];
  let notLive = 0;
  let committed = 0;
  for (let seed = 1; seed <= count; seed++) {
    const result = simulate({ seed, nodes, steps: DEFAULT_STEPS });
    committed += result.committed;
    if (!result.live) notLive++;
    const first = result.violations[0];
    if (first !== undefined) failures.push(`seed ${seed}: ${first.kind} at tick ${first.tick}: ${first.detail}`);
  }
  return { failures, notLive, committed };
}

test('simulator: 100 seeds of 3 nodes, no violations, always live after healing', (t) => {
  const { failures, notLive, committed } = runSeeds(3, 100);
  t.deepEqual(failures, []);
  t.is(notLive, 0);
  // The runs must actually commit things, or "no violations" would mean little.
  t.true(committed > 100 * 10, `only ${committed} entries committed over 100 seeds`);
});

test('simulator: 30 seeds of 5 nodes, no violations, always live after healing', (t) => {
  const { failures, notLive, committed } = runSeeds(5, 30);
  t.deepEqual(failures, []);
  t.is(notLive, 0);
  t.true(committed > 30 * 10, `only ${committed} entries committed over 30 seeds`);
});

test('simulator: the same seed replays to the same result', (t) => {
  const a = simulate({ seed: 42, nodes: 5, steps: 200 });
  const b = simulate({ seed: 42, nodes: 5, steps: 200 });
  t.deepEqual(
    { ticks: a.ticks, proposals: a.proposals, committed: a.committed },
    { ticks: b.ticks, proposals: b.proposals, committed: b.committed },
  );
});

// ---- the checks catch broken histories ----

function command(index: number, term: number, text: string): Entry {
  return { index, term, kind: 'command', data: bytes(text) };
}

test('checks: two nodes applying different commands at one index is a state-machine safety violation', (t) => {
  const checker = new SafetyChecker(2);
  checker.applied(1, command(1, 1, 'x'), 1);
  checker.applied(2, command(1, 1, 'x'), 1);
  t.true(checker.ok);
  checker.applied(3, command(1, 1, 'y'), 2);
  t.false(checker.ok);
  t.is(checker.violations[0]?.kind, 'state-machine-safety');
});

test('checks: two leaders of one term is an election safety violation', (t) => {
  const checker = new SafetyChecker(2);
  const storage = new NodeStorage();
  storage.hardState = { term: 3, vote: 1, commit: 0 };
  const heartbeat = (from: number): Message => ({
    type: 'append',
    from,
    to: 3,
    term: 3,
    prevIndex: 0,
    prevTerm: 0,
    entries: [],
    commit: 0,
    readId: 0,
  });
  checker.sent(heartbeat(1), storage, 1);
  t.true(checker.ok);
  checker.sent(heartbeat(2), storage, 2);
  t.deepEqual(
    checker.violations.map((v) => v.kind),
    ['election-safety'],
  );
});

test('checks: a vote sent before the vote is persisted is a durability violation', (t) => {
  const checker = new SafetyChecker(2);
  const storage = new NodeStorage();
  storage.hardState = { term: 4, vote: 0, commit: 0 };
  checker.sent({ type: 'voteReply', from: 2, to: 1, term: 4, granted: true }, storage, 1);
  t.deepEqual(
    checker.violations.map((v) => v.kind),
    ['durability'],
  );
});

test('checks: logs that agree on an entry but not on what precedes it break log matching', (t) => {
  const a = new NodeStorage();
  const b = new NodeStorage();
  a.entries = [command(1, 1, 'p'), command(2, 2, 'q')];
  b.entries = [command(1, 1, 'other'), command(2, 2, 'q')];
  const checker = new SafetyChecker(2);
  const view = (id: number) => ({ id, up: false, status: undefined, persisted: id === 1 ? a : b, applied: new Map() });
  checker.checkAll({ ids: [1, 2], node: view }, 1);
  t.is(checker.violations[0]?.kind, 'log-matching');
});

test('checks: a committed entry left on fewer than a quorum of persisted logs is reported lost', (t) => {
  const logs = [new NodeStorage(), new NodeStorage(), new NodeStorage()];
  for (const log of logs) log.entries = [command(1, 1, 'kept')];
  const checker = new SafetyChecker(2);
  const view = (id: number) => ({ id, up: false, status: undefined, persisted: logs[id - 1] as NodeStorage, applied: new Map() });
  const cluster = { ids: [1, 2, 3], node: view };
  checker.applied(1, command(1, 1, 'kept'), 1);
  checker.check(cluster, 1);
  t.true(checker.ok);
  // Two of the three logs overwrite it, as a (buggy) follower would on a conflicting append.
  const overwrite = command(1, 2, 'overwritten');
  const ready = { hardState: undefined, snapshot: undefined, entries: [overwrite], messages: [], committed: [], reads: [] };
  for (const [offset, log] of logs.slice(1).entries()) {
    log.persist(ready);
    checker.persisted(offset + 2, ready, 1, log, 2);
  }
  checker.check(cluster, 2);
  t.true(checker.violations.some((v) => v.kind === 'committed-lost'));
});
