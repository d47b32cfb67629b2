// The log writer: records of one tick are staged into a reused buffer and written with one
// positional (vectored) write at the end of the tick; their promises settle together. Under
// `fsync: 'each'` they settle only after an fdatasync that covers them, and every append that
// arrives while a sync is running shares the next one (group commit). A failed write or sync
// poisons the writer: what was written cannot be trusted, so everything after rejects with IO.
// Before its files close, a poisoned writer cuts the current file back to what was acknowledged
// (under 'each': what a completed sync covered; otherwise: what was handed to the OS before the
// failure), so that an append that was refused cannot reappear when the directory is reopened.

import { closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { StorageBackend, StorageFile } from '../contracts/storage.js';
import { StorageError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { checksums, sealSplitRecord } from './checksum.js';
import {
  dataFileName,
  encodeFileHeader,
  FILE_HEADER_BYTES,
  RECORD_HEADER_BYTES,
  RecordKind,
  writeEntryRecords,
  writeEntryRun,
  writeRecordFields,
} from './format.js';
import type { PayloadRun } from './payload-run.js';

/**
 * The promise acknowledge() returns when the records were acknowledged before it returned (see
 * acknowledged()).
 */
export const ACKNOWLEDGED: Promise<void> = Promise.resolve();
const SETTLED = ACKNOWLEDGED;

/**
 * True when `promise` is the one an acknowledgement returns for records acknowledged before the
 * call returned: the caller may go on synchronously instead of awaiting it.
 */
export function acknowledged(promise: Promise<unknown>): boolean {
  return promise === SETTLED;
}

export type SyncMode = { readonly kind: 'each' } | { readonly kind: 'none' } | { readonly kind: 'every'; readonly ms: number };

/** One promise shared by every record staged in the same flush. */
class Waiter {
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (error: Error) => void;

  constructor() {
    let rejectPromise!: (error: Error) => void;
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      rejectPromise = reject;
    });
    this.reject = (error) => {
      // A caller may drop the promise (fire-and-forget appends): mark it handled before it
      // rejects, so the failure reaches the callers that did await it without crashing the process.
      // (Marking it only here spares every successful flush a second promise.)
      this.promise.catch(() => undefined);
      rejectPromise(error);
    };
  }
}

export interface OpenFile {
  readonly fileNo: number;
  readonly file: StorageFile;
}

export interface LogWriterOptions {
  readonly dir: string;
  readonly backend: StorageBackend;
  readonly sync: SyncMode;
  readonly fileBytesMax: number;
  /** Keep the file ahead of the writes in the page cache when the backend can (prefetchAhead). */
  readonly writeReadAhead: boolean;
  /** The file to append to and where its valid records end. */
  readonly current: OpenFile & { readonly validEnd: number; readonly hasHeader: boolean };
  /** Called when a new data file is started, so the caller can stage its checkpoint records. */
  readonly onNewFile: (file: OpenFile) => void;
  /** Called after every write: the records staged before it are now handed to the OS (publish them). */
  readonly onWritten: () => void;
  /** Called as a sync starts; the function it returns runs once that sync has completed. */
  readonly onSyncStart?: () => () => void;
}

/** Syncs a directory so that a file created or removed in it survives a power loss. */
export function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class LogWriter {
  private readonly options: LogWriterOptions;
  private current: OpenFile;
  /** End of the bytes handed to the OS in the current file. */
  private writeOffset: number;
  /** Size the current file has been extended to. */
  private extentEnd: number;
  /** The file the read-ahead of prefetchAhead() is for, how far it has read, and whether a read is in flight. */
  private prefetchFile: StorageFile | undefined;
  private prefetchedTo = 0;
  private prefetching = false;
  private stopped = false;
  private readonly arena = Buffer.allocUnsafe(limits.stagingBytes);
  private readonly arenaView = new DataView(this.arena.buffer, this.arena.byteOffset, this.arena.length);
  private arenaUsed = 0;
  /** Start of the records staged in the arena whose CRCs are not computed yet (all back to back). */
  private sealFrom = 0;
  private arenaSliceStart = 0;
  private chunks: Buffer[] = [];
  private stagedBytes = 0;
  private waiter: Waiter | undefined;
  /** Called after each write with the records it covered being readable. */
  private readonly onFlushed: () => void;
  private flushScheduled = false;
  /** True from a write made at once (see acknowledge) to the end of that tick. */
  private wroteThisTick = false;
  /** Single acknowledgements asked for in this tick, and whether the tick's end is scheduled. */
  private singleAcks = 0;
  private tickEndDue = false;
  /**
   * The last tick asked for more than one single acknowledgement (pipelined appends): the next
   * tick's first is staged with the rest rather than written at once, one write for the burst.
   */
  private bursting = false;
  private readonly tickEnded = (): void => {
    this.tickEndDue = false;
    this.wroteThisTick = false;
    this.bursting = this.singleAcks > 1;
    this.singleAcks = 0;
  };
  private readonly flushAtTickEnd = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  /** Syncs started from the write path while another was in flight (see syncIfDue). */
  private readonly extraSyncs = new Set<Promise<void>>();
  /** When the last sync started (for `everyMs` syncs started from the write path). */
  private lastSyncStartAt = performance.now();
  /** End of the current file's header and checkpoint records. */
  private checkpointEnd = FILE_HEADER_BYTES;
  /** Large payloads written from the caller's buffer: their CRC is computed just before the write. */
  private unsealed: { readonly at: number; readonly payload: Uint8Array }[] = [];
  /** Written but not yet synced: their waiters, and the files to sync. */
  private awaitingSync: Waiter[] = [];
  private readonly dirtyFiles = new Set<StorageFile>();
  /**
   * Syncs already submitted with a write (StorageFile.writevAndSync) that cover everything written
   * to their file so far; the next syncNow() takes them instead of calling sync().
   */
  private readonly linkedSyncs = new Map<StorageFile, Promise<void>>();
  private syncing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failure: StorageError | undefined;
  /** End of the bytes of the current file handed to the OS by writes that succeeded. */
  private goodWrittenEnd: number;
  /** End of the bytes of the current file covered by a sync that completed. */
  private syncedEnd: number;

  constructor(options: LogWriterOptions) {
    this.options = options;
    this.current = options.current;
    this.onFlushed = options.onWritten;
    this.writeOffset = options.current.hasHeader ? options.current.validEnd : 0;
    // What recovery found is synced by the engine before any append is accepted.
    this.goodWrittenEnd = this.writeOffset;
    this.syncedEnd = this.writeOffset;
    this.extentEnd = options.current.file.size();
    if (!options.current.hasHeader) this.stageRaw(encodeFileHeader(options.current.fileNo));
    if (options.sync.kind === 'every') {
      this.timer = setInterval(() => {
        if (this.dirtyFiles.size > 0) this.syncNow().catch(() => undefined);
      }, options.sync.ms);
      this.timer.unref();
    }
  }

  get fileNo(): number {
    return this.current.fileNo;
  }

  /** The error that poisoned the writer, if any. */
  get failed(): StorageError | undefined {
    return this.failure;
  }

  /** Where the bytes handed to the OS end in file `fileNo` (older files are complete). */
  writtenEnd(fileNo: number): number {
    return fileNo === this.current.fileNo ? this.writeOffset : Number.POSITIVE_INFINITY;
  }

  /** True under `fsync: 'none'`: written is as durable as this instance promises. */
  get neverSyncs(): boolean {
    return this.options.sync.kind === 'none';
  }

  /** Bytes the next record would start at in the current file (for staging positions). */
  get nextOffset(): number {
    return this.writeOffset + this.stagedBytes;
  }

  /** Starts a new file first when `bytes` more would overflow the current one (and it holds records). */
  ensureRoom(bytes: number): void {
    const used = this.nextOffset;
    // The header and checkpoint do not count against fileBytesMax (with many topics they alone
    // could exceed it), and a file holding only them takes any record: rolling would not help.
    if (used - this.checkpointEnd + bytes <= this.options.fileBytesMax || used <= this.checkpointEnd) return;
    this.roll();
  }

  /** The records staged so far in this file are its checkpoint (see ensureRoom). */
  markCheckpoint(): void {
    this.checkpointEnd = this.nextOffset;
  }

  /** Drops a file that is being deleted from the files still to sync. */
  forget(file: StorageFile): void {
    this.dirtyFiles.delete(file);
    // Its outcome no longer matters (the file is going away); it is already marked handled.
    this.linkedSyncs.delete(file);
  }

  /** Settles once no sync is in flight (its outcome does not matter here). */
  async quiesce(): Promise<void> {
    while (this.syncing !== undefined || this.extraSyncs.size > 0) {
      await Promise.all([this.syncing?.catch(() => undefined), ...this.extraSyncs]);
    }
  }

  /**
   * Stages one record; returns its offset in the current file. Small payloads are copied next to
   * their header and checksummed in bulk just before the write (one call for the whole run of
   * records); larger ones are written from the caller's buffer.
   */
  stage(kind: RecordKind, topicId: number, seq: number, batchSize: number, batchIndex: number, payload: Uint8Array): number {
    const offset = this.nextOffset;
    const total = RECORD_HEADER_BYTES + payload.length;
    if (payload.length <= limits.stagingCopyBytesMax) {
      const at = this.reserve(total);
      writeRecordFields(this.arenaView, at, kind, topicId, payload.length, seq, batchSize, batchIndex);
      this.arena.set(payload, at + RECORD_HEADER_BYTES);
    } else {
      this.sealPending();
      const at = this.reserve(RECORD_HEADER_BYTES);
      writeRecordFields(this.arenaView, at, kind, topicId, payload.length, seq, batchSize, batchIndex);
      this.sealFrom = this.arenaUsed;
      this.unsealed.push({ at, payload });
      this.sealSlice();
      this.chunks.push(Buffer.from(payload.buffer, payload.byteOffset, payload.length));
    }
    this.stagedBytes += total;
    this.extendFor(offset + total);
    return offset;
  }

  /**
   * Stages the entries of one batch (seq `firstSeq` onwards) back to back. When every payload is
   * small and the batch fits in the free part of the staging buffer, the space is reserved once
   * and the loop only writes headers and copies payloads; otherwise each goes through stage().
   * The records land at consecutive file offsets from `nextOffset` either way.
   */
  stageBatch(topicId: number, firstSeq: number, payloads: readonly Uint8Array[], totalBytes: number): void {
    const count = payloads.length;
    let fast = this.arenaUsed + totalBytes <= this.arena.length;
    for (let index = 0; fast && index < count; index++) {
      if ((payloads[index] as Uint8Array).length > limits.stagingCopyBytesMax) fast = false;
    }
    if (!fast) {
      for (let index = 0; index < count; index++)
        this.stage(RecordKind.entry, topicId, firstSeq + index, count, index, payloads[index] as Uint8Array);
      return;
    }
    writeEntryRecords(this.arenaView, this.arena, this.reserve(totalBytes), topicId, firstSeq, payloads);
    this.stagedBytes += totalBytes;
    this.extendFor(this.writeOffset + this.stagedBytes);
  }

  /**
   * stageBatch() for a PayloadRun: the payload bytes are copied into the staging buffer with one
   * copy a part (what is staged is written first when the batch does not fit behind it), each
   * payload is moved to its place after its header (copyWithin, which makes no view), and the
   * headers are written: no object is made per payload. A batch larger than the staging buffer
   * goes through stageBatch().
   */
  stageRun(topicId: number, firstSeq: number, run: PayloadRun, totalBytes: number): void {
    if (totalBytes > this.arena.length || run.bytes > limits.stagingCopyBytesMax) {
      this.stageBatch(topicId, firstSeq, run.payloads, totalBytes);
      return;
    }
    writeEntryRun(this.arenaView, this.arena, this.reserve(totalBytes), topicId, firstSeq, run);
    this.stagedBytes += totalBytes;
    this.extendFor(this.writeOffset + this.stagedBytes);
  }

  /**
   * A promise that settles when the records staged so far are acknowledged under the sync mode.
   * With `writeNowIfIdle` (single appends, cursors) they may be written before this returns.
   */
  acknowledge(writeNowIfIdle = false): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (writeNowIfIdle) {
      this.singleAcks += 1;
      if (!this.tickEndDue) {
        this.tickEndDue = true;
        void SETTLED.then(this.tickEnded);
      }
    }
    if (writeNowIfIdle && !this.bursting && this.waiter === undefined && !this.wroteThisTick && this.options.sync.kind !== 'each') {
      // The first such acknowledgement of a tick, with nothing else waiting, is written at once:
      // an append awaited in a loop then costs one write and no pending promise. Whatever comes
      // later in the same tick is staged and written together at its end, as before; and while
      // ticks bring several (pipelined appends), the first waits with them (one write a tick, not
      // two). (Batches always wait for the end of the tick: they become visible as their promise settles.)
      this.wroteThisTick = true;
      this.flush();
      return this.failure === undefined ? SETTLED : Promise.reject(this.failure);
    }
    this.waiter ??= new Waiter();
    this.scheduleFlush();
    return this.waiter.promise;
  }

  /**
   * Flushes at the end of this tick (a microtask), so appends made together are written
   * together, and settles at once. Nothing here waits for the event loop: a reader polling in a
   * tight loop for a producer in the same process must not be able to stall it. (A producer
   * that awaits appends in a tight loop keeps the loop from turning, as any loop over settled
   * promises does; `everyMs` syncs are therefore also started from the write path.)
   */
  scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A reaction on a settled promise is a plain microtask; queueMicrotask would also make an
    // AsyncResource per call, a measurable share of an awaited append.
    void SETTLED.then(this.flushAtTickEnd);
  }

  /** Under `everyMs`, starts a sync when the last one started that long ago (the timer may be starved). */
  private syncIfDue(): void {
    const sync = this.options.sync;
    if (sync.kind !== 'every' || this.dirtyFiles.size === 0) return;
    if (performance.now() - this.lastSyncStartAt < sync.ms) return;
    if (this.syncing === undefined) {
      this.syncNow().catch(() => undefined);
      return;
    }
    // The sync in flight cannot report back while the event loop is busy, but the disk does not
    // wait for that: start another for what was written since (no acknowledgement waits on it).
    const files = [...this.dirtyFiles];
    this.dirtyFiles.clear();
    this.lastSyncStartAt = performance.now();
    const synced = this.options.onSyncStart?.();
    const extra: Promise<void> = Promise.all(files.map((file) => file.sync())).then(
      () => synced?.(),
      (error: unknown) => this.poison(error),
    );
    this.extraSyncs.add(extra);
    void extra.finally(() => this.extraSyncs.delete(extra));
  }

  /** Writes everything staged with one call, then settles or queues the waiters. */
  flush(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    this.writeStaged();
    if (this.failure !== undefined) {
      waiter?.reject(this.failure);
      return;
    }
    this.onFlushed();
    this.syncIfDue();
    if (waiter === undefined) return;
    if (this.options.sync.kind === 'each') {
      this.awaitingSync.push(waiter);
      this.syncNow().catch(() => undefined);
    } else {
      waiter.resolve();
    }
  }

  /** Syncs every file with unsynced writes; concurrent callers share the sync in flight and queue one more. */
  syncNow(): Promise<void> {
    if (this.syncing !== undefined)
      return this.syncing.then(() => (this.dirtyFiles.size > 0 || this.awaitingSync.length > 0 ? this.syncNow() : undefined));
    const files = [...this.dirtyFiles];
    const waiters = this.awaitingSync;
    this.dirtyFiles.clear();
    this.awaitingSync = [];
    // Whatever was written before this sync started is durable once it completes.
    this.lastSyncStartAt = performance.now();
    const synced = this.options.onSyncStart?.();
    const current = this.current.file;
    const coveredEnd = this.goodWrittenEnd;
    this.syncing = Promise.all(files.map((file) => this.takeLinkedSync(file) ?? file.sync())).then(
      () => {
        this.syncing = undefined;
        if (this.current.file === current) this.syncedEnd = Math.max(this.syncedEnd, coveredEnd);
        for (const waiter of waiters) waiter.resolve();
        synced?.();
      },
      (error: unknown) => {
        this.syncing = undefined;
        this.poison(error);
        for (const waiter of waiters) waiter.reject(this.failure as StorageError);
        throw this.failure;
      },
    );
    return this.syncing;
  }

  /** The sync submitted with the file's last write, if it still covers everything written to it. */
  private takeLinkedSync(file: StorageFile): Promise<void> | undefined {
    const linked = this.linkedSyncs.get(file);
    this.linkedSyncs.delete(file);
    return linked;
  }

  /** Writes what is staged and makes everything written durable. */
  async drain(): Promise<void> {
    this.flush();
    if (this.failure !== undefined) throw this.failure;
    while (this.dirtyFiles.size > 0 || this.syncing !== undefined) await this.syncNow();
    await this.quiesce();
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * After a failure, with no sync in flight (see quiesce): cuts the current file back to the end
   * of what was acknowledged, dropping the bytes of refused appends. Best effort: if the cut fails
   * too, recovery on reopen still drops any torn tail (only whole valid records survive).
   */
  discardUnacknowledged(): void {
    if (this.failure === undefined) return;
    const end = this.options.sync.kind === 'each' ? this.syncedEnd : this.goodWrittenEnd;
    // A file whose header never became durable is left to recovery (it reads as unreadable).
    if (end < FILE_HEADER_BYTES) return;
    try {
      this.current.file.truncate(end);
      this.extentEnd = end;
    } catch {
      // The disk refuses even this: recovery's longest-valid-prefix rule is the fallback.
    }
  }

  /** Stops the background sync timer. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.stopped = true;
  }

  /**
   * Keeps the next limits.prefetchAheadBytes of the current file's extent, past what has been
   * written, asked for in the page cache (StorageFile.prefetch), one step at a time with one
   * request in flight, the hints running on another thread. The extent past the writes is a hole,
   * so its pages come in zeroed and clean (a sync does not write them) and the writes then only
   * copy into them instead of each bringing in a fresh page (docs/engine.md, Backends). Nothing
   * past the extent (the file's size) is asked for; a hint that settles after a roll is dropped.
   */
  private prefetchAhead(): void {
    const file = this.current.file;
    if (!this.options.writeReadAhead || file.prefetch === undefined || this.prefetching || this.stopped || this.failure !== undefined)
      return;
    if (this.prefetchFile !== file) {
      this.prefetchFile = file;
      this.prefetchedTo = 0;
    }
    const from = Math.max(this.prefetchedTo, this.writeOffset);
    const end = Math.min(this.extentEnd, this.writeOffset + limits.prefetchAheadBytes);
    if (from >= end) return;
    const length = Math.min(limits.prefetchStepBytes, end - from);
    this.prefetching = true;
    void file.prefetch(from, length).then(() => {
      this.prefetching = false;
      if (this.prefetchFile !== file) return;
      this.prefetchedTo = Math.max(this.prefetchedTo, from + length);
      this.prefetchAhead();
    });
  }

  private poison(error: unknown): void {
    this.failure ??= new StorageError('IO', `write-ahead log I/O failed: ${(error as Error).message}; reopen to recover`, { cause: error });
  }

  private stageRaw(bytes: Buffer): void {
    this.sealPending();
    const at = this.reserve(bytes.length);
    bytes.copy(this.arena, at);
    this.sealFrom = this.arenaUsed;
    this.stagedBytes += bytes.length;
    this.extendFor(this.writeOffset + this.stagedBytes);
  }

  private reserve(bytes: number): number {
    if (this.arenaUsed + bytes > this.arena.length) {
      // The buffer is full: write what is staged now; the waiters still settle at the end of the tick.
      this.writeStaged();
    }
    const at = this.arenaUsed;
    this.arenaUsed += bytes;
    return at;
  }

  /** Hands everything staged to the OS with one call; waiters are the caller's business. */
  private writeStaged(): void {
    this.sealPending();
    this.sealLarge();
    // Usually everything staged is one range of the arena: write it without making a view.
    const single = this.chunks.length === 0;
    if (!single) this.sealSlice();
    if (this.stagedBytes > 0) {
      if (this.failure === undefined) {
        try {
          if (!this.writeLinked(single)) {
            if (single) this.current.file.write(this.arena, this.writeOffset, 0, this.arenaUsed);
            else this.current.file.writev(this.chunks, this.writeOffset);
          }
          this.goodWrittenEnd = this.writeOffset + this.stagedBytes;
        } catch (error) {
          this.poison(error);
        }
      }
      this.writeOffset += this.stagedBytes;
      this.dirtyFiles.add(this.current.file);
      this.prefetchAhead();
    }
    if (!single) this.chunks = [];
    this.stagedBytes = 0;
    this.arenaUsed = 0;
    this.arenaSliceStart = 0;
    this.sealFrom = 0;
  }

  /**
   * Under `fsync: 'each'`, with no sync in flight and a file that can link a sync to a write,
   * writes what is staged together with its fdatasync and keeps that sync for the syncNow() that
   * follows; returns false when the plain write should be used. A second write to the file before
   * that syncNow() would not be covered by the linked sync, so it drops the link (syncNow() then
   * calls sync() as usual).
   */
  private writeLinked(single: boolean): boolean {
    const file = this.current.file;
    if (this.options.sync.kind !== 'each' || this.syncing !== undefined || file.writevAndSync === undefined) return false;
    const earlier = this.linkedSyncs.get(file);
    if (earlier !== undefined) {
      this.linkedSyncs.delete(file);
      earlier.catch((error: unknown) => this.poison(error));
      return false;
    }
    const buffers = single ? [this.arena.subarray(0, this.arenaUsed)] : this.chunks;
    const synced = file.writevAndSync(buffers, this.writeOffset);
    synced.catch(() => undefined); // observed by syncNow(); a dropped one is handled above
    this.linkedSyncs.set(file, synced);
    return true;
  }

  /** Computes the CRCs of the records copied into the arena since the last call. */
  private sealPending(): void {
    if (this.arenaUsed > this.sealFrom) checksums.sealRecords(this.arena, this.sealFrom, this.arenaUsed);
    this.sealFrom = this.arenaUsed;
  }

  /** Checksums the large payloads now, right before their write, so the bytes written match their CRC. */
  private sealLarge(): void {
    for (const { at, payload } of this.unsealed) sealSplitRecord(this.arena, at, payload);
    this.unsealed = [];
  }

  private sealSlice(): void {
    if (this.arenaUsed > this.arenaSliceStart) {
      this.chunks.push(this.arena.subarray(this.arenaSliceStart, this.arenaUsed));
      this.arenaSliceStart = this.arenaUsed;
    }
  }

  /** Grows the file in large extents so that most writes land inside its current size. */
  private extendFor(end: number): void {
    if (end <= this.extentEnd) return;
    const extent = limits.fileExtentBytes;
    const target = Math.ceil(end / extent) * extent;
    try {
      this.current.file.truncate(target);
      this.extentEnd = target;
    } catch (error) {
      this.poison(error);
    }
  }

  /** Closes the current file to appends and starts the next one with a fresh header. */
  private roll(): void {
    this.writeStaged();
    if (this.failure !== undefined) throw this.failure;
    const fileNo = this.current.fileNo + 1;
    let file: StorageFile;
    try {
      mkdirSync(this.options.dir, { recursive: true });
      file = this.options.backend.open(join(this.options.dir, dataFileName(fileNo)), { create: true });
      syncDirectory(this.options.dir);
    } catch (error) {
      this.poison(error);
      throw this.failure;
    }
    this.current = { fileNo, file };
    this.writeOffset = 0;
    this.goodWrittenEnd = 0;
    this.syncedEnd = 0;
    this.extentEnd = file.size();
    this.stageRaw(encodeFileHeader(fileNo));
    this.options.onNewFile(this.current);
    this.markCheckpoint();
    // The finished file is synced in the background (not under 'none', which syncs only on
    // flush and close): what it holds becomes durable, so it can be reclaimed later.
    if (this.options.sync.kind !== 'none') this.syncNow().catch(() => undefined);
  }
}
