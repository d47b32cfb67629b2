// The engine against a storage backend that counts and fails on request: group commit shares
// one fdatasync among concurrent appends, and a failed write or sync is never acknowledged,
// poisons the instance (every later write rejects IO; reads of what it held go on), and loses
// nothing acknowledged before it. Under 'each', readers see only entries whose sync completed.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { FdBackend } from '../../src/engine/storage/fd.js';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { FaultyBackend } from '../helpers/faulty-backend.js';
import { silent, withTempDir } from '../helpers/kernel.js';

test("fsync 'each': 64 concurrent appends share a handful of fdatasyncs, and all are acknowledged after one", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'warm-up');
    const before = storage.syncs;
    await Promise.all(Array.from({ length: 64 }, (_, index) => wal.append('t', `m${index}`)));
    const used = storage.syncs - before;
    t.true(used >= 1 && used <= 3, `${used} syncs for 64 concurrent appends`);
    t.is(wal.pendingCount('t'), 65);
    await wal.close();
  });
});

test('a failed write is not acknowledged, poisons the instance, and loses nothing acknowledged before it', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent() });
    await wal.append('t', 'kept-1');
    await wal.append('t', 'kept-2');
    storage.failWrites = true;
    const failed = await t.throwsAsync(wal.append('t', 'lost'));
    t.is((failed as WalrusError).code, 'IO');
    t.regex(failed?.message ?? '', /EIO: i\/o error, write/);
    storage.failWrites = false;
    // The instance stays failed: what reached the disk is unknown until a reopen recovers it.
    t.is(((await t.throwsAsync(wal.append('t', 'after'))) as WalrusError).code, 'IO');
    t.is(((await t.throwsAsync(wal.readNext('t'))) as WalrusError).code, 'IO');
    // What it had acknowledged is still served by position.
    t.is(wal.readAt('t', 1)?.toString(), 'kept-2');
    t.is(wal.readAt('t', 2), null);
    t.is(wal.entryCount('t'), 2);
    t.is(wal.failure?.code, 'IO');
    // close() on a failed instance reports the failure and still releases the directory.
    await t.throwsAsync(wal.close(), { code: 'IO' });
    t.false(existsSync(join(dir, 'walrus.lock')), 'close removed walrus.lock');
    await t.notThrowsAsync(wal.close(), 'a second close resolves at once');
    const reopened = await Walrus.open({ dataDir: dir, fsync: 'none', logger: silent() });
    t.deepEqual(
      (await reopened.readBatch('t', { maxBytes: 1 << 20 })).map((entry) => entry.data.toString()),
      ['kept-1', 'kept-2'],
    );
    await reopened.close();
  });
});

test("under fsync 'each' a failed fdatasync rejects the appends waiting on it", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'durable');
    storage.failSyncs = true;
    const results = await Promise.allSettled([wal.append('t', 'a'), wal.append('t', 'b')]);
    t.deepEqual(
      results.map((result) => result.status),
      ['rejected', 'rejected'],
    );
    t.is(((results[0] as PromiseRejectedResult).reason as WalrusError).code, 'IO');
    storage.failSyncs = false;
    // close() on a failed instance reports the failure and still releases the directory.
    await t.throwsAsync(wal.close(), { code: 'IO' });
    t.false(existsSync(join(dir, 'walrus.lock')), 'close removed walrus.lock');
    await t.notThrowsAsync(wal.close(), 'a second close resolves at once');
  });
});

test('fsync everyMs keeps syncing under a producer that never lets the event loop turn', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: { everyMs: 5 }, storage, logger: silent() });
    const before = storage.syncs;
    const until = performance.now() + 60;
    let appended = 0;
    // Awaiting each append settles in the microtask queue: timers cannot run during this loop.
    // At least 60 ms and 200 appends, however slow a loaded machine makes each one.
    while (performance.now() < until || appended < 200) {
      await wal.append('t', 'x');
      appended += 1;
    }
    t.true(storage.syncs - before >= 3, `${storage.syncs - before} syncs in 60 ms of appends`);
    await wal.close();
  });
});

test("fsync 'each' on a backend that links syncs to writes: an awaited append is one linked write, no separate sync", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend({ link: true });
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'warm-up');
    const linked = storage.linked;
    const plain = storage.syncs;
    for (let index = 0; index < 20; index++) await wal.append('t', `m${index}`);
    t.is(storage.linked - linked, 20);
    t.is(storage.syncs - plain, 0);
    // Concurrent appends still share syncs (a write made while a sync is in flight is not linked).
    await Promise.all(Array.from({ length: 64 }, (_, index) => wal.append('t', `c${index}`)));
    t.is(wal.pendingCount('t'), 85);
    await wal.close();
    const again = await Walrus.open({ dataDir: dir, storage: new FdBackend(), logger: silent() });
    t.is(again.pendingCount('t'), 85);
    await again.close();
  });
});

test('a failed linked sync is never acknowledged and poisons the instance', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend({ link: true });
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'kept');
    storage.failSyncs = true;
    const error = await t.throwsAsync<WalrusError>(wal.append('t', 'lost'));
    t.is(error?.code, 'IO');
    const later = await t.throwsAsync<WalrusError>(wal.append('t', 'after'));
    t.is(later?.code, 'IO');
    // close() on a failed instance reports the failure and still releases the directory.
    await t.throwsAsync(wal.close(), { code: 'IO' });
    t.false(existsSync(join(dir, 'walrus.lock')), 'close removed walrus.lock');
    await t.notThrowsAsync(wal.close(), 'a second close resolves at once');
  });
});

/** A gate the test opens by hand. */
function gate(): { readonly promise: Promise<void>; readonly open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

test("fsync 'each': an entry is readable only once its fdatasync has completed", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'durable');
    const slow = gate();
    storage.holdSyncs = slow.promise;
    let acknowledged = false;
    const appended = wal.append('t', 'in-flight').then(() => {
      acknowledged = true;
    });
    // Written to the OS, not yet synced: no reader sees it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.false(acknowledged);
    t.is(wal.readAt('t', 1), null, 'readAt does not see past the synced frontier');
    t.deepEqual(
      (await wal.readBatch('t', { maxBytes: 1 << 20, startSeq: 0 })).map((entry) => entry.data.toString()),
      ['durable'],
    );
    t.is(wal.entryCount('t'), 1);
    storage.holdSyncs = undefined;
    slow.open();
    await appended;
    t.is(wal.readAt('t', 1)?.toString(), 'in-flight', 'readable once its sync completed');
    await wal.close();
  });
});

test("fsync 'each': an entry whose fdatasync fails is never readable, not even after a reopen", async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'each', storage, logger: silent() });
    await wal.append('t', 'durable');
    const slow = gate();
    storage.holdSyncs = slow.promise;
    const appended = wal.append('t', 'doomed');
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.is(wal.readAt('t', 1), null);
    storage.failSyncs = true;
    storage.holdSyncs = undefined;
    slow.open();
    t.is((await t.throwsAsync<WalrusError>(appended))?.code, 'IO');
    t.is(wal.readAt('t', 1), null, 'the failed entry never becomes readable');
    t.is(wal.readAt('t', 0)?.toString(), 'durable', 'what was durable is still served');
    storage.failSyncs = false;
    await wal.close().catch(() => undefined);
    // The refused entry's bytes reached the page cache; closing the failed instance cut them off.
    const reopened = await Walrus.open({ dataDir: dir, fsync: 'each', logger: silent() });
    t.deepEqual(
      (await reopened.readBatch('t', { maxBytes: 1 << 20, startSeq: 0 })).map((entry) => entry.data.toString()),
      ['durable'],
    );
    await reopened.append('t', 'next');
    t.is(reopened.readAt('t', 1)?.toString(), 'next', "the next append takes the refused one's place");
    await reopened.close();
  });
});

test('pipelined appends cost one write a tick; an append awaited alone is still written before append() returns', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new FaultyBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent() });
    await wal.append('t', 'warm-up');
    // One producer awaiting each append: each is written at once, one write each.
    let before = storage.writes;
    for (let index = 0; index < 5; index++) {
      const append = wal.append('t', `alone-${index}`);
      t.true(Walrus.acknowledged(append), `append ${index} was written before append() returned`);
      await append;
    }
    t.is(storage.writes - before, 5);
    // Bursts of 20 appends a tick (a server taking a chunk of pipelined PUTs): the first burst
    // costs two writes (its first append was written at once), every later one a single write.
    const writesPerBurst: number[] = [];
    for (let burst = 0; burst < 4; burst++) {
      before = storage.writes;
      await Promise.all(Array.from({ length: 20 }, (_, index) => wal.append('t', `burst-${burst}-${index}`)));
      writesPerBurst.push(storage.writes - before);
    }
    t.deepEqual(writesPerBurst, [2, 1, 1, 1]);
    // Back to one append at a time: the first waits for the end of its tick, the next ones are written at once again.
    const first = wal.append('t', 'after-0');
    t.false(Walrus.acknowledged(first), 'the first append after a burst waits for the end of its tick');
    await first;
    const second = wal.append('t', 'after-1');
    t.true(Walrus.acknowledged(second), 'alone again: written at once');
    await second;
    t.is(wal.pendingCount('t'), 1 + 5 + 80 + 2);
    await wal.close();
  });
});
