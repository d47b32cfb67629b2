#!/usr/bin/env node
// Standalone check of the native addon (native/build/Release/walrus_native.node) against
// zlib.crc32: crc32 for every length 0..3000 at every offset 0..15, chained `initial` values,
// big buffers, argument errors, sealRecords/verifyRecords, and the same checks once more in a
// child process forced onto the portable table path. Then it times both implementations.
//   node test/native-crc-check.mjs            all checks, then timings
//   node test/native-crc-check.mjs --no-bench checks only
// Exits 1 on any mismatch (or if the addon is missing).

import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 as zcrc32 } from 'node:zlib';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(root, 'native', 'build', 'Release', 'walrus_native.node');
const native = createRequire(import.meta.url)(addonPath);
const args = new Set(process.argv.slice(2));
const portable = process.env.WALRUS_NATIVE_PORTABLE === '1';

let passed = 0;
let failed = 0;
function check(ok, what) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  if (failed <= 20) console.log(`MISMATCH: ${what}`);
}

// The reference. zlib.crc32 ignores `initial` and returns 0 for an empty view of a zero-length
// ArrayBuffer (crypto.randomBytes(0), new Uint8Array(new ArrayBuffer(0))): Node hands zlib a NULL
// pointer there, and zlib's crc32() answers 0 for NULL. The CRC of nothing is `initial` whatever
// backs it (so chaining works), which is what the addon returns; checked separately below.
const ref = (data, initial = 0) => (data.byteLength === 0 ? initial : zcrc32(data, initial));

const hex = (n) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
const U32 = () => randomInt(0, 2 ** 32);

console.log(`addon: ${path.relative(root, addonPath)}, hasPclmul=${native.hasPclmul}${portable ? ' (WALRUS_NATIVE_PORTABLE=1)' : ''}`);
check(Object.keys(native).sort().join() === 'crc32,hasPclmul,sealRecords,verifyRecords', `exports are ${Object.keys(native)}`);
if (portable) check(native.hasPclmul === false, 'hasPclmul is false on the portable path');

// --- crc32: every length 0..3000 at every byte offset 0..15, with and without `initial`.
{
  const base = randomBytes(3000 + 16);
  let bad = 0;
  for (let len = 0; len <= 3000; len++) {
    for (let off = 0; off < 16; off++) {
      const view = base.subarray(off, off + len);
      const initial = U32();
      const a = native.crc32(view);
      const b = ref(view);
      const c = native.crc32(view, initial);
      const d = ref(view, initial);
      if (a !== b || c !== d) {
        bad++;
        check(false, `crc32 len=${len} off=${off}: ${hex(a)} vs ${hex(b)}, initial ${hex(initial)}: ${hex(c)} vs ${hex(d)}`);
      }
    }
  }
  check(bad === 0, 'crc32 lengths 0..3000 x offsets 0..15');
  console.log(`crc32: lengths 0..3000 x offsets 0..15 (x2 initials): ${bad === 0 ? 'ok' : `${bad} mismatches`}`);
}

// --- Known values and edge `initial`s.
check(native.crc32(Buffer.from('123456789')) === 0xcbf43926, 'check value of "123456789"');
check(native.crc32(new Uint8Array(0)) === 0, 'empty input is 0');
for (const initial of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) {
  check(native.crc32(new Uint8Array(0), initial) === initial, `empty input keeps initial ${hex(initial)}`);
  const data = randomBytes(randomInt(0, 500));
  check(native.crc32(data, initial) === ref(data, initial), `initial ${hex(initial)}`);
}
{
  const empties = [new Uint8Array(0), Buffer.alloc(0), randomBytes(0), new Uint8Array(new ArrayBuffer(0)), Buffer.alloc(9).subarray(4, 4)];
  const zlibQuirk = empties.filter((e) => zcrc32(e, 1234) !== 1234).length;
  for (const e of empties) check(native.crc32(e, 1234) === 1234 && native.crc32(e) === 0, 'empty views keep initial');
  console.log(`crc32: empty views keep initial (zlib.crc32 returns 0 instead for ${zlibQuirk} of ${empties.length} kinds)`);
}
check(native.crc32(Buffer.from('abc'), undefined) === zcrc32('abc'), 'initial undefined means 0');

// --- Chained: the CRC of pieces fed one after another equals the CRC of the whole.
{
  let bad = 0;
  for (let round = 0; round < 300; round++) {
    const whole = randomBytes(randomInt(0, 20000));
    const seed = round % 2 ? U32() : 0;
    let nat = seed;
    let zl = seed;
    for (let at = 0; at < whole.length; ) {
      const piece = whole.subarray(at, at + randomInt(0, round % 3 === 0 ? 70 : 3000));
      nat = native.crc32(piece, nat);
      zl = ref(piece, zl);
      at += piece.length;
    }
    if (nat !== zl || nat !== ref(whole, seed)) bad++;
  }
  check(bad === 0, `chained crc32 (${bad} of 300 rounds wrong)`);
  console.log(`crc32: 300 chained rounds: ${bad === 0 ? 'ok' : `${bad} mismatches`}`);
}

// --- Big buffers, whole and at odd offsets.
for (const size of [1 << 20, 64 << 20]) {
  const big = randomBytes(size);
  const initial = U32();
  check(native.crc32(big) === ref(big), `${size} bytes`);
  check(native.crc32(big, initial) === ref(big, initial), `${size} bytes with initial`);
  const odd = big.subarray(7, size - 3);
  check(native.crc32(odd) === ref(odd), `${size} bytes at offset 7`);
  console.log(`crc32: ${size >> 20} MiB buffer: checked`);
}

// --- Other views: any TypedArray or DataView is read as its bytes, like zlib.crc32.
{
  const bytes = randomBytes(1000);
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 1000);
  for (const view of [new Uint32Array(ab, 8, 100), new Float64Array(ab, 16, 50), new Int16Array(ab, 2, 300), new DataView(ab, 5, 900)]) {
    check(native.crc32(view) === ref(view), `${view.constructor.name} view`);
  }
  const pooled = Buffer.from('a pooled Buffer, so its byteOffset is not 0');
  check(native.crc32(pooled) === ref(pooled), 'pooled Buffer');
}

// --- Argument errors.
function throws(fn, type, what) {
  try {
    fn();
  } catch (err) {
    check(err instanceof type, `${what}: threw ${err.name} (${err.message}), wanted ${type.name}`);
    return;
  }
  check(false, `${what}: did not throw`);
}
{
  const buf = Buffer.alloc(64);
  throws(() => native.crc32('abc'), TypeError, 'crc32 of a string');
  throws(() => native.crc32(), TypeError, 'crc32 without data');
  throws(() => native.crc32(new ArrayBuffer(4)), TypeError, 'crc32 of an ArrayBuffer');
  throws(() => native.crc32(buf, -1), RangeError, 'initial -1');
  throws(() => native.crc32(buf, 2 ** 32), RangeError, 'initial 2^32');
  throws(() => native.crc32(buf, 1.5), RangeError, 'initial 1.5');
  throws(() => native.crc32(buf, Number.NaN), RangeError, 'initial NaN');
  throws(() => native.crc32(buf, '1'), TypeError, 'initial "1"');
  for (const fn of [native.sealRecords, native.verifyRecords]) {
    throws(() => fn(buf, 10, 5), RangeError, `${fn.name}: start > end`);
    throws(() => fn(buf, 0, 65), RangeError, `${fn.name}: end past the buffer`);
    throws(() => fn(buf, -1, 5), RangeError, `${fn.name}: negative start`);
    throws(() => fn(buf, 0.5, 5), RangeError, `${fn.name}: fractional start`);
    throws(() => fn(buf, '0', 5), TypeError, `${fn.name}: string start`);
    throws(() => fn(buf, 0), TypeError, `${fn.name}: missing end`);
    throws(() => fn(new Uint32Array(16), 0, 0), TypeError, `${fn.name}: a Uint32Array`);
    throws(() => fn([1, 2, 3], 0, 0), TypeError, `${fn.name}: a plain array`);
  }
}

// --- Records.
const MAGIC = 0x43455257;
/** Random records back to back at `start` of a buffer with random bytes around them; returns their offsets. */
function makeRecords(count, maxPayload, start = randomInt(0, 100), tail = randomInt(0, 100)) {
  const lengths = Array.from({ length: count }, () => (randomInt(0, 10) === 0 ? randomInt(0, 5000) : randomInt(0, maxPayload + 1)));
  const total = lengths.reduce((sum, len) => sum + 32 + len, 0);
  const buf = randomBytes(start + total + tail);
  const offsets = [];
  let at = start;
  for (const len of lengths) {
    buf.writeUInt32LE(MAGIC, at);
    buf.writeUInt32LE(0, at + 4);
    buf.writeUInt32LE(len, at + 16);
    offsets.push(at);
    at += 32 + len;
  }
  return { buf, offsets, start, end: at };
}
const zlibRecordCrc = (buf, at) => ref(buf.subarray(at + 8, at + 32 + buf.readUInt32LE(at + 16)));

{
  let bad = 0;
  for (let round = 0; round < 200; round++) {
    const { buf, offsets, start, end } = makeRecords(randomInt(0, 40), round % 2 ? 300 : 40);
    const before = Buffer.from(buf);
    native.sealRecords(buf, start, end);
    for (const at of offsets) if (buf.readUInt32LE(at + 4) !== zlibRecordCrc(buf, at)) bad++;
    // Only the CRC fields changed.
    for (const at of offsets) buf.copy(before, at + 4, at + 4, at + 8);
    if (!buf.equals(before)) bad++;

    if (native.verifyRecords(buf, start, end) !== end) bad++;
    if (native.verifyRecords(buf, start, buf.length) !== end && buf.length - end >= 32 && buf.readUInt32LE(end) !== MAGIC) bad++;
    if (offsets.length === 0) continue;

    // A flipped bit in record k (outside the magic and length) stops verification at k.
    const k = randomInt(0, offsets.length);
    const at = offsets[k];
    const recordEnd = k + 1 < offsets.length ? offsets[k + 1] : end;
    const bit = randomInt((at + 4) * 8, recordEnd * 8);
    const inLength = bit >= (at + 16) * 8 && bit < (at + 20) * 8;
    if (!inLength) {
      buf[bit >> 3] ^= 1 << (bit & 7);
      if (native.verifyRecords(buf, start, end) !== at) bad++;
      buf[bit >> 3] ^= 1 << (bit & 7);
    }
    // A wrong magic stops it at k too.
    buf[at] ^= 0xff;
    if (native.verifyRecords(buf, start, end) !== at) bad++;
    buf[at] ^= 0xff;
    // An end cut inside record k keeps records before k; an end cut inside its header too.
    if (native.verifyRecords(buf, start, recordEnd - 1) !== at) bad++;
    if (native.verifyRecords(buf, start, at + randomInt(0, 32)) !== at) bad++;
    // Starting at record k verifies from k on.
    if (native.verifyRecords(buf, at, end) !== end) bad++;
    // sealRecords refuses a range that ends inside a record, before writing anything.
    const copy = Buffer.from(buf);
    for (const o of offsets) copy.writeUInt32LE(0, o + 4);
    const snapshot = Buffer.from(copy);
    let threw = false;
    try {
      native.sealRecords(copy, start, recordEnd - 1);
    } catch (err) {
      threw = err instanceof RangeError;
    }
    if (!threw || !copy.equals(snapshot)) bad++;
  }
  check(bad === 0, `sealRecords/verifyRecords (${bad} problems in 200 rounds)`);
  console.log(`records: 200 random rounds of seal/verify/corrupt/truncate: ${bad === 0 ? 'ok' : `${bad} problems`}`);

  const empty = Buffer.alloc(100);
  native.sealRecords(empty, 50, 50);
  check(native.verifyRecords(empty, 10, 100) === 10, 'verifyRecords over zeros returns start');
  check(native.verifyRecords(empty, 100, 100) === 100, 'verifyRecords of an empty range returns start');
  // A header claiming a 4 GiB payload is past end, not an overflow.
  const huge = Buffer.alloc(64);
  huge.writeUInt32LE(MAGIC, 0);
  huge.writeUInt32LE(0xffffffff, 16);
  check(native.verifyRecords(huge, 0, 64) === 0, 'verifyRecords with a 4 GiB length');
  throws(() => native.sealRecords(huge, 0, 64), RangeError, 'sealRecords with a 4 GiB length');
  throws(() => native.sealRecords(Buffer.alloc(40), 0, 40), RangeError, 'sealRecords with a partial second header');
}

// --- The portable path, in a child process (the choice is made when the module loads).
if (!portable && native.hasPclmul) {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--no-bench'], {
    env: { ...process.env, WALRUS_NATIVE_PORTABLE: '1' },
    encoding: 'utf8',
  });
  const out = `${child.stdout}${child.stderr}`.trimEnd();
  console.log(out.replace(/^/gm, '  [portable] '));
  check(child.status === 0, `portable path check exited ${child.status}`);
}

// --- Timings. This VM's speed drifts over seconds, so every contender gets a short turn in each
// of many rounds spread over the whole run, and keeps its best turn: the least disturbed estimate
// of what a call costs, taken under the same conditions for native and zlib.
if (!args.has('--no-bench') && failed === 0) {
  const ROUNDS = 40;
  const contenders = []; // { fn, units, warm, best }
  // warm: one untimed call before each timed turn, so a turn does not pay for the caches the
  // previous contender (64 MiB of streaming, say) flushed. Pointless for buffers beyond the caches.
  const add = (fn, units, warm = true) => {
    const entry = { fn, units, warm, best: Infinity };
    contenders.push(entry);
    return entry;
  };
  let sink = 0;

  const sizes = [0, 16, 64, 288, 4096, 64 << 10, 1 << 20, 64 << 20];
  const crcRows = sizes.map((size) => {
    const data = randomBytes(size);
    const reps = Math.max(1, Math.min(10000, Math.round((2 << 20) / Math.max(size, 1)))); // ~1 ms a turn
    return {
      size,
      native: add(
        () => {
          for (let i = 0; i < reps; i++) sink ^= native.crc32(data);
        },
        reps,
        size < 16 << 20,
      ),
      zlib: add(
        () => {
          for (let i = 0; i < reps; i++) sink ^= zcrc32(data);
        },
        reps,
        size < 16 << 20,
      ),
    };
  });

  // 1024 records of 288 bytes (256-byte payloads): one sealRecords call, versus a CRC call per
  // record (zlib, as format.ts's sealRecord does today, or the addon's crc32).
  const count = 1024;
  const arena = randomBytes(count * 288);
  for (let at = 0; at < arena.length; at += 288) {
    arena.writeUInt32LE(MAGIC, at);
    arena.writeUInt32LE(256, at + 16);
  }
  const perRecord = (crc) => () => {
    for (let at = 0; at < arena.length; at += 288) arena.writeUInt32LE(crc(arena.subarray(at + 8, at + 288)), at + 4);
  };
  let verified = 0;
  const seal = add(() => native.sealRecords(arena, 0, arena.length), count);
  const zlibEach = add(perRecord(zcrc32), count);
  const nativeEach = add(perRecord(native.crc32), count);
  const verify = add(() => {
    verified = native.verifyRecords(arena, 0, arena.length);
  }, count);

  for (const c of contenders) c.fn(); // warm up (and let V8 optimize the loops)
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of contenders) {
      if (c.warm) c.fn();
      const t0 = process.hrtime.bigint();
      c.fn();
      c.best = Math.min(c.best, Number(process.hrtime.bigint() - t0) / c.units);
    }
  }

  const fmt = (ns) => (ns >= 10000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(1)} ns`);
  console.log(`timings (best turn of ${ROUNDS} rounds; hasPclmul=${native.hasPclmul}):`);
  for (const { size, native: nat, zlib: zl } of crcRows) {
    const label = size >= 1 << 20 ? `${size >> 20} MiB` : size >= 1024 ? `${size >> 10} KiB` : `${size} B`;
    const perByte = (ns) => (size >= 1024 ? ` (${(ns / size).toFixed(3)} ns/B)` : '');
    console.log(
      `crc32 ${label.padStart(6)}: native ${fmt(nat.best).padStart(9)}/call${perByte(nat.best)}  ` +
        `zlib ${fmt(zl.best).padStart(9)}/call${perByte(zl.best)}  x${(zl.best / nat.best).toFixed(1)}`,
    );
  }
  console.log(
    `records 1024 x 288 B: sealRecords ${fmt(seal.best)}/record  zlib per record ${fmt(zlibEach.best)}/record ` +
      `(x${(zlibEach.best / seal.best).toFixed(1)})  native crc32 per record ${fmt(nativeEach.best)}/record  verifyRecords ${fmt(verify.best)}/record`,
  );

  check(verified === arena.length, 'verifyRecords accepts the timed arena');
  native.sealRecords(arena, 0, arena.length);
  check(
    Array.from({ length: count }, (_, i) => i * 288).every((at) => arena.readUInt32LE(at + 4) === zcrc32(arena.subarray(at + 8, at + 288))),
    'sealRecords and zlib agree on the timed arena',
  );
  if (sink === 0.5) console.log('unreachable'); // keeps the CRC results alive
}

console.log(`native-crc-check: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
