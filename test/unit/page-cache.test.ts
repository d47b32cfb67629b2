// The native page-cache hint (src/engine/storage/native/page-cache.c): willNeed brings a hole of
// a file into the page cache without changing it, runs off the event loop, and reports a bad
// descriptor or bad arguments. Residency is read with util-linux's fincore.

import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { pageCacheWillNeed } from '../../src/engine/storage/page-cache.js';
import { withTempDir } from '../helpers/kernel.js';

const MiB = 1024 * 1024;
const willNeed = pageCacheWillNeed();
const fincore = spawnSync('fincore', ['--version'], { encoding: 'utf8' }).status === 0;

/** Bytes of `path` in the page cache, as fincore counts them. */
function resident(path: string): number {
  const run = spawnSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES', path], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`fincore failed: ${run.stderr}`);
  return Number(run.stdout.trim());
}

const withHint = willNeed === undefined ? test.skip : test;
const hintTitle = (text: string) => (willNeed === undefined ? `${text} — skipped: the native addon has no pageCache here` : text);
const residencyTest = willNeed === undefined || !fincore ? test.skip : test;
const residencyTitle = (text: string) =>
  willNeed === undefined
    ? `${text} — skipped: the native addon has no pageCache here`
    : !fincore
      ? `${text} — skipped: no fincore (util-linux) on this machine`
      : text;

residencyTest(residencyTitle('willNeed fills the page cache over a hole, and the file still reads as zeros'), (t) =>
  withTempDir(async (dir) => {
    const path = join(dir, 'hole.bin');
    const fd = openSync(path, 'w+');
    try {
      ftruncateSync(fd, 16 * MiB);
      t.is(resident(path), 0, 'a fresh hole is not cached');
      await (willNeed as NonNullable<typeof willNeed>)(fd, 2 * MiB, 5 * MiB);
      const cached = resident(path);
      // The kernel's own read-ahead may bring in more past the range, never past the file's end.
      t.true(cached >= 5 * MiB && cached <= 14 * MiB, `${cached} bytes cached after a 5 MiB hint from 2 MiB`);
      t.is(statSync(path).size, 16 * MiB);
      t.true(readFileSync(path).equals(Buffer.alloc(16 * MiB)));
    } finally {
      closeSync(fd);
    }
  }),
);

withHint(hintTitle('willNeed leaves written bytes as they are and rejects a closed descriptor with EBADF'), (t) =>
  withTempDir(async (dir) => {
    const hint = willNeed as NonNullable<typeof willNeed>;
    const path = join(dir, 'data.bin');
    const data = Buffer.from(Array.from({ length: 3 * MiB }, (_, index) => (index * 31) % 256));
    writeFileSync(path, data);
    const fd = openSync(path, 'r+');
    await hint(fd, 0, 3 * MiB);
    await hint(fd, MiB, 64 * MiB); // past the end: nothing to bring in
    closeSync(fd);
    t.true(readFileSync(path).equals(data));
    const error = await t.throwsAsync(hint(fd, 0, MiB));
    t.is((error as NodeJS.ErrnoException).code, 'EBADF');
    t.regex(error?.message ?? '', /pread/);
  }),
);

withHint(hintTitle('willNeed refuses arguments that are no descriptor or no size'), (t) => {
  const hint = willNeed as unknown as (...args: unknown[]) => Promise<void>;
  t.throws(() => hint(-1, 0, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => hint(0, -1, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => hint(0, 0, 1.5), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => hint(0, 0), { code: 'ERR_MISSING_ARGS' });
});
