// Space reclamation: a data file is deleted once every topic has durably consumed everything
// it holds, oldest file first; a slow topic keeps its files; nothing unconsumed ever goes, and
// sequence numbers carry on across reclaimed files and restarts.

import { readdirSync } from 'node:fs';
import test from 'ava';
import { Walrus } from '../../src/engine/walrus.js';
import { silent, withTempDir } from '../helpers/kernel.js';

const dataFiles = (dir: string) => readdirSync(dir).filter((name) => name.endsWith('.wal')).length;
const open = (dir: string, extra: Parameters<typeof Walrus.open>[0] = {}) =>
  Walrus.open({ dataDir: dir, fsync: 'none', fileBytesMax: 64 * 1024, logger: silent(), ...extra });
const kib = (index: number) => `${index}:${'x'.repeat(1000)}`;

async function fill(wal: Walrus, topic: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 50)
    await wal.appendBatch(
      topic,
      Array.from({ length: Math.min(50, count - i) }, (_, k) => kib(i + k)),
    );
}

test('files consumed by every topic are deleted, oldest first, and seqs carry on after a restart', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await open(dir);
    await fill(wal, 'logs', 600);
    const before = dataFiles(dir);
    t.true(before >= 8, `expected several files, got ${before}`);
    for (let i = 0; i < 600; i++) t.is((await wal.readNext('logs'))?.seq, i);
    await wal.flush();
    t.is(dataFiles(dir), 1, 'only the current file is left');
    // Strict reads append cursor records, which may have started more files meanwhile.
    t.true(wal.reclaimedFiles >= before - 1);
    await wal.close();
    const reopened = await open(dir);
    t.is(reopened.pendingCount('logs'), 0);
    await reopened.append('logs', 'next');
    t.deepEqual(await reopened.readNext('logs').then((entry) => [entry?.seq, entry?.data.toString()]), [600, 'next']);
    // Stateless reads of reclaimed entries start at the oldest one still kept.
    const kept = await reopened.readBatch('logs', { maxBytes: 1 << 20, startSeq: 0 });
    t.true((kept[0]?.seq ?? 0) > 0);
    await reopened.close();
  });
});

test('a topic that has not consumed keeps every file that holds its entries', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await open(dir);
    await wal.append('slow', 'first');
    await fill(wal, 'fast', 400);
    for (let i = 0; i < 400; i++) await wal.readNext('fast');
    await wal.flush();
    // The oldest file holds `slow`'s entry, so nothing can go (oldest first).
    t.is(wal.reclaimedFiles, 0);
    t.is((await wal.readNext('slow'))?.data.toString(), 'first');
    await wal.flush();
    t.true(wal.reclaimedFiles > 0);
    await wal.close();
  });
});

test('atLeastOnce reclaims only what the persisted cursor covers, so a restart replays and never skips', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await open(dir, { consistency: { atLeastOnce: 100 } });
    await fill(wal, 'logs', 300);
    for (let i = 0; i < 250; i++) await wal.readNext('logs');
    await wal.flush();
    const reopened = await open(dir, { consistency: { atLeastOnce: 100 } });
    // Persisted at 200 consumed: the restart replays from 200, and those entries are all still there.
    const next = await reopened.readNext('logs');
    t.is(next?.seq, 200);
    t.is(next?.data.toString(), kib(200));
    await wal.close();
    await reopened.close();
  });
});

test("under fsync 'none' consumed files go without a flush, soon after the cursor is written", async (t) => {
  await withTempDir(async (dir) => {
    const wal = await open(dir);
    await fill(wal, 'logs', 400);
    for (let i = 0; i < 400; i++) await wal.readNext('logs');
    await new Promise((resolve) => setTimeout(resolve, 400));
    t.true(wal.reclaimedFiles > 0, 'nothing was reclaimed without a flush');
    t.is(dataFiles(dir), 1 + (wal.reclaimedFiles === 0 ? 1 : 0));
    await wal.close();
  });
});
