// Property: whatever happens to the tail of a data file (cut short, bytes overwritten, garbage
// appended), reopening never throws and never yields bytes that were not written. Each topic
// comes back as a prefix of what was appended to it, and every batch is whole or absent.

import { closeSync, openSync, readdirSync, readSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { Walrus } from '../../src/engine/walrus.js';
import { silent, withTempDir } from '../helpers/kernel.js';

type Op = { readonly topic: string; readonly batch: readonly string[] };

const opArbitrary: fc.Arbitrary<Op> = fc.record({
  topic: fc.constantFrom('a', 'b', 'c'),
  batch: fc.array(fc.string({ maxLength: 300 }), { minLength: 1, maxLength: 6 }),
});

type Damage =
  | { readonly kind: 'cut'; readonly fromEnd: number }
  | { readonly kind: 'overwrite'; readonly fromEnd: number; readonly bytes: readonly number[] }
  | { readonly kind: 'garbage'; readonly bytes: readonly number[] };

const damageArbitrary: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ kind: fc.constant('cut' as const), fromEnd: fc.nat({ max: 4000 }) }),
  fc.record({
    kind: fc.constant('overwrite' as const),
    fromEnd: fc.nat({ max: 4000 }),
    bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 40 }),
  }),
  fc.record({ kind: fc.constant('garbage' as const), bytes: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 200 }) }),
);

/** Where the records end: the last non-zero byte of the (zero-extended) file, plus one. */
function dataEnd(path: string): number {
  const fd = openSync(path, 'r');
  try {
    const size = statSync(path).size;
    const buffer = Buffer.alloc(Math.min(size, 1 << 20));
    const count = readSync(fd, buffer, 0, buffer.length, 0);
    let end = count;
    while (end > 0 && buffer[end - 1] === 0) end -= 1;
    return end;
  } finally {
    closeSync(fd);
  }
}

function damage(path: string, what: Damage): void {
  const end = dataEnd(path);
  if (what.kind === 'cut') {
    truncateSync(path, Math.max(64, end - what.fromEnd));
    return;
  }
  const fd = openSync(path, 'r+');
  try {
    const at = what.kind === 'garbage' ? end : Math.max(64, end - what.fromEnd);
    writeSync(fd, Buffer.from(what.bytes), 0, what.bytes.length, at);
  } finally {
    closeSync(fd);
  }
}

test('a damaged tail never throws on open and never yields bytes that were not written', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArbitrary, { minLength: 1, maxLength: 25 }), damageArbitrary, async (ops, hurt) =>
      withTempDir(async (dir) => {
        const written = new Map<string, string[][]>();
        const wal = await Walrus.open({ dataDir: dir, fsync: 'none' });
        for (const op of ops) {
          if (op.batch.length === 1) await wal.append(op.topic, op.batch[0] as string);
          else await wal.appendBatch(op.topic, op.batch);
          written.set(op.topic, [...(written.get(op.topic) ?? []), [...op.batch]]);
        }
        await wal.close();
        const file = readdirSync(dir).find((name) => name.endsWith('.wal')) as string;
        damage(join(dir, file), hurt);
        const reopened = await Walrus.open({ dataDir: dir, fsync: 'none', logger: silent() });
        try {
          for (const [topic, groups] of written) {
            const got = (await reopened.readBatch(topic, { maxBytes: Number.POSITIVE_INFINITY, startSeq: 0 })).map((entry) =>
              entry.data.toString(),
            );
            const all = groups.flat();
            // A prefix of what was written, byte for byte...
            if (got.join('\u0000') !== all.slice(0, got.length).join('\u0000')) return false;
            // ...that ends on a group boundary: a batch is whole or absent.
            let boundary = 0;
            const boundaries = new Set([0]);
            for (const group of groups) {
              boundary += group.length;
              boundaries.add(boundary);
            }
            if (!boundaries.has(got.length)) return false;
          }
          // The log still takes appends after recovery.
          await reopened.append('a', 'after');
          return true;
        } finally {
          await reopened.close();
        }
      }),
    ),
    { numRuns: 150 },
  );
  // fc.assert throws with the shrunk counterexample when the property fails.
  t.pass('150 random histories and damages recovered to a written prefix');
});
