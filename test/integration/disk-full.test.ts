// A full disk is an error the caller sees, never a crash and never a lost acknowledged entry, on
// every storage backend. The child runs in its own user and mount namespaces (`unshare -rm`)
// with a 24 MiB tmpfs as its data folder, appends 64 KiB entries until one is refused, then
// reopens and reads everything back. Where unshare cannot make namespaces, the test is skipped
// and its title says so.

import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import test from 'ava';
import { reportBackendsNotRun, testBackends } from '../helpers/backends.js';
import { withTempDir } from '../helpers/kernel.js';
import { tmpfsNamespaceProblem } from '../helpers/namespaces.js';

const CHILD = resolve('build/test/helpers/disk-full-child.js');
const FS_BYTES = 24 * 1024 * 1024;

const unavailable = tmpfsNamespaceProblem();

interface Outcome {
  readonly acked: number;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly recovered: number;
  readonly intact: boolean;
}

for (const backend of testBackends()) {
  const title = `[${backend}] a full disk refuses the append with IO (ENOSPC); the process lives and every acknowledged entry survives`;
  if (unavailable !== undefined) {
    test.skip(`${title} (skipped: ${unavailable})`, (t) => t.pass());
    continue;
  }
  test(title, async (t) => {
    await withTempDir(async (dir) => {
      const script = `mount -t tmpfs -o size=${FS_BYTES} tmpfs "$1" && exec "$2" "$3" "$1" "$4"`;
      const run = spawnSync('unshare', ['-rm', 'sh', '-c', script, 'sh', dir, process.execPath, CHILD, backend], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      t.is(run.status, 0, `child exited ${run.status}/${run.signal}: ${run.stderr}`);
      const outcome = JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}') as Outcome;
      t.truthy(outcome.error, 'an append was refused');
      t.is(outcome.error?.code, 'IO');
      t.regex(outcome.error?.message ?? '', /ENOSPC|no space left/i);
      // Most of the file system was usable before the refusal.
      t.true(outcome.acked * 64 * 1024 > FS_BYTES / 2, `only ${outcome.acked} entries of 64 KiB fit in ${FS_BYTES} bytes`);
      t.true(outcome.intact, `acked ${outcome.acked}, recovered ${outcome.recovered}`);
      t.true(outcome.recovered >= outcome.acked);
    });
  });
}

reportBackendsNotRun('disk full');
