// Recovery's progress lines: on a slow disk, an open logs `recovery: scanning` lines with files and
// bytes scanned growing towards totals that match the directory, then `recovery: scanned` with the
// totals; the open of an instance already open in this process (the synchronous scan) does too;
// a small open at the default interval logs neither; a bad recoveryProgressMs is refused.

import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { type Logger, pino } from 'pino';
import type { StorageBackend, StorageFile } from '../../src/contracts/storage.js';
import { parseDataFileName } from '../../src/engine/format.js';
import { FdBackend } from '../../src/engine/storage/fd.js';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { silent, withTempDir } from '../helpers/kernel.js';

interface Line {
  readonly level: number;
  readonly msg: string;
  readonly dir?: string;
  readonly filesScanned?: number;
  readonly filesTotal?: number;
  readonly bytesScanned?: number;
  readonly bytesTotal?: number;
  readonly percent?: number;
  readonly mbPerSec?: number;
  readonly files?: number;
  readonly bytes?: number;
  readonly entries?: number;
  readonly ms?: number;
}

/** A pino logger at `info` whose lines are parsed into `lines`. */
function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino({ level: 'info' }, { write: (text: string) => lines.push(JSON.parse(text) as Line) });
  return { logger, lines };
}

/** fd underneath, every read taking `readMs` longer (a slow disk), so that the scan outlasts a short interval. */
class SlowReads implements StorageBackend {
  readonly name = 'slow-reads';
  private readonly inner = new FdBackend();
  private readonly readMs: number;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(readMs: number) {
    this.readMs = readMs;
  }

  open(path: string, options: { readonly create: boolean }): StorageFile {
    const file = this.inner.open(path, options);
    const sleep = () => Atomics.wait(this.sleeper, 0, 0, this.readMs);
    return {
      path: file.path,
      write: (buffer, position, offset, length) => file.write(buffer, position, offset, length),
      writev: (buffers, position) => file.writev(buffers, position),
      read: (buffer, offset, length, position) => {
        sleep();
        return file.read(buffer, offset, length, position);
      },
      size: () => file.size(),
      truncate: (bytes) => file.truncate(bytes),
      sync: () => file.sync(),
      close: () => file.close(),
    };
  }
}

const ENTRY_BYTES = 16 * 1024;
const BATCH_ENTRIES = 32;
const BATCHES = 40;
/** 20 MiB of entries over data files of at most 6 MiB: four files, some bigger than a 4 MiB recovery chunk. */
const FILE_BYTES_MAX = 6 * 1024 * 1024;

async function fill(wal: Walrus): Promise<void> {
  const batch = Array.from({ length: BATCH_ENTRIES }, (_, index) => Buffer.alloc(ENTRY_BYTES, index));
  for (let index = 0; index < BATCHES; index++) await wal.appendBatch('t', batch);
}

/** The data files' allocated bytes, in log order (what recovery counts as scanned). */
function dataFileBytes(dir: string): number[] {
  return readdirSync(dir)
    .filter((name) => parseDataFileName(name) !== undefined)
    .sort()
    .map((name) => statSync(join(dir, name)).blocks * 512);
}

/** Checks the progress lines of one open of `dir` against its data files' `sizes`. */
function checkProgress(t: import('ava').ExecutionContext, lines: readonly Line[], dir: string, sizes: readonly number[]): void {
  const ours = lines.filter((line) => line.msg.startsWith('recovery: '));
  const scanning = ours.filter((line) => line.msg === 'recovery: scanning');
  const bytesTotal = sizes.reduce((sum, size) => sum + size, 0);
  t.true(sizes.length >= 4, `${sizes.length} data files`);
  t.true(scanning.length >= 3, `${scanning.length} progress lines: ${JSON.stringify(ours)}`);
  for (const line of scanning) {
    t.is(line.level, 30);
    t.is(line.dir, realpathSync(dir));
    t.is(line.filesTotal, sizes.length);
    t.is(line.bytesTotal, bytesTotal);
    t.true((line.mbPerSec ?? 0) > 0, `rate ${line.mbPerSec}`);
    t.is(line.percent, Math.floor((100 * (line.bytesScanned ?? 0)) / bytesTotal));
  }
  for (let index = 1; index < scanning.length; index++) {
    const [before, after] = [scanning[index - 1] as Line, scanning[index] as Line];
    t.true((after.bytesScanned ?? 0) > (before.bytesScanned ?? 0), `bytes scanned ${before.bytesScanned} then ${after.bytesScanned}`);
    t.true((after.filesScanned ?? 0) >= (before.filesScanned ?? 0), `files scanned ${before.filesScanned} then ${after.filesScanned}`);
  }
  // A file bigger than a chunk is reported inside it too, not only at file boundaries.
  const boundaries = new Set(sizes.map((_, index) => sizes.slice(0, index + 1).reduce((sum, size) => sum + size, 0)));
  t.true(
    scanning.some((line) => !boundaries.has(line.bytesScanned ?? 0) && (line.bytesScanned ?? 0) < bytesTotal),
    'a line from the middle of a file',
  );
  t.true(
    scanning.some((line) => (line.filesScanned ?? 0) > 0 && (line.filesScanned ?? 0) < sizes.length),
    'a line between the first file and the last',
  );
  const last = ours[ours.length - 1];
  t.is(last?.msg, 'recovery: scanned', 'the summary comes last');
  t.is(last?.files, sizes.length);
  t.is(last?.bytes, bytesTotal);
  t.is(last?.entries, BATCHES * BATCH_ENTRIES);
  t.true((last?.ms ?? 0) >= 2, `took ${last?.ms} ms`);
  t.true((last?.mbPerSec ?? 0) > 0);
  t.is(ours.filter((line) => line.msg === 'recovery: scanned').length, 1);
}

test('a long recovery logs progress lines with growing counts and matching totals, then one line with the totals', async (t) => {
  await withTempDir(async (dir) => {
    const writer = await Walrus.open({ dataDir: dir, fsync: 'none', fileBytesMax: FILE_BYTES_MAX, logger: silent() });
    await fill(writer);
    await writer.close();
    const sizes = dataFileBytes(dir);
    const { logger, lines } = capture();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage: new SlowReads(5), logger, recoveryProgressMs: 2 });
    t.is(wal.recovery.entriesRecovered, BATCHES * BATCH_ENTRIES);
    await wal.close();
    checkProgress(t, lines, dir, sizes);
  });
});

test('the open of a directory already open in this process (the synchronous scan) logs the same progress lines', async (t) => {
  await withTempDir(async (dir) => {
    const first = await Walrus.open({ dataDir: dir, fsync: 'none', fileBytesMax: FILE_BYTES_MAX, logger: silent() });
    await fill(first);
    const sizes = dataFileBytes(dir);
    const { logger, lines } = capture();
    const second = await Walrus.open({ dataDir: dir, fsync: 'none', storage: new SlowReads(5), logger, recoveryProgressMs: 2 });
    t.is(second.entryCount('t'), BATCHES * BATCH_ENTRIES);
    await second.close();
    await first.close().catch(() => undefined);
    checkProgress(t, lines, dir, sizes);
  });
});

test('a small open at the default interval logs no progress line', async (t) => {
  await withTempDir(async (dir) => {
    const writer = await Walrus.open({ dataDir: dir, fsync: 'none', logger: silent() });
    for (let index = 0; index < 100; index++) await writer.append('t', `entry ${index}`);
    await writer.close();
    const { logger, lines } = capture();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', logger });
    t.is(wal.recovery.entriesRecovered, 100);
    await wal.close();
    t.deepEqual(
      lines.filter((line) => line.msg.startsWith('recovery')),
      [],
    );
  });
});

test('recoveryProgressMs must be a number of at least 1', async (t) => {
  await withTempDir(async (dir) => {
    for (const bad of [0, -5, Number.NaN, '100']) {
      const error = await t.throwsAsync(Walrus.open({ dataDir: dir, logger: silent(), recoveryProgressMs: bad as number }));
      t.is((error as WalrusError).code, 'INVALID_ARGUMENT', String(bad));
      t.regex(error?.message ?? '', /recoveryProgressMs must be a number of at least 1/);
    }
  });
});
