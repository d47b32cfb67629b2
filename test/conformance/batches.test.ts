// Conformance, batch appends: order and sequence numbers, all-or-nothing visibility in
// process, TOPIC_BUSY for overlapping appends on the topic of a batch in flight, empty batches,
// and batches across restarts.

import test from 'ava';
import type { Walrus } from '../../src/engine/walrus.js';
import { forEachBackend, withWal } from '../helpers/backends.js';
import { drain, label, MiB, pattern, range, sameBytes, seqs, texts, UNLIMITED } from './support.js';

forEachBackend('batches', (backend) => {
  const title = (name: string) => `[${backend}] ${name}`;

  test(title('a batch is read back in order with consecutive sequence numbers'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'before');
      await wal.appendBatch('t', ['b0', 'b1', 'b2']);
      await wal.append('t', 'after');
      t.is(wal.pendingCount('t'), 5);
      const entries = await drain(wal, 't');
      t.deepEqual(texts(entries), ['before', 'b0', 'b1', 'b2', 'after']);
      t.deepEqual(seqs(entries), [0, 1, 2, 3, 4]);
    }),
  );

  test(title('a batch is invisible until it settles, then visible whole'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'old');
      const batch = wal.appendBatch('t', ['n0', 'n1', 'n2']);
      t.is(wal.pendingCount('t'), 1, 'not yet visible');
      t.deepEqual(
        texts(await wal.readBatch('t', { maxBytes: UNLIMITED, checkpoint: false })).filter((text) => text !== 'old'),
        [],
      );
      await batch;
      t.is(wal.pendingCount('t'), 4);
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: UNLIMITED })), ['old', 'n0', 'n1', 'n2']);
    }),
  );

  for (const fsync of ['none', 'each'] as const) {
    test(title(`readers polling during a large batch (fsync ${fsync}) see none or all of it`), (t) =>
      withWal(backend, async ({ open }) => {
        const wal = await open({ fsync });
        // 2000 × 4 KiB = 8 MiB: more than the writer stages at once, so it takes several writes.
        const items = range(0, 2000).map((index) => pattern(4096, index));
        const seen = new Set<number>();
        let settled = false;
        const batch = wal.appendBatch('t', items).then(() => {
          settled = true;
        });
        while (!settled) {
          seen.add(wal.pendingCount('t'));
          const peek = await wal.readBatch('t', { maxBytes: UNLIMITED, checkpoint: false });
          seen.add(peek.length);
          await new Promise((resolve) => setImmediate(resolve));
        }
        await batch;
        seen.add(wal.pendingCount('t'));
        t.deepEqual(
          [...seen].filter((count) => count !== 0 && count !== 2000),
          [],
          `observed counts ${[...seen].join(', ')}`,
        );
        const entries = await wal.readBatch('t', { maxBytes: UNLIMITED });
        t.is(entries.length, 2000);
        t.true(entries.every((entry, index) => entry.data.equals(items[index] ?? Buffer.alloc(0))));
      }),
    );
  }

  test(title('an append or a second batch on the topic of a batch in flight rejects TOPIC_BUSY and leaves no trace'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      // Every call is issued before the batch can settle.
      const winner = wal.appendBatch('t', ['w0', 'w1', 'w2']);
      const append = wal.append('t', 'loser');
      const second = wal.appendBatch('t', ['l0', 'l1']);
      const others = Promise.all([wal.append('other', 'o'), wal.appendBatch('other2', ['p'])]);
      await t.throwsAsync(append, { code: 'TOPIC_BUSY' });
      await t.throwsAsync(second, { code: 'TOPIC_BUSY' });
      await t.notThrowsAsync(others, 'other topics are not affected');
      await winner;
      await wal.append('t', 'later');
      t.deepEqual(texts(await drain(wal, 't')), ['w0', 'w1', 'w2', 'later']);
      t.deepEqual(texts(await drain(wal, 'other')), ['o']);
      t.deepEqual(texts(await drain(wal, 'other2')), ['p']);
    }),
  );

  test(
    title(
      'with exclusive: false, appends and batches made while a batch is in flight are taken, after it, in order; one sync can carry them all',
    ),
    (t) =>
      withWal(backend, async ({ open }) => {
        const wal = await open({ fsync: 'each' });
        // Every call is issued before the first batch can settle.
        const calls = [
          wal.appendBatch('t', ['a0', 'a1'], { exclusive: false }),
          wal.append('t', 'single'),
          wal.appendBatch('t', ['b0', 'b1', 'b2'], { exclusive: false }),
          wal.appendBatch('t', ['c0'], { exclusive: false }),
        ];
        await Promise.all(calls);
        t.deepEqual(texts(await drain(wal, 't')), ['a0', 'a1', 'single', 'b0', 'b1', 'b2', 'c0']);
        // An exclusive batch still refuses what overlaps it.
        const exclusive = wal.appendBatch('t', ['x']);
        await t.throwsAsync(wal.appendBatch('t', ['y'], { exclusive: false }), { code: 'TOPIC_BUSY' });
        await exclusive;
      }),
  );

  test(title('TOPIC_BUSY while a slow batch (fsync each, 2 MiB) is in flight; the topic is free once it settles'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open({ fsync: 'each' });
      await wal.append('t', 'first');
      const items = range(0, 8).map((index) => pattern(256 * 1024, index));
      let settled = false;
      const batch = wal.appendBatch('t', items).then(() => {
        settled = true;
      });
      let busy = 0;
      while (!settled) {
        try {
          await wal.append('t', 'intruder');
          t.fail('an append succeeded while the batch was in flight');
        } catch (error) {
          t.is((error as { code?: string }).code, 'TOPIC_BUSY');
          busy += 1;
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      await batch;
      t.true(busy >= 1);
      await wal.append('t', 'last');
      const entries = await drain(wal, 't');
      t.deepEqual(
        entries.map((entry) => entry.data.length),
        [5, ...items.map((item) => item.length), 4],
      );
      t.deepEqual(seqs(entries), range(0, 10));
    }),
  );

  test(title('an empty batch resolves, writes nothing and creates no topic'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch('a', []);
      t.deepEqual(wal.topics(), []);
      t.is(await wal.readNext('a'), null);
      await wal.append('b', 'x');
      await wal.close();
      const again = await open();
      t.deepEqual(again.topics(), ['b']);
      t.is(await again.readNext('a'), null);
      t.deepEqual(texts(await drain(again, 'b')), ['x']);
    }),
  );

  test(title('a batch may mix strings, Buffers, Uint8Arrays and empty entries'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch('t', ['text', Buffer.from([1, 2, 3]), new Uint8Array([4, 5]), '', new Uint8Array(0), 'é']);
      const entries = await drain(wal, 't');
      t.deepEqual(
        entries.map((entry) => [...entry.data]),
        [[...Buffer.from('text')], [1, 2, 3], [4, 5], [], [], [...Buffer.from('é')]],
      );
    }),
  );

  test(title('a batch of exactly 2000 entries is accepted'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch(
        't',
        range(0, 2000).map((index) => label('e', index)),
      );
      t.is(wal.pendingCount('t'), 2000);
      const entries = await wal.readBatch('t', { maxBytes: UNLIMITED });
      t.is(entries.length, 2000);
      t.is(entries[1999]?.data.toString(), 'e1999');
    }),
  );

  test(title('batches with large entries (1 MiB … 10 MiB) round-trip and persist'), (t) =>
    withWal(backend, async ({ open }) => {
      const sizes = [100, 1 * MiB, 10 * MiB, 500, 4 * MiB];
      const wal = await open({ fsync: 'none' });
      await wal.appendBatch(
        't',
        sizes.map((size, index) => pattern(size, index)),
      );
      await wal.close();
      const again = await open();
      const entries = await drain(again, 't');
      t.is(entries.length, sizes.length);
      sizes.forEach((size, index) => {
        sameBytes(t, entries[index]?.data, pattern(size, index), `entry ${index}`);
      });
    }),
  );

  test(title('batches on different topics run concurrently and all land'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const topics = range(0, 10).map((index) => `bt${index}`);
      for (let round = 0; round < 6; round++) {
        await Promise.all(
          topics.map((topic) => wal.appendBatch(topic, [`${topic}_${round}_0`, `${topic}_${round}_1`, `${topic}_${round}_2`])),
        );
      }
      for (const topic of topics) {
        const expected = range(0, 6).flatMap((round) => [0, 1, 2].map((index) => `${topic}_${round}_${index}`));
        t.deepEqual(texts(await drain(wal, topic)), expected);
      }
    }),
  );

  test(
    title(
      'consumeRun moves the cursor past a run of entries at once, kept across a reopen; a run not at the cursor, or past what is visible, is refused',
    ),
    (t) =>
      withWal(backend, async ({ open }) => {
        const first = await open();
        await first.appendBatch('t', ['e0', 'e1', 'e2', 'e3', 'e4']);
        await t.throwsAsync(first.consumeRun('t', 1, 2), { code: 'INVALID_ARGUMENT' });
        await t.throwsAsync(first.consumeRun('t', 0, 6), { code: 'INVALID_ARGUMENT' });
        await t.throwsAsync(first.consumeRun('t', 0, 0), { code: 'INVALID_ARGUMENT' });
        await first.consumeRun('t', 0, 3);
        t.is(first.pendingCount('t'), 2);
        await first.close();
        const again = await open();
        t.deepEqual(texts(await drain(again, 't')), ['e3', 'e4'], 'the cursor was kept past the run');
      }),
  );

  test(title('batches persist across close and crash reopens, in order with later batches'), (t) =>
    withWal(backend, async ({ open }) => {
      const expected: string[] = [];
      let wal: Walrus | undefined;
      for (let cycle = 0; cycle < 5; cycle++) {
        wal = await open({ fsync: 'each' });
        const items = [`c${cycle}_0`, `c${cycle}_1`];
        await wal.appendBatch('t', items);
        expected.push(...items);
        if (cycle % 2 === 1) await wal.close();
      }
      const last = await open();
      t.deepEqual(texts(await drain(last, 't')), expected);
      t.is(await last.readNext('t'), null);
    }),
  );

  test(title('a batch with an item that is not bytes or a string is refused with INVALID_ARGUMENT, nothing written'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'kept');
      const bad = ['ok', 42] as unknown as string[];
      await t.throwsAsync(wal.appendBatch('t', bad), { code: 'INVALID_ARGUMENT' });
      await t.throwsAsync(wal.appendBatch('t', 'not an array' as unknown as string[]), { code: 'INVALID_ARGUMENT' });
      await t.throwsAsync(wal.appendBatch('fresh', [null] as unknown as string[]), { code: 'INVALID_ARGUMENT' });
      t.is(wal.pendingCount('t'), 1);
      t.deepEqual(wal.topics(), ['t']);
      await wal.close();
      const again = await open();
      t.deepEqual(texts(await drain(again, 't')), ['kept']);
      t.deepEqual(again.topics(), ['t']);
    }),
  );
});
