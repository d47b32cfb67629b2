// The node directory lock and the PID-file holder check in one process: a second lock of the
// same node directory is DIRECTORY_LOCKED (flock), a released lock can be taken again, a
// directory that cannot be created is IO naming it, and a lock file naming a zombie, a gone PID
// or a PID with another start time holds nothing (node.lock's fallback and the engine's
// walrus.lock alike).

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { loadAddon } from '../../src/engine/native-addon.js';
import { currentProcess, parseHolder, stillRuns } from '../../src/engine/process-holder.js';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { ensureDirectory, lockNodeDirectory, NODE_LOCK_FILE } from '../../src/node/node-lock.js';
import { withTempDir } from '../helpers/kernel.js';

const load = loadAddon();
const hasFlock = 'addon' in load && typeof (load.addon.flock as { tryExclusive?: unknown } | undefined)?.tryExclusive === 'function';
const hasProc = existsSync('/proc/self/stat');

const flockTitle = 'a second lock of a locked node directory is DIRECTORY_LOCKED naming it and the holder; after release it can be taken';
(hasFlock ? test : test.skip)(
  hasFlock ? flockTitle : `${flockTitle} — skipped: the native addon with flock is not built here`,
  async (t) => {
    await withTempDir(async (dir) => {
      const lock = lockNodeDirectory(join(dir, 'data'), 3);
      t.is(lock.kind, 'flock');
      t.is(lock.dir, join(dir, 'data', 'node_3'));
      t.is(parseHolder(readFileSync(join(lock.dir, NODE_LOCK_FILE), 'utf8'))?.pid, process.pid);
      // A second open file description: flock refuses it even within this process.
      const error = t.throws(() => lockNodeDirectory(join(dir, 'data'), 3)) as WalrusError;
      t.is(error.code, 'DIRECTORY_LOCKED');
      t.regex(error.message, new RegExp(`node directory ${join(dir, 'data', 'node_3')} is in use by process ${process.pid}`));
      t.deepEqual(error.details, { dir: lock.dir, pid: process.pid });
      // Another node id is another directory, with its own lock.
      const other = lockNodeDirectory(join(dir, 'data'), 4);
      other.release();
      lock.release();
      lockNodeDirectory(join(dir, 'data'), 3).release();
    });
  },
);

(hasProc ? test : test.skip)(
  hasProc
    ? 'a node directory that cannot be created is IO naming it, without spinning'
    : 'a node directory that cannot be created is IO naming it — skipped: no /proc here',
  (t) => {
    const error = t.throws(() => lockNodeDirectory('/proc/walrus', 1)) as WalrusError;
    t.is(error.code, 'IO');
    t.regex(error.message, /cannot create the node directory \/proc\/walrus\/node_1: ENOENT/);
    t.throws(() => ensureDirectory('/proc/walrus/a/b'), { code: 'ENOENT' });
  },
);

test('ensureDirectory creates missing parents and accepts an existing directory, but not a file', async (t) => {
  await withTempDir(async (dir) => {
    ensureDirectory(join(dir, 'a', 'b', 'c'));
    ensureDirectory(join(dir, 'a', 'b', 'c'));
    t.true(existsSync(join(dir, 'a', 'b', 'c')));
    writeFileSync(join(dir, 'file'), '');
    t.throws(() => ensureDirectory(join(dir, 'file')), { code: 'EEXIST' });
  });
});

/**
 * A child of `sleep`, which never reaps it: a zombie for as long as the sleep runs. The child
 * outlives the shell's exec by a moment, so the shell cannot reap it first.
 */
async function withZombie(body: (pid: number) => Promise<void>): Promise<void> {
  const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 20'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const pid = await new Promise<number>((resolve, reject) => {
      parent.stdout.setEncoding('utf8').once('data', (text: string) => resolve(Number(text.trim())));
      parent.once('exit', () => reject(new Error('the zombie parent exited early')));
    });
    const isZombie = () => {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
    };
    for (let tries = 0; tries < 300 && !isZombie(); tries += 1) await new Promise((done) => setTimeout(done, 10));
    if (!isZombie()) throw new Error(`process ${pid} did not become a zombie`);
    await body(pid);
  } finally {
    parent.kill('SIGKILL');
  }
}

(hasProc ? test.serial : test.skip)(
  hasProc
    ? 'a lock holder that is a zombie, gone, or a PID with another start time does not run; this process does'
    : 'lock holder checks — skipped: no /proc here',
  async (t) => {
    const self = currentProcess();
    t.true(stillRuns(self));
    t.truthy(self.startTime);
    t.false(stillRuns({ pid: process.pid, startTime: `${self.startTime}9` }), 'a reused PID');
    t.false(stillRuns({ pid: 2 ** 22 + 12_345, startTime: undefined }), 'a PID nobody has');
    await withZombie(async (pid) => {
      t.false(stillRuns({ pid, startTime: undefined }), 'a zombie');
    });
  },
);

(hasProc ? test.serial : test.skip)(
  hasProc
    ? 'the engine takes over a walrus.lock whose PID is a zombie (killed, not yet reaped)'
    : 'engine zombie lock — skipped: no /proc here',
  async (t) => {
    await withTempDir(async (dir) => {
      await withZombie(async (pid) => {
        writeFileSync(join(dir, 'walrus.lock'), `${pid}\n`);
        const wal = await Walrus.open({ dataDir: dir, backend: 'fd' });
        try {
          t.is(readFileSync(join(dir, 'walrus.lock'), 'utf8').trim(), String(process.pid), 'the lock now names this process');
        } finally {
          await wal.close();
        }
      });
    });
  },
);
