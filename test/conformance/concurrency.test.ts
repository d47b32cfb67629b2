// Conformance, concurrency: many reads in flight on one topic share its cursor without
// duplicating or losing entries, writers on different topics do not disturb each other, and
// overlapping batches on one topic have exactly one winner.

import test from 'ava';
import type { Entry, Walrus } from '../../src/engine/walrus.js';
import { forEachBackend, withWal } from '../helpers/backends.js';
import { assertExactlyOnce, drain, label, range, seqs, sleep, texts } from './support.js';

/** Keeps calling `read` until it returns nothing; collects what it got. */
async function reader(read: () => Promise<Entry[]>): Promise<Entry[]> {
  const got: Entry[] = [];
  for (;;) {
    const batch = await read();
    if (batch.length === 0) return got;
    got.push(...batch);
  }
}

const one = (wal: Walrus, topic: string) => async () => {
  const entry = await wal.readNext(topic);
  return entry === null ? [] : [entry];
};

forEachBackend('concurrency', (backend) => {
  const title = (name: string) => `[${backend}] ${name}`;

  test(title('8 readNext loops in flight on one topic deliver each entry exactly once'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      await wal.appendBatch(
        't',
        range(0, 500).map((index) => label('m', index)),
      );
      const results = await Promise.all(range(0, 8).map(() => reader(one(wal, 't'))));
      assertExactlyOnce(t, results.flat(), range(0, 500));
      for (const got of results)
        t.deepEqual(
          seqs(got),
          [...seqs(got)].sort((a, b) => a - b),
          'each reader sees increasing seqs',
        );
      t.true(results.filter((got) => got.length > 0).length > 1, 'the readers really interleaved');
      t.is(wal.pendingCount('t'), 0);
    }),
  );

  test(title('readNext, readBatch and peeks mixed in flight never duplicate or lose an entry'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open({ consistency: { atLeastOnce: 7 } });
      for (let part = 0; part < 3; part++) {
        await wal.appendBatch(
          't',
          range(part * 400, part * 400 + 400).map((index) => label('x', index)),
        );
      }
      let peeking = true;
      const peeker = (async () => {
        let peeks = 0;
        while (peeking) {
          await wal.readNext('t', { checkpoint: false });
          await wal.readBatch('t', { maxBytes: 100, checkpoint: false });
          peeks += 1;
        }
        return peeks;
      })();
      const results = await Promise.all([
        reader(one(wal, 't')),
        reader(one(wal, 't')),
        reader(() => wal.readBatch('t', { maxBytes: 37 })),
        reader(() => wal.readBatch('t', { maxBytes: 512 })),
        reader(() => wal.readBatch('t', { maxBytes: 0 })),
      ]);
      peeking = false;
      t.true((await peeker) > 0);
      assertExactlyOnce(t, results.flat(), range(0, 1200));
    }),
  );

  test(title('concurrent writers on different topics keep per-topic order'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      const topics = range(0, 20).map((index) => `w${index}`);
      // One async writer per topic, each awaiting its own appends, all running at once.
      await Promise.all(
        topics.map(async (topic, index) => {
          for (let n = 0; n < 50; n++) {
            if (n % 10 === index % 10) await wal.appendBatch(topic, [`${topic}:${n}`]);
            else await wal.append(topic, `${topic}:${n}`);
            if (n % 7 === 0) await sleep(0);
          }
        }),
      );
      // And appends issued without awaiting, interleaved across topics.
      await Promise.all(range(50, 60).flatMap((n) => topics.map((topic) => wal.append(topic, `${topic}:${n}`))));
      for (const topic of topics) {
        const entries = await drain(wal, topic);
        t.deepEqual(
          texts(entries),
          range(0, 60).map((n) => `${topic}:${n}`),
        );
        t.deepEqual(seqs(entries), range(0, 60));
      }
    }),
  );

  test(title('writers and readers on one topic at once: each entry delivered exactly once, in order per reader'), (t) =>
    withWal(backend, async ({ open }) => {
      const wal = await open();
      let writing = true;
      const writer = (async () => {
        for (let n = 0; n < 300; n++) {
          if (n % 3 === 0) await wal.appendBatch('t', [label('e', n)]);
          else await wal.append('t', label('e', n));
          if (n % 5 === 0) await sleep(0);
        }
        writing = false;
      })();
      const poll = async (read: () => Promise<Entry[]>) => {
        const got: Entry[] = [];
        while (writing || wal.pendingCount('t') > 0) {
          const batch = await read();
          got.push(...batch);
          if (batch.length === 0) await sleep(0);
        }
        return got;
      };
      const results = await Promise.all([poll(one(wal, 't')), poll(one(wal, 't')), poll(() => wal.readBatch('t', { maxBytes: 20 }))]);
      await writer;
      assertExactlyOnce(t, results.flat(), range(0, 300));
      for (const got of results)
        t.deepEqual(
          seqs(got),
          [...seqs(got)].sort((a, b) => a - b),
        );
    }),
  );

  test(title('concurrent consumption then a crash reopen resumes exactly after the consumed entries (strict)'), (t) =>
    withWal(backend, async ({ open }) => {
      const first = await open();
      await first.appendBatch(
        't',
        range(0, 300).map((index) => label('c', index)),
      );
      const taken = await Promise.all(
        range(0, 6).map(async (index) => {
          const got: Entry[] = [];
          for (let n = 0; n < 20; n++) {
            if (index % 2 === 0) {
              const entry = await first.readNext('t');
              if (entry !== null) got.push(entry);
            } else got.push(...(await first.readBatch('t', { maxBytes: 4 * 3 })));
          }
          return got;
        }),
      );
      const consumed = taken.flat().length;
      assertExactlyOnce(t, taken.flat(), range(0, consumed));
      const second = await open();
      t.deepEqual(seqs(await drain(second, 't')), range(consumed, 300));
    }),
  );
});
