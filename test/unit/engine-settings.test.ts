// Where the engine's settings come from: its caller, never the environment. Walrus.open defaults
// dataDir to ./wal_files whatever WALRUS_DATA_DIR says; `disableIoUring` is an option; the package
// entry point's openWalrus / walrusOptionsFromEnv hand the environment's values over; the native
// addon is switched off by disableNativeAddon (before it loads), in worker threads too. And the
// one backend rule, chooseBackend, on its own.

import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { checksums } from '../../src/engine/checksum.js';
import { disableNativeAddon } from '../../src/engine/native-addon.js';
import { verifyInWorker } from '../../src/engine/recovery.js';
import { BACKENDS, type Contender, chooseBackend, resolveBackend } from '../../src/engine/storage/select.js';
import { Walrus } from '../../src/engine/walrus.js';
import { openWalrus, walrusOptionsFromEnv } from '../../src/index.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import type { ProbeResult } from '../../src/kernel/plugin.js';
import { silent, withTempDir } from '../helpers/kernel.js';

/**
 * Runs an ES module script in a fresh Node process (a clean WALRUS_* environment plus `env`) and
 * returns its stdout. The script is a file, not `-e`: a worker thread would inherit --input-type.
 */
async function runScript(script: string, options: { cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALRUS_')) env[key] = value;
  return withTempDir(async (scripts) => {
    const file = join(scripts, 'script.mjs');
    writeFileSync(file, script);
    return execFileSync(process.execPath, [file], { cwd: options.cwd, env: { ...env, ...options.env }, encoding: 'utf8' });
  });
}

const moduleUrl = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);

test('Walrus.open without dataDir writes to ./wal_files, whatever WALRUS_DATA_DIR says', async (t) => {
  await withTempDir(async (dir) => {
    const elsewhere = join(dir, 'from-env');
    await runScript(
      `import { Walrus } from ${moduleUrl('../../src/engine/walrus.js')};
       const wal = await Walrus.open({ fsync: 'none' });
       await wal.append('t', 'one');
       await wal.close();`,
      { cwd: dir, env: { WALRUS_DATA_DIR: elsewhere } },
    );
    t.true(existsSync(join(dir, 'wal_files', '000000000001.wal')));
    t.false(existsSync(elsewhere));
  });
});

test('openWalrus takes WALRUS_DATA_DIR as the default dataDir; an explicit dataDir wins', async (t) => {
  await withTempDir(async (dir) => {
    const fromEnv = join(dir, 'env');
    const wal = await openWalrus({ fsync: 'none', logger: silent(), dataDir: undefined }, { WALRUS_DATA_DIR: fromEnv });
    await wal.append('t', 'one');
    await wal.close();
    t.true(existsSync(join(fromEnv, '000000000001.wal')));
    const given = join(dir, 'given');
    const explicit = await openWalrus({ fsync: 'none', logger: silent(), dataDir: given }, { WALRUS_DATA_DIR: fromEnv });
    await explicit.append('t', 'two');
    await explicit.close();
    t.true(existsSync(join(given, '000000000001.wal')));
  });
});

test('walrusOptionsFromEnv reads WALRUS_DATA_DIR and WALRUS_DISABLE_IO_URING as the node reads them', (t) => {
  t.deepEqual(walrusOptionsFromEnv({}), {});
  t.deepEqual(walrusOptionsFromEnv({ WALRUS_DATA_DIR: '', WALRUS_DISABLE_IO_URING: '' }), {});
  t.deepEqual(walrusOptionsFromEnv({ WALRUS_DATA_DIR: '/srv/wal', WALRUS_DISABLE_IO_URING: 'yes' }), {
    dataDir: '/srv/wal',
    disableIoUring: true,
  });
  // Unlike the original Rust Walrus, 0 means "not disabled".
  t.deepEqual(walrusOptionsFromEnv({ WALRUS_DISABLE_IO_URING: '0' }), { disableIoUring: false });
  const error = t.throws(() => walrusOptionsFromEnv({ WALRUS_DISABLE_IO_URING: 'maybe' }));
  t.is((error as WalrusError).code, 'CONFIG_INVALID');
  t.regex(error?.message ?? '', /WALRUS_DISABLE_IO_URING: expected 1\/true\/yes\/on or 0\/false\/no\/off, got "maybe"/);
});

const uringLoad = BACKENDS.find((candidate) => candidate.name === 'uring')?.load();
const uringReason = uringLoad === undefined ? 'no uring backend' : 'unavailable' in uringLoad ? uringLoad.unavailable : undefined;

if (uringReason === undefined) {
  test('disableIoUring keeps auto off uring and refuses uring by name; openWalrus takes it from WALRUS_DISABLE_IO_URING', async (t) => {
    await withTempDir(async (dir) => {
      const plain = await Walrus.open({ dataDir: join(dir, 'a'), fsync: 'none', logger: silent() });
      t.is(plain.backendName, 'uring');
      await plain.close();
      const off = await Walrus.open({ dataDir: join(dir, 'b'), fsync: 'none', logger: silent(), disableIoUring: true });
      t.not(off.backendName, 'uring');
      await off.close();
      const fromEnv = await openWalrus({ dataDir: join(dir, 'c'), fsync: 'none', logger: silent() }, { WALRUS_DISABLE_IO_URING: '1' });
      t.not(fromEnv.backendName, 'uring');
      await fromEnv.close();
      const named = await t.throwsAsync(
        Walrus.open({ dataDir: join(dir, 'd'), fsync: 'none', logger: silent(), backend: 'uring', disableIoUring: true }),
      );
      t.is((named as WalrusError).code, 'IO');
      t.is(named?.message, 'storage backend uring cannot run here: disabled by the disableIoUring option');
    });
  });
} else {
  test.skip(`disableIoUring keeps auto off uring — skipped: the uring backend cannot run here (${uringReason})`, (t) => t.pass());
}

test('resolveBackend refuses unknown names, and disableIoUring does not touch a named fd', async (t) => {
  const unknown = await t.throwsAsync(resolveBackend('s3'));
  t.is((unknown as WalrusError).code, 'INVALID_ARGUMENT');
  t.is(unknown?.message, 'backend must be one of auto|fd|mmap|uring, got "s3"');
  const backend = await resolveBackend('fd', { disableIoUring: true });
  t.is(backend.name, 'fd');
});

/** A contender whose probe counts its calls. */
function contender(name: string, builtin: Contender['builtin'], probe: ProbeResult) {
  const calls = { count: 0 };
  return {
    calls,
    contender: {
      name,
      builtin,
      probe: () => {
        calls.count++;
        return probe;
      },
    },
  };
}

test('chooseBackend: auto prefers uring, mmap, fd, then custom ones in list order, and probes no further than it must', (t) => {
  const custom = contender('s3', undefined, { ok: true });
  const fd = contender('fd', 'fd', { ok: true });
  const mmap = contender('mmap', 'mmap', { ok: false, reason: 'no addon' });
  const uring = contender('uring', 'uring', { ok: true });
  const all = [custom, fd, mmap, uring].map((entry) => entry.contender);
  const picked = chooseBackend(all, 'auto', { disabledBy: 'the switch' });
  t.like(picked, { outcome: 'chosen', chosen: { name: 'uring' }, skipped: [] });
  t.is(fd.calls.count + mmap.calls.count + custom.calls.count, 0);

  const disabled = chooseBackend(all, 'auto', { disableIoUring: true, disabledBy: 'the switch' });
  t.is(disabled.outcome, 'chosen');
  if (disabled.outcome !== 'chosen') return;
  t.is(disabled.chosen.name, 'fd');
  t.deepEqual(
    disabled.skipped.map(({ contender: skipped, reason }) => `${skipped.name}: ${reason}`),
    ['uring: disabled by the switch', 'mmap: no addon'],
  );
  t.is(uring.calls.count, 1, 'a disabled uring is not probed');

  const customOnly = chooseBackend([contender('s3', undefined, { ok: true }).contender, mmap.contender], 'auto', { disabledBy: 'x' });
  t.like(customOnly, { outcome: 'chosen', chosen: { name: 's3' } });
  t.like(chooseBackend([], 'auto', { disabledBy: 'x' }), { outcome: 'none', skipped: [] });
  t.like(chooseBackend([contender('fd', 'fd', { ok: false }).contender], 'auto', { disabledBy: 'x' }), {
    outcome: 'none',
    skipped: [{ reason: 'its probe failed' }],
  });
});

test('chooseBackend: a named backend must be there, not disabled, and able to run', (t) => {
  const uring = contender('uring', 'uring', { ok: true });
  const mmap = contender('mmap', 'mmap', { ok: false, reason: 'no addon' });
  const fd = contender('fd', 'fd', { ok: true });
  const all = [uring, mmap, fd].map((entry) => entry.contender);
  t.like(chooseBackend(all, 'fd', { disabledBy: 'x' }), { outcome: 'chosen', chosen: { name: 'fd' }, skipped: [] });
  t.is(uring.calls.count, 0, 'a named backend is taken even when a faster one could run');
  t.like(chooseBackend(all, 'mmap', { disabledBy: 'x' }), { outcome: 'refused', disabled: false, reason: 'no addon' });
  t.like(chooseBackend(all, 'uring', { disableIoUring: true, disabledBy: 'the switch' }), {
    outcome: 'refused',
    disabled: true,
    reason: 'disabled by the switch',
  });
  t.like(chooseBackend([fd.contender], 'uring', { disabledBy: 'x' }), { outcome: 'absent' });
});

// Whether this process uses the addon (the test runner may have switched it off: WALRUS_DISABLE_NATIVE).
const nativeInUse = checksums.unavailableReason === undefined;

if (nativeInUse) {
  test('disableNativeAddon once the addon is in use is refused with NATIVE_ADDON_IN_USE', (t) => {
    const error = t.throws(() => disableNativeAddon('too late'));
    t.is((error as WalrusError).code, 'NATIVE_ADDON_IN_USE');
    t.is(checksums.unavailableReason, undefined);
  });
} else {
  test.skip(`disableNativeAddon once the addon is in use — skipped: this process does not use it (${checksums.unavailableReason})`, (t) =>
    t.pass());
}

test('the checksum worker uses the same checksum code as the thread that starts it', async (t) => {
  t.is((await verifyInWorker([])).implementation, checksums.implementation);
  const output = await runScript(
    `import { disableNativeAddon } from ${moduleUrl('../../src/engine/native-addon.js')};
     import { checksums } from ${moduleUrl('../../src/engine/checksum.js')};
     import { verifyInWorker } from ${moduleUrl('../../src/engine/recovery.js')};
     disableNativeAddon('switched off by the test');
     const worker = await verifyInWorker([]);
     process.stdout.write(JSON.stringify({ parent: checksums.implementation, reason: checksums.unavailableReason, worker: worker.implementation }));`,
  );
  t.deepEqual(JSON.parse(output), { parent: 'zlib', reason: 'switched off by the test', worker: 'zlib' });
});
