// The writer's page-cache read-ahead (LogWriter.prefetchAhead, StorageFile.prefetch): it asks
// for the part of the current data file just past what it has written, one step at a time, never
// past the file's size or more than limits.prefetchAheadBytes ahead of the writes, starts again
// at the new file after a roll, and changes nothing the engine stores or returns, even when a
// hint is slow or a backend has none.

import test from 'ava';
import type { StorageBackend, StorageFile } from '../../src/contracts/storage.js';
import { FdBackend } from '../../src/engine/storage/fd.js';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { limits } from '../../src/kernel/limits.js';
import { silent, withTempDir } from '../helpers/kernel.js';

interface Hint {
  readonly file: string;
  readonly position: number;
  readonly length: number;
  /** The file's size when the hint was asked for. */
  readonly size: number;
  /** Hints of any file still running when this one was asked for. */
  readonly inFlight: number;
}

/** fd underneath; every file offers a prefetch that records each call and settles after `delayMs`. */
class HintingBackend implements StorageBackend {
  readonly name = 'hinting';
  readonly hints: Hint[] = [];
  delayMs = 0;
  private running = 0;
  private readonly inner = new FdBackend();

  open(path: string, options: { readonly create: boolean }): StorageFile {
    const file = this.inner.open(path, options);
    const backend = this;
    return {
      path: file.path,
      write: (buffer, position, offset, length) => file.write(buffer, position, offset, length),
      writev: (buffers, position) => file.writev(buffers, position),
      read: (buffer, offset, length, position) => file.read(buffer, offset, length, position),
      size: () => file.size(),
      truncate: (bytes) => file.truncate(bytes),
      sync: () => file.sync(),
      async prefetch(position, length) {
        backend.hints.push({ file: path, position, length, size: file.size(), inFlight: backend.running });
        backend.running += 1;
        // A real hint completes through the event loop's poll phase, as socket reads do.
        await new Promise((resolve) => (backend.delayMs === 0 ? setImmediate(resolve) : setTimeout(resolve, backend.delayMs)));
        backend.running -= 1;
      },
      close: () => file.close(),
    };
  }
}

const payload = (index: number) => Buffer.alloc(4000, index % 251);

/** Every entry of `topic` from 0, checked against payload(index); the count read. */
function readAllChecked(wal: Walrus, topic: string): { count: number; intact: boolean } {
  let count = 0;
  let intact = true;
  for (;;) {
    const run = wal.readRunAt(topic, count, 1000, 4 * 1024 * 1024);
    if (run.length === 0) return { count, intact };
    for (const entry of run) {
      if (!entry.equals(payload(count))) intact = false;
      count += 1;
    }
  }
}

async function appendMiB(wal: Walrus, topic: string, mebibytes: number, from = 0): Promise<number> {
  const count = Math.ceil((mebibytes * 1024 * 1024) / 4000);
  for (let start = 0; start < count; start += 64) {
    const batch = Array.from({ length: Math.min(64, count - start) }, (_, index) => payload(from + start + index));
    await wal.appendBatch(topic, batch);
    // A node's appends come from socket reads, between which the event loop turns.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return count;
}

test('the writer asks for the file ahead of its writes in steps, inside the file and at most the read-ahead window ahead', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new HintingBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent() });
    const count = await appendMiB(wal, 't', 40);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const hints = storage.hints;
    t.true(hints.length >= 16, `${hints.length} hints for 40 MiB written`);
    let reached = 0;
    for (const hint of hints) {
      t.true(hint.length > 0 && hint.length <= limits.prefetchStepBytes, `step of ${hint.length} bytes`);
      t.true(hint.position + hint.length <= hint.size, `hint [${hint.position}, +${hint.length}) inside a file of ${hint.size}`);
      t.true(hint.position >= reached, 'no range is asked for twice');
      t.is(hint.inFlight, 0, 'one hint at a time');
      reached = hint.position + hint.length;
    }
    const last = hints.at(-1) as Hint;
    t.true(last.position + last.length >= 40 * 1024 * 1024, `the hints reached ${last.position + last.length}`);
    t.true(last.position + last.length <= 40 * 1024 * 1024 + limits.prefetchAheadBytes + limits.prefetchStepBytes);
    // Nothing the engine returns depends on the hints.
    t.deepEqual(readAllChecked(wal, 't'), { count, intact: true });
    await wal.close();
  });
});

test('after a roll the hints follow the new file from its start', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new HintingBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent(), fileBytesMax: 8 * 1024 * 1024 });
    const count = await appendMiB(wal, 't', 20);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const files = [...new Set(storage.hints.map((hint) => hint.file))];
    t.true(files.length >= 2, `hints for ${files.length} files`);
    t.deepEqual(files, [...files].sort(), 'files are hinted in the order they are written');
    for (const file of files) {
      const first = storage.hints.find((hint) => hint.file === file) as Hint;
      t.true(first.position < limits.prefetchStepBytes * 2, `${file}: first hint at ${first.position}`);
    }
    await wal.close();
    const reopened = await Walrus.open({ dataDir: dir, fsync: 'none', logger: silent() });
    t.deepEqual(readAllChecked(reopened, 't'), { count, intact: true });
    await reopened.close();
  });
});

test('hints slower than the writes are never stacked up, and a roll mid-hint leaves the new file hinted', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new HintingBackend();
    storage.delayMs = 30;
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent(), fileBytesMax: 8 * 1024 * 1024 });
    const count = await appendMiB(wal, 't', 20);
    await new Promise((resolve) => setTimeout(resolve, 100));
    t.true(storage.hints.length > 0);
    t.true(
      storage.hints.every((hint) => hint.inFlight === 0),
      'a new hint only once the last has settled',
    );
    // The writes ran ahead of the slow hints: each new hint starts at or past where writing was.
    const files = [...new Set(storage.hints.map((hint) => hint.file))];
    t.true(files.length >= 2, `hints for ${files.length} files`);
    t.deepEqual(readAllChecked(wal, 't'), { count, intact: true });
    await wal.close();
  });
});

test('writeReadAhead: false asks for nothing; a value that is no boolean is refused', async (t) => {
  await withTempDir(async (dir) => {
    const storage = new HintingBackend();
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none', storage, logger: silent(), writeReadAhead: false });
    const count = await appendMiB(wal, 't', 8);
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.is(storage.hints.length, 0);
    t.deepEqual(readAllChecked(wal, 't'), { count, intact: true });
    await wal.close();
    const error = await t.throwsAsync(
      Walrus.open({ dataDir: dir, storage, logger: silent(), writeReadAhead: 'yes' as unknown as boolean }),
    );
    t.is((error as WalrusError).code, 'INVALID_ARGUMENT');
    t.regex(error?.message ?? '', /writeReadAhead must be a boolean/);
  });
});
