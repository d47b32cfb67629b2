// Recovery with the checksum worker (forced on for small logs): it must reach exactly what the
// single-threaded checked scan reaches, on a clean log and on one with a corrupted record inside
// the part a structural scan would keep.

import { closeSync, openSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { type Recovery, recover, recoverSync } from '../../src/engine/recovery.js';
import { FdBackend } from '../../src/engine/storage/fd.js';
import { Walrus } from '../../src/engine/walrus.js';
import { silent, withTempDir } from '../helpers/kernel.js';

function summary(recovery: Recovery) {
  const topics = [...recovery.topics.values()].map((topic) => [topic.name, topic.lowSeq, topic.visibleSeq, topic.cursor]);
  const files = recovery.files.map((file) => [file.fileNo, file.validEnd, file.cleanEnd]);
  for (const file of recovery.files) void file.file.close();
  return { topics, files, entries: recovery.report.entriesRecovered, torn: recovery.report.tornTails.map((tail) => tail.offset) };
}

async function writeLog(dir: string): Promise<void> {
  const wal = await Walrus.open({ dataDir: dir, fsync: 'none', fileBytesMax: 16 * 1024, logger: silent() });
  for (let i = 0; i < 40; i++) await wal.appendBatch(i % 2 === 0 ? 'a' : 'b', [`x${i}-${'p'.repeat(300)}`, `y${i}`]);
  for (let i = 0; i < 10; i++) await wal.readNext('a');
  await wal.close();
}

test('the checksum worker agrees with the checked scan on a clean log', async (t) => {
  await withTempDir(async (dir) => {
    await writeLog(dir);
    const backend = new FdBackend();
    const parallel = summary(await recover(dir, backend, 0));
    const checked = summary(recoverSync(dir, backend));
    t.deepEqual(parallel, checked);
    t.is(parallel.entries, 80);
  });
});

test('a corrupted record inside the kept data makes parallel recovery fall back to the checked result', async (t) => {
  await withTempDir(async (dir) => {
    await writeLog(dir);
    const first = readdirSync(dir)
      .filter((name) => name.endsWith('.wal'))
      .sort()[0] as string;
    // Flip a payload byte well inside the first file: the structure stays valid, the CRC does not.
    const fd = openSync(join(dir, first), 'r+');
    writeSync(fd, Buffer.from([0x7e]), 0, 1, 64 + 33 + 32 + 100);
    closeSync(fd);
    const backend = new FdBackend();
    const parallel = summary(await recover(dir, backend, 0));
    const checked = summary(recoverSync(dir, backend));
    t.deepEqual(parallel, checked);
    t.true(parallel.torn.length > 0, 'the damage is reported');
    t.true(parallel.entries < 80);
  });
});
