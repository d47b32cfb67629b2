// Walrus: the embedded write-ahead log. Named topics, appends and atomic batch appends, reads
// with one shared persistent cursor per topic, peeks and stateless reads by sequence number.
// One log per instance directory: every record goes to the end of the current data file, so a
// crash can only tear the tail, and recovery keeps the longest valid prefix (recovery.ts).
// Cursors are records in the same log, so persisting one costs one small append.

import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Logger, pino } from 'pino';
import type { StorageBackend, StorageFile } from '../contracts/storage.js';
import { BusyError, InputError, StateError, StorageError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { checksums, recordCrcMatches } from './checksum.js';
import { dataFileName, FILE_HEADER_BYTES, RECORD_HEADER_BYTES, RecordKind, recordMatches } from './format.js';
import { ACKNOWLEDGED, acknowledged, LogWriter, type OpenFile, type SyncMode, syncDirectory } from './log.js';
import { PayloadRun } from './payload-run.js';
import { stillRuns } from './process-holder.js';
import { type Recovery, type RecoveryReport, recover, recoverSync } from './recovery.js';
import { resolveBackend } from './storage/select.js';
import { TopicState } from './topic.js';

export type Consistency = 'strict' | { readonly atLeastOnce: number };
export type FsyncSchedule = 'each' | 'none' | { readonly everyMs: number };
export type BackendName = 'auto' | 'fd' | 'mmap' | 'uring';

export interface WalrusOptions {
  /** Root folder; default ./wal_files. (The engine reads no environment: see openWalrus in src/index.ts.) */
  readonly dataDir?: string;
  /** Namespace: the data lives in dataDir/<sanitised key>. */
  readonly key?: string;
  readonly backend?: BackendName;
  /** `backend: 'auto'` passes over io_uring, and `backend: 'uring'` is refused. Default false. */
  readonly disableIoUring?: boolean;
  /** A StorageBackend object to use instead of a named one (a custom backend, or a test double). */
  readonly storage?: StorageBackend;
  /** `strict` (default) persists every cursor advance; `{ atLeastOnce: N }` every N consumed entries. */
  readonly consistency?: Consistency;
  /** Default `{ everyMs: 200 }`. */
  readonly fsync?: FsyncSchedule;
  /** Start a new data file past this size (default 1 GiB). */
  readonly fileBytesMax?: number;
  /**
   * Default true: the writer keeps the next 16 MiB of its data file in the page cache ahead of its
   * writes, read on a worker thread, when the backend offers StorageFile.prefetch (fd and uring
   * with the native addon). It pays where fresh memory is slow to touch (virtual machines whose
   * host backs memory on first use) and costs a little CPU where it is not (docs/engine.md).
   */
  readonly writeReadAhead?: boolean;
  /** Where recovery reports and recovery's progress lines go; default a pino logger at `warn`. */
  readonly logger?: Logger;
  /**
   * Called each time a sync of the data files completes, with how long it took in seconds (from
   * its start to its completion as the event loop sees it); for metrics. Not called for a sync
   * that fails.
   */
  readonly onSync?: (seconds: number) => void;
  /**
   * While recovery scans on open, an `info` line on `logger` at most this often (default 2000 ms)
   * with the files and bytes scanned and the rate, and one with the totals at the end when the
   * scan took at least this long. A number of milliseconds, at least 1.
   */
  readonly recoveryProgressMs?: number;
}

export interface Entry {
  /**
   * 0-based position in the topic; never reused for an acknowledged entry. (Numbers of records
   * that recovery drops, such as a torn tail that was never acknowledged, are given out again.)
   */
  readonly seq: number;
  readonly data: Buffer;
}

export interface AppendBatchOptions {
  /**
   * Whether other appends to the topic are refused with TOPIC_BUSY while the batch's promise is
   * pending (default true, the original's rule). False lets them in: they are staged after the
   * batch and so follow it in the log, and one write (and sync) can carry several batches.
   */
  readonly exclusive?: boolean;
}

export interface ReadBatchOptions {
  /** Payload byte budget: at least one entry is returned when any is available. */
  readonly maxBytes: number;
  readonly checkpoint?: boolean;
  /** Read from this sequence number without touching the cursor. */
  readonly startSeq?: number;
}

const LOCK_FILE = 'walrus.lock';
/** Where `open` puts the data without a `dataDir`, relative to the working directory. */
export const DEFAULT_DATA_DIR = './wal_files';
/** How often a long recovery scan logs how far it is (WalrusOptions.recoveryProgressMs). */
export const DEFAULT_RECOVERY_PROGRESS_MS = 2_000;

/** The original's rule: every character outside [A-Za-z0-9._-] becomes `_`; all-`_` names (and `.`/`..`) hash instead. */
export function sanitizeKey(key: string): string {
  const mapped = [...key].map((char) => (/^[A-Za-z0-9._-]$/.test(char) ? char : '_')).join('');
  if (mapped !== '' && !/^_+$/.test(mapped) && mapped !== '.' && mapped !== '..') return mapped;
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(key, 'utf8')) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return `ns_${hash.toString(16)}`;
}

function syncMode(fsync: FsyncSchedule): SyncMode {
  if (fsync === 'each') return { kind: 'each' };
  if (fsync === 'none') return { kind: 'none' };
  if (typeof fsync === 'object' && fsync !== null && Number.isInteger(fsync.everyMs)) {
    if (fsync.everyMs >= limits.fsyncEveryMsMin && fsync.everyMs <= limits.fsyncEveryMsMax) return { kind: 'every', ms: fsync.everyMs };
  }
  throw new InputError(
    'INVALID_ARGUMENT',
    `fsync must be 'each', 'none' or { everyMs: ${limits.fsyncEveryMsMin}..${limits.fsyncEveryMsMax} }, got ${JSON.stringify(fsync)}`,
  );
}

function persistEvery(consistency: Consistency): number {
  if (consistency === 'strict') return 1;
  if (typeof consistency === 'object' && consistency !== null && Number.isInteger(consistency.atLeastOnce)) {
    // 0 means 1, as in the original.
    if (consistency.atLeastOnce >= 0 && consistency.atLeastOnce <= limits.atLeastOnceMax) return Math.max(1, consistency.atLeastOnce);
  }
  throw new InputError(
    'INVALID_ARGUMENT',
    `consistency must be 'strict' or { atLeastOnce: 0..${limits.atLeastOnceMax} }, got ${JSON.stringify(consistency)}`,
  );
}

function toBytes(data: Uint8Array | string, what: string): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new InputError('INVALID_ARGUMENT', `${what} must be a string or a Uint8Array, got ${data === null ? 'null' : typeof data}`);
}

/** Refuses a directory whose lock names another live process. */
function checkLock(dir: string): void {
  const path = join(dir, LOCK_FILE);
  if (!existsSync(path)) return;
  const pid = Number(readFileSync(path, 'utf8').trim());
  if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
    throw new BusyError(
      'DIRECTORY_LOCKED',
      `${dir} is in use by process ${pid}; one process at a time may open a Walrus directory (if no such Walrus runs, delete ${path})`,
      { details: { dir, pid } },
    );
  }
}

/** Records this process as the directory's user (a PID file: advisory, checked by checkLock). */
function writeLock(dir: string): void {
  writeFileSync(join(dir, LOCK_FILE), `${process.pid}\n`);
}

/** Runs a file-system step, turning its errno failure into an IO error that says what was attempted. */
function ioStep<T>(what: string, step: () => T): T {
  try {
    return step();
  } catch (error) {
    throw new StorageError('IO', `${what}: ${(error as Error).message}`, { cause: error });
  }
}

/** A zombie (killed, not yet reaped) holds nothing: a restart right after kill -9 must not wait for the reaper. */
function processAlive(pid: number): boolean {
  return stillRuns({ pid, startTime: undefined });
}

/** Instances open in this process, by directory: a newer open of the same directory supersedes the older one. */
const openInstances = new Map<string, Walrus>();
/** The open in progress for a directory, so that opens of one directory never overlap. */
const opening = new Map<string, Promise<void>>();

interface ReadAhead {
  fileNo: number;
  start: number;
  end: number;
  /** File offset up to which the records in the buffer passed their CRC check (bulk checksums only). */
  verifiedEnd: number;
  buffer: Buffer;
  view: DataView;
  /** The buffer as a plain Uint8Array: its subarrays are cheaper to make than a Buffer's. */
  bytes: Uint8Array;
}

export class Walrus {
  readonly dir: string;
  readonly backendName: string;
  /** What recovery found and dropped when this instance opened. */
  readonly recovery: RecoveryReport;
  private readonly log: Logger;
  private readonly files = new Map<number, StorageFile>();
  private readonly topicsByName = new Map<string, TopicState>();
  private readonly writer: LogWriter;
  private readonly persistEvery: number;
  private readonly readAhead = new Map<TopicState, ReadAhead>();
  private nextTopicId: number;
  /** Topics with entries staged but not yet written. */
  private readonly unpublished: TopicState[] = [];
  /** Per data file: the highest seq each topic has in it. A file goes once every topic has consumed past it. */
  private readonly fileTopics = new Map<number, Map<TopicState, number>>();
  /** Cursor values known to be on disk and synced: what reclamation may rely on after a power loss. */
  private readonly durableCursors = new Map<TopicState, number>();
  /** Cursor records staged but not yet written, then written but not yet covered by a sync. */
  private readonly cursorsStaged = new Map<TopicState, number>();
  private readonly cursorsWritten = new Map<TopicState, number>();
  /**
   * Under fsync 'each': entries written but not yet covered by a completed sync, as (topic, end)
   * pairs in write order. Readers see an entry only once its sync has completed (the committed
   * frontier), so nothing read can be lost by a power cut or belong to an append that then failed.
   */
  private writtenUnsynced: { readonly state: TopicState; readonly end: number }[] = [];
  private readonly publishOnSync: boolean;
  private closedReason: string | undefined;
  private reclaimCount = 0;
  private reclaimTimer: NodeJS.Timeout | undefined;

  private constructor(
    dir: string,
    backend: StorageBackend,
    recovery: Recovery,
    options: Required<Pick<WalrusOptions, 'consistency' | 'fsync'>> & WalrusOptions,
    log: Logger,
  ) {
    this.dir = dir;
    this.backendName = backend.name;
    this.recovery = recovery.report;
    this.log = log;
    this.persistEvery = persistEvery(options.consistency);
    this.publishOnSync = syncMode(options.fsync).kind === 'each';
    for (const recovered of recovery.files) this.files.set(recovered.fileNo, recovered.file);
    for (const topic of recovery.topics.values()) this.topicsByName.set(topic.name, topic);
    for (const [fileNo, held] of recovery.fileTopics) {
      const byTopic = new Map<TopicState, number>();
      for (const [topicId, seq] of held) {
        const topic = recovery.topics.get(topicId);
        if (topic !== undefined) byTopic.set(topic, seq);
      }
      this.fileTopics.set(fileNo, byTopic);
    }
    let highestTopicId = 0;
    for (const id of recovery.topics.keys()) highestTopicId = Math.max(highestTopicId, id);
    this.nextTopicId = highestTopicId + 1;
    const last = recovery.files[recovery.files.length - 1];
    let current: OpenFile & { validEnd: number; hasHeader: boolean };
    if (last === undefined || last.fileNo < recovery.highestFileNo || !last.cleanEnd) {
      // No readable file, the newest one was unreadable, or its tail is torn or damaged: start a
      // fresh file after every number seen, leaving the damaged bytes as they are for inspection.
      const fileNo = recovery.highestFileNo + 1;
      const file = backend.open(join(dir, dataFileName(fileNo)), { create: true });
      syncDirectory(dir);
      this.files.set(fileNo, file);
      current = { fileNo, file, validEnd: FILE_HEADER_BYTES, hasHeader: false };
    } else {
      current = { fileNo: last.fileNo, file: last.file, validEnd: last.validEnd, hasHeader: last.hasHeader };
      // Only zeros follow the records (checked over the next MiB); make sure of the rest as well.
      const size = last.file.size();
      if (size > last.validEnd) {
        last.file.truncate(last.validEnd);
        last.file.truncate(size);
      }
    }
    this.writer = new LogWriter({
      dir,
      backend,
      sync: syncMode(options.fsync),
      fileBytesMax: options.fileBytesMax ?? limits.fileBytesMaxDefault,
      writeReadAhead: options.writeReadAhead ?? true,
      current,
      onNewFile: (file) => this.checkpoint(file),
      onWritten: () => this.publishWritten(),
      onSyncStart: options.onSync === undefined ? () => this.cursorsSyncing() : this.timedSyncStart(options.onSync),
    });
    // A file without a header (new, or created just before a crash) gets a checkpoint of every topic.
    if (!current.hasHeader && this.topicsByName.size > 0) this.checkpoint(current);
    if (!current.hasHeader) this.writer.markCheckpoint();
  }

  /**
   * The recovered files may hold records only in the page cache (the last run was killed): sync
   * them, and only then trust the recovered cursors for reclamation.
   */
  private async settleRecovered(): Promise<void> {
    await Promise.all([...this.files.values()].map((file) => file.sync()));
    for (const topic of this.topicsByName.values()) {
      this.durableCursors.set(topic, Math.max(this.durableCursors.get(topic) ?? 0, topic.persistedCursor));
    }
    this.reclaim();
  }

  /**
   * The write or sync failure that made this instance refuse writes (it still serves reads of
   * what it had made readable); undefined while it is healthy. Close and reopen the directory to
   * write again.
   */
  get failure(): StorageError | undefined {
    return this.writer.failed;
  }

  /** Data files deleted since this instance opened, because every topic had consumed them. */
  get reclaimedFiles(): number {
    return this.reclaimCount;
  }

  static async open(options: WalrusOptions = {}): Promise<Walrus> {
    const consistency = options.consistency === undefined ? 'strict' : options.consistency;
    const fsync = options.fsync === undefined ? { everyMs: 200 } : options.fsync;
    persistEvery(consistency);
    syncMode(fsync);
    if (options.fileBytesMax !== undefined && (!Number.isInteger(options.fileBytesMax) || options.fileBytesMax < 4096)) {
      throw new InputError('INVALID_ARGUMENT', `fileBytesMax must be an integer of at least 4096, got ${options.fileBytesMax}`);
    }
    if (options.writeReadAhead !== undefined && typeof options.writeReadAhead !== 'boolean') {
      throw new InputError('INVALID_ARGUMENT', `writeReadAhead must be a boolean, got ${String(options.writeReadAhead)}`);
    }
    const progressMs = options.recoveryProgressMs;
    if (progressMs !== undefined && (typeof progressMs !== 'number' || !(progressMs >= 1))) {
      throw new InputError('INVALID_ARGUMENT', `recoveryProgressMs must be a number of at least 1, got ${String(progressMs)}`);
    }
    if (options.key !== undefined && typeof options.key !== 'string') throw new InputError('INVALID_ARGUMENT', 'key must be a string');
    const root = options.dataDir ?? DEFAULT_DATA_DIR;
    const dir = resolve(options.key === undefined ? root : join(root, sanitizeKey(options.key)));
    const real = ioStep(`cannot use data directory ${dir}`, () => {
      mkdirSync(dir, { recursive: true });
      return realpathSync(dir);
    });
    // Opens of one directory in this process run one after another, so each sees the one before.
    const before = opening.get(real) ?? Promise.resolve();
    const mine = before.then(() => Walrus.openDirectory(real, options, consistency, fsync));
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    opening.set(real, settled);
    void settled.then(() => {
      if (opening.get(real) === settled) opening.delete(real);
    });
    return mine;
  }

  private static async openDirectory(
    real: string,
    options: WalrusOptions,
    consistency: Consistency,
    fsync: FsyncSchedule,
  ): Promise<Walrus> {
    const backend = options.storage ?? (await resolveBackend(options.backend ?? 'auto', { disableIoUring: options.disableIoUring }));
    checkLock(real);
    // An instance already open on this directory hands over its staged records first, but it is
    // superseded only once this open has succeeded: a failed open leaves it working.
    const previous = openInstances.get(real);
    previous?.writer.flush();
    const log = options.logger ?? pino({ name: 'walrus-engine', level: 'warn' });
    // With an instance open on the directory, recovery must not yield (it could append meanwhile).
    const progress = { log, intervalMs: options.recoveryProgressMs ?? DEFAULT_RECOVERY_PROGRESS_MS };
    const recovery = previous === undefined ? await recover(real, backend, undefined, progress) : recoverSync(real, backend, progress);
    let wal: Walrus;
    try {
      wal = new Walrus(real, backend, recovery, { ...options, consistency, fsync }, log);
    } catch (error) {
      for (const file of recovery.files) void file.file.close();
      throw error instanceof StorageError || error instanceof InputError
        ? error
        : new StorageError('IO', `cannot open ${real}: ${(error as Error).message}`, { cause: error });
    }
    previous?.supersede();
    writeLock(real);
    openInstances.set(real, wal);
    wal.reportRecovery();
    try {
      await wal.settleRecovered();
    } catch (error) {
      await wal.close().catch(() => undefined);
      throw new StorageError('IO', `cannot sync the recovered files of ${real}: ${(error as Error).message}`, { cause: error });
    }
    return wal;
  }

  // --- appends -------------------------------------------------------------------------------

  /**
   * Appends one entry; the promise settles once it is acknowledged under the fsync schedule.
   * When it was acknowledged before append returned (written at once, no sync to wait for), the
   * promise is one for which `Walrus.acknowledged(promise)` is true, so a caller on a hot path can
   * go on without awaiting it.
   */
  append(topic: string, data: Uint8Array | string): Promise<void> {
    try {
      this.checkWritable();
      // A known topic name was checked when the topic was created.
      const existing = this.topicsByName.get(topic);
      if (existing === undefined) checkTopicName(topic);
      const payload = toBytes(data, 'data');
      if (payload.length > limits.entryBytesMax) {
        throw new InputError('ENTRY_TOO_LARGE', `entry of ${payload.length} bytes is larger than the limit of ${limits.entryBytesMax}`);
      }
      if (existing?.batchInFlight === true) throw new BusyError('TOPIC_BUSY', `a batch append is in flight on topic ${topic}`);
      this.writer.ensureRoom(RECORD_HEADER_BYTES + payload.length + (existing === undefined ? this.declarationBytes(topic) : 0));
      const state = existing ?? this.createTopic(topic);
      const seq = state.nextSeq;
      state.nextSeq += 1;
      const fileNo = this.writer.fileNo;
      const offset = this.writer.stage(RecordKind.entry, state.id, seq, 1, 0, payload);
      state.store(seq, fileNo, offset, payload.length);
      this.markUnpublished(state);
      this.noteHeld(fileNo, state, seq);
      return this.writer.acknowledge(true);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Appends `items` as one batch (see docs/engine.md). A PayloadRun (the payloads of an MPUT, back
   * to back in the pieces the request arrived in) is taken as it is: its bytes are copied into
   * the records without an object made per payload.
   */
  async appendBatch(
    topic: string,
    items: ReadonlyArray<Uint8Array | string> | PayloadRun,
    options: AppendBatchOptions = {},
  ): Promise<void> {
    this.checkWritable();
    checkTopicName(topic);
    const run = items instanceof PayloadRun ? items : undefined;
    if (run === undefined && !Array.isArray(items)) throw new InputError('INVALID_ARGUMENT', 'items must be an array');
    const count = run === undefined ? (items as ReadonlyArray<Uint8Array | string>).length : run.count;
    if (count > limits.batchEntriesMax) {
      throw new InputError('BATCH_TOO_LARGE', `batch of ${count} entries exceeds the limit of ${limits.batchEntriesMax} entries`);
    }
    // Byte arrays are used as given (they are copied or written before this call returns);
    // strings are encoded into a copy of the list.
    let payloads = run === undefined ? (items as ReadonlyArray<Uint8Array>) : undefined;
    let bytes = run?.bytes ?? 0;
    let sizes = run?.sizes;
    if (payloads !== undefined) {
      const list = items as ReadonlyArray<Uint8Array | string>;
      const measured: number[] = new Array(list.length);
      for (let index = 0; index < list.length; index++) {
        const item = list[index];
        if (!(item instanceof Uint8Array)) {
          if (payloads === list) payloads = list.slice(0, index) as Uint8Array[];
          (payloads as Uint8Array[]).push(toBytes(item as string, `items[${index}]`));
        } else if (payloads !== list) (payloads as Uint8Array[]).push(item);
        const length = (payloads[index] as Uint8Array).length;
        measured[index] = length;
        bytes += length;
      }
      sizes = measured;
    }
    if (bytes > limits.batchBytesMax)
      throw new InputError('BATCH_TOO_LARGE', `batch of ${bytes} bytes exceeds the limit of ${limits.batchBytesMax} bytes`);
    const existing = this.topicsByName.get(topic);
    if (existing?.batchInFlight === true) throw new BusyError('TOPIC_BUSY', `another batch append is in flight on topic ${topic}`);
    if (count === 0) return;
    this.writer.ensureRoom(bytes + count * RECORD_HEADER_BYTES + this.declarationBytes(topic));
    const state = existing ?? this.createTopic(topic);
    const first = state.nextSeq;
    state.nextSeq += count;
    const fileNo = this.writer.fileNo;
    // The batch's records follow one another in the file from here (ensureRoom kept it in one file).
    const start = this.writer.nextOffset;
    const end = state.storeRun(first, fileNo, start, sizes as readonly number[]);
    if (run === undefined) this.writer.stageBatch(state.id, first, payloads as ReadonlyArray<Uint8Array>, end - start);
    else this.writer.stageRun(state.id, first, run, end - start);
    // All entries of the batch become readable together, after the write that holds the last of them.
    this.markUnpublished(state);
    this.noteHeld(fileNo, state, first + count - 1);
    // Staged above, in this call: appends made after it are ordered after it in the log, so the
    // refusal of overlapping ones is the original's rule, kept unless the caller lifts it.
    if (options.exclusive === false) return this.writer.acknowledge();
    state.batchInFlight = true;
    try {
      await this.writer.acknowledge();
    } finally {
      state.batchInFlight = false;
    }
  }

  // --- reads ---------------------------------------------------------------------------------

  readNext(topic: string, options: { readonly checkpoint?: boolean } = {}): Promise<Entry | null> {
    try {
      if (options.checkpoint === false) this.checkOpen();
      else this.checkWritable();
      const state = this.topicsByName.get(topic);
      // A known topic's name was checked when it was created.
      if (state === undefined) checkTopicName(topic);
      if (state === undefined || state.cursor >= state.visibleSeq) return Promise.resolve(null);
      // Claiming the entry and moving the cursor happen in one synchronous step: concurrent readers never share one.
      const seq = state.cursor;
      const entry: Entry = { seq, data: this.readEntry(state, seq) };
      if (options.checkpoint === false) return Promise.resolve(entry);
      const persisted = this.consumeOne(state, seq);
      return persisted === undefined ? Promise.resolve(entry) : persisted.then(() => entry);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * True when `promise`, returned by append(), consumeAt() or readNext()'s persistence, was
   * acknowledged before the call that made it returned (awaiting it would change nothing).
   */
  static acknowledged(promise: Promise<unknown>): boolean {
    return acknowledged(promise);
  }

  /**
   * The entry `seq` of `topic`, read synchronously without moving the cursor; null when the topic
   * has no such entry yet, or it was reclaimed after being consumed.
   */
  readAt(topic: string, seq: number): Buffer | null {
    this.checkOpen();
    const state = this.topicsByName.get(topic);
    if (state === undefined) {
      checkTopicName(topic);
      return null;
    }
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InputError('INVALID_ARGUMENT', `seq must be an integer ≥ 0, got ${seq}`);
    return seq >= state.lowSeq && seq < state.visibleSeq ? this.readEntry(state, seq) : null;
  }

  /**
   * readAt() of up to `max` consecutive entries from `seq`, at most `maxBytes` of payload but at
   * least one entry when `seq` is readable; fewer where the topic's readable entries end. One
   * lookup of the topic for the run, and the payloads share one allocation (each is the
   * caller's: changing one changes no other and nothing read later).
   */
  readRunAt(topic: string, seq: number, max: number, maxBytes: number): Buffer[] {
    const views = this.readRunShared(topic, seq, max, maxBytes);
    let bytes = 0;
    for (const view of views) bytes += view.length;
    const copy = Buffer.allocUnsafeSlow(bytes);
    let at = 0;
    for (let index = 0; index < views.length; index++) {
      const view = views[index] as Buffer;
      copy.set(view, at);
      views[index] = copy.subarray(at, at + view.length);
      at += view.length;
    }
    return views;
  }

  /**
   * readRunAt() without the copy, for a caller that only reads the payloads (the node frames them
   * into a reply): they are views of the buffers the records were read into. Such a buffer is
   * filled once and never written again, so the views stay valid; but it may still serve later
   * reads, so **changing a payload changes what later reads return**.
   */
  readRunShared(topic: string, seq: number, max: number, maxBytes: number): Buffer[] {
    this.checkOpen();
    const state = this.topicsByName.get(topic);
    if (state === undefined) {
      checkTopicName(topic);
      return [];
    }
    if (!Number.isSafeInteger(seq) || seq < 0) throw new InputError('INVALID_ARGUMENT', `seq must be an integer ≥ 0, got ${seq}`);
    if (seq < state.lowSeq) return [];
    const end = Math.min(state.visibleSeq, seq + Math.max(0, Math.floor(max)));
    let bytes = 0;
    let last = seq;
    for (; last < end; last++) {
      const length = state.lengthOf(last);
      if (last > seq && bytes + length > maxBytes) break;
      bytes += length;
    }
    const payloads: Buffer[] = new Array(last - seq);
    for (let index = seq; index < last; index++) payloads[index - seq] = this.readEntry(state, index, true);
    return payloads;
  }

  /**
   * Consumes entry `seq`, which must be the one at the topic's cursor, without reading it (a
   * caller that has already read it with readAt()). Persists the cursor as readNext() does; the
   * promise settles when that is acknowledged.
   */
  consumeAt(topic: string, seq: number): Promise<void> {
    try {
      this.checkWritable();
      const state = this.topicsByName.get(topic);
      if (state === undefined || state.cursor !== seq || seq >= state.visibleSeq) {
        throw new InputError(
          'INVALID_ARGUMENT',
          `topic ${topic}: entry ${seq} is not the next one to consume (the cursor is at ${state?.cursor ?? 0})`,
        );
      }
      return this.consumeOne(state, seq) ?? ACKNOWLEDGED;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * consumeAt() for `count` consecutive entries from `seq` (the cursor): the cursor moves past
   * them all at once and is persisted once for them (under `strict`, one cursor record).
   */
  consumeRun(topic: string, seq: number, count: number): Promise<void> {
    try {
      this.checkWritable();
      const state = this.topicsByName.get(topic);
      if (!Number.isSafeInteger(count) || count < 1) throw new InputError('INVALID_ARGUMENT', `consumeRun needs a count ≥ 1, got ${count}`);
      if (state === undefined || state.cursor !== seq || seq + count > state.visibleSeq) {
        throw new InputError(
          'INVALID_ARGUMENT',
          `topic ${topic}: entries ${seq} to ${seq + count - 1} are not the next ones to consume (the cursor is at ${state?.cursor ?? 0})`,
        );
      }
      return this.consumeOne(state, seq, count) ?? ACKNOWLEDGED;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async readBatch(topic: string, options: ReadBatchOptions): Promise<Entry[]> {
    this.checkOpen();
    checkTopicName(topic);
    if (
      typeof options !== 'object' ||
      options === null ||
      typeof options.maxBytes !== 'number' ||
      Number.isNaN(options.maxBytes) ||
      options.maxBytes < 0
    ) {
      throw new InputError('INVALID_ARGUMENT', 'readBatch needs { maxBytes: a number ≥ 0 }');
    }
    if (options.startSeq !== undefined && (!Number.isSafeInteger(options.startSeq) || options.startSeq < 0)) {
      throw new InputError('INVALID_ARGUMENT', `startSeq must be an integer ≥ 0, got ${options.startSeq}`);
    }
    const state = this.topicsByName.get(topic);
    if (state === undefined) return [];
    const stateless = options.startSeq !== undefined;
    // Moving the shared cursor writes it: refused once the writer has failed (positional reads are served).
    if (!stateless && options.checkpoint !== false) this.checkWritable();
    const from = stateless ? Math.max(options.startSeq ?? 0, state.lowSeq) : state.cursor;
    const entries: Entry[] = [];
    let bytes = 0;
    for (let seq = from; seq < state.visibleSeq && entries.length < limits.readBatchEntriesMax; seq++) {
      const length = state.lengthOf(seq);
      if (entries.length > 0 && bytes + length > options.maxBytes) break;
      entries.push({ seq, data: this.readEntry(state, seq) });
      bytes += length;
    }
    if (stateless || options.checkpoint === false || entries.length === 0) return entries;
    const before = state.cursor;
    state.cursor = from + entries.length;
    // atLeastOnce persists the position from before this batch: a crash replays the batch, never skips it.
    await this.consumed(state, entries.length, this.persistEvery === 1 ? state.cursor : before);
    return entries;
  }

  /**
   * Entries of the topic that can be read: the sequence number the next append will get (entries
   * reclaimed after consumption still count). 0 for a topic never written.
   */
  entryCount(topic: string): number {
    this.checkOpen();
    checkTopicName(topic);
    return this.topicsByName.get(topic)?.visibleSeq ?? 0;
  }

  /**
   * Entries appended to the topic, counting those whose append has not been acknowledged yet
   * (staged for this tick's write, or waiting for their sync): the offset the next append gets.
   * entryCount() counts only what can be read.
   */
  appendedCount(topic: string): number {
    this.checkOpen();
    checkTopicName(topic);
    return this.topicsByName.get(topic)?.nextSeq ?? 0;
  }

  /** Entries appended (and acknowledged) but not yet consumed by the topic's cursor. */
  pendingCount(topic: string): number {
    this.checkOpen();
    checkTopicName(topic);
    return this.topicsByName.get(topic)?.pending() ?? 0;
  }

  topics(): string[] {
    this.checkOpen();
    return [...this.topicsByName.keys()];
  }

  /** Writes whatever is staged and makes every acknowledged record durable now. */
  async flush(): Promise<void> {
    this.checkWritable();
    await this.writer.drain();
  }

  /** Flushes, stops the background sync and releases the files. Later calls reject with CLOSED. */
  async close(): Promise<void> {
    if (this.closedReason !== undefined) return;
    this.closedReason = 'closed';
    try {
      await this.writer.drain();
    } finally {
      await this.release();
    }
  }

  // --- internals -----------------------------------------------------------------------------

  /** For reads: an instance whose writer failed still serves what it had made readable. */
  private checkOpen(): void {
    if (this.closedReason !== undefined) throw new StateError('CLOSED', `this Walrus instance is ${this.closedReason}`);
  }

  /** For anything that writes (appends, cursor moves, flush): refused once a write or sync has failed. */
  private checkWritable(): void {
    this.checkOpen();
    const failure = this.writer.failed;
    if (failure !== undefined) throw failure;
  }

  /** A newer instance opened this directory in this process: hand over (written data stays). */
  private supersede(): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = 'superseded by a newer instance on the same directory';
    this.writer.flush();
    void this.release();
  }

  private async release(): Promise<void> {
    this.writer.stop();
    if (this.reclaimTimer !== undefined) clearTimeout(this.reclaimTimer);
    this.readAhead.clear();
    if (openInstances.get(this.dir) === this) {
      openInstances.delete(this.dir);
      rmSync(join(this.dir, LOCK_FILE), { force: true });
    }
    // A sync still queued on a handle must finish before the handle closes.
    await this.writer.quiesce();
    // After a failure: the bytes of refused appends go, so a reopen cannot bring them back.
    this.writer.discardUnacknowledged();
    await Promise.all([...this.files.values()].map((file) => file.close().catch(() => undefined)));
    this.files.clear();
  }

  private declarationBytes(topic: string): number {
    return this.topicsByName.has(topic) ? 0 : RECORD_HEADER_BYTES + Buffer.byteLength(topic, 'utf8');
  }

  private createTopic(name: string): TopicState {
    const state = new TopicState(this.nextTopicId, name);
    this.nextTopicId += 1;
    this.topicsByName.set(name, state);
    this.writer.stage(RecordKind.topic, state.id, 0, 1, 0, state.nameBytes);
    return state;
  }

  /** The topic has entries staged: publish them after the next write. */
  private markUnpublished(state: TopicState): void {
    if (state.awaitingPublish) return;
    state.awaitingPublish = true;
    this.unpublished.push(state);
  }

  private publishWritten(): void {
    // An array and a flag rather than a Set: this runs after every write, usually for one topic.
    // (pop() empties it without the runtime call that setting `length` costs.)
    const unpublished = this.unpublished;
    let state = unpublished.pop();
    while (state !== undefined) {
      state.awaitingPublish = false;
      if (this.publishOnSync) this.writtenUnsynced.push({ state, end: state.storedSeq });
      else state.publish();
      state = unpublished.pop();
    }
    if (this.cursorsStaged.size === 0) return;
    if (this.writer.neverSyncs) {
      // Under fsync 'none' nothing promises more than "handed to the OS": written cursors count.
      for (const [state, cursor] of this.cursorsStaged)
        this.durableCursors.set(state, Math.max(this.durableCursors.get(state) ?? 0, cursor));
      this.scheduleReclaim();
    } else {
      for (const [state, cursor] of this.cursorsStaged) this.cursorsWritten.set(state, cursor);
    }
    this.cursorsStaged.clear();
  }

  /** Runs reclaim() soon, at most once per reclaimIntervalMs (strict reads write a cursor per read). */
  private scheduleReclaim(): void {
    if (this.reclaimTimer !== undefined) return;
    this.reclaimTimer = setTimeout(() => {
      this.reclaimTimer = undefined;
      if (this.closedReason === undefined) this.reclaim();
    }, limits.reclaimIntervalMs);
    this.reclaimTimer.unref();
  }

  /** Stages, at the start of a new data file, every topic's declaration and persisted cursor. */
  private checkpoint(file: OpenFile): void {
    this.files.set(file.fileNo, file.file);
    for (const state of this.topicsByName.values()) {
      this.writer.stage(RecordKind.topic, state.id, state.nextSeq, 1, 0, state.nameBytes);
      this.stageCursor(state, state.persistedCursor);
    }
  }

  private stageCursor(state: TopicState, cursor: number): void {
    this.writer.stage(RecordKind.cursor, state.id, cursor, 1, 0, EMPTY);
    state.persistedCursor = cursor;
    this.cursorsStaged.set(state, cursor);
  }

  private noteHeld(fileNo: number, state: TopicState, seq: number): void {
    let held = this.fileTopics.get(fileNo);
    if (held === undefined) {
      held = new Map();
      this.fileTopics.set(fileNo, held);
    }
    held.set(state, seq);
  }

  /** A sync starts: the cursors written so far will be durable when it ends; then files may go. */
  /** onSyncStart for a caller that wants each sync's duration (WalrusOptions.onSync). */
  private timedSyncStart(report: (seconds: number) => void): () => () => void {
    return () => {
      const startedAt = performance.now();
      const synced = this.cursorsSyncing();
      return () => {
        synced();
        report((performance.now() - startedAt) / 1000);
      };
    };
  }

  private cursorsSyncing(): () => void {
    // Only cursor records already handed to the OS are covered by the sync that starts now.
    const covered = [...this.cursorsWritten];
    this.cursorsWritten.clear();
    // Entries written so far are covered by this sync too: they become readable when it completes
    // (never, if it fails: the writer is poisoned and the callback does not run).
    const written = this.writtenUnsynced;
    this.writtenUnsynced = [];
    return () => {
      for (const { state, end } of written) state.publishUpTo(end);
      for (const [state, cursor] of covered) this.durableCursors.set(state, Math.max(this.durableCursors.get(state) ?? 0, cursor));
      if (this.closedReason === undefined) this.reclaim();
    };
  }

  /**
   * Deletes data files from the oldest while every topic has durably consumed all it holds in
   * them. Oldest first only, so a topic's retained entries stay one contiguous range.
   */
  private reclaim(): void {
    const current = this.writer.fileNo;
    for (const fileNo of [...this.files.keys()].sort((a, b) => a - b)) {
      if (fileNo >= current) return;
      const held = this.fileTopics.get(fileNo) ?? new Map<TopicState, number>();
      for (const [state, seq] of held) if ((this.durableCursors.get(state) ?? 0) <= seq) return;
      const file = this.files.get(fileNo);
      this.files.delete(fileNo);
      this.fileTopics.delete(fileNo);
      for (const [state, seq] of held) state.trimBelow(seq + 1);
      for (const [state, ahead] of this.readAhead) if (ahead.fileNo === fileNo) this.readAhead.delete(state);
      if (file !== undefined) {
        // Nothing more to sync in a file that goes; close it once no sync is using its handle.
        this.writer.forget(file);
        void this.writer.quiesce().then(() => file.close().catch(() => undefined));
      }
      rmSync(join(this.dir, dataFileName(fileNo)), { force: true });
      syncDirectory(this.dir);
      this.reclaimCount += 1;
      this.log.debug({ dir: this.dir, fileNo }, 'reclaimed a fully consumed data file');
    }
  }

  /**
   * Moves the cursor past the `count` entries from `seq` (the one at the cursor) and persists it
   * when the mode says so, returning that acknowledgement; if staging the record fails, the
   * cursor stays put.
   */
  private consumeOne(state: TopicState, seq: number, count = 1): Promise<void> | undefined {
    state.cursor = seq + count;
    try {
      return this.consumed(state, count, seq + count);
    } catch (error) {
      state.cursor = seq;
      throw error;
    }
  }

  /** After consuming `count` entries: persists the cursor when the mode says so (then returns the acknowledgement). */
  private consumed(state: TopicState, count: number, persistAt: number): Promise<void> | undefined {
    state.consumedSincePersist += count;
    if (state.consumedSincePersist < this.persistEvery) return undefined;
    state.consumedSincePersist = 0;
    this.writer.ensureRoom(RECORD_HEADER_BYTES);
    this.stageCursor(state, persistAt);
    return this.writer.acknowledge(true);
  }

  /**
   * Reads and verifies one entry's record, through the topic's read-ahead buffer: the payload of
   * entry `seq`, checked against the index and its CRC, as a copy of its own, or with
   * `share` a view of the buffer it was read into. A read-ahead buffer is filled once and never
   * written again (a refill takes a new one), so such a view stays valid.
   */
  private readEntry(state: TopicState, seq: number, share = false): Buffer {
    const fileNo = state.fileOf(seq);
    const offset = state.offsetOf(seq);
    const length = state.lengthOf(seq);
    const total = RECORD_HEADER_BYTES + length;
    const file = this.files.get(fileNo);
    if (file === undefined) throw new StorageError('CORRUPT_RECORD', `topic ${state.name} seq ${seq}: data file ${fileNo} is missing`);
    // The record is read in place (source, at): no views are made until the payload is copied out.
    let source: Buffer;
    let view: DataView;
    let bytes: Uint8Array;
    let at = 0;
    let verified = false;
    let fresh = false;
    const ahead = this.readAhead.get(state);
    if (ahead !== undefined && ahead.fileNo === fileNo && offset >= ahead.start && offset + total <= ahead.end) {
      source = ahead.buffer;
      view = ahead.view;
      bytes = ahead.bytes;
      at = offset - ahead.start;
      verified = offset + total <= ahead.verifiedEnd;
    } else if (total > limits.readAheadBytes) {
      source = Buffer.allocUnsafe(total);
      view = new DataView(source.buffer, source.byteOffset, source.length);
      bytes = source;
      fresh = true;
      this.readExactly(file, source, offset);
    } else {
      source = Buffer.allocUnsafeSlow(limits.readAheadBytes);
      view = new DataView(source.buffer, source.byteOffset, source.length);
      bytes = new Uint8Array(source.buffer, source.byteOffset, source.length);
      // Never cache past what has been written: the bytes after it are zeros now and records later.
      const wanted = Math.min(source.length, this.writer.writtenEnd(fileNo) - offset);
      const count = file.read(source, 0, Math.max(wanted, total), offset);
      if (count < total)
        throw new StorageError('CORRUPT_RECORD', `topic ${state.name} seq ${seq}: record cut short in ${file.path} at ${offset}`);
      const end = Math.min(count, wanted);
      // Records follow one another to the end of the written data, so one call can check every
      // record the buffer holds (whatever topic): later reads from it skip their own CRC pass.
      const verifiedEnd = checksums.bulk ? offset + checksums.verifyRecords(source, 0, end) : offset;
      this.rememberReadAhead(state, { fileNo, start: offset, end: offset + end, verifiedEnd, buffer: source, view, bytes });
      verified = offset + total <= verifiedEnd;
    }
    // The record must be the one the index points at (the CRC then covers its kind, version and batch fields).
    if (!recordMatches(view, at, RecordKind.entry, state.id, seq, length) || (!verified && !recordCrcMatches(source, view, at, total))) {
      throw new StorageError(
        'CORRUPT_RECORD',
        `topic ${state.name} seq ${seq}: the record at ${file.path}:${offset} fails its checksum; its bytes are not returned`,
        {
          details: { topic: state.name, seq, file: file.path, offset },
        },
      );
    }
    if (fresh) return source.subarray(RECORD_HEADER_BYTES);
    if (share) return source.subarray(at + RECORD_HEADER_BYTES, at + total);
    // A copy of its own: a view would keep the whole read-ahead buffer alive for one entry.
    const data = Buffer.allocUnsafe(length);
    data.set(bytes.subarray(at + RECORD_HEADER_BYTES, at + total));
    return data;
  }

  private readExactly(file: StorageFile, buffer: Buffer, position: number): void {
    const count = file.read(buffer, 0, buffer.length, position);
    if (count < buffer.length) throw new StorageError('CORRUPT_RECORD', `record cut short in ${file.path} at ${position}`);
  }

  private rememberReadAhead(state: TopicState, ahead: ReadAhead): void {
    this.readAhead.delete(state);
    this.readAhead.set(state, ahead);
    if (this.readAhead.size > limits.readAheadBuffersMax) {
      const oldest = this.readAhead.keys().next().value;
      if (oldest !== undefined) this.readAhead.delete(oldest);
    }
  }

  private reportRecovery(): void {
    const report = this.recovery;
    const dropped = report.tornTails.length + report.incompleteBatches + report.lostRanges.length + report.unreadableFiles.length;
    if (dropped === 0) {
      this.log.debug({ dir: this.dir, files: report.filesScanned, entries: report.entriesRecovered }, 'recovered');
      return;
    }
    this.log.warn({ dir: this.dir, ...report }, 'recovery dropped data that was not valid');
  }
}

const EMPTY = new Uint8Array(0);

function checkTopicName(topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0)
    throw new InputError('INVALID_TOPIC', `topic must be a non-empty string, got ${JSON.stringify(topic)}`);
  const bytes = Buffer.byteLength(topic, 'utf8');
  if (bytes > limits.topicNameBytesMax)
    throw new InputError('INVALID_TOPIC', `topic name is ${bytes} UTF-8 bytes, more than the limit of ${limits.topicNameBytesMax}`);
}
