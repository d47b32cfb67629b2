// Conformance, persistence and cursors: close and reopen, reopen without closing (the older
// instance is superseded, which is also how these tests simulate a crash: whatever was written
// is in the OS), cursors under strict and atLeastOnce consistency, fsync modes, keys, and data
// file rollover across restarts.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { sanitizeKey, Walrus } from '../../src/engine/walrus.js';
import { forEachBackend, withWal } from '../helpers/backends.js';
import { dataFiles, drain, label, MiB, pattern, range, sameBytes, seqs, texts, UNLIMITED } from './support.js';

forEachBackend('persistence-and-cursors', (backend) => {
  const title = (name: string) => `[${backend}] ${name}`;

  test(title('close and reopen: entries, topics, counts and sequence numbers persist'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open();
      await first.append('a', 'a0');
      await first.appendBatch('a', ['a1', 'a2']);
      await first.append('b', 'b0');
      await first.close();
      const second = await open();
      t.deepEqual([...second.topics()].sort(), ['a', 'b']);
      t.is(second.pendingCount('a'), 3);
      t.is(second.pendingCount('b'), 1);
      await second.append('a', 'a3');
      const entries = await drain(second, 'a');
      t.deepEqual(texts(entries), ['a0', 'a1', 'a2', 'a3']);
      t.deepEqual(seqs(entries), [0, 1, 2, 3]);
      t.deepEqual(texts(await drain(second, 'b')), ['b0']);
    }),
  );

  test(title('reopen without close supersedes the older instance: its calls reject CLOSED'), (t) =>
    withWal(backend, async ({ open }) => {
      const older = await open();
      await older.append('t', 'x');
      await older.append('t', 'y');
      const newer = await open();
      await t.throwsAsync(older.append('t', 'z'), { code: 'CLOSED' });
      await t.throwsAsync(older.appendBatch('t', ['z']), { code: 'CLOSED' });
      await t.throwsAsync(older.readNext('t'), { code: 'CLOSED' });
      await t.throwsAsync(older.readBatch('t', { maxBytes: 10 }), { code: 'CLOSED' });
      await t.throwsAsync(older.flush(), { code: 'CLOSED' });
      t.throws(() => older.pendingCount('t'), { code: 'CLOSED' });
      t.throws(() => older.topics(), { code: 'CLOSED' });
      await t.notThrowsAsync(older.close());
      t.deepEqual(texts(await drain(newer, 't')), ['x', 'y']);
      await newer.append('t', 'after');
      await newer.close();
      const third = await open();
      t.deepEqual(texts(await drain(third, 't')), ['after']);
    }),
  );

  test(title('appends not yet awaited when the directory is reopened are acknowledged and kept'), (t) =>
    withWal(backend, async ({ open }) => {
      const older = await open({ fsync: 'none' });
      const pending = [older.append('t', 'p1'), older.appendBatch('t', ['p2', 'p3']), older.append('u', 'q1')];
      const newer = await open();
      await t.notThrowsAsync(Promise.all(pending));
      t.deepEqual(texts(await drain(newer, 't')), ['p1', 'p2', 'p3']);
      t.deepEqual(texts(await drain(newer, 'u')), ['q1']);
    }),
  );

  for (const restart of ['close', 'no close'] as const) {
    test(title(`strict: consume k, reopen (${restart}) → reading continues at k`), (t) =>
      withWal(backend, async ({ open }) => {
        const first = await open({ consistency: 'strict' });
        const ks = [0, 1, 3, 5, 9, 10];
        for (const k of ks) {
          await first.appendBatch(
            `k${k}`,
            range(0, 10).map((index) => `${k}:${index}`),
          );
        }
        for (const k of ks) for (let index = 0; index < k; index++) await first.readNext(`k${k}`);
        if (restart === 'close') await first.close();
        const second = await open({ consistency: 'strict' });
        for (const k of ks) {
          t.is(second.pendingCount(`k${k}`), 10 - k, `pending of k${k}`);
          t.deepEqual(seqs(await drain(second, `k${k}`)), range(k, 10), `k${k} continues at ${k}`);
        }
      }),
    );
  }

  test(title('strict: a drained topic stays drained after a reopen (nothing re-delivered)'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open();
      for (const word of ['a', 'b', 'c']) await first.append('t', word);
      t.is((await drain(first, 't')).length, 3);
      t.is(await first.readNext('t'), null);
      const second = await open();
      t.is(await second.readNext('t'), null);
      t.is(second.pendingCount('t'), 0);
      await second.close();
      const third = await open();
      t.is(await third.readNext('t'), null);
    }),
  );

  test(title('strict: readBatch with checkpoint persists its cursor'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open();
      await first.appendBatch(
        't',
        range(0, 50).map((index) => label('m_', index)),
      );
      const read = await first.readBatch('t', { maxBytes: 13 * 'm_0000'.length });
      t.is(read.length, 13);
      const second = await open();
      t.is(second.pendingCount('t'), 37);
      t.deepEqual(seqs(await second.readBatch('t', { maxBytes: UNLIMITED })), range(13, 50));
    }),
  );

  test(title('peeks and stateless reads persist nothing'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open();
      await first.appendBatch('t', ['a', 'b', 'c']);
      await first.readNext('t', { checkpoint: false });
      await first.readBatch('t', { maxBytes: UNLIMITED, checkpoint: false });
      await first.readBatch('t', { maxBytes: UNLIMITED, startSeq: 1, checkpoint: true });
      await first.close();
      const second = await open();
      t.is(second.pendingCount('t'), 3);
      t.deepEqual(texts(await drain(second, 't')), ['a', 'b', 'c']);
    }),
  );

  test(title('readAt reads by position and moves nothing; consumeAt moves the cursor and persists it like readNext'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open({ consistency: 'strict', fsync: 'none' });
      await first.appendBatch('t', ['a', 'b', 'c']);
      t.is(first.readAt('t', 1)?.toString(), 'b');
      t.is(first.readAt('t', 3), null, 'past the end');
      t.is(first.readAt('never', 0), null, 'a topic never written');
      t.throws(() => first.readAt('t', -1), { code: 'INVALID_ARGUMENT' });
      t.is(first.pendingCount('t'), 3, 'readAt consumes nothing');
      await first.consumeAt('t', 0);
      await t.throwsAsync(first.consumeAt('t', 2), { code: 'INVALID_ARGUMENT' }, 'only the entry at the cursor');
      await t.throwsAsync(first.consumeAt('t', 0), { code: 'INVALID_ARGUMENT' }, 'not twice');
      await first.consumeAt('t', 1);
      t.is(first.pendingCount('t'), 1);
      t.is((await first.readNext('t'))?.data.toString(), 'c', 'readNext goes on after consumeAt');
      await t.throwsAsync(first.consumeAt('t', 3), { code: 'INVALID_ARGUMENT' }, 'nothing past the end');
      // Reopen without close (a crash: what was written is in the OS): the position survives.
      const second = await open({ consistency: 'strict' });
      t.is(second.pendingCount('t'), 0);
      t.is(second.readAt('t', 0)?.toString(), 'a', 'consumed entries still read by position until reclaimed');
    }),
  );

  test(
    title('readRunAt reads a run by position: at most max entries and maxBytes of payload, at least one, none past the end; moves nothing'),
    (t) =>
      withWal(backend, async ({ open }) => {
        const wal = await open({ fsync: 'none' });
        await wal.appendBatch('t', ['a', 'bb', 'ccc', 'dddd', 'é']);
        const run = (seq: number, max: number, maxBytes: number) =>
          wal.readRunAt('t', seq, max, maxBytes).map((payload) => payload.toString());
        t.deepEqual(run(0, 10, 1_000), ['a', 'bb', 'ccc', 'dddd', 'é']);
        t.deepEqual(run(1, 2, 1_000), ['bb', 'ccc'], 'max entries');
        t.deepEqual(run(0, 10, 6), ['a', 'bb', 'ccc'], 'maxBytes');
        t.deepEqual(run(3, 10, 1), ['dddd'], 'at least one entry, whatever the bound');
        t.deepEqual(run(4, 10, 1_000), ['é']);
        t.deepEqual(run(5, 10, 1_000), [], 'past the end');
        t.deepEqual(wal.readRunAt('never', 0, 10, 1_000), [], 'a topic never written');
        t.throws(() => wal.readRunAt('t', -1, 1, 1), { code: 'INVALID_ARGUMENT' });
        // Each payload is the caller's: changing one leaves the others and the log as they were.
        const [first, second] = wal.readRunAt('t', 0, 2, 1_000);
        first?.fill(0x7a);
        t.is(second?.toString(), 'bb');
        t.is(wal.readAt('t', 0)?.toString(), 'a');
        t.is(wal.pendingCount('t'), 5, 'readRunAt consumes nothing');
        // readRunShared reads the same runs, as views of the buffers the records were read into.
        for (const [seq, max, maxBytes] of [
          [0, 10, 1_000],
          [1, 2, 1_000],
          [0, 10, 6],
          [3, 10, 1],
          [5, 10, 1_000],
        ] as const) {
          t.deepEqual(
            wal.readRunShared('t', seq, max, maxBytes).map((payload) => payload.toString()),
            run(seq, max, maxBytes),
          );
        }
        const views = wal.readRunShared('t', 0, 5, 1_000);
        t.true(
          views.every((view) => view.buffer === views[0]?.buffer),
          'one read buffer',
        );
      }),
  );

  test(title('Walrus.acknowledged: true for an append written at once, false when it waits for a sync'), (t) =>
    withWal(backend, async ({ open }) => {
      const lazy = await open({ fsync: 'none' });
      const first = lazy.append('t', 'x');
      t.true(Walrus.acknowledged(first), 'fsync none, nothing else pending: written before append returned');
      const second = lazy.append('t', 'y');
      t.false(Walrus.acknowledged(second), 'a second append in the same tick is written at the end of it');
      await Promise.all([first, second]);
      await lazy.close();
      const durable = await open({ fsync: 'each' });
      const synced = durable.append('t', 'z');
      t.false(Walrus.acknowledged(synced), 'fsync each waits for its sync');
      await synced;
      t.deepEqual(texts(await drain(durable, 't')), ['x', 'y', 'z']);
    }),
  );

  test(title('atLeastOnce N=3: after a crash (reopen without close) readNext replays at most N-1 and skips nothing'), (t) =>
    withWal(backend, async ({ open }) => {
      const n = 3;
      const first = await open({ consistency: { atLeastOnce: n } });
      const ks = range(0, 2 * n + 2);
      for (const k of ks) {
        await first.appendBatch(
          `k${k}`,
          range(0, 12).map((index) => `${index}`),
        );
      }
      for (const k of ks) for (let index = 0; index < k; index++) await first.readNext(`k${k}`);
      const second = await open({ consistency: { atLeastOnce: n } });
      for (const k of ks) {
        const entries = await drain(second, `k${k}`);
        const from = entries[0]?.seq ?? 12;
        t.true(from <= k, `k${k}: nothing consumed-but-unpersisted is skipped (resumes at ${from})`);
        t.true(k - from <= n - 1, `k${k}: replays ${k - from} ≤ N-1`);
        t.deepEqual(seqs(entries), range(from, 12), `k${k}: the rest in order`);
      }
    }),
  );

  test(title('atLeastOnce: a crash after batch reads replays, never skips'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open({ consistency: { atLeastOnce: 4 } });
      await first.appendBatch(
        't',
        range(0, 30).map((index) => label('b', index, 3)),
      );
      let consumed = 0;
      for (const maxBytes of [4 * 3, 4 * 5, 4 * 2]) consumed += (await first.readBatch('t', { maxBytes })).length;
      t.is(consumed, 10);
      const second = await open({ consistency: { atLeastOnce: 4 } });
      const entries = await drain(second, 't');
      const from = entries[0]?.seq ?? 30;
      t.true(from <= consumed, `resumes at ${from}, not past ${consumed}`);
      t.deepEqual(seqs(entries), range(from, 30));
    }),
  );

  test(title('atLeastOnce: close and reopen also replays at most N-1 and skips nothing'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open({ consistency: { atLeastOnce: 5 } });
      await first.appendBatch(
        't',
        range(0, 20).map((index) => `${index}`),
      );
      for (let index = 0; index < 7; index++) await first.readNext('t');
      await first.close();
      const second = await open({ consistency: { atLeastOnce: 5 } });
      const from = (await second.readNext('t', { checkpoint: false }))?.seq ?? 20;
      t.true(from <= 7 && 7 - from <= 4, `resumes at ${from}`);
    }),
  );

  test(title('cursors are per topic and survive several restarts with new writes in between'), (t) =>
    withWal(backend, async ({ open }) => {
      const topics = ['alpha', 'beta', 'gamma'];
      const delivered = new Map<string, number[]>(topics.map((topic) => [topic, []]));
      for (let cycle = 0; cycle < 5; cycle++) {
        // Each instance appends before it reads, and half of the cycles end without close.
        const wal = await open();
        for (const topic of topics) {
          await wal.appendBatch(
            topic,
            range(0, 40).map((index) => `${topic}:${cycle}:${index}`),
          );
        }
        for (const [offset, topic] of topics.entries()) {
          for (let index = 0; index < 25 + offset * 5; index++) {
            const entry = await wal.readNext(topic);
            if (entry !== null) delivered.get(topic)?.push(entry.seq);
          }
        }
        if (cycle % 2 === 0) await wal.close();
      }
      const last = await open();
      for (const topic of topics) {
        for (const entry of await drain(last, topic)) delivered.get(topic)?.push(entry.seq);
        t.deepEqual(delivered.get(topic), range(0, 200), `${topic}: each entry once, in order`);
      }
    }),
  );

  for (const fsync of ['each', 'none', { everyMs: 5 }, { everyMs: 1000 }] as const) {
    const name = typeof fsync === 'string' ? fsync : `{ everyMs: ${fsync.everyMs} }`;
    test(title(`fsync ${name}: appends and batches round-trip, and survive close and crash reopens`), (t) =>
      withWal(backend, async ({ open }) => {
        const first = await open({ fsync });
        await Promise.all(range(0, 20).map((index) => first.append('t', `s${index}`)));
        await first.appendBatch('t', ['b0', 'b1', 'b2']);
        await first.append('u', pattern(100_000, 1));
        await first.close();
        const second = await open({ fsync });
        await second.append('t', 'after-close');
        const third = await open({ fsync });
        const entries = await drain(third, 't');
        t.deepEqual(texts(entries), [...range(0, 20).map((index) => `s${index}`), 'b0', 'b1', 'b2', 'after-close']);
        sameBytes(t, (await third.readNext('u'))?.data, pattern(100_000, 1), 'large entry');
      }),
    );
  }

  test(title('fsync each: many concurrent appends all resolve and persist (group commit)'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open({ fsync: 'each' });
      await Promise.all(range(0, 300).map((index) => first.append(`t${index % 3}`, `v${index}`)));
      await first.close();
      const second = await open();
      for (const topic of [0, 1, 2]) {
        const expected = range(0, 300)
          .filter((index) => index % 3 === topic)
          .map((index) => `v${index}`);
        t.deepEqual(texts(await drain(second, `t${topic}`)), expected);
      }
    }),
  );

  test(title('a key puts the data in dataDir/<sanitised key>; keys are independent'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const tx = await open({ key: 'transactions-1' });
      const analytics = await open({ key: 'analytics-1' });
      const plain = await open();
      await tx.append('t', 'a');
      await tx.append('t', 'b');
      await analytics.append('t', 'x');
      await plain.append('t', 'root');
      t.true(existsSync(join(dir, 'transactions-1')));
      t.true(existsSync(join(dir, 'analytics-1')));
      t.is(analytics.pendingCount('t'), 1);
      await tx.close();
      await analytics.close();
      await plain.close();
      const tx2 = await open({ key: 'transactions-1' });
      const analytics2 = await open({ key: 'analytics-1' });
      t.deepEqual(texts(await drain(tx2, 't')), ['a', 'b']);
      t.deepEqual(texts(await drain(analytics2, 't')), ['x']);
      const weird = await open({ key: 'prod/payments::v1' });
      await weird.append('t', 'p');
      t.is(sanitizeKey('prod/payments::v1'), 'prod_payments__v1');
      t.true(existsSync(join(dir, 'prod_payments__v1')));
      const unnamed = await open({ key: '' });
      await unnamed.append('t', 'hashed');
      t.true(existsSync(join(dir, sanitizeKey(''))));
      t.is(sanitizeKey(''), 'ns_cbf29ce484222325');
    }),
  );

  test(title('file rollover (fileBytesMax 64 KiB) across restarts keeps every unconsumed entry and cursor'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const fileBytesMax = 64 * 1024;
      const topics = ['r0', 'r1', 'r2'];
      const payload = (topic: string, index: number) => pattern(500 + ((index * 37) % 400), topics.indexOf(topic) * 1000 + index);
      const first = await open({ fileBytesMax, fsync: 'none' });
      for (let index = 0; index < 150; index++) for (const topic of topics) await first.append(topic, payload(topic, index));
      t.true(dataFiles(dir).length >= 4, `${dataFiles(dir).length} data files`);
      for (const topic of topics) for (let index = 0; index < 60; index++) await first.readNext(topic);
      await first.close();
      const second = await open({ fileBytesMax, fsync: 'none' });
      for (const topic of topics) t.is(second.pendingCount(topic), 90);
      for (let index = 150; index < 200; index++) {
        for (const topic of topics) await second.appendBatch(topic, [payload(topic, index)]);
      }
      const third = await open({ fileBytesMax, fsync: 'none' });
      // Before anything more is consumed: files every topic consumed may have been reclaimed,
      // but nothing unconsumed ever is.
      for (const topic of topics) {
        const oldest = (await third.readBatch(topic, { maxBytes: 1, startSeq: 0 }))[0];
        t.true(oldest !== undefined && oldest.seq <= 60, `oldest kept ${topic} entry is ${oldest?.seq}`);
        t.true(oldest?.data.equals(payload(topic, oldest.seq)));
      }
      for (const topic of topics) {
        const entries = await drain(third, topic);
        t.deepEqual(seqs(entries), range(60, 200), `${topic} resumes at 60`);
        let mismatches = 0;
        for (const entry of entries) if (!entry.data.equals(payload(topic, entry.seq))) mismatches += 1;
        t.is(mismatches, 0, `${topic} bytes`);
      }
    }),
  );

  test(title('an entry larger than fileBytesMax gets a file of its own and round-trips'), (t) =>
    withWal(backend, async ({ dir, open }) => {
      const fileBytesMax = 64 * 1024;
      const big = pattern(300 * 1024, 9);
      const first = await open({ fileBytesMax });
      await first.append('t', 'before');
      await first.append('t', big);
      await first.append('t', 'after');
      const files = dataFiles(dir);
      t.true(files.length >= 3, `${files.length} data files`);
      await first.close();
      const second = await open({ fileBytesMax });
      const entries = await drain(second, 't');
      t.deepEqual(seqs(entries), [0, 1, 2]);
      t.is(entries[0]?.data.toString(), 'before');
      sameBytes(t, entries[1]?.data, big, 'the large entry');
      t.is(entries[2]?.data.toString(), 'after');
      t.true(files.some((name) => statSync(join(dir, name)).size >= big.length));
    }),
  );

  test(title('large entries (1, 8 and 24 MiB) round-trip, also after a reopen'), (t) =>
    withWal(backend, async ({ open }) => {
      const sizes = [1 * MiB, 8 * MiB, 24 * MiB];
      const first = await open({ fsync: 'none' });
      for (const [index, size] of sizes.entries()) await first.append('big', pattern(size, index));
      const live = await drain(first, 'big');
      sizes.forEach((size, index) => {
        sameBytes(t, live[index]?.data, pattern(size, index), `${size} B live`);
      });
      await first.close();
      const second = await open();
      const again = await second.readBatch('big', { maxBytes: 0, startSeq: 2 });
      sameBytes(t, again[0]?.data, pattern(24 * MiB, 2), '24 MiB after reopen');
    }),
  );
});
