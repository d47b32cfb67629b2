// Conformance, limits and errors: every documented limit rejects with its code and leaves no
// trace (in memory and after a reopen), calls after close, invalid options, the directory lock,
// and corruption found in process or on disk.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import type { OpenOptions } from '../helpers/backends.js';
import { forEachBackend, openWal, withWal } from '../helpers/backends.js';
import {
  assertRecordAt,
  dataFiles,
  drain,
  entryOffsets,
  FILE_HEADER,
  firstDataFile,
  notTheOriginal,
  texts,
  UNLIMITED,
  writeBytes,
  xorBytes,
  zeroBytes,
} from './support.js';

const GiB = 1024 * 1024 * 1024;

forEachBackend('limits-and-errors', (backend) => {
  const title = (name: string) => `[${backend}] ${name}`;

  test(title('a batch of 2001 entries rejects BATCH_TOO_LARGE and writes nothing'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'only');
      const items = Array.from({ length: 2001 }, (_, index) => `x${index}`);
      await t.throwsAsync(wal.appendBatch('t', items), { code: 'BATCH_TOO_LARGE' });
      await t.throwsAsync(wal.appendBatch('fresh', items), { code: 'BATCH_TOO_LARGE' });
      t.is(wal.pendingCount('t'), 1);
      t.deepEqual(wal.topics(), ['t']);
      await wal.close();
      const again = await open();
      t.deepEqual(again.topics(), ['t']);
      t.deepEqual(texts(await drain(again, 't')), ['only']);
      t.is(await again.readNext('fresh'), null);
    }),
  );

  test(title('a batch of more than 1 GiB of payload rejects BATCH_TOO_LARGE'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      // Never touched, so the pages are not actually allocated.
      const half = Buffer.allocUnsafe(GiB / 2 + 1);
      await t.throwsAsync(wal.appendBatch('t', [half, half]), { code: 'BATCH_TOO_LARGE' });
      t.is(wal.pendingCount('t'), 0);
      t.deepEqual(wal.topics(), []);
    }),
  );

  test(title('an entry of more than 1 GiB rejects ENTRY_TOO_LARGE and writes nothing'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const wal = await open();
      await wal.append('t', 'a');
      const huge = Buffer.allocUnsafe(GiB + 1);
      await t.throwsAsync(wal.append('t', huge), { code: 'ENTRY_TOO_LARGE' });
      await t.throwsAsync(wal.append('new', huge), { code: 'ENTRY_TOO_LARGE' });
      await wal.append('t', 'b');
      t.deepEqual(wal.topics(), ['t']);
      t.is(wal.pendingCount('t'), 2);
      await wal.close();
      t.is(dataFiles(dir).length, 1);
      const again = await open();
      t.deepEqual(texts(await drain(again, 't')), ['a', 'b']);
    }),
  );

  test(title('topic names: empty, over 255 UTF-8 bytes or not a string reject INVALID_TOPIC on every call'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const bad = ['', 'a'.repeat(256), 'é'.repeat(128), 42 as unknown as string, undefined as unknown as string];
      for (const topic of bad) {
        const shown = typeof topic === 'string' ? `${topic.length} chars` : String(topic);
        await t.throwsAsync(wal.append(topic, 'x'), { code: 'INVALID_TOPIC' }, `append ${shown}`);
        await t.throwsAsync(wal.appendBatch(topic, ['x']), { code: 'INVALID_TOPIC' }, `appendBatch ${shown}`);
        await t.throwsAsync(wal.readNext(topic), { code: 'INVALID_TOPIC' }, `readNext ${shown}`);
        await t.throwsAsync(wal.readBatch(topic, { maxBytes: 10 }), { code: 'INVALID_TOPIC' }, `readBatch ${shown}`);
        t.throws(() => wal.pendingCount(topic), { code: 'INVALID_TOPIC' }, `pendingCount ${shown}`);
      }
      t.deepEqual(wal.topics(), []);
    }),
  );

  test(title('topic names of exactly 255 UTF-8 bytes work and persist'), (t) =>
    withWal(backend, async ({ open }) => {
      const ascii = 'a'.repeat(255);
      const accented = `${'é'.repeat(127)}z`;
      const wal = await open();
      await wal.append(ascii, 'one');
      await wal.appendBatch(accented, ['two', 'three']);
      await wal.close();
      const again = await open();
      t.deepEqual([...again.topics()].sort(), [ascii, accented].sort());
      t.deepEqual(texts(await drain(again, ascii)), ['one']);
      t.deepEqual(texts(await drain(again, accented)), ['two', 'three']);
    }),
  );

  test(title('payloads that are neither strings nor bytes reject INVALID_ARGUMENT'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      for (const payload of [42, null, undefined, { length: 3 }, [1, 2, 3]]) {
        await t.throwsAsync(wal.append('t', payload as unknown as string), { code: 'INVALID_ARGUMENT' });
      }
      t.deepEqual(wal.topics(), []);
    }),
  );

  test(title('readBatch with bad options rejects INVALID_ARGUMENT'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'x');
      const bad = [{ maxBytes: -1 }, { maxBytes: Number.NaN }, {}, null, { maxBytes: 10, startSeq: -1 }, { maxBytes: 10, startSeq: 1.5 }];
      for (const options of bad) {
        await t.throwsAsync(
          wal.readBatch('t', options as unknown as { maxBytes: number }),
          { code: 'INVALID_ARGUMENT' },
          JSON.stringify(options),
        );
      }
      t.is(wal.pendingCount('t'), 1);
    }),
  );

  test(title('every call after close rejects CLOSED; close is idempotent'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'x');
      await wal.close();
      await t.notThrowsAsync(wal.close());
      await t.throwsAsync(wal.append('t', 'y'), { code: 'CLOSED' });
      await t.throwsAsync(wal.appendBatch('t', ['y']), { code: 'CLOSED' });
      await t.throwsAsync(wal.readNext('t'), { code: 'CLOSED' });
      await t.throwsAsync(wal.readNext('t', { checkpoint: false }), { code: 'CLOSED' });
      await t.throwsAsync(wal.readBatch('t', { maxBytes: 10 }), { code: 'CLOSED' });
      await t.throwsAsync(wal.flush(), { code: 'CLOSED' });
      t.throws(() => wal.pendingCount('t'), { code: 'CLOSED' });
      t.throws(() => wal.topics(), { code: 'CLOSED' });
      const again = await open();
      t.deepEqual(texts(await drain(again, 't')), ['x']);
    }),
  );

  test(title('invalid open options reject INVALID_ARGUMENT (and, except the backend, create no directory)'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const cases: [string, OpenOptions][] = [
        ['consistency "eventual"', { consistency: 'eventual' as unknown as 'strict' }],
        ['atLeastOnce -1', { consistency: { atLeastOnce: -1 } }],
        ['atLeastOnce 1.5', { consistency: { atLeastOnce: 1.5 } }],
        ['atLeastOnce 1000001', { consistency: { atLeastOnce: 1_000_001 } }],
        ['fsync "sometimes"', { fsync: 'sometimes' as unknown as 'none' }],
        ['fsync everyMs 0', { fsync: { everyMs: 0 } }],
        ['fsync everyMs 1.5', { fsync: { everyMs: 1.5 } }],
        ['fsync everyMs one hour + 1', { fsync: { everyMs: 3_600_001 } }],
        ['fileBytesMax 4095', { fileBytesMax: 4095 }],
        ['fileBytesMax 1.5', { fileBytesMax: 4096.5 }],
        ['key 42', { key: 42 as unknown as string }],
      ];
      for (const [index, [name, options]] of cases.entries()) {
        const dataDir = join(dir, `case-${index}`);
        await t.throwsAsync(open({ ...options, dataDir }), { code: 'INVALID_ARGUMENT' }, name);
        t.false(existsSync(dataDir), `${name}: no directory`);
      }
      await t.throwsAsync(openWal(join(dir, 'backend'), 'floppy'), { code: 'INVALID_ARGUMENT' }, 'backend floppy');
      // Limits that are valid: atLeastOnce 0 (means 1), fileBytesMax 4096, everyMs 1.
      const fine = await open({ consistency: { atLeastOnce: 0 }, fileBytesMax: 4096, fsync: { everyMs: 1 }, dataDir: join(dir, 'fine') });
      await fine.append('t', 'x');
      t.deepEqual(texts(await drain(fine, 't')), ['x']);
    }),
  );

  test(title('an open that fails on its backend option leaves the live instance of the directory working'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const live = await open();
      await live.append('t', 'one');
      await t.throwsAsync(openWal(dir, 'floppy'), { code: 'INVALID_ARGUMENT' });
      await live.append('t', 'two');
      t.deepEqual(texts(await drain(live, 't')), ['one', 'two']);
    }),
  );

  test(title('a rejected call leaves no trace: counts, topics and the log after a reopen hold only what succeeded'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const tooMany = Array.from({ length: 2001 }, () => 'x');
      const outcomes = await Promise.allSettled([
        wal.append('t', 'good1'),
        wal.append('', 'bad topic'),
        wal.appendBatch('t', tooMany),
        wal.append('t', 7 as unknown as string),
        wal.appendBatch('t', ['good2', 'good3']),
        wal.append('t', 'busy'),
        wal.appendBatch('u', ['ok', 5 as unknown as string]),
        wal.append('t'.repeat(300), 'long topic'),
      ]);
      t.deepEqual(
        outcomes.map((outcome) => outcome.status),
        ['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled', 'rejected', 'rejected', 'rejected'],
      );
      await wal.append('t', 'good4');
      t.is(wal.pendingCount('t'), 4);
      t.is(wal.pendingCount('u'), 0);
      t.deepEqual(wal.topics(), ['t']);
      await wal.close();
      const again = await open();
      t.deepEqual(again.topics(), ['t']);
      const entries = await drain(again, 't');
      t.deepEqual(texts(entries), ['good1', 'good2', 'good3', 'good4']);
      t.deepEqual(
        entries.map((entry) => entry.seq),
        [0, 1, 2, 3],
      );
    }),
  );

  test(title('a directory locked by another live process rejects DIRECTORY_LOCKED; a stale lock is taken over'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const lock = join(dir, 'walrus.lock');
      if (process.pid !== 1) {
        // PID 1 is always alive (and never this test process).
        writeFileSync(lock, '1\n');
        await t.throwsAsync(open(), { code: 'DIRECTORY_LOCKED' });
        rmSync(lock);
      }
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      writeFileSync(lock, `${dead}\n`);
      const wal = await open();
      t.is(readFileSync(lock, 'utf8').trim(), String(process.pid));
      await wal.append('t', 'x');
      t.is(wal.pendingCount('t'), 1);
    }),
  );

  test(title('corruption found in process: the damaged entry rejects CORRUPT_RECORD and is never returned'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const wal = await open();
      const records = entryOffsets([
        { topic: 't', bytes: 6 },
        { topic: 't', bytes: 6 },
        { topic: 't', bytes: 6 },
        { topic: 'u', bytes: 6 },
      ]);
      for (const word of ['AAAAAA', 'BBBBBB', 'CCCCCC']) await wal.append('t', word);
      await wal.append('u', 'XXXXXX');
      const file = firstDataFile(dir);
      const damaged = records[1];
      if (damaged === undefined) throw new Error('layout');
      assertRecordAt(t, file, damaged.header);
      xorBytes(file, damaged.payload + 2);
      t.deepEqual(texts([await wal.readNext('t')]), ['AAAAAA']);
      const original = Buffer.from('BBBBBB');
      await notTheOriginal(t, wal.readNext('t', { checkpoint: false }), original);
      await notTheOriginal(t, wal.readNext('t'), original);
      // engine.md (recovery reports): the damaged entry rejects CORRUPT_RECORD on every read, and
      // the cursor does not move past it.
      for (let attempt = 0; attempt < 2; attempt++) {
        await t.throwsAsync(wal.readNext('t', { checkpoint: false }), { code: 'CORRUPT_RECORD' }, `peek ${attempt}`);
        await t.throwsAsync(wal.readNext('t'), { code: 'CORRUPT_RECORD' }, `readNext ${attempt}`);
        await t.throwsAsync(wal.readBatch('t', { maxBytes: UNLIMITED }), { code: 'CORRUPT_RECORD' }, `readBatch ${attempt}`);
      }
      t.is(wal.pendingCount('t'), 2, 'the cursor stays at the damaged entry');
      t.deepEqual(texts(await drain(wal, 'u')), ['XXXXXX'], 'other topics are unaffected');
    }),
  );

  test(title('a flipped payload byte on disk: recovery keeps the valid prefix, new appends work and persist'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const words = ['entry0', 'entry1', 'entry2', 'entry3', 'entry4'];
      const records = entryOffsets(words.map((word) => ({ topic: 't', bytes: word.length })));
      const first = await open();
      for (const word of words) await first.append('t', word);
      await first.close();
      const file = firstDataFile(dir);
      const damaged = records[2];
      if (damaged === undefined) throw new Error('layout');
      assertRecordAt(t, file, damaged.header);
      xorBytes(file, damaged.payload);
      const second = await open();
      t.is(second.pendingCount('t'), 2);
      t.is(second.recovery.tornTails.length, 1, 'recovery reports what it dropped');
      t.deepEqual(texts(await drain(second, 't')), ['entry0', 'entry1']);
      await second.append('t', 'new_entry');
      await second.close();
      const third = await open();
      t.deepEqual(texts(await drain(third, 't')), ['new_entry'], 'the cursor persisted after entry1');
      // The damaged file was fully consumed, so it may have been reclaimed: whatever is kept is a
      // suffix of [entry0, entry1] followed by new_entry, and the damaged entries never come back.
      const kept = texts(await third.readBatch('t', { maxBytes: UNLIMITED, startSeq: 0 }));
      t.deepEqual(kept.slice(-1), ['new_entry']);
      t.deepEqual(kept.slice(0, -1), ['entry0', 'entry1'].slice(3 - kept.length), 'the damaged entry and those after it never come back');
    }),
  );

  test(title('a zeroed record header: entries before it are readable, then null; new appends work'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const words = ['entry_0', 'entry_1', 'entry_2', 'entry_3', 'entry_4'];
      const records = entryOffsets(words.map((word) => ({ topic: 't', bytes: word.length })));
      const first = await open();
      for (const word of words) await first.append('t', word);
      await first.close();
      t.is(dataFiles(dir).length, 1);
      const file = firstDataFile(dir);
      const zeroed = records[2];
      if (zeroed === undefined) throw new Error('layout');
      assertRecordAt(t, file, zeroed.header);
      zeroBytes(file, zeroed.header, 32);
      const second = await open();
      t.deepEqual(texts([await second.readNext('t'), await second.readNext('t'), await second.readNext('t')]), [
        'entry_0',
        'entry_1',
        null,
      ]);
      const third = await open();
      await third.append('t', 'new_entry');
      await third.close();
      const fourth = await open();
      t.deepEqual(texts(await drain(fourth, 't')), ['new_entry']);
    }),
  );

  test(title('a torn tail (file cut inside a record) keeps the entries before it'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const payload = (index: number) => Buffer.alloc(1000, index + 1);
      const records = entryOffsets([0, 1, 2].map(() => ({ topic: 't', bytes: 1000 })));
      const first = await open();
      for (const index of [0, 1, 2]) await first.append('t', payload(index));
      await first.close();
      const cut = records[2];
      if (cut === undefined) throw new Error('layout');
      truncateSync(firstDataFile(dir), cut.payload + 500);
      const second = await open();
      const entries = await drain(second, 't');
      t.deepEqual(
        entries.map((entry) => entry.data[0]),
        [1, 2],
      );
      await second.append('t', 'after');
      await second.close();
      const third = await open();
      // Consumed files may be reclaimed; the torn record never comes back.
      const kept = (await third.readBatch('t', { maxBytes: UNLIMITED, startSeq: 0 })).map((entry) => entry.data.length);
      t.deepEqual(kept, [1000, 1000, 5].slice(3 - kept.length));
      t.is(kept[kept.length - 1], 5);
    }),
  );

  test(title('a batch cut short on disk is dropped whole'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const items = ['b0', 'b1', 'b2', 'b3', 'b4'];
      const records = entryOffsets([{ topic: 't', bytes: 3 }, ...items.map((item) => ({ topic: 't', bytes: item.length }))]);
      const first = await open();
      await first.append('t', 'pre');
      await first.appendBatch('t', items);
      await first.close();
      const file = firstDataFile(dir);
      const cut = records[4];
      if (cut === undefined) throw new Error('layout');
      assertRecordAt(t, file, cut.header);
      zeroBytes(file, cut.header, 32 + 2);
      const second = await open();
      t.is(second.recovery.incompleteBatches, 1);
      t.deepEqual(texts(await drain(second, 't')), ['pre'], 'no entry of the batch is visible');
    }),
  );

  test(title('a damaged data file header: open succeeds and reads return null instead of failing'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const first = await open();
      await first.append('t', 'abcdef');
      await first.close();
      writeBytes(firstDataFile(dir), 0, Buffer.from([0xff, 0xff]));
      const second = await open();
      t.is(await second.readNext('t'), null);
      t.is(second.recovery.unreadableFiles.length, 1);
    }),
  );

  test(title('records of a data file with a damaged header never reappear after new appends and a reopen'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const first = await open();
      for (const word of ['aaaa', 'bbbb', 'cccc']) await first.append('t', word);
      await first.close();
      writeBytes(firstDataFile(dir), 0, Buffer.from([0xff, 0xff]));
      const second = await open();
      t.is(await second.readNext('t'), null);
      await second.append('t', 'xxxx');
      await second.close();
      const third = await open();
      t.deepEqual(texts(await drain(third, 't')), ['xxxx']);
    }),
  );

  test(title('the first data file starts with its 64-byte header and the first record right after it'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const wal = await open();
      await wal.append('t', 'x');
      await wal.close();
      const file = firstDataFile(dir);
      t.is(dataFiles(dir)[0], '000000000001.wal');
      assertRecordAt(t, file, FILE_HEADER);
    }),
  );
});
