// Replicated segments, the pieces below the wiring (issue 14): the leader's SegmentReplicator
// sends appended entries to the followers in runs and commits what a majority holds; a follower's
// copy (SegmentStore.appendReplica) is a prefix of the leader's whatever is sent twice or
// skipped; a fenced follower takes nothing more, and the leader it answers stops with a
// retriable refusal for every PUT still waiting.

import { join } from 'node:path';
import test from 'ava';
import { Walrus } from '../../src/engine/walrus.js';
import { isWalrusError } from '../../src/kernel/errors.js';
import { type ReplicaAnswer, type ReplicaRun, SegmentReplicator } from '../../src/node/replicator.js';
import type { LeaseCheck } from '../../src/node/segment-store.js';
import { SegmentStore } from '../../src/node/segment-store.js';
import { silent, withTempDir } from '../helpers/kernel.js';

/** A follower in memory: holds what it was sent, in order; can be down, slow or fenced. */
class FakeFollower {
  readonly entries: string[] = [];
  down = false;
  fenced = false;
  /** Drop this many runs (as if they were lost in a restart) before taking any. */
  skip = 0;
  runs = 0;
  /** Its GET position (as far as it holds entries). */
  consumed = 0;
  emptyRuns = 0;

  async take(run: ReplicaRun): Promise<ReplicaAnswer> {
    await new Promise((resolve) => setImmediate(resolve));
    if (this.down) throw new Error('unreachable');
    this.runs += 1;
    if (this.fenced) return { fenced: true };
    if (this.skip > 0) {
      this.skip -= 1;
      return { held: this.entries.length };
    }
    if (run.offset <= this.entries.length) {
      const fresh = run.payloads.slice(this.entries.length - run.offset).map((payload) => Buffer.from(payload).toString());
      this.entries.push(...fresh);
    }
    if (run.payloads.length === 0) this.emptyRuns += 1;
    this.consumed = Math.max(this.consumed, Math.min(run.consumed, this.entries.length));
    return { held: this.entries.length };
  }
}

function replicated(
  followers: Record<number, FakeFollower>,
  options: { retryMs?: number; runEntriesMax?: number; extraDelayMs?: number } = {},
) {
  const log: string[] = [];
  const commits: number[] = [];
  const replicator = new SegmentReplicator({
    topic: 't',
    segment: 1,
    epoch: 1,
    followers: Object.keys(followers).map(Number),
    transport: { send: (id, run) => (followers[id] as FakeFollower).take(run) },
    read: (offset) => (offset < log.length ? Buffer.from(log[offset] as string) : null),
    onCommit: (commit) => commits.push(commit),
    ...options,
  });
  /** A PUT on the leader: appended locally, then acknowledged once committed. */
  const put = (payload: string): Promise<void> => {
    log.push(payload);
    replicator.appended(log.length);
    return replicator.committed(log.length);
  };
  return { replicator, put, log, commits };
}

const until = async (condition: () => boolean, ms = 2000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

test('three replicas: a PUT is acknowledged once two hold it, and both followers end with the whole log in order', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  const { replicator, put, log } = replicated(followers, { runEntriesMax: 8 });
  await Promise.all(Array.from({ length: 100 }, (_, index) => put(`e${index}`)));
  t.true(replicator.commit >= 100);
  await until(() => followers[2].entries.length === 100 && followers[3].entries.length === 100);
  t.deepEqual(followers[2].entries, log);
  t.deepEqual(followers[3].entries, log);
  t.true(followers[2].runs < 100, `${followers[2].runs} runs for 100 entries`);
});

test('the extra follower (a commit needs one of two) gets fewer, larger runs: four runs long, or after extraDelayMs', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  const { put, log } = replicated(followers, { runEntriesMax: 8, extraDelayMs: 1_000 });
  // One PUT at a time, each waiting for its commit: follower 2 (first in the set, as advanced as 3)
  // takes a run per PUT; follower 3 only once 32 entries wait for it.
  for (let index = 0; index < 40; index++) await put(`e${index}`);
  t.is(followers[2].runs, 40);
  t.is(followers[3].runs, 1);
  t.deepEqual(followers[3].entries, log.slice(0, 32));
  // The rest goes after extraDelayMs, with nothing more appended.
  await until(() => followers[3].entries.length === 40);
  t.is(followers[3].runs, 2);
  // With follower 2 down, follower 3 is the one the commit needs: it is sent at once.
  followers[2].down = true;
  await put('after');
  t.is(followers[3].entries.at(-1), 'after');
});

test('entries the leader hands over with their append are sent without reading its copy back, and are read once for all followers otherwise', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  const log: string[] = [];
  const reads: number[] = [];
  const replicator = new SegmentReplicator({
    topic: 't',
    segment: 1,
    epoch: 1,
    followers: [2, 3],
    extraDelayMs: 0,
    transport: { send: (id, run) => (followers[id as 2 | 3] as FakeFollower).take(run) },
    read: (offset) => {
      reads.push(offset);
      return offset < log.length ? Buffer.from(log[offset] as string) : null;
    },
  });
  for (let index = 0; index < 10; index++) {
    log.push(`e${index}`);
    // Every other entry comes with its bytes.
    replicator.appended(log.length, index % 2 === 0 ? Buffer.from(log[index] as string) : undefined);
  }
  await replicator.committed(10);
  await until(() => followers[2].entries.length === 10 && followers[3].entries.length === 10);
  t.deepEqual(followers[2].entries, log);
  t.deepEqual(followers[3].entries, log);
  // Entry 0 came with its bytes; entry 1 did not, so the cache stops there and 1-9 are read, once each.
  t.deepEqual(reads, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('while a follower is down the leader keeps at most 8 MiB of handed-over entries; the rest are read back for it', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  followers[3].down = true;
  const log: string[] = [];
  const reads: number[] = [];
  const replicator = new SegmentReplicator({
    topic: 't',
    segment: 1,
    epoch: 1,
    followers: [2, 3],
    extraDelayMs: 0,
    retryMs: 10,
    transport: { send: (id, run) => (followers[id as 2 | 3] as FakeFollower).take(run) },
    read: (offset) => {
      reads.push(offset);
      return offset < log.length ? Buffer.from(log[offset] as string) : null;
    },
  });
  const mib = 1024 * 1024;
  for (let index = 0; index < 12; index++) {
    log.push(String.fromCharCode(97 + index).repeat(mib));
    replicator.appended(log.length, Buffer.from(log[index] as string));
  }
  await replicator.committed(12);
  followers[3].down = false;
  await until(() => followers[3].entries.length === 12);
  t.true(followers[2].entries.every((entry, index) => entry === log[index]) && followers[2].entries.length === 12);
  t.true(followers[3].entries.every((entry, index) => entry === log[index]));
  // The first 8 MiB (entries 0-7) were kept for the follower that was down; 8-11 were read back, for each follower.
  t.true(reads.length > 0 && reads.every((offset) => offset >= 8), `read back: ${reads.join(', ')}`);
  t.deepEqual(
    [...new Set(reads)].sort((a, b) => a - b),
    [8, 9, 10, 11],
  );
});

test('one follower down: PUTs still commit with the other; it catches up from where it was once back', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  const { put, log, replicator } = replicated(followers, { retryMs: 10 });
  await put('a');
  await until(() => followers[3].entries.length === 1);
  followers[3].down = true;
  for (const word of ['b', 'c', 'd']) await put(word);
  t.deepEqual(followers[2].entries, log);
  t.deepEqual(followers[3].entries, ['a']);
  followers[3].down = false;
  await until(() => followers[3].entries.length === 4);
  t.deepEqual(followers[3].entries, log);
  t.deepEqual(
    [...replicator.held()],
    [
      [2, 4],
      [3, 4],
    ],
  );
});

test('no majority: a PUT is not acknowledged while both followers are down, and is once one comes back', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  followers[2].down = true;
  followers[3].down = true;
  const { put, replicator } = replicated(followers, { retryMs: 10 });
  let acknowledged = false;
  const pending = put('lonely').then(() => {
    acknowledged = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.false(acknowledged, 'the leader alone is not a majority of three');
  t.is(replicator.commit, 0);
  followers[2].down = false;
  // The replicator's retry timer does not keep a process alive (a node's sockets do); this stands in.
  const alive = setInterval(() => undefined, 1000);
  await pending.finally(() => clearInterval(alive));
  t.is(replicator.commit, 1);
  replicator.stop(new Error('test over'));
});

test('a follower that lost entries (it holds less than was sent) is sent them again: its copy stays a prefix', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  followers[3].skip = 2;
  const { put, log } = replicated(followers, { runEntriesMax: 1 });
  await Promise.all(['a', 'b', 'c', 'd', 'e'].map((word) => put(word)));
  await until(() => followers[3].entries.length === 5);
  t.deepEqual(followers[3].entries, log);
});

test('a fenced follower: the leader stops, and every PUT waiting for a commit fails with a retriable NotLeaderForPartition', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  followers[2].down = true;
  followers[3].fenced = true;
  const { put, replicator } = replicated(followers, { retryMs: 10 });
  const failure = await put('too late').then(
    () => undefined,
    (error: unknown) => error,
  );
  t.true(isWalrusError(failure) && failure.code === 'NOT_LEADER_FOR_PARTITION' && failure.retriable, String(failure));
  t.regex((failure as Error).message, /NotLeaderForPartition: t_t_s_1/);
  t.is(replicator.commit, 0, 'nothing was committed after the fence');
  await t.throwsAsync(put('after'), { message: /NotLeaderForPartition/ });
});

test('a single replica (factor 1) commits what the leader holds, with no follower', async (t) => {
  const { put, replicator } = replicated({});
  await put('only');
  t.is(replicator.commit, 1);
});

/** A follower's store: replica appends need no lease. */
async function withFollowerStore(body: (store: SegmentStore) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const wal = await Walrus.open({ dataDir: dir, logger: silent(), fsync: 'each' });
    const noLeases: LeaseCheck = {
      check: () => {
        throw new Error('a follower holds no lease');
      },
      stillValid: () => false,
      surrender: () => undefined,
    };
    const store = new SegmentStore({ wal, leases: noLeases, maxEntries: 1000 });
    try {
      await body(store);
    } finally {
      await store.close();
    }
  });
}

test("a follower's copy: runs appended at their offsets, a run sent twice or overlapping writes nothing twice, a run past the end writes nothing", async (t) => {
  await withFollowerStore(async (store) => {
    const bytes = (...words: string[]) => words.map((word) => Buffer.from(word));
    t.is(await store.appendReplica('t', 1, 0, bytes('a', 'b')), 2);
    t.is(await store.appendReplica('t', 1, 0, bytes('a', 'b')), 2, 'the same run again');
    t.is(await store.appendReplica('t', 1, 1, bytes('b', 'c', 'd')), 4, 'overlapping: only c and d are new');
    t.is(await store.appendReplica('t', 1, 6, bytes('g')), 4, 'past the end: the count says where to go on');
    const held = [0, 1, 2, 3, 4].map((offset) => store.read('t', 1, offset)?.toString() ?? null);
    t.deepEqual(held, ['a', 'b', 'c', 'd', null]);
  });
});

test('a fenced follower copy takes no more runs and says how many it holds', async (t) => {
  await withFollowerStore(async (store) => {
    await store.appendReplica('t', 2, 0, [Buffer.from('x')]);
    t.is(await store.fence('t', 2), 1);
    const refused = await store.appendReplica('t', 2, 1, [Buffer.from('y')]).catch((error: unknown) => error);
    t.true(isWalrusError(refused) && refused.code === 'NOT_LEADER_FOR_PARTITION', String(refused));
    t.is(store.count('t', 2), 1);
    // Other segments are not affected.
    t.is(await store.appendReplica('t', 3, 0, [Buffer.from('z')]), 1);
  });
});

test('a follower holding more than its leader (the leader lost acknowledged entries) stops the leader: no PUT is acknowledged on top of it', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  // Node 2 kept entries 0..4 of an earlier run of this leader, which came back with none of them.
  followers[2].entries.push('old-0', 'old-1', 'old-2', 'old-3', 'old-4');
  followers[3].down = true;
  const behind: string[] = [];
  const log: string[] = [];
  const replicator = new SegmentReplicator({
    topic: 't',
    segment: 1,
    epoch: 1,
    followers: [2, 3],
    transport: { send: (id, run) => (followers[id as 2 | 3] as FakeFollower).take(run) },
    read: (offset) => (offset < log.length ? Buffer.from(log[offset] as string) : null),
    retryMs: 10,
    onBehind: (follower, held, local) => behind.push(`${follower}: ${held} > ${local}`),
  });
  log.push('new-0');
  replicator.appended(1);
  const outcome = await replicator.committed(1).then(
    () => 'OK',
    (error: Error) => (isWalrusError(error) ? error.code : error.message),
  );
  t.is(outcome, 'NOT_LEADER_FOR_PARTITION', 'never OK on top of a longer copy');
  t.deepEqual(behind, ['2: 5 > 1']);
  t.is(replicator.commit, 0);
  t.deepEqual(followers[2].entries.slice(0, 1), ['old-0'], "the follower's entries are left as they were");
});

test('a fence is kept on disk: after a restart the copy still refuses its old leader; a sealed segment takes a catch-up only up to its seal', async (t) => {
  await withTempDir(async (dir) => {
    const fencesFile = join(dir, 'fences.json');
    const open = async () =>
      new SegmentStore({
        wal: await Walrus.open({ dataDir: join(dir, 'data'), logger: silent(), fsync: 'each' }),
        leases: { check: () => ({ key: '', epoch: 0 }), stillValid: () => false, surrender: () => undefined },
        maxEntries: 1000,
        fencesFile,
      });
    let store = await open();
    t.is(await store.appendReplica('t', 1, 0, [Buffer.from('a'), Buffer.from('b')]), 2);
    t.is(await store.fence('t', 1), 2);
    await store.close();
    store = await open();
    try {
      t.true(store.isFenced('t', 1));
      const refused = await store.appendReplica('t', 1, 2, [Buffer.from('c')]).catch((error: unknown) => error);
      t.true(isWalrusError(refused) && refused.code === 'NOT_LEADER_FOR_PARTITION', String(refused));
      // Once the seal (3 entries) is known, the replica serving the segment catches this copy up to
      // it, and not one entry further.
      t.is(await store.appendReplica('t', 1, 2, [Buffer.from('c'), Buffer.from('past-the-seal')], 0, 3), 3);
      t.deepEqual(
        [0, 1, 2, 3].map((offset) => store.read('t', 1, offset)?.toString() ?? null),
        ['a', 'b', 'c', null],
      );
    } finally {
      await store.close();
    }
  });
});

test('a PUT whose entry no majority confirms within waitMs fails with the timed-out error; later ones wait their own time', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  followers[2].down = true;
  followers[3].down = true;
  const log: string[] = [];
  const replicator = new SegmentReplicator({
    topic: 't',
    segment: 1,
    epoch: 1,
    followers: [2, 3],
    transport: { send: (id, run) => (followers[id as 2 | 3] as FakeFollower).take(run) },
    read: (offset) => (offset < log.length ? Buffer.from(log[offset] as string) : null),
    retryMs: 10,
    waitMs: 80,
    timedOut: (count) => new Error(`entry ${count - 1} timed out`),
  });
  log.push('a');
  replicator.appended(1);
  const started = performance.now();
  const alive = setInterval(() => undefined, 1000);
  const failure = await replicator
    .committed(1)
    .then(
      () => 'committed',
      (error: Error) => error.message,
    )
    .finally(() => clearInterval(alive));
  t.is(failure, 'entry 0 timed out');
  t.true(performance.now() - started >= 70, 'not before waitMs');
  followers[2].down = false;
  // Each wait is bounded by waitMs (80 ms); under load a retry to the follower can take longer
  // than that, so wait again on a timeout (at most 10 s in all) rather than fail the test.
  const keep = setInterval(() => undefined, 1000);
  const deadline = performance.now() + 10_000;
  let lastError = '';
  while (replicator.commit < 1 && performance.now() < deadline) {
    lastError = await replicator.committed(1).then(
      () => '',
      (error: Error) => error.message,
    );
  }
  clearInterval(keep);
  t.is(replicator.commit, 1, `the entry itself is committed once a follower answers (last wait: ${lastError || 'ok'})`);
  replicator.stop(new Error('test over'));
});

test('the GET position goes to the followers: with the entries, and alone (a run without entries) when only it moves', async (t) => {
  const followers = { 2: new FakeFollower(), 3: new FakeFollower() };
  const { put, replicator } = replicated(followers);
  for (const word of ['a', 'b', 'c', 'd']) await put(word);
  await until(() => replicator.caughtUp());
  replicator.consumedTo(3);
  t.false(replicator.caughtUp(), 'the move is not confirmed yet');
  await until(() => followers[2].consumed === 3 && followers[3].consumed === 3);
  t.true(followers[2].emptyRuns >= 1, 'sent without entries');
  await until(() => replicator.caughtUp());
  replicator.consumedTo(4);
  await until(() => followers[2].consumed === 4 && followers[3].consumed === 4);
});

test("a follower's copy moves its cursor to the leader's GET position, as far as it holds entries, and keeps it", async (t) => {
  await withFollowerStore(async (store) => {
    const bytes = (...words: string[]) => words.map((word) => Buffer.from(word));
    t.is(await store.appendReplica('t', 1, 0, bytes('a', 'b', 'c'), 2), 3);
    t.is(store.consumed('t', 1), 2);
    t.is(await store.appendReplica('t', 1, 3, [], 5), 3, 'a position past its entries moves it to its end only');
    t.is(store.consumed('t', 1), 3);
    t.is(await store.appendReplica('t', 1, 3, [], 1), 3);
    t.is(store.consumed('t', 1), 3, 'never back');
  });
});
