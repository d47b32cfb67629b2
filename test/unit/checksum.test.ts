// The record checksums: whichever code computes them (the native addon or zlib), the bytes on
// disk are the same, so a log written by one is read by the other. On this machine the addon is
// built by `npm install`; if it is not, the first test says why instead of passing silently.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import test from 'ava';
import { checksums, zlibOnly } from '../../src/engine/checksum.js';
import { RECORD_LAYOUT } from '../../src/engine/format.js';
import { loadAddon } from '../../src/engine/native-addon.js';
import { Walrus } from '../../src/engine/walrus.js';
import type { WalrusError } from '../../src/kernel/errors.js';
import { withTempDir } from '../helpers/kernel.js';

const zlib = zlibOnly();
const MAGIC = 0x43455257;

/** Records back to back (32-byte header with magic and payload length, random payloads), unsealed. */
function records(lengths: readonly number[], lead = 0): { buffer: Buffer; offsets: number[]; end: number } {
  const total = lengths.reduce((sum, length) => sum + 32 + length, lead);
  const buffer = randomBytes(total + 64);
  const offsets: number[] = [];
  let at = lead;
  for (const length of lengths) {
    offsets.push(at);
    buffer.writeUInt32LE(MAGIC, at);
    buffer.writeUInt32LE(0, at + 4);
    buffer.writeUInt32LE(length, at + 16);
    at += 32 + length;
  }
  return { buffer, offsets, end: at };
}

test('the native addon is in use when the install built it, else the engine says why and uses zlib', (t) => {
  if (process.env.WALRUS_DISABLE_NATIVE) {
    t.is(checksums.implementation, 'zlib');
    t.regex(checksums.unavailableReason ?? '', /WALRUS_DISABLE_NATIVE/);
    return;
  }
  const note = new URL('../../../native/build/unavailable.txt', import.meta.url);
  if (existsSync(note)) {
    // The install could not build it (no compiler, say): the engine must say why and use zlib.
    t.is(checksums.implementation, 'zlib');
    t.true((checksums.unavailableReason ?? '').includes(readFileSync(note, 'utf8').trim()));
    return;
  }
  // Built: it must load (a build that succeeded but does not load is a bug, not a fallback).
  t.is(checksums.unavailableReason, undefined, `native checksums unavailable: ${checksums.unavailableReason}`);
  t.true(checksums.bulk);
  t.regex(checksums.implementation, /^native/);
});

// The C code that seals and verifies records has its own copy of the layout constants it needs:
// it must say the same as format.ts, the module that owns the layout.
const addon = loadAddon();
if ('addon' in addon) {
  test('the addon’s record layout constants are format.ts’s', (t) => {
    t.deepEqual(addon.addon.recordLayout, RECORD_LAYOUT);
  });
} else {
  test.skip(`the addon’s record layout constants are format.ts’s — skipped: ${addon.unavailable}`, () => undefined);
}

test('crc32 equals zlib.crc32 for every length to 2 KiB, any alignment, and when chained', (t) => {
  const data = randomBytes(4096 + 16);
  let mismatches = 0;
  for (let length = 0; length <= 2048; length++) {
    const offset = length % 16;
    const slice = data.subarray(offset, offset + length);
    if (checksums.crc32(slice) !== crc32(slice)) mismatches++;
    const seed = crc32(data.subarray(0, length % 97));
    if (checksums.crc32(slice, seed) !== crc32(slice, seed)) mismatches++;
  }
  t.is(mismatches, 0);
  const big = randomBytes(3 * 1024 * 1024 + 7);
  t.is(checksums.crc32(big), crc32(big));
});

test('sealRecords writes the same CRCs as zlib, record by record', (t) => {
  const lengths = Array.from({ length: 300 }, (_, index) => (index * 37) % 700);
  const { buffer, offsets, end } = records(lengths, 5);
  const copy = Buffer.from(buffer);
  checksums.sealRecords(buffer, 5, end);
  zlib.sealRecords(copy, 5, end);
  t.true(buffer.equals(copy));
  for (const [index, at] of offsets.entries()) {
    const length = lengths[index] ?? 0;
    t.is(buffer.readUInt32LE(at + 4), crc32(buffer.subarray(at + 8, at + 32 + length)));
  }
  t.throws(() => checksums.sealRecords(buffer, 5, end - 1), { instanceOf: RangeError });
});

test('verifyRecords stops at the first damaged, torn or unframed record, as the zlib path does', (t) => {
  const lengths = [0, 1, 256, 31, 32, 33, 4000, 256];
  const { buffer, offsets, end } = records(lengths);
  const offset = (index: number): number => offsets[index] ?? -1;
  checksums.sealRecords(buffer, 0, end);
  t.is(checksums.verifyRecords(buffer, 0, end), end);
  t.is(checksums.verifyRecords(buffer, 0, end - 1), offset(7));
  t.is(checksums.verifyRecords(buffer, offsets[2] ?? 0, end), end);
  for (const victim of [2, 6]) {
    const damaged = Buffer.from(buffer);
    const at = (offsets[victim] ?? 0) + 40;
    damaged[at] = (damaged[at] ?? 0) ^ 0x10;
    t.is(checksums.verifyRecords(damaged, 0, end), offset(victim));
    t.is(zlib.verifyRecords(damaged, 0, end), offset(victim));
  }
  const unframed = Buffer.from(buffer);
  unframed.writeUInt32LE(0, offsets[3] ?? 0);
  t.is(checksums.verifyRecords(unframed, 0, end), offset(3));
  t.is(checksums.verifyRecords(buffer, 3, 3), 3);
  t.throws(() => checksums.verifyRecords(buffer, 10, 5), { instanceOf: RangeError });
  t.throws(() => checksums.verifyRecords(buffer, 0, buffer.length + 1), { instanceOf: RangeError });
});

test('a log written with zlib checksums (WALRUS_DISABLE_NATIVE=1) reads back with the current ones', async (t) => {
  await withTempDir(async (dir) => {
    // The child imports the package's entry point, which applies WALRUS_DISABLE_NATIVE (the engine reads no environment).
    const script = `
      import { Walrus } from ${JSON.stringify(new URL('../../src/index.js', import.meta.url).href)};
      import { checksums } from ${JSON.stringify(new URL('../../src/engine/checksum.js', import.meta.url).href)};
      const wal = await Walrus.open({ dataDir: ${JSON.stringify(dir)}, fsync: 'none' });
      for (let i = 0; i < 500; i++) await wal.append('t', 'entry ' + i + ' ' + 'x'.repeat(i));
      await wal.appendBatch('t', ['b0', 'b1', 'b2']);
      await wal.close();
      process.stdout.write(checksums.implementation);`;
    const used = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, WALRUS_DISABLE_NATIVE: '1' },
      encoding: 'utf8',
    });
    t.is(used, 'zlib');
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none' });
    try {
      const entries = await wal.readBatch('t', { maxBytes: 10_000_000 });
      t.is(entries.length, 503);
      t.is(entries[499]?.data.toString(), `entry 499 ${'x'.repeat(499)}`);
      t.is(entries[502]?.data.toString(), 'b2');
      t.is(wal.recovery.tornTails.length, 0);
    } finally {
      await wal.close();
    }
  });
});

/** File header 64 B, topic declaration 32 + 1 B, then entries of 32 + 100 B: damage entry `index`'s payload. */
function flipPayloadBit(dir: string, index: number): void {
  const fd = openSync(join(dir, '000000000001.wal'), 'r+');
  const at = 64 + 33 + index * 132 + 32 + 50;
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, at);
  byte[0] = (byte[0] ?? 0) ^ 1;
  writeSync(fd, byte, 0, 1, at);
  closeSync(fd);
}

test('a flipped payload bit ends recovery just before that record', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none' });
    for (let i = 0; i < 50; i++) await wal.append('t', Buffer.alloc(100, i));
    await wal.close();
    flipPayloadBit(dir, 30);
    const reopened = await Walrus.open({ dataDir: dir, fsync: 'none' });
    try {
      t.is(reopened.pendingCount('t'), 30);
      t.is(reopened.recovery.tornTails.length, 1);
      const entries = await reopened.readBatch('t', { maxBytes: 1_000_000 });
      t.deepEqual(
        entries.map((entry) => entry.data[0]),
        Array.from({ length: 30 }, (_, i) => i),
      );
    } finally {
      await reopened.close();
    }
  });
});

test('a payload damaged while the log is open is refused on read, and the records before it are served', async (t) => {
  await withTempDir(async (dir) => {
    const wal = await Walrus.open({ dataDir: dir, fsync: 'none' });
    try {
      for (let i = 0; i < 50; i++) await wal.append('t', Buffer.alloc(100, i));
      flipPayloadBit(dir, 30);
      for (let i = 0; i < 30; i++) t.is((await wal.readNext('t'))?.data[0], i);
      const error = await t.throwsAsync(wal.readNext('t'));
      t.is((error as WalrusError).code, 'CORRUPT_RECORD');
      t.regex(error?.message ?? '', /seq 30/);
    } finally {
      await wal.close();
    }
  });
});

test('the addon’s portable table path (CPUs without PCLMUL) gives zlib’s values too', (t) => {
  if (checksums.unavailableReason !== undefined) {
    t.regex(checksums.implementation, /zlib/, 'no addon: nothing native to check');
    return;
  }
  const script = `
    import { crc32 } from 'node:zlib';
    import { checksums } from ${JSON.stringify(new URL('../../src/engine/checksum.js', import.meta.url).href)};
    const data = Buffer.alloc(5000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 255;
    let mismatches = 0;
    for (let length = 0; length < 1500; length += 7) {
      const slice = data.subarray(length % 13, (length % 13) + length);
      if (checksums.crc32(slice, 12345) !== crc32(slice, 12345)) mismatches++;
    }
    process.stdout.write(JSON.stringify({ implementation: checksums.implementation, mismatches }));`;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, WALRUS_NATIVE_PORTABLE: '1' },
    encoding: 'utf8',
  });
  t.deepEqual(JSON.parse(output), { implementation: 'native (table)', mismatches: 0 });
});
