// Shared pieces of the storage conformance suite: draining topics, payload patterns, byte
// comparisons that stay cheap for large entries, and the on-disk layout arithmetic that the
// corruption tests use to find a record in a data file.
//
// The layout is the documented format: a data file starts with a 64-byte file header, then
// records packed back to back, each a 32-byte header followed by its payload. The first append
// to a topic is preceded by that topic's declaration record (32 bytes + the name's UTF-8
// bytes). Checkpointed reads in strict mode append 32-byte cursor records, so the offsets below
// hold only for records appended before any read.
//
// Two engine bugs this suite found are fixed and keep their regression tests in
// limits-and-errors.test.ts: a failed open no longer supersedes the live instance, and a data
// file with a damaged header is renamed aside instead of being written over.

import { closeSync, openSync as fsOpen, readdirSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import type { Entry, Walrus } from '../../src/engine/walrus.js';

export const FILE_HEADER = 64;
export const RECORD_HEADER = 32;
/** "WREC": the first four bytes of every record. */
export const RECORD_MAGIC = Buffer.from('WREC', 'latin1');
export const MiB = 1024 * 1024;
/** A byte budget no read batch can reach. */
export const UNLIMITED = Number.MAX_SAFE_INTEGER;

/** Reads with `readNext` until it returns null. */
export async function drain(wal: Walrus, topic: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (;;) {
    const entry = await wal.readNext(topic);
    if (entry === null) return entries;
    entries.push(entry);
  }
}

/** Reads with `readBatch(maxBytes)` until it returns nothing; also counts the calls that returned entries. */
export async function drainBatches(wal: Walrus, topic: string, maxBytes: number): Promise<{ entries: Entry[]; calls: number }> {
  const entries: Entry[] = [];
  let calls = 0;
  for (;;) {
    const batch = await wal.readBatch(topic, { maxBytes });
    if (batch.length === 0) return { entries, calls };
    calls += 1;
    entries.push(...batch);
  }
}

export const texts = (entries: readonly (Entry | null)[]): (string | null)[] =>
  entries.map((entry) => (entry === null ? null : entry.data.toString('utf8')));
export const seqs = (entries: readonly Entry[]): number[] => entries.map((entry) => entry.seq);
export const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, index) => from + index);
/** `prefix` + zero-padded index, e.g. entry_0007. */
export const label = (prefix: string, index: number, width = 4): string => `${prefix}${String(index).padStart(width, '0')}`;

/** `size` bytes of a pattern determined by `seed` (cheap even for tens of MiB). */
export function pattern(size: number, seed = 0): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  const block = Buffer.allocUnsafe(Math.min(size, 4096));
  for (let index = 0; index < block.length; index++) block[index] = (index * 31 + seed * 17 + (index >> 8)) & 0xff;
  for (let at = 0; at < size; at += block.length) block.copy(buffer, at, 0, Math.min(block.length, size - at));
  if (size >= 8) buffer.writeUInt32LE(seed >>> 0, 0);
  return buffer;
}

/** Asserts byte equality without printing megabytes on failure. */
export function sameBytes(t: ExecutionContext, actual: Uint8Array | undefined | null, expected: Uint8Array, what: string): void {
  if (actual === undefined || actual === null) {
    t.fail(`${what}: no entry, expected ${expected.length} bytes`);
    return;
  }
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.length);
  if (a.equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) {
    t.pass();
    return;
  }
  let first = 0;
  while (first < Math.min(a.length, expected.length) && a[first] === expected[first]) first++;
  t.fail(`${what}: ${a.length} bytes, expected ${expected.length}; first difference at byte ${first}`);
}

/** Data file names (`000000000001.wal`, …) of a directory, in log order. */
export function dataFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => /^\d{12}\.wal$/.test(name))
    .sort();
}

export function firstDataFile(dir: string): string {
  const [first] = dataFiles(dir);
  if (first === undefined) throw new Error(`no data file in ${dir}`);
  return join(dir, first);
}

export interface RecordAt {
  /** Offset of the record's 32-byte header in the data file. */
  readonly header: number;
  /** Offset of its payload. */
  readonly payload: number;
}

/** Where the entries appended in this order (to a fresh directory, before any read) lie in the first data file. */
export function entryOffsets(appends: readonly { readonly topic: string; readonly bytes: number }[]): RecordAt[] {
  const declared = new Set<string>();
  let offset = FILE_HEADER;
  return appends.map(({ topic, bytes }) => {
    if (!declared.has(topic)) {
      declared.add(topic);
      offset += RECORD_HEADER + Buffer.byteLength(topic, 'utf8');
    }
    const at = { header: offset, payload: offset + RECORD_HEADER };
    offset += RECORD_HEADER + bytes;
    return at;
  });
}

/** The file's bytes [offset, offset + length) read through a fresh fd (what another process sees); short at its end. */
export function readBytes(path: string, offset: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  const fd = fsOpen(path, 'r');
  try {
    return buffer.subarray(0, readSync(fd, buffer, 0, length, offset));
  } finally {
    closeSync(fd);
  }
}

export function writeBytes(path: string, offset: number, bytes: Uint8Array): void {
  const fd = fsOpen(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Flips every bit of `length` bytes at `offset`. */
export function xorBytes(path: string, offset: number, length = 1): void {
  const bytes = readBytes(path, offset, length);
  for (let index = 0; index < length; index++) bytes[index] = (bytes[index] ?? 0) ^ 0xff;
  writeBytes(path, offset, bytes);
}

export function zeroBytes(path: string, offset: number, length: number): void {
  writeBytes(path, offset, Buffer.alloc(length));
}

/** Asserts that a record header starts at `offset`, so a corruption test damages what it means to. */
export function assertRecordAt(t: ExecutionContext, path: string, offset: number): void {
  t.deepEqual(readBytes(path, offset, 4), RECORD_MAGIC, `a record starts at ${offset}`);
}

/** Expects a read to fail with CORRUPT_RECORD or to return no entry, and never `original`. */
export async function notTheOriginal(t: ExecutionContext, read: Promise<Entry | null>, original: Uint8Array): Promise<void> {
  try {
    const entry = await read;
    if (entry !== null) t.false(entry.data.equals(original), 'the damaged entry is never returned');
    else t.pass();
  } catch (error) {
    t.is((error as { code?: string }).code, 'CORRUPT_RECORD');
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every entry of `entries` once: no duplicates and nothing missing against `expected` sequence numbers. */
export function assertExactlyOnce(t: ExecutionContext, entries: readonly Entry[], expected: readonly number[]): void {
  const got = seqs(entries);
  t.is(new Set(got).size, got.length, 'no entry is delivered twice');
  t.deepEqual(
    [...got].sort((a, b) => a - b),
    [...expected],
    'every entry is delivered',
  );
}

/**
 * Book-keeping for cases where several writers contend for topics: the items of every call that
 * was acknowledged, per writer in call order, and the error code of every call that was refused.
 * The documented rule (docs/engine.md, appendBatch) is that only a pending batch makes another
 * `append` or `appendBatch` on its topic fail, with `TOPIC_BUSY`, and that a refused call leaves
 * no trace. `refusedWithoutBatch` counts refusals made while no batch call on the topic was
 * pending, which that rule forbids. A batch counts as pending from its call until its writer has
 * seen it settle, a little longer than the engine holds the topic, so that count never blames a
 * legal refusal.
 */
export class Contenders {
  private readonly calls = new Map<string, { readonly topic: string; readonly items: readonly string[]; readonly batch: boolean }[]>();
  private readonly pendingBatches = new Map<string, number>();
  /** Codes of the refused calls, in the order they were refused. */
  readonly refusals: string[] = [];
  refusedWithoutBatch = 0;

  constructor(private readonly wal: Walrus) {}

  /** `append(topic, item)` on behalf of `writer`; true when it was acknowledged. */
  append(writer: string, topic: string, item: string): Promise<boolean> {
    return this.call(writer, topic, [item], false);
  }

  /** `appendBatch(topic, items)` on behalf of `writer`; true when it was acknowledged. */
  appendBatch(writer: string, topic: string, items: readonly string[]): Promise<boolean> {
    return this.call(writer, topic, items, true);
  }

  private async call(writer: string, topic: string, items: readonly string[], batch: boolean): Promise<boolean> {
    const batchPending = (this.pendingBatches.get(topic) ?? 0) > 0;
    if (batch) this.pendingBatches.set(topic, (this.pendingBatches.get(topic) ?? 0) + 1);
    try {
      await (batch ? this.wal.appendBatch(topic, items) : this.wal.append(topic, items[0] ?? ''));
      const list = this.calls.get(writer) ?? [];
      list.push({ topic, items, batch });
      this.calls.set(writer, list);
      return true;
    } catch (error) {
      const code = (error as { code?: string }).code ?? String(error);
      this.refusals.push(code);
      if (code === 'TOPIC_BUSY' && !batchPending) this.refusedWithoutBatch += 1;
      return false;
    } finally {
      if (batch) this.pendingBatches.set(topic, (this.pendingBatches.get(topic) ?? 1) - 1);
    }
  }

  /** How many calls were acknowledged: all of them, or only the appends or only the batches, on `topic` (all topics if omitted). */
  acknowledgedCalls(kind: 'append' | 'batch' | 'any' = 'any', topic?: string): number {
    let count = 0;
    for (const list of this.calls.values())
      for (const call of list)
        if ((topic === undefined || call.topic === topic) && (kind === 'any' || call.batch === (kind === 'batch'))) count += 1;
    return count;
  }

  /** Every item acknowledged on `topic`. */
  acknowledgedItems(topic: string): string[] {
    return [...this.calls.values()].flatMap((list) => list.filter((call) => call.topic === topic).flatMap((call) => call.items));
  }

  /**
   * Asserts what the calls imply: every refusal is TOPIC_BUSY and came while a batch was
   * pending; `log` (the topic's entries in sequence order) holds exactly the acknowledged items,
   * each once; the items of each batch are adjacent and in order; and each writer's items come
   * in the order it made its calls (every writer awaits each call before the next).
   */
  assertLog(t: ExecutionContext, topic: string, log: readonly string[]): void {
    t.deepEqual(
      this.refusals.filter((code) => code !== 'TOPIC_BUSY'),
      [],
      'a contended call is refused only with TOPIC_BUSY',
    );
    t.is(this.refusedWithoutBatch, 0, 'TOPIC_BUSY only while a batch is pending on the topic');
    t.deepEqual([...log].sort(), this.acknowledgedItems(topic).sort(), `${topic} holds every acknowledged entry once and nothing else`);
    const position = new Map(log.map((item, index) => [item, index]));
    let splitBatches = 0;
    let outOfOrder = 0;
    for (const list of this.calls.values()) {
      let last = -1;
      for (const call of list) {
        if (call.topic !== topic) continue;
        const at = position.get(call.items[0] ?? '') ?? -1;
        if (call.batch && log.slice(at, at + call.items.length).join('\n') !== call.items.join('\n')) splitBatches += 1;
        if (at <= last) outOfOrder += 1;
        last = at;
      }
    }
    t.is(splitBatches, 0, 'the entries of each batch are adjacent and in order');
    t.is(outOfOrder, 0, "each writer's entries are in the order of its calls");
  }
}
