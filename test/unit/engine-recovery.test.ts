// Recovery and open edge cases found in review: a zeroed header before more records is damage
// (reported, and the damaged file is left as it is), unconsumed entries that no file holds are
// reported as lost, a failed open leaves the live instance working, and a checkpoint larger
// than fileBytesMax does not make every append start a file.

import { closeSync, copyFileSync, openSync, readdirSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { silent, withTempDir } from '../helpers/kernel.js';

const open = (dir: string, extra: Parameters<typeof Walrus.open>[0] = {}) =>
  Walrus.open({ dataDir: dir, fsync: 'none', logger: silent(), ...extra });
const dataFiles = (dir: string) =>
  readdirSync(dir)
    .filter((name) => name.endsWith('.wal'))
    .sort();

function writeAt(path: string, position: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, position);
  } finally {
    closeSync(fd);
  }
}

// Layout: 64-byte file header, topic declaration (32 + 1 for topic "t"), then entries of 32 + 5 bytes.
const entryOffset = (index: number) => 64 + 33 + index * 37;

test('a zeroed record header with records after it is reported, and the damaged file is not written over', async (t) => {
  await withTempDir(async (dir) => {
    const first = await open(dir);
    for (const word of ['aaaaa', 'bbbbb', 'ccccc', 'ddddd']) await first.append('t', word);
    await first.close();
    writeAt(join(dir, dataFiles(dir)[0] as string), entryOffset(1), Buffer.alloc(32));
    const second = await open(dir);
    t.is(second.recovery.tornTails.length, 1);
    t.is(second.recovery.tornTails[0]?.reason, 'a zeroed record header with data after it');
    t.deepEqual(second.recovery.lostRanges, []);
    t.is((await second.readNext('t', { checkpoint: false }))?.data.toString(), 'aaaaa');
    t.is(second.pendingCount('t'), 1);
    await second.append('t', 'eeeee');
    // The damaged file keeps its bytes; new records went to a new file.
    t.is(dataFiles(dir).length, 2);
    await second.close();
  });
});

test('unconsumed entries that no surviving file holds are reported as lost', async (t) => {
  await withTempDir(async (dir) => {
    const first = await open(dir, { fileBytesMax: 4096 });
    for (let i = 0; i < 60; i++) await first.append('t', `entry-${i}-${'x'.repeat(200)}`);
    await first.close();
    const files = dataFiles(dir);
    t.true(files.length >= 3);
    // Damage the header of the second file: its entries are gone and nobody consumed them.
    writeAt(join(dir, files[1] as string), 0, Buffer.from([0xff, 0xff]));
    const second = await open(dir);
    t.is(second.recovery.unreadableFiles.length, 1);
    t.is(second.recovery.lostRanges.length, 1);
    const lost = second.recovery.lostRanges[0];
    t.is(lost?.topic, 't');
    t.is(lost?.fromSeq, 0);
    t.true((lost?.toSeq ?? 0) > 0);
    await second.close();
  });
});

test('an open that fails in recovery leaves the instance already open working and takes no lock', async (t) => {
  await withTempDir(async (dir) => {
    const live = await open(dir);
    await live.append('t', 'one');
    await live.flush();
    // A data file "from the future" makes recovery refuse the directory.
    const future = Buffer.alloc(64);
    future.writeUInt32LE(0x464c4157, 0);
    future.writeUInt16LE(9, 4);
    writeFileSync(join(dir, '000000000099.wal'), future);
    const error = await t.throwsAsync(open(dir));
    t.is((error as WalrusError).code, 'FORMAT_TOO_NEW');
    await live.append('t', 'two');
    t.is(live.pendingCount('t'), 2);
    await live.close();
  });
});

test('many topics and a small fileBytesMax: the checkpoint does not make every append start a file', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await open(dir, { fileBytesMax: 4096 });
    for (let i = 0; i < 80; i++) await wal.append(`topic-${i}`, 'x');
    const before = dataFiles(dir).length;
    for (let i = 0; i < 20; i++) await wal.append('topic-0', 'y');
    t.true(dataFiles(dir).length - before <= 2, `${dataFiles(dir).length - before} files for 20 small appends`);
    await wal.close();
  });
});

test('two opens of one directory started together run one after the other: the later supersedes the earlier', async (t) => {
  await withTempDir(async (dir) => {
    const [first, second] = await Promise.all([open(dir), open(dir)]);
    const closed = await t.throwsAsync(first.append('t', 'lost?'));
    t.is((closed as WalrusError).code, 'CLOSED');
    await second.append('t', 'kept');
    await second.close();
    const third = await open(dir);
    t.deepEqual(
      (await third.readBatch('t', { maxBytes: 1 << 20 })).map((entry) => entry.data.toString()),
      ['kept'],
    );
    await third.close();
  });
});

test('a record header cut short by the end of the file is reported; a data file under the wrong name is set aside', async (t) => {
  await withTempDir(async (dir) => {
    const first = await open(dir);
    for (const word of ['aaaaa', 'bbbbb']) await first.append('t', word);
    await first.close();
    const file = join(dir, dataFiles(dir)[0] as string);
    // Cut inside the second entry's header: 64 + 33 + 37 + 10 bytes.
    truncateSync(file, entryOffset(1) + 10);
    const second = await open(dir);
    t.is(second.recovery.tornTails[0]?.reason, 'a record header cut short by the end of the file');
    t.is(second.pendingCount('t'), 1);
    await second.close();
    // Copy the first data file to number 7: its header still says 1.
    copyFileSync(file, join(dir, '000000000007.wal'));
    const third = await open(dir);
    t.deepEqual(
      third.recovery.unreadableFiles.map((entry) => entry.reason),
      ['its header says it is data file 1'],
    );
    t.is(third.pendingCount('t'), 1);
    await third.close();
  });
});

test('records across a chunk boundary, one bigger than the chunk and the records after it are all recovered; a bad CRC after the big one is still caught', async (t) => {
  await withTempDir(async (dir) => {
    const MiB = 1024 * 1024;
    // Recovery reads in 4 MiB chunks: the third 1.5 MiB entry straddles the first boundary, the
    // 5 MiB one does not fit a chunk at all, and the small ones after it are read from a chunk again.
    const big = [1.5 * MiB, 1.5 * MiB, 1.5 * MiB, 5 * MiB].map((size, index) => Buffer.alloc(size, 0x41 + index));
    const small = Array.from({ length: 20 }, (_, index) => Buffer.from(`small-${index}`));
    const first = await open(dir);
    for (const entry of [...big, ...small]) await first.append('t', entry);
    await first.close();

    const second = await open(dir);
    t.deepEqual(second.recovery.tornTails, []);
    t.is(second.recovery.entriesRecovered, big.length + small.length);
    for (let seq = 0; seq < big.length + small.length; seq++) {
      const [entry] = await second.readBatch('t', { maxBytes: 0, startSeq: seq });
      t.true(entry?.data.equals([...big, ...small][seq] as Buffer), `entry ${seq}`);
    }
    await second.close();

    // Damage the payload of small entry 10: entries 0-9 after the big one stay, the rest is a torn tail.
    const smallStart = 64 + 33 + big.reduce((sum, entry) => sum + 32 + entry.length, 0);
    const damaged = smallStart + small.slice(0, 10).reduce((sum, entry) => sum + 32 + entry.length, 0);
    writeAt(join(dir, dataFiles(dir)[0] as string), damaged + 32, Buffer.from('X'));
    const third = await open(dir);
    t.deepEqual(
      third.recovery.tornTails.map(({ offset, reason }) => ({ offset, reason })),
      [{ offset: damaged, reason: 'checksum mismatch' }],
    );
    t.is(third.recovery.entriesRecovered, big.length + 10);
    const [last] = await third.readBatch('t', { maxBytes: 0, startSeq: big.length + 9 });
    t.is(last?.data.toString(), 'small-9');
    await third.close();
  });
});
