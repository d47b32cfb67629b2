// Lease fencing and the segment store: a node writes a segment only under a current lease, the
// lease check and the staging of an append being one step; appends of one tick are written (and
// synced) together; a full segment takes no more appends (nothing lands past the count a rollover
// will seal); counts survive a restart.

import test from 'ava';
import { Walrus } from '../../src/engine/walrus.js';
import { FencedError, type WalrusError } from '../../src/kernel/errors.js';
import { type LeaseSource, LeaseTable, segmentKey } from '../../src/node/leases.js';
import { SegmentStore } from '../../src/node/segment-store.js';
import { FaultyBackend } from '../helpers/faulty-backend.js';
import { silent, withTempDir } from '../helpers/kernel.js';

/** Metadata as lease fencing sees it: topic → (open segment, leader). */
class FakeMetadata implements LeaseSource {
  epoch = 1;
  readonly topics = new Map<string, { segment: number; leader: number }>();
  private readonly listeners = new Set<() => void>();

  set(topic: string, segment: number, leader: number): void {
    this.topics.set(topic, { segment, leader });
    this.epoch += 1;
    for (const listener of this.listeners) listener();
  }

  ownedOpenSegments(nodeId: number) {
    return [...this.topics].filter(([, open]) => open.leader === nodeId).map(([topic, open]) => ({ topic, segment: open.segment }));
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

test('a lease exists exactly for the open segments this node leads, and follows every metadata change', (t) => {
  const metadata = new FakeMetadata();
  metadata.set('a', 1, 1);
  metadata.set('b', 1, 2);
  const leases = new LeaseTable({ nodeId: 1, source: metadata });
  leases.start();
  try {
    t.is(segmentKey('a', 1), 't_a_s_1');
    t.deepEqual(leases.keys(), ['t_a_s_1']);
    const granted = leases.check('t_a_s_1');
    t.is(granted.epoch, 3);
    const other = t.throws(() => leases.check('t_b_s_1'));
    t.true(other instanceof FencedError);
    t.is((other as WalrusError).code, 'NOT_LEADER_FOR_PARTITION');
    t.is(other?.message, 'NotLeaderForPartition: t_b_s_1');
    t.true((other as WalrusError).retriable);
    // A rollover moves a's open segment to node 2 and b's to node 1: the table follows at once.
    metadata.set('a', 2, 2);
    metadata.set('b', 2, 1);
    t.deepEqual(leases.keys(), ['t_b_s_2']);
    t.throws(() => leases.check('t_a_s_1'), { message: 'NotLeaderForPartition: t_a_s_1' });
    t.throws(() => leases.check('t_a_s_2'), { message: 'NotLeaderForPartition: t_a_s_2' });
    t.is(leases.check('t_b_s_2').epoch, 5);
  } finally {
    leases.stop();
  }
});

test('a surrendered lease stays given up until the metadata moves on; no quorum confirmation, no writes', (t) => {
  const metadata = new FakeMetadata();
  metadata.set('a', 1, 1);
  let confirmed = true;
  const leases = new LeaseTable({ nodeId: 1, source: metadata, confirmed: () => confirmed });
  leases.start();
  try {
    leases.surrender('t_a_s_1');
    t.throws(() => leases.check('t_a_s_1'), { message: 'NotLeaderForPartition: t_a_s_1' });
    leases.sync();
    t.false(leases.holds('t_a_s_1'), 'a periodic sync does not hand it back');
    metadata.set('a', 2, 1); // the rollover applied; this node leads the new segment
    t.true(leases.holds('t_a_s_2'));
    confirmed = false;
    t.throws(() => leases.check('t_a_s_2'), { message: 'NotLeaderForPartition: t_a_s_2' });
  } finally {
    leases.stop();
  }
});

async function storeOn(dir: string, metadata: FakeMetadata, maxEntries: number, full: string[] = []) {
  const wal = await Walrus.open({ dataDir: dir, logger: silent(), fsync: 'none' });
  const leases = new LeaseTable({ nodeId: 1, source: metadata });
  leases.start();
  const store = new SegmentStore({
    wal,
    leases,
    maxEntries,
    onFull: (topic, segment, count) => full.push(`${topic}/${segment}/${count}`),
  });
  return { wal, leases, store };
}

test('appends return their offsets in the segment; reads by offset do not consume; no lease, nothing written', async (t) => {
  await withTempDir(async (dir) => {
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    metadata.set('b', 1, 2);
    const { wal, leases, store } = await storeOn(dir, metadata, 100);
    try {
      t.deepEqual(await Promise.all(['x', 'y', 'z'].map((payload) => store.append('a', 1, payload))), [0, 1, 2]);
      t.is(store.count('a', 1), 3);
      t.is((await store.read('a', 1, 1))?.toString(), 'y');
      t.is((await store.read('a', 1, 1))?.toString(), 'y', 'a read by offset moves nothing');
      t.is(await store.read('a', 1, 3), null);
      t.is(await store.read('a', 7, 0), null);
      const refused = await t.throwsAsync<WalrusError>(store.append('b', 1, 'not mine'));
      t.is(refused?.code, 'NOT_LEADER_FOR_PARTITION');
      t.is(store.count('b', 1), 0);
    } finally {
      leases.stop();
      await wal.close();
    }
  });
});

test('a full segment takes no more appends, even from concurrent callers, and the count survives a restart', async (t) => {
  await withTempDir(async (dir) => {
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    const full: string[] = [];
    const first = await storeOn(dir, metadata, 5, full);
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, index) => first.store.append('a', 1, `m${index}`)));
    const accepted = outcomes.filter((outcome) => outcome.status === 'fulfilled').map((outcome) => outcome.value);
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => (outcome.reason as WalrusError).code);
    t.deepEqual(accepted, [0, 1, 2, 3, 4]);
    t.true(
      refused.every((code) => code === 'NOT_LEADER_FOR_PARTITION' || code === 'SEGMENT_FULL'),
      refused.join(),
    );
    t.is(refused.length, 7);
    t.is(first.store.count('a', 1), 5, 'nothing past the seal');
    t.deepEqual(full, ['a/1/5']);
    first.leases.stop();
    await first.wal.close();

    // After a restart the count comes from the engine, not from memory.
    const again = await storeOn(dir, metadata, 5);
    try {
      t.is(again.store.count('a', 1), 5);
      const error = await t.throwsAsync<WalrusError>(again.store.append('a', 1, 'late'));
      t.is(error?.code, 'SEGMENT_FULL');
      t.true(error?.retriable);
      metadata.set('a', 2, 1); // the rollover applied
      t.is(await again.store.append('a', 2, 'next'), 0);
      t.deepEqual(await Promise.all([0, 1, 2, 3, 4].map(async (offset) => (await again.store.read('a', 1, offset))?.toString())), [
        'm0',
        'm1',
        'm2',
        'm3',
        'm4',
      ]);
    } finally {
      again.leases.stop();
      await again.wal.close();
    }
  });
});

test('an append whose lease lapses or moves while it is written is not acknowledged, and says its outcome is unknown (never a refusal to send again)', async (t) => {
  await withTempDir(async (dir) => {
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    // fsync 'each': the append waits for its sync, so the lease can change while it is in flight.
    const wal = await Walrus.open({ dataDir: dir, logger: silent(), fsync: 'each' });
    let confirmed = true;
    const leases = new LeaseTable({ nodeId: 1, source: metadata, confirmed: () => confirmed });
    leases.start();
    const store = new SegmentStore({ wal, leases, maxEntries: 100 });
    try {
      t.is(await store.append('a', 1, 'kept'), 0);

      // Quorum contact lost during the write: the entry is written, so the PUT is unsure
      // (NOT_COMMITTED: retriable, never sent again by a node), not a "not mine" refusal.
      const lapsed = store.append('a', 1, 'lapsed');
      confirmed = false;
      const refused = await t.throwsAsync<WalrusError>(lapsed);
      t.is(refused?.code, 'NOT_COMMITTED');
      t.regex(refused?.message ?? '', /written on this node but its write lease on t_a_s_1 ended during the write/);
      t.true(refused?.retriable);
      t.is(store.count('a', 1), 2, 'it is in the copy');
      confirmed = true;
      // Before any write, a lapsed lease is a plain refusal (nothing written).
      confirmed = false;
      t.is((await t.throwsAsync<WalrusError>(store.append('a', 1, 'not-written')))?.code, 'NOT_LEADER_FOR_PARTITION');
      t.is(store.count('a', 1), 2);
      confirmed = true;

      // The lease moves to node 2 and back during the write: a new epoch, so the old grant is void.
      const moved = store.append('a', 1, 'moved');
      metadata.set('a', 1, 2);
      metadata.set('a', 1, 1);
      t.is((await t.throwsAsync<WalrusError>(moved))?.code, 'NOT_COMMITTED');

      // Under the new lease, appends are acknowledged again.
      t.is(await store.append('a', 1, 'again'), 3);
    } finally {
      leases.stop();
      await wal.close();
    }
  });
});

/** A store over an engine on `storage`, reopened on the same storage after an outage, trying every 20 ms. */
async function outageStoreOn(dir: string, storage: FaultyBackend, logged: string[]) {
  const open = () => Walrus.open({ dataDir: dir, logger: silent(), fsync: 'each', storage });
  const metadata = new FakeMetadata();
  metadata.set('a', 1, 1);
  const leases = new LeaseTable({ nodeId: 1, source: metadata });
  leases.start();
  const log = { info: (_: object, msg: string) => logged.push(msg), warn: (_: object, msg: string) => logged.push(msg), debug: () => {} };
  const store = new SegmentStore({ wal: await open(), leases, maxEntries: 100, reopen: open, retryMs: 20, log });
  return { leases, store };
}

async function eventually(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('a failed sync starts an outage: writes refused as retriable STORAGE_UNAVAILABLE naming EIO, reads and GET moves go on, writes resume by themselves', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const logged: string[] = [];
    const { leases, store } = await outageStoreOn(dir, storage, logged);
    try {
      t.is(await store.append('a', 1, 'a0'), 0);
      t.is(await store.append('a', 1, 'a1'), 1);
      storage.failSyncs = true;
      const failed = await t.throwsAsync<WalrusError>(store.append('a', 1, 'lost'));
      t.is(failed?.code, 'STORAGE_UNAVAILABLE');
      t.true(failed?.retriable);
      t.regex(failed?.message ?? '', /^storage unavailable \(EIO\): /);
      // Every later write is refused at once, with the same cause.
      t.is((await t.throwsAsync<WalrusError>(store.append('a', 1, 'refused')))?.code, 'STORAGE_UNAVAILABLE');
      t.truthy(store.unavailable);
      // Reads go on: what was acknowledged, never the entry whose sync failed.
      t.is(store.count('a', 1), 2);
      t.is(store.read('a', 1, 0)?.toString(), 'a0');
      t.is(store.read('a', 1, 2), null);
      await store.consumeAt('a', 1, 0);
      t.is(store.consumed('a', 1), 1);
      // The disk still fails: the attempts to reopen fail and the outage goes on.
      await eventually('an attempt failed', () => logged.includes('storage still refuses writes; will try again'));
      t.truthy(store.unavailable);
      storage.failSyncs = false;
      await eventually('writes resume', () => store.unavailable === undefined);
      t.true(logged.includes('storage accepts writes again: writes resume'));
      t.is(await store.append('a', 1, 'a2'), 2);
      t.deepEqual(
        [0, 1, 2].map((offset) => store.read('a', 1, offset)?.toString()),
        ['a0', 'a1', 'a2'],
      );
      // GET's move during the outage was written when the engine was reopened.
      t.is(store.consumed('a', 1), 1);
      t.is(store.engine?.entryCount(segmentKey('a', 1)), 3);
      t.is(store.engine?.pendingCount(segmentKey('a', 1)), 2);
    } finally {
      leases.stop();
      await store.close();
    }
  });
});

test('a store whose engine could not be opened starts in an outage: reads and writes refused as STORAGE_UNAVAILABLE until it opens', async (t) => {
  await withTempDir(async (dir) => {
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    const leases = new LeaseTable({ nodeId: 1, source: metadata });
    leases.start();
    let opens = 0;
    const store = new SegmentStore({
      wal: undefined,
      dir,
      openFailure: Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
      leases,
      maxEntries: 100,
      retryMs: 20,
      reopen: () => {
        opens += 1;
        if (opens === 1) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, open'), { code: 'ENOSPC' }));
        return Walrus.open({ dataDir: dir, logger: silent(), fsync: 'none' });
      },
    });
    try {
      const refused = await t.throwsAsync<WalrusError>(store.append('a', 1, 'x'));
      t.is(refused?.code, 'STORAGE_UNAVAILABLE');
      t.regex(refused?.message ?? '', /^storage unavailable \(ENOSPC\): no space left on device, write;/);
      t.is(t.throws<WalrusError>(() => store.read('a', 1, 0))?.code, 'STORAGE_UNAVAILABLE');
      await eventually('the engine opens', () => store.unavailable === undefined);
      t.is(opens, 2, 'the first reopen failed and was tried again');
      t.is(await store.append('a', 1, 'x'), 0);
      t.is(store.read('a', 1, 0)?.toString(), 'x');
    } finally {
      leases.stop();
      await store.close();
    }
  });
});

test('persist() syncs what was appended (a seal is proposed only after it), and is refused during an outage', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    const leases = new LeaseTable({ nodeId: 1, source: metadata });
    leases.start();
    // A sync period far longer than the test: only persist() can sync these entries.
    const wal = await Walrus.open({ dataDir: dir, logger: silent(), fsync: { everyMs: 60_000 }, storage });
    const store = new SegmentStore({ wal, leases, maxEntries: 2 });
    try {
      await store.append('a', 1, 'a0');
      await store.append('a', 1, 'a1');
      const before = storage.syncs;
      await store.persist();
      t.true(storage.syncs > before, 'persist() ran a sync');
      storage.failSyncs = true;
      await store.append('a', 1, 'a2').catch(() => undefined); // full: refused before any write
      const refused = await t.throwsAsync<WalrusError>(async () => {
        await wal.append('b', 'x');
        await store.persist();
      });
      t.is(refused?.code, 'STORAGE_UNAVAILABLE');
      t.is((await t.throwsAsync<WalrusError>(store.persist()))?.code, 'STORAGE_UNAVAILABLE');
    } finally {
      leases.stop();
      await store.close();
    }
  });
});

test("appends to one segment do not wait for one another: under fsync 'each' those of one tick share a sync, and a fence or early close waits for them", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, logger: silent(), fsync: 'each', storage });
    // A slow disk from now on: every sync waits until released, so the appends stay in flight meanwhile.
    let release = (): void => undefined;
    storage.holdSyncs = new Promise<void>((resolve) => {
      release = resolve;
    });
    const metadata = new FakeMetadata();
    metadata.set('a', 1, 1);
    metadata.set('b', 1, 2);
    const leases = new LeaseTable({ nodeId: 1, source: metadata });
    leases.start();
    const store = new SegmentStore({ wal, leases, maxEntries: 100 });
    try {
      const syncsBefore = storage.syncs;
      const appends = Array.from({ length: 20 }, (_, index) => store.append('a', 1, `e${index}`));
      // All 20 are staged at once, none readable before its sync.
      t.is(wal.appendedCount(segmentKey('a', 1)), 20);
      t.is(store.count('a', 1), 0);
      const closed = store.closeEarly('a', 1);
      const late = store.append('a', 1, 'after the close');
      let closedAt: number | undefined;
      void closed.then((count) => {
        closedAt = count;
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      t.is(closedAt, undefined, 'the early close waits for the appends in flight');
      release();
      storage.holdSyncs = undefined;
      t.deepEqual(
        await Promise.all(appends),
        Array.from({ length: 20 }, (_, index) => index),
      );
      t.is(await closed, 20);
      t.is((await t.throwsAsync<WalrusError>(late))?.code, 'SEGMENT_FULL', 'closed early: later appends are refused');
      t.true(storage.syncs - syncsBefore <= 3, `20 appends of one tick took ${storage.syncs - syncsBefore} syncs`);
      t.deepEqual(
        [0, 19].map((offset) => store.read('a', 1, offset)?.toString()),
        ['e0', 'e19'],
      );
      // A fence waits for the appends in flight too, and counts them.
      metadata.set('c', 1, 1);
      let releaseAgain = (): void => undefined;
      storage.holdSyncs = new Promise<void>((resolve) => {
        releaseAgain = resolve;
      });
      const more = Array.from({ length: 5 }, (_, index) => store.append('c', 1, `c${index}`));
      let fencedAt: number | undefined;
      const fenced = store.fence('c', 1).then((count) => {
        fencedAt = count;
        return count;
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      t.is(fencedAt, undefined, 'the fence waits for the appends in flight');
      releaseAgain();
      storage.holdSyncs = undefined;
      t.deepEqual(await Promise.all(more), [0, 1, 2, 3, 4]);
      t.is(await fenced, 5);
      // A follower's copy (one this node keeps for node 2) is fenced as before: no replica append after it.
      t.is(await store.appendReplica('b', 1, 0, [Buffer.from('r0'), Buffer.from('r1')]), 2);
      t.is(await store.fence('b', 1), 2);
      t.is((await t.throwsAsync<WalrusError>(store.appendReplica('b', 1, 2, [Buffer.from('r2')])))?.code, 'NOT_LEADER_FOR_PARTITION');
    } finally {
      release();
      leases.stop();
      await store.close();
    }
  });
});
