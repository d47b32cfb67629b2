// Conformance, API behaviour: append/readNext order, peeks, readBatch budgets and caps,
// stateless reads by sequence number, pendingCount, topics(), payload shapes.

import test from 'ava';
import { PayloadRun } from '../../src/engine/payload-run.js';
import { forEachBackend, withWal } from '../helpers/backends.js';
import { drain, label, pattern, range, sameBytes, seqs, texts, UNLIMITED } from './support.js';

forEachBackend('api', (backend) => {
  const title = (name: string) => `[${backend}] ${name}`;

  test(title('append then readNext returns entries in order with consecutive seqs, then null'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      for (const word of ['one', 'two', 'three']) await wal.append('t', word);
      const entries = await drain(wal, 't');
      t.deepEqual(texts(entries), ['one', 'two', 'three']);
      t.deepEqual(seqs(entries), [0, 1, 2]);
      t.is(await wal.readNext('t'), null);
    }),
  );

  test(
    title('appendBatch of a PayloadRun: the payloads back to back in pieces, however cut, are appended as one batch and survive a reopen'),
    (t) =>
      withWal(backend, async ({ open }) => {
        const payloads = ['alpha', 'b', 'ççç', 'delta-delta', 'é', 'z'.repeat(300)];
        const bytes = Buffer.concat([Buffer.from('HEAD\n'), ...payloads.map((payload) => Buffer.from(payload, 'utf8'))]);
        const sizes = payloads.map((payload) => Buffer.byteLength(payload, 'utf8'));
        const wal = await open();
        const written: string[] = [];
        // One piece; cuts inside payloads, at their edges and right after the first line.
        for (const cuts of [[], [5], [6, 7], [9, 10, 11, 12], [20, 200, 300]]) {
          const points = [0, ...cuts, bytes.length];
          const parts = points.slice(1).map((end, index) => bytes.subarray(points[index], end));
          await wal.appendBatch('t', new PayloadRun(parts, 5, sizes));
          await wal.append('t', 'single');
          written.push(...payloads, 'single');
        }
        t.deepEqual(texts(await drain(wal, 't')), written);
        await wal.close();
        const again = await open();
        t.is(again.entryCount('t'), written.length);
        t.deepEqual(
          again.readRunAt('t', 0, written.length, 1_000_000).map((payload) => payload.toString('utf8')),
          written,
        );
        t.throws(() => new PayloadRun([bytes], 5, [1, 2]), { instanceOf: RangeError });
      }),
  );

  test(title('a topic never written reads null, also after other topics are written'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      t.is(await wal.readNext('nothing'), null);
      t.deepEqual(await wal.readBatch('nothing', { maxBytes: 1000 }), []);
      await wal.append('existing', 'x');
      t.is(await wal.readNext('different'), null);
      t.is(wal.pendingCount('different'), 0);
      t.deepEqual(texts([await wal.readNext('existing')]), ['x']);
    }),
  );

  test(title('readNext with checkpoint:false peeks: same entry every time, cursor and count unchanged'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'first');
      await wal.append('t', 'second');
      const peek1 = await wal.readNext('t', { checkpoint: false });
      const peek2 = await wal.readNext('t', { checkpoint: false });
      t.deepEqual(texts([peek1, peek2]), ['first', 'first']);
      t.is(peek1?.seq, 0);
      t.is(wal.pendingCount('t'), 2);
      t.deepEqual(texts([await wal.readNext('t'), await wal.readNext('t', { checkpoint: true }), await wal.readNext('t')]), [
        'first',
        'second',
        null,
      ]);
      t.is(await wal.readNext('t', { checkpoint: false }), null);
    }),
  );

  test(title('readBatch budgets payload bytes, always returns at least one entry, and stops before overshooting'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch(
        't',
        range(0, 20).map((index) => Buffer.alloc(100, index)),
      );
      const sizes: number[] = [];
      for (const maxBytes of [300, 500, 1, 350, 0, 299]) sizes.push((await wal.readBatch('t', { maxBytes })).length);
      t.deepEqual(sizes, [3, 5, 1, 3, 1, 2]);
      const rest = await wal.readBatch('t', { maxBytes: UNLIMITED });
      t.deepEqual(seqs(rest), range(15, 20));
      t.true(rest.every((entry) => entry.data.length === 100 && entry.data[0] === entry.seq));
      t.deepEqual(await wal.readBatch('t', { maxBytes: UNLIMITED }), []);
    }),
  );

  test(title('readBatch counts payload bytes only, not record headers'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch(
        't',
        range(0, 12).map(() => Buffer.alloc(10, 7)),
      );
      t.is((await wal.readBatch('t', { maxBytes: 100 })).length, 10);
      t.is((await wal.readBatch('t', { maxBytes: 100 })).length, 2);
    }),
  );

  test(title('readBatch returns a first entry larger than the budget on its own'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', Buffer.alloc(1000, 1));
      await wal.append('t', 'small');
      const first = await wal.readBatch('t', { maxBytes: 10 });
      t.deepEqual(
        first.map((entry) => entry.data.length),
        [1000],
      );
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 10 })), ['small']);
    }),
  );

  test(title('readBatch with checkpoint:false peeks without moving the cursor or the count'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch('t', ['item_0', 'item_1', 'item_2']);
      for (let round = 0; round < 2; round++) {
        t.deepEqual(texts(await wal.readBatch('t', { maxBytes: UNLIMITED, checkpoint: false })), ['item_0', 'item_1', 'item_2']);
      }
      t.is(wal.pendingCount('t'), 3);
      t.deepEqual(texts([await wal.readNext('t', { checkpoint: false })]), ['item_0']);
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: UNLIMITED })), ['item_0', 'item_1', 'item_2']);
      t.deepEqual(await wal.readBatch('t', { maxBytes: UNLIMITED }), []);
      t.is(wal.pendingCount('t'), 0);
    }),
  );

  test(title('readBatch with startSeq reads statelessly from that sequence number'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch(
        't',
        range(0, 10).map((index) => `e${index}`),
      );
      t.deepEqual(seqs(await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 3 })), range(3, 10));
      t.deepEqual(seqs(await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 3, checkpoint: true })), range(3, 10));
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 4, startSeq: 8 })), ['e8', 'e9']);
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 0, startSeq: 8 })), ['e8']);
      t.deepEqual(await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 10 }), []);
      t.deepEqual(await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 1_000_000 }), []);
      // The shared cursor and the count did not move.
      t.is(wal.pendingCount('t'), 10);
      t.is((await wal.readNext('t'))?.seq, 0);
      // Consumed entries stay readable by sequence number.
      await drain(wal, 't');
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 4, startSeq: 0 })), ['e0', 'e1']);
      t.is(wal.pendingCount('t'), 0);
    }),
  );

  test(title('readBatch with startSeq also sees entries appended later, and the budget rules hold'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', Buffer.alloc(50));
      t.is((await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 1 })).length, 0);
      await wal.append('t', Buffer.alloc(500));
      await wal.append('t', Buffer.alloc(5));
      const read = await wal.readBatch('t', { maxBytes: 100, startSeq: 1 });
      t.deepEqual(
        read.map((entry) => [entry.seq, entry.data.length]),
        [[1, 500]],
      );
    }),
  );

  test(title('pendingCount follows appends, batches, consuming reads, and ignores peeks and stateless reads'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      t.is(wal.pendingCount('t'), 0);
      await wal.append('t', 'a');
      t.is(wal.pendingCount('t'), 1);
      await wal.append('t', 'b');
      await wal.appendBatch('t', ['c', 'd', 'e']);
      t.is(wal.pendingCount('t'), 5);
      await wal.readNext('t');
      t.is(wal.pendingCount('t'), 4);
      await wal.readNext('t', { checkpoint: false });
      await wal.readBatch('t', { maxBytes: UNLIMITED, checkpoint: false });
      await wal.readBatch('t', { maxBytes: UNLIMITED, startSeq: 0 });
      t.is(wal.pendingCount('t'), 4);
      t.is((await wal.readBatch('t', { maxBytes: 2 })).length, 2);
      t.is(wal.pendingCount('t'), 2);
      await drain(wal, 't');
      t.is(wal.pendingCount('t'), 0);
      t.is(await wal.readNext('t'), null);
      t.deepEqual(await wal.readBatch('t', { maxBytes: 10 }), []);
      t.is(wal.pendingCount('t'), 0, 'never below zero');
      await wal.append('other', 'x');
      t.is(wal.pendingCount('other'), 1);
      t.is(wal.pendingCount('t'), 0);
    }),
  );

  test(title('topics() lists the topics written, not the ones only read'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      t.deepEqual(wal.topics(), []);
      await wal.readNext('ghost');
      await wal.readBatch('ghost', { maxBytes: 10 });
      t.is(wal.pendingCount('ghost'), 0);
      await wal.append('b', '1');
      await wal.appendBatch('a', ['1', '2']);
      await wal.append('b', '2');
      t.deepEqual([...wal.topics()].sort(), ['a', 'b']);
      await drain(wal, 'a');
      t.deepEqual([...wal.topics()].sort(), ['a', 'b'], 'a consumed topic is still a topic');
    }),
  );

  test(title('zero-length entries round-trip, alone and inside batches'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', '');
      await wal.append('t', 'not_empty');
      await wal.append('t', new Uint8Array(0));
      await wal.appendBatch('t', ['', 'normal', '', '', 'another', '']);
      const entries = await drain(wal, 't');
      t.deepEqual(texts(entries), ['', 'not_empty', '', '', 'normal', '', '', 'another', '']);
      t.deepEqual(seqs(entries), range(0, 9));
      await wal.appendBatch('z', ['', '', '']);
      t.deepEqual(texts(await wal.readBatch('z', { maxBytes: 0 })), ['', '', ''], 'empty entries cost no budget');
    }),
  );

  test(title('binary payloads with every byte value round-trip exactly'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const all = Buffer.from(range(0, 256));
      const samples = [
        Buffer.from([0, 1, 127, 128, 255, 0, 42]),
        all,
        Buffer.concat([all, all.reverse()]),
        Buffer.from([0]),
        Buffer.from([42]),
      ];
      for (const sample of samples) await wal.append('bin', sample);
      const entries = await drain(wal, 'bin');
      t.is(entries.length, samples.length);
      samples.forEach((sample, index) => {
        sameBytes(t, entries[index]?.data, sample, `entry ${index}`);
      });
    }),
  );

  test(title('strings are stored as UTF-8 and equal their Buffer form'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const words = ['hello', 'こんにちは', 'Café ☕', '🦭 walrus', 'Ω≈ç√∫', '\u0000nul'];
      for (const word of words) await wal.append('utf8', word);
      await wal.append('utf8', Buffer.from('Café ☕', 'utf8'));
      const entries = await drain(wal, 'utf8');
      t.deepEqual(texts(entries), [...words, 'Café ☕']);
      t.is(entries[2]?.data.length, Buffer.byteLength('Café ☕'));
      t.true(entries[2]?.data.equals(entries[6]?.data ?? Buffer.alloc(0)));
    }),
  );

  test(title('plain Uint8Array input is accepted; reads return Buffers that are copies'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const input = new Uint8Array([5, 6, 7, 8]);
      await wal.append('t', input);
      const view = new Uint8Array(pattern(64, 3).buffer, 8, 16);
      await wal.append('v', view);
      input.fill(0);
      const first = await wal.readNext('t', { checkpoint: false });
      t.true(Buffer.isBuffer(first?.data));
      t.deepEqual([...(first?.data ?? [])], [5, 6, 7, 8], 'changing the input after the append resolved changes nothing');
      first?.data.fill(9);
      const again = await wal.readNext('t', { checkpoint: false });
      t.deepEqual([...(again?.data ?? [])], [5, 6, 7, 8], 'changing a returned buffer changes nothing');
      sameBytes(t, (await wal.readNext('v'))?.data, view, 'a view into a larger buffer stores only its bytes');
    }),
  );

  // A regression test: the first cut served entries appended after a read of their topic from
  // that read's read-ahead buffer (stale zeros), so they failed their CRC with CORRUPT_RECORD.
  test(title('an entry appended after a read of its topic is read back intact (no stale read-ahead)'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'a');
      t.deepEqual(texts([await wal.readNext('t')]), ['a']);
      await wal.append('t', 'b');
      t.deepEqual(texts([await wal.readNext('t')]), ['b']);
      await wal.appendBatch('t', ['c', 'd']);
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 10 })), ['c', 'd']);
      await wal.append('t', 'e');
      t.deepEqual(texts(await wal.readBatch('t', { maxBytes: 10, startSeq: 3 })), ['d', 'e']);
      t.deepEqual(texts([await wal.readNext('t', { checkpoint: false })]), ['e']);
    }),
  );

  test(title('interleaved appends and reads: w1 w2 r1 w3 w4 r2 r3 r4'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const read: (string | null)[] = [];
      await wal.append('t', 'w1');
      await wal.append('t', 'w2');
      read.push(...texts([await wal.readNext('t')]));
      await wal.append('t', 'w3');
      await wal.append('t', 'w4');
      for (let index = 0; index < 4; index++) read.push(...texts([await wal.readNext('t')]));
      t.deepEqual(read, ['w1', 'w2', 'w3', 'w4', null]);
    }),
  );

  test(title('appending after a topic was drained makes the new entries readable'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.append('t', 'first');
      t.deepEqual(texts(await drain(wal, 't')), ['first']);
      await wal.append('t', 'second');
      await wal.appendBatch('t', ['third', 'fourth']);
      const entries = await drain(wal, 't');
      t.deepEqual(texts(entries), ['second', 'third', 'fourth']);
      t.deepEqual(seqs(entries), [1, 2, 3]);
    }),
  );

  test(title('flush() resolves and everything acknowledged is there'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open({ fsync: { everyMs: 60_000 } });
      const pending = [wal.append('t', 'a'), wal.appendBatch('t', ['b', 'c']), wal.append('u', 'd')];
      await wal.flush();
      await Promise.all(pending);
      await wal.flush();
      t.deepEqual(texts(await drain(wal, 't')), ['a', 'b', 'c']);
      t.deepEqual(texts(await drain(wal, 'u')), ['d']);
    }),
  );

  test(title('many topics: 200 topics × 20 entries read back exactly'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open({ fsync: 'none' });
      const topics = range(0, 200).map((index) => label('topic_', index));
      for (let round = 0; round < 20; round++) {
        await Promise.all(topics.map((topic) => wal.append(topic, `${topic}:${round}`)));
      }
      t.is(wal.topics().length, 200);
      let wrong = 0;
      for (const topic of topics) {
        t.is(wal.pendingCount(topic), 20);
        const entries = await drain(wal, topic);
        const expected = range(0, 20).map((round) => `${topic}:${round}`);
        if (JSON.stringify(texts(entries)) !== JSON.stringify(expected)) wrong += 1;
      }
      t.is(wrong, 0, 'every topic returns its own entries in order');
    }),
  );
});
