// Durable Raft state for one node, in its own small files (the WAL engine has no way to cut a
// log's tail, which a follower must do when its log conflicts with the leader's):
//
//   raft.log      CRC-framed records appended in order: hard state (term, vote, commit), and runs
//                 of entries that replace everything from their first index on. One write and one
//                 fdatasync per save(), so a vote or an entry is on disk before any message that
//                 depends on it is sent.
//   snapshot.bin  the newest snapshot (index, term, membership, state-machine bytes), replaced
//                 atomically (temporary file, fdatasync, rename, directory fsync).
//
// Opening replays raft.log up to the first damaged or cut record (a torn tail: never acknowledged,
// since nothing is sent before the fdatasync that covers it), truncates it there, and drops the
// entries the snapshot covers. After a snapshot the log is rewritten with only what is still
// needed, so it does not grow without bound.

import {
  closeSync,
  existsSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Entry, HardState, Snapshot } from '../core/types.js';
import { DecodeError, Reader, Writer } from './codec.js';

const LOG_FILE = 'raft.log';
const SNAPSHOT_FILE = 'snapshot.bin';
const SNAPSHOT_MAGIC = 0x4e535257; // "WRSN"
const SNAPSHOT_VERSION = 1;
const FRAME_HEADER = 8;
const RECORD_HARD_STATE = 1;
const RECORD_ENTRIES = 2;
/** Rewrite raft.log when it is this much larger than what it needs to hold (after a snapshot). */
const REWRITE_SLACK_BYTES = 16 * 1024 * 1024;

export interface StoredState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | undefined;
  readonly entries: readonly Entry[];
}

export interface OpenReport {
  /** Where raft.log was cut back to, and why, when its tail did not decode. */
  readonly tornTail: { readonly offset: number; readonly reason: string } | undefined;
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function frame(body: Buffer): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER);
  header.writeUInt32LE(body.length, 0);
  header.writeUInt32LE(crc32(body), 4);
  return Buffer.concat([header, body]);
}

function encodeHardState(state: HardState): Buffer {
  return new Writer().u8(RECORD_HARD_STATE).f64(state.term).u32(state.vote).f64(state.commit).finish();
}

function encodeEntries(entries: readonly Entry[]): Buffer {
  const writer = new Writer().u8(RECORD_ENTRIES).u32(entries.length);
  for (const entry of entries) writer.entry(entry);
  return writer.finish();
}

function encodeSnapshot(snapshot: Snapshot): Buffer {
  const body = new Writer().u32(SNAPSHOT_MAGIC).u32(SNAPSHOT_VERSION).f64(snapshot.index).f64(snapshot.term);
  body.membership(snapshot.membership).bytes(snapshot.data);
  const bytes = body.finish();
  const crc = Buffer.allocUnsafe(4);
  crc.writeUInt32LE(crc32(bytes), 0);
  return Buffer.concat([bytes, crc]);
}

function decodeSnapshot(bytes: Buffer): Snapshot {
  if (bytes.length < 4) throw new DecodeError('snapshot file too short');
  const body = bytes.subarray(0, bytes.length - 4);
  if (crc32(body) !== bytes.readUInt32LE(bytes.length - 4)) throw new DecodeError('snapshot file checksum mismatch');
  const reader = new Reader(body);
  if (reader.u32() !== SNAPSHOT_MAGIC) throw new DecodeError('not a Walrus Raft snapshot');
  const version = reader.u32();
  if (version !== SNAPSHOT_VERSION) throw new DecodeError(`snapshot format version ${version}, this Walrus reads ${SNAPSHOT_VERSION}`);
  const index = reader.f64();
  const term = reader.f64();
  const membership = reader.membership();
  const data = reader.bytes();
  return { index, term, membership, data };
}

export class RaftLogStore {
  readonly dir: string;
  private fd: number;
  private size: number;
  private hardState: HardState;
  private snapshot: Snapshot | undefined;
  /** The persisted entries after the snapshot, in order (a mirror of what raft.log replays to). */
  private entries: Entry[];
  private liveBytes = 0;
  private readonly rewriteSlackBytes: number;
  readonly report: OpenReport;

  private constructor(dir: string, fd: number, size: number, state: StoredState, report: OpenReport, rewriteSlackBytes: number) {
    this.dir = dir;
    this.rewriteSlackBytes = rewriteSlackBytes;
    this.fd = fd;
    this.size = size;
    this.hardState = state.hardState;
    this.snapshot = state.snapshot;
    this.entries = [...state.entries];
    this.report = report;
  }

  /** Opens (creating) the store in `dir` and reads back what it holds. */
  static open(dir: string, options: { readonly rewriteSlackBytes?: number } = {}): RaftLogStore {
    mkdirSync(dir, { recursive: true });
    const snapshotPath = join(dir, SNAPSHOT_FILE);
    const snapshot = existsSync(snapshotPath) ? decodeSnapshot(readFileSync(snapshotPath)) : undefined;
    const path = join(dir, LOG_FILE);
    const created = !existsSync(path);
    const fd = openSync(path, created ? 'w+' : 'r+');
    if (created) syncDirectory(dir);
    const { state, validEnd, tornTail } = replay(fd, snapshot);
    if (tornTail !== undefined) {
      ftruncateSync(fd, validEnd);
      fdatasyncSync(fd);
    }
    const store = new RaftLogStore(dir, fd, validEnd, state, { tornTail }, options.rewriteSlackBytes ?? REWRITE_SLACK_BYTES);
    store.liveBytes = validEnd;
    return store;
  }

  /** What the node restarts from. */
  state(): StoredState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: [...this.entries] };
  }

  /**
   * Makes a Ready's hard state, received snapshot and entries durable, in that order of meaning:
   * the snapshot file first (atomically), then one append to raft.log, then one fdatasync.
   */
  async save(work: {
    readonly hardState?: HardState | undefined;
    readonly snapshot?: Snapshot | undefined;
    readonly entries: readonly Entry[];
  }): Promise<void> {
    if (work.snapshot !== undefined) this.installSnapshot(work.snapshot);
    const records: Buffer[] = [];
    if (work.entries.length > 0) {
      records.push(frame(encodeEntries(work.entries)));
      this.applyEntries(work.entries);
    }
    if (work.hardState !== undefined) {
      records.push(frame(encodeHardState(work.hardState)));
      this.hardState = work.hardState;
    }
    if (records.length === 0) return;
    const bytes = Buffer.concat(records);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, this.size + done);
    this.size += bytes.length;
    this.liveBytes += bytes.length;
    await new Promise<void>((resolve, reject) => fdatasync(this.fd, (error) => (error === null ? resolve() : reject(error))));
  }

  /** The host took a snapshot at `snapshot.index`: keep it, and drop the log before it. */
  saveSnapshot(snapshot: Snapshot): void {
    if (this.snapshot !== undefined && snapshot.index <= this.snapshot.index) return;
    this.installSnapshot(snapshot);
  }

  close(): void {
    if (this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
  }

  private applyEntries(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    const base = this.snapshot?.index ?? 0;
    this.entries.length = Math.max(0, Math.min(this.entries.length, first.index - base - 1));
    for (const entry of entries) if (entry.index > base) this.entries.push(entry);
  }

  private installSnapshot(snapshot: Snapshot): void {
    const temporary = join(this.dir, `${SNAPSHOT_FILE}.tmp`);
    const fd = openSync(temporary, 'w');
    try {
      const bytes = encodeSnapshot(snapshot);
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, done);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, join(this.dir, SNAPSHOT_FILE));
    syncDirectory(this.dir);
    this.snapshot = snapshot;
    this.entries = keepAfterSnapshot(this.entries, snapshot);
    this.rewriteIfLarge();
  }

  /** Replaces raft.log with one holding only the hard state and the entries still needed. */
  private rewriteIfLarge(): void {
    const needed =
      frame(encodeHardState(this.hardState)).length + (this.entries.length > 0 ? frame(encodeEntries(this.entries)).length : 0);
    if (this.liveBytes - needed < this.rewriteSlackBytes) return;
    const temporary = join(this.dir, `${LOG_FILE}.tmp`);
    const parts = [frame(encodeHardState(this.hardState))];
    if (this.entries.length > 0) parts.push(frame(encodeEntries(this.entries)));
    const bytes = Buffer.concat(parts);
    const fd = openSync(temporary, 'w+');
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, done);
    fdatasyncSync(fd);
    renameSync(temporary, join(this.dir, LOG_FILE));
    syncDirectory(this.dir);
    closeSync(this.fd);
    this.fd = fd;
    this.size = bytes.length;
    this.liveBytes = bytes.length;
  }
}

/**
 * The entries a snapshot leaves: those after it when the log agrees with it at its index (or
 * already starts right after it); none when the log conflicts with it or leaves a gap.
 */
function keepAfterSnapshot(entries: readonly Entry[], snapshot: Snapshot): Entry[] {
  const first = entries[0];
  if (first === undefined) return [];
  if (first.index > snapshot.index) return first.index === snapshot.index + 1 ? [...entries] : [];
  const at = entries[snapshot.index - first.index];
  if (at === undefined || at.term !== snapshot.term) return [];
  return entries.slice(snapshot.index - first.index + 1);
}

function replay(fd: number, snapshot: Snapshot | undefined): { state: StoredState; validEnd: number; tornTail: OpenReport['tornTail'] } {
  const size = fstatSync(fd).size;
  const bytes = Buffer.allocUnsafe(size);
  let read = 0;
  while (read < size) {
    const count = readSync(fd, bytes, read, size - read, read);
    if (count === 0) break;
    read += count;
  }
  let hardState: HardState = { term: 0, vote: 0, commit: 0 };
  let entries: Entry[] = [];
  let at = 0;
  let tornTail: OpenReport['tornTail'];
  while (at < read) {
    if (read - at < FRAME_HEADER) {
      tornTail = { offset: at, reason: 'a record header cut short' };
      break;
    }
    const length = bytes.readUInt32LE(at);
    const body = bytes.subarray(at + FRAME_HEADER, at + FRAME_HEADER + length);
    if (body.length < length) {
      tornTail = { offset: at, reason: 'a record cut short' };
      break;
    }
    if (crc32(body) !== bytes.readUInt32LE(at + 4)) {
      tornTail = { offset: at, reason: 'checksum mismatch' };
      break;
    }
    try {
      const reader = new Reader(Buffer.from(body));
      const type = reader.u8();
      if (type === RECORD_HARD_STATE) {
        hardState = { term: reader.f64(), vote: reader.u32(), commit: reader.f64() };
      } else if (type === RECORD_ENTRIES) {
        const count = reader.u32();
        const run: Entry[] = [];
        for (let index = 0; index < count; index++) run.push(reader.entry());
        entries = replaceFrom(entries, run);
      } else {
        throw new DecodeError(`unknown record type ${type}`);
      }
    } catch (error) {
      tornTail = { offset: at, reason: (error as Error).message };
      break;
    }
    at += FRAME_HEADER + length;
  }
  if (snapshot !== undefined) entries = keepAfterSnapshot(entries, snapshot);
  return { state: { hardState, snapshot, entries }, validEnd: at, tornTail };
}

/** `entries` with everything from `run`'s first index replaced by `run` (which must follow on). */
function replaceFrom(entries: Entry[], run: readonly Entry[]): Entry[] {
  const first = run[0];
  if (first === undefined) return entries;
  const start = entries[0]?.index ?? first.index;
  const kept = entries.slice(0, Math.max(0, first.index - start));
  const last = kept[kept.length - 1];
  if (last !== undefined && last.index + 1 !== first.index) throw new DecodeError(`entries jump from ${last.index} to ${first.index}`);
  return [...kept, ...run];
}
