// The io_uring backend: the same file semantics as the fd backend (positional, all-or-throw
// writes, reads short only at EOF), syncs through the ring, and a ring that neither keeps the
// process alive nor breaks in worker threads. Where io_uring cannot run (no addon, a kernel or
// seccomp policy that refuses io_uring_setup), one skipped test says why.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import test, { type ExecutionContext } from 'ava';
import type { StorageFile } from '../../src/contracts/storage.js';
import { RING_READ_MIN_BYTES, UringBackend } from '../../src/engine/storage/uring.js';
import { loadUring, type UringNative } from '../../src/engine/storage/uring-native.js';
import { readBytes } from '../conformance/support.js';
import { withTempDir } from '../helpers/kernel.js';

const loaded = loadUring();

type UringFile = StorageFile & {
  readonly writePath: 'ring' | 'pwritev';
  writevAndSync(buffers: readonly Uint8Array[], position: number): Promise<void>;
};

/** Opens `name` in a fresh temp dir on a fresh backend, runs `body`, closes the file and the ring. */
async function withFile(native: UringNative, body: (file: UringFile, path: string) => Promise<void> | void): Promise<void> {
  await withTempDir(async (dir) => {
    const backend = new UringBackend(native);
    const path = join(dir, 'data');
    const file = backend.open(path, { create: true }) as UringFile;
    try {
      await body(file, path);
    } finally {
      await file.close();
      backend.close();
    }
  });
}

/** Byte equality without ava's structural diff, which takes seconds on megabyte buffers. */
function sameBytes(t: ExecutionContext, actual: Uint8Array, expected: Uint8Array): void {
  const equal = Buffer.compare(actual, expected) === 0;
  t.true(equal, equal ? undefined : `${actual.length} bytes differ from the ${expected.length} expected`);
}

if ('unavailable' in loaded) {
  test.skip(`io_uring backend unavailable here: ${loaded.unavailable}`, () => {});
} else {
  const { native } = loaded;

  test('write then read returns the bytes, with offsets into both buffers', async (t) => {
    await withFile(native, (file, path) => {
      const data = randomBytes(1000);
      file.write(data, 0);
      file.write(Buffer.from('--hello--'), 1000, 2, 5);
      const back = Buffer.alloc(1010, 0xee);
      t.is(file.read(back, 3, 1005, 0), 1005);
      sameBytes(t, back.subarray(3, 1003), data);
      t.is(back.subarray(1003, 1008).toString(), 'hello');
      t.is(back[0], 0xee);
      t.is(file.size(), 1005);
      sameBytes(t, readBytes(path, 0, 1005), Buffer.concat([data, Buffer.from('hello')]));
    });
  });

  test('writev of many buffers (more than IOV_MAX) lands back to back', async (t) => {
    await withFile(native, (file, path) => {
      const buffers = Array.from({ length: 2500 }, (_, i) => randomBytes(1 + (i % 37)));
      const all = Buffer.concat(buffers);
      file.writev(buffers, 7);
      // A second batch once the write path has been decided, so both paths are covered.
      const more = Array.from({ length: 1100 }, (_, i) => Buffer.alloc(3, i % 256));
      file.writev(more, 7 + all.length);
      const expected = Buffer.concat([all, ...more]);
      t.is(file.size(), 7 + expected.length);
      sameBytes(t, readBytes(path, 7, expected.length), expected);
      const back = Buffer.alloc(expected.length);
      t.is(file.read(back, 0, back.length, 7), back.length);
      sameBytes(t, back, expected);
    });
  });

  test('reads of RING_READ_MIN_BYTES (1 MiB) and more go through the ring and equal what was written', async (t) => {
    await withFile(native, (file) => {
      const data = randomBytes(4 * 1024 * 1024 + 123);
      file.write(data, 0);
      for (const length of [RING_READ_MIN_BYTES, RING_READ_MIN_BYTES + 1, 1024 * 1024, data.length]) {
        const back = Buffer.alloc(length);
        t.is(file.read(back, 0, length, 17), Math.min(length, data.length - 17));
        sameBytes(t, back.subarray(0, Math.min(length, data.length - 17)), data.subarray(17, 17 + length));
      }
      // The native call on its own, too.
      const direct = Buffer.alloc(RING_READ_MIN_BYTES);
      const fd = openSync(file.path, 'r');
      try {
        const ring = native.create(4);
        t.is(native.read(ring, fd, direct, 0, direct.length, 1000), direct.length);
        native.close(ring);
      } finally {
        closeSync(fd);
      }
      sameBytes(t, direct, data.subarray(1000, 1000 + RING_READ_MIN_BYTES));
    });
  });

  test('a read is short only at EOF, and 0 past it, small or large', async (t) => {
    await withFile(native, (file) => {
      const data = randomBytes(100_000);
      file.write(data, 0);
      const big = Buffer.alloc(200_000);
      t.is(file.read(big, 0, big.length, 0), 100_000);
      sameBytes(t, big.subarray(0, 100_000), data);
      t.is(file.read(big, 0, 100, 99_950), 50);
      sameBytes(t, big.subarray(0, 50), data.subarray(99_950));
      t.is(file.read(big, 0, 100, 100_000), 0);
      t.is(file.read(big, 0, big.length, 500_000), 0);
      t.is(file.read(big, 0, 0, 0), 0);
    });
  });

  test('writes and reads past 4 GiB work (sparse file)', async (t) => {
    await withFile(native, (file, path) => {
      const at = 5 * 2 ** 30 + 12345;
      const data = randomBytes(RING_READ_MIN_BYTES * 2);
      file.writev([data.subarray(0, 1000), data.subarray(1000)], at);
      t.is(file.size(), at + data.length);
      const back = Buffer.alloc(data.length);
      t.is(file.read(back, 0, back.length, at), data.length);
      sameBytes(t, back, data);
      const small = Buffer.alloc(10);
      t.is(file.read(small, 0, 10, at + 5), 10);
      sameBytes(t, small, data.subarray(5, 15));
      sameBytes(t, readBytes(path, at, 100), data.subarray(0, 100));
      file.truncate(10);
      t.is(file.size(), 10);
    });
  });

  test('the write path is ring or pwritev, and the data is right on either', async (t) => {
    await withFile(native, (file, path) => {
      t.is(file.writePath, 'ring');
      file.write(Buffer.from('first'), 0);
      const after = file.writePath;
      t.true(after === 'ring' || after === 'pwritev');
      t.log(`write path after the first write: ${after}`);
      file.write(Buffer.from('second'), 5);
      file.writev([Buffer.from('-'), Buffer.from('third')], 11);
      t.is(readBytes(path, 0, 100).toString(), 'firstsecond-third');
      if (after === 'pwritev') t.is(file.writePath, 'pwritev', 'once switched, it stays');
    });
  });

  test('sync resolves, also for many concurrent calls (more than the ring holds at once)', async (t) => {
    await withFile(native, async (file, path) => {
      file.write(Buffer.from('durable'), 0);
      t.is(await file.sync(), undefined);
      const calls = Array.from({ length: 300 }, () => file.sync());
      const settled = await Promise.allSettled(calls);
      t.deepEqual(
        settled.filter((outcome) => outcome.status !== 'fulfilled'),
        [],
        'all 300 syncs resolve',
      );
      // The ring is still usable after the burst: a write and a sync through it go through.
      file.write(Buffer.from('-again'), 7);
      await file.sync();
      t.is(readBytes(path, 0, 100).toString(), 'durable-again');
    });
  });

  test('writevAndSync writes at once and resolves once synced; the data is on disk', async (t) => {
    await withFile(native, async (file, path) => {
      const buffers = Array.from({ length: 1500 }, (_, i) => Buffer.from(`r${i};`));
      const expected = Buffer.concat(buffers);
      const synced = file.writevAndSync(buffers, 100);
      // The write is done before the promise settles.
      sameBytes(t, readBytes(path, 100, expected.length), expected);
      await synced;
      await Promise.all([file.writevAndSync([Buffer.from('a')], 0), file.writevAndSync([], 0), file.sync()]);
      t.is(readBytes(path, 0, 1).toString(), 'a');
    });
  });

  test('a closed file throws on every call, and close waits for its syncs', async (t) => {
    await withTempDir(async (dir) => {
      const backend = new UringBackend(native);
      const file = backend.open(join(dir, 'f'), { create: true }) as UringFile;
      file.write(Buffer.from('x'), 0);
      const syncing = file.sync();
      await file.close();
      await syncing; // close waited for it, so it has settled
      await file.close(); // idempotent
      t.throws(() => file.read(Buffer.alloc(100_000), 0, 100_000, 0), { code: 'EBADF' });
      t.throws(() => file.read(Buffer.alloc(10), 0, 10, 0), { code: 'EBADF' });
      t.throws(() => file.write(Buffer.from('y'), 0), { code: 'EBADF' });
      t.throws(() => file.size(), { code: 'EBADF' });
      await t.throwsAsync(file.sync(), { code: 'EBADF' });
      backend.close();
    });
  });

  test('opening without create fails for a missing file, and keeps an existing file’s bytes', async (t) => {
    await withTempDir(async (dir) => {
      const backend = new UringBackend(native);
      t.throws(() => backend.open(join(dir, 'missing'), { create: false }), { code: 'ENOENT' });
      writeFileSync(join(dir, 'kept'), 'keep me');
      const file = backend.open(join(dir, 'kept'), { create: true });
      const back = Buffer.alloc(7);
      t.is(file.read(back, 0, 7, 0), 7);
      t.is(back.toString(), 'keep me');
      await file.close();
      backend.close();
    });
  });

  test('native errors carry the errno name: fsync of a bad fd rejects with EBADF', async (t) => {
    const ring = native.create(4);
    try {
      const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => native.fsync(ring, 1_000_000, resolve));
      t.true(error instanceof Error);
      t.is(error?.code, 'EBADF');
      t.is(error?.errno, -9);
      t.throws(() => native.read(ring, 1_000_000, Buffer.alloc(8), 0, 8, 0), { code: 'EBADF' });
      t.throws(() => native.read(ring, 0, Buffer.alloc(8), 4, 8, 0), { instanceOf: RangeError });
      // A failed linked write throws, and its (cancelled) fdatasync never calls back.
      let called = false;
      t.throws(() => native.writevSync(ring, 1_000_000, [Buffer.from('x')], 0, () => (called = true)), { code: 'EBADF' });
      await new Promise((resolve) => setTimeout(resolve, 50));
      t.false(called);
      t.is(native.pending(ring), 0);
    } finally {
      native.close(ring);
    }
    native.close(ring); // idempotent
    t.throws(() => native.pending({} as never), { instanceOf: TypeError });
    t.throws(() => native.fsync(ring, 0, () => {}), { code: 'EBADF' });
  });

  test('a ring takes as many fsyncs as its completion queue holds, then says EAGAIN; every callback comes', async (t) => {
    await withTempDir(async (dir) => {
      const fd = openSync(join(dir, 'f'), 'w+');
      const ring = native.create(4); // 4 SQEs, 8 CQEs: 7 async ops and one synchronous
      try {
        const calls: Promise<NodeJS.ErrnoException | null>[] = [];
        let refused: unknown;
        for (let i = 0; i < 20 && refused === undefined; i++) {
          let callback: ((error: NodeJS.ErrnoException | null) => void) | undefined;
          const call = new Promise<NodeJS.ErrnoException | null>((resolve) => {
            callback = resolve;
          });
          try {
            if (i % 2 === 0) native.fsync(ring, fd, callback as never);
            else t.is(Math.floor(native.writevSync(ring, fd, [Buffer.from('w')], i, callback as never) / 2), 1);
            calls.push(call);
          } catch (error) {
            refused = error;
          }
        }
        t.is(calls.length, 7);
        t.is((refused as NodeJS.ErrnoException | undefined)?.code, 'EAGAIN');
        t.true(native.pending(ring) <= 7);
        for (const error of await Promise.all(calls)) t.is(error, null);
        while (native.pending(ring) > 0) await new Promise((resolve) => setTimeout(resolve, 1));
        const written = native.writevSync(ring, fd, [Buffer.from('z')], 0, () => {});
        t.is(Math.floor(written / 2), 1);
      } finally {
        while (native.pending(ring) > 0) await new Promise((resolve) => setTimeout(resolve, 1));
        native.close(ring);
        closeSync(fd);
      }
    });
  });

  test('close refuses while an fsync callback is due, and works once it ran', async (t) => {
    await withTempDir(async (dir) => {
      const fd = openSync(join(dir, 'f'), 'w+');
      const ring = native.create(4);
      try {
        const done = new Promise<NodeJS.ErrnoException | null>((resolve) => native.fsync(ring, fd, resolve));
        t.is(native.pending(ring), 1);
        t.throws(() => native.close(ring), { code: 'EBUSY' });
        t.is(await done, null);
        t.is(native.pending(ring), 0);
        native.close(ring);
      } finally {
        closeSync(fd);
      }
    });
  });

  test('an idle ring does not keep the process alive', async (t) => {
    await withTempDir(async (dir) => {
      const backendUrl = new URL('../../src/engine/storage/uring.js', import.meta.url).href;
      const script = `
        import { createUringBackend } from ${JSON.stringify(backendUrl)};
        const backend = createUringBackend();
        if ('unavailable' in backend) throw new Error(backend.unavailable);
        const file = backend.open(${JSON.stringify(join(dir, 'child'))}, { create: true });
        file.write(Buffer.from('child'), 0);
        await file.sync();
        await file.writevAndSync([Buffer.from('!')], 5);
        process.stdout.write('synced');`;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 10_000 });
      t.is(child.error, undefined, 'the child did not exit by itself');
      t.is(child.stderr, '');
      t.is(child.stdout, 'synced');
      t.is(child.status, 0);
      t.is(readBytes(join(dir, 'child'), 0, 10).toString(), 'child!');
    });
  });

  test('rings work in worker threads, and a worker exits cleanly with or without closing its ring', async (t) => {
    const nativeUrl = new URL('../../src/engine/storage/uring-native.js', import.meta.url).href;
    await withTempDir(async (dir) => {
      const run = (close: boolean) =>
        new Promise<{ code: number; message: unknown }>((resolve, reject) => {
          const code = `
            import { parentPort } from 'node:worker_threads';
            import { openSync, closeSync } from 'node:fs';
            import { loadUring } from ${JSON.stringify(nativeUrl)};
            const loaded = loadUring();
            if ('unavailable' in loaded) throw new Error(loaded.unavailable);
            const { native } = loaded;
            const ring = native.create(8);
            const fd = openSync(${JSON.stringify(join(dir, 'w'))}, 'w+');
            const written = native.writev(ring, fd, [Buffer.from('worker')], 0);
            native.fsync(ring, fd, (error) => {
              closeSync(fd);
              if (${close}) native.close(ring);
              parentPort.postMessage({ written: Math.floor(written / 2), error: error === null ? null : error.code });
            });`;
          let message: unknown;
          const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
          worker.on('message', (value) => {
            message = value;
          });
          worker.on('error', reject);
          worker.on('exit', (exitCode) => resolve({ code: exitCode, message }));
        });
      for (const close of [true, false, true, false]) {
        t.deepEqual(await run(close), { code: 0, message: { written: 6, error: null } });
      }
      t.is(readBytes(join(dir, 'w'), 0, 10).toString(), 'worker');
    });
  });
}
