// Conformance, the StorageFile contract itself (src/contracts/storage.ts), below the engine: every
// backend must give the same answers as plain pread/pwrite on the same operations, including
// offsets past 4 GiB, writes that cross a 64 MiB mapping window, shrinking and regrowing, and
// what happens after close. What the engine builds on top is covered by the other files.

import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import type { StorageBackend } from '../../src/contracts/storage.js';
import { pageCacheWillNeed } from '../../src/engine/storage/page-cache.js';
import { BACKENDS } from '../../src/engine/storage/select.js';
import { forEachBackend } from '../helpers/backends.js';
import { withTempDir } from '../helpers/kernel.js';
import { MiB, pattern, readBytes } from './support.js';

const GiB = 1024 * MiB;

async function backendNamed(name: string): Promise<StorageBackend> {
  const candidate = BACKENDS.find((entry) => entry.name === name);
  const loaded = await candidate?.load();
  if (loaded === undefined || 'unavailable' in loaded) throw new Error(`backend ${name} does not load`);
  return loaded;
}

forEachBackend('storage file', (name) => {
  const title = (text: string) => `[${name}] storage file: ${text}`;

  test(title('written bytes read back, from the file and from outside; short read at the end, 0 past it'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      t.is(backend.name, name);
      const path = join(dir, 'a.bin');
      const file = backend.open(path, { create: true });
      t.is(file.size(), 0);
      const data = pattern(10_000, 1);
      file.write(data, 0);
      file.write(data, 20_000, 100, 50); // 50 bytes of data from offset 100
      t.is(file.size(), 20_050);
      const back = Buffer.alloc(10_000);
      t.is(file.read(back, 0, 10_000, 0), 10_000);
      t.true(back.equals(data));
      const tail = Buffer.alloc(100);
      t.is(file.read(tail, 0, 100, 20_000), 50, 'short read at the end of the file');
      t.true(tail.subarray(0, 50).equals(data.subarray(100, 150)));
      t.is(file.read(tail, 0, 100, 30_000), 0, 'nothing past the end');
      t.true(readBytes(path, 10_000, 10_000).equals(Buffer.alloc(10_000)), 'the gap reads as zeros');
      await file.sync();
      await file.close();
      t.true(readFileSync(path).subarray(0, 10_000).equals(data));
      t.is(statSync(path).size, 20_050);
    }),
  );

  test(title('writev writes buffers back to back, also many small ones and across a 64 MiB boundary'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const path = join(dir, 'v.bin');
      const file = backend.open(path, { create: true });
      const parts = Array.from({ length: 1500 }, (_, index) => pattern(7 + (index % 13), index));
      const total = parts.reduce((sum, part) => sum + part.length, 0);
      const start = 64 * MiB - Math.floor(total / 2);
      file.writev(parts, start);
      const back = Buffer.alloc(total);
      t.is(file.read(back, 0, total, start), total);
      t.true(back.equals(Buffer.concat(parts)));
      await file.sync();
      t.true(readBytes(path, start, total).equals(Buffer.concat(parts)));
      await file.close();
    }),
  );

  test(title('offsets past 4 GiB work (a sparse file)'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const path = join(dir, 'big.bin');
      const file = backend.open(path, { create: true });
      const position = 4 * GiB + 12_345;
      const data = pattern(300_000, 5);
      file.write(data, position);
      t.is(file.size(), position + data.length);
      const back = Buffer.alloc(data.length);
      t.is(file.read(back, 0, data.length, position), data.length);
      t.true(back.equals(data));
      await file.sync();
      await file.close();
      t.true(readBytes(path, position, data.length).equals(data));
    }),
  );

  test(title('truncate shrinks (reads stop at the new end) and grows with zeros'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const path = join(dir, 't.bin');
      const file = backend.open(path, { create: true });
      file.write(pattern(8192, 2), 0);
      file.truncate(100);
      t.is(file.size(), 100);
      const back = Buffer.alloc(8192);
      t.is(file.read(back, 0, 8192, 0), 100);
      file.truncate(5000);
      t.is(file.size(), 5000);
      t.is(file.read(back, 0, 8192, 0), 5000);
      t.true(back.subarray(0, 100).equals(pattern(8192, 2).subarray(0, 100)));
      t.true(back.subarray(100, 5000).equals(Buffer.alloc(4900)), 'regrown bytes are zeros, not the old contents');
      await file.sync();
      await file.close();
      t.is(statSync(path).size, 5000);
    }),
  );

  test(title('opening an existing file keeps its bytes; open without create fails for a missing file'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const path = join(dir, 'e.bin');
      writeFileSync(path, 'existing contents');
      const file = backend.open(path, { create: true });
      t.is(file.size(), 17);
      const back = Buffer.alloc(8);
      t.is(file.read(back, 0, 8, 0), 8);
      t.is(back.toString(), 'existing');
      await file.close();
      const error = t.throws(() => backend.open(join(dir, 'missing.bin'), { create: false }));
      t.is((error as NodeJS.ErrnoException).code, 'ENOENT');
    }),
  );

  test(title('a closed file refuses reads and writes; concurrent syncs all settle'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const file = backend.open(join(dir, 'c.bin'), { create: true });
      const syncs: Promise<void>[] = [];
      for (let index = 0; index < 20; index++) {
        file.write(pattern(512, index), index * 512);
        syncs.push(file.sync());
      }
      await Promise.all(syncs);
      await file.close();
      t.throws(() => file.read(Buffer.alloc(4), 0, 4, 0));
      t.throws(() => file.write(Buffer.alloc(4), 0));
    }),
  );

  test(title('prefetch, where offered, changes no byte and no size, and settles for holes, data, past the end and after close'), (t) =>
    withTempDir(async (dir) => {
      const backend = await backendNamed(name);
      const path = join(dir, 'p.bin');
      const file = backend.open(path, { create: true });
      // fd and io_uring offer the page-cache hint whenever the native addon has it; mmap's writes
      // go through its mapping, which a hint on the descriptor does not fill.
      t.is(file.prefetch !== undefined, name !== 'mmap' && pageCacheWillNeed() !== undefined, 'whether prefetch is offered');
      const data = pattern(300_000, 7);
      file.write(data, 0);
      file.truncate(8 * MiB);
      if (file.prefetch !== undefined) {
        await file.prefetch(0, 4 * MiB); // data, then a hole
        await file.prefetch(4 * MiB, 4 * MiB); // a hole up to the end
        await file.prefetch(6 * MiB, 16 * MiB); // past the end
        await file.prefetch(0, 0);
      }
      t.is(file.size(), 8 * MiB);
      const back = Buffer.alloc(300_000);
      t.is(file.read(back, 0, back.length, 0), back.length);
      t.true(back.equals(data));
      t.true(readBytes(path, 4 * MiB, MiB).equals(Buffer.alloc(MiB)), 'the hole still reads as zeros');
      await file.close();
      if (file.prefetch !== undefined) await file.prefetch(0, MiB); // settles, does nothing
      t.is(statSync(path).size, 8 * MiB);
      t.true(readFileSync(path).subarray(0, 300_000).equals(data));
    }),
  );
});
