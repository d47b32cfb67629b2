// Recovery on open: scan every data file in log order, checking each record's framing, CRC,
// topic and sequence number, and keep the longest valid prefix of each file. A batch whose
// records are not all present is dropped whole. Nothing past the first bad record of a file is
// trusted. What was dropped is reported (bytes, records, gaps), never silently served. With
// progress options, a long scan logs how far it is (recovery-progress.ts).

import { readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { StorageBackend, StorageFile } from '../contracts/storage.js';
import { StorageError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { checksums, recordCrcMatches } from './checksum.js';
import { ChunkReader, type Framing, RecordFramer } from './chunk-reader.js';
import {
  FILE_HEADER_BYTES,
  isCurrentEntry,
  parseDataFileName,
  RECORD_HEADER_BYTES,
  type RecordHeader,
  RecordKind,
  readFileHeader,
  readRecordHeader,
  recordBatchIndex,
  recordBatchSize,
  recordSeq,
  recordTopicId,
} from './format.js';
import { syncDirectory } from './log.js';
import { nativeAddonSwitchedOff } from './native-addon.js';
import { RecoveryProgress, type RecoveryProgressOptions } from './recovery-progress.js';
import { TopicState } from './topic.js';
import type { VerifyRequest, VerifyResult } from './verify-worker.js';

export interface RecoveredFile {
  readonly fileNo: number;
  readonly file: StorageFile;
  /** End of the valid records: where the next record goes if this file takes more. */
  readonly validEnd: number;
  /** True when only zeros follow the valid records (no torn or damaged tail to keep). */
  readonly cleanEnd: boolean;
  /** False when the file header was missing (a file created just before a crash). */
  readonly hasHeader: boolean;
}

export interface RecoveryReport {
  filesScanned: number;
  entriesRecovered: number;
  /** Files whose valid records stop before non-zero bytes: a torn write or corruption. */
  tornTails: { file: string; offset: number; reason: string }[];
  /** Batches cut short by a crash, dropped whole. */
  incompleteBatches: number;
  /** Sequence ranges of a topic that no surviving file holds although they were never consumed. */
  lostRanges: { topic: string; fromSeq: number; toSeq: number }[];
  /** Files skipped entirely because their header is damaged. */
  unreadableFiles: { file: string; reason: string }[];
}

export interface Recovery {
  readonly topics: Map<number, TopicState>;
  readonly files: RecoveredFile[];
  /** The highest data file number seen, readable or not: new files are numbered after it. */
  readonly highestFileNo: number;
  /** Per data file: the highest seq of each topic id it holds (for reclamation). */
  readonly fileTopics: Map<number, Map<number, number>>;
  readonly report: RecoveryReport;
}

/** The batch a scan is inside: how many of its entries were seen, its topic and size, where it starts. */
interface OpenBatch {
  count: number;
  topicId: number;
  size: number;
  start: number;
}

/** Where the scan of one data file is: its position, the batch it is inside, why it stopped. */
class FileScan {
  readonly framer: RecordFramer;
  readonly fileNo: number;
  readonly size: number;
  /** Start of the next record to read: once the scan ends, where the file's valid records end. */
  position = FILE_HEADER_BYTES;
  // The batch being read: its entries are stored in the topic's index as they come but only
  // published once its last one is seen (an incomplete batch is unstored again at the end).
  readonly batch: OpenBatch = { count: 0, topicId: 0, size: 0, start: FILE_HEADER_BYTES };
  /** Why the scan stopped before the end of the data (a torn tail), once it has. */
  stop: string | undefined;
  /** The topic of the last entry taken, tried first for the next one. */
  lastTopic: TopicState | undefined;
  /** File offset up to which records passed a bulk CRC check. */
  verifiedEnd = FILE_HEADER_BYTES;
  /** The highest seq of each topic id this file holds; noted when the topic changes and at the end. */
  private readonly held: Map<number, number>;
  private heldTopicId = -1;
  private heldSeq = 0;

  constructor(file: StorageFile, fileNo: number, size: number, held: Map<number, number>) {
    this.framer = new RecordFramer(file, size);
    this.fileNo = fileNo;
    this.size = size;
    this.held = held;
  }

  /** The entry at `position` opens a batch of `size` entries of topic `topicId` (once per batch: kept out of the per-record path). */
  openBatch(topicId: number, size: number): void {
    const batch = this.batch;
    batch.start = this.position;
    batch.topicId = topicId;
    batch.size = size;
    batch.count = 1;
  }

  /** Topic `topicId` holds entries up to `seq` in this file. */
  noteHeld(topicId: number, seq: number): void {
    if (this.heldTopicId !== topicId) {
      this.noteLastHeld();
      this.heldTopicId = topicId;
    }
    this.heldSeq = seq;
  }

  noteLastHeld(): void {
    if (this.heldTopicId >= 0) this.held.set(this.heldTopicId, this.heldSeq);
  }
}

class Scanner {
  /** False when a worker checks the CRCs in parallel (see verify-worker.ts). */
  private readonly verifyCrc: boolean;
  readonly topics = new Map<number, TopicState>();
  /** Per data file: the highest seq of each topic id it holds. */
  readonly fileTopics = new Map<number, Map<number, number>>();
  private readonly byName = new Map<string, TopicState>();
  private readonly cursors = new Map<number, number>();
  readonly report: RecoveryReport = {
    filesScanned: 0,
    entriesRecovered: 0,
    tornTails: [],
    incompleteBatches: 0,
    lostRanges: [],
    unreadableFiles: [],
  };

  /** Told how far the scan is once per chunk of records; undefined without progress lines. */
  private readonly progress: RecoveryProgress | undefined;

  constructor(verifyCrc: boolean, progress: RecoveryProgress | undefined) {
    this.verifyCrc = verifyCrc;
    this.progress = progress;
  }

  /**
   * Scans one file's records from just after its header; returns where the valid records end.
   * Fields are read in place from a 4 MiB chunk with one CRC per record (or one per chunk with
   * bulk checksums): lone entries (nearly every record) take a fast path without header
   * objects; the rest go through apply().
   */
  scan(file: StorageFile, fileNo: number, size: number): number {
    let held = this.fileTopics.get(fileNo);
    if (held === undefined) {
      held = new Map();
      this.fileTopics.set(fileNo, held);
    }
    const scan = new FileScan(file, fileNo, size, held);
    const framer = scan.framer;
    // One comparison per record; the clock is read only past each chunk's worth of records.
    let progressAt = this.progress === undefined ? Number.MAX_SAFE_INTEGER : scan.position + limits.recoveryChunkBytes;
    for (;;) {
      const framing = framer.frame(scan.position);
      if (framing !== 'framed') {
        scan.stop = unframedReason(scan, framing);
        break;
      }
      // With bulk checksums one call verifies the rest of the chunk: records it covered skip the call.
      if (this.verifyCrc && scan.position + framer.total > scan.verifiedEnd && !crcMatches(scan)) {
        scan.stop = 'checksum mismatch';
        break;
      }
      if (!this.takeEntry(scan)) {
        scan.stop = this.applyRecord(scan);
        if (scan.stop !== undefined) break;
      }
      scan.position += framer.total;
      if (scan.position >= progressAt) progressAt = this.progressed(scan.position);
    }
    scan.noteLastHeld();
    return this.end(scan, file.path);
  }

  /** The scan of the current file reached `position`: reports it if a line is due; returns where to report next. */
  private progressed(position: number): number {
    this.progress?.check(position);
    return position + limits.recoveryChunkBytes;
  }

  /** The fast path: stores an entry that continues its topic (alone, or the next one of a batch); false if it does not. */
  private takeEntry(scan: FileScan): boolean {
    // Once per record, inlined into scan()'s loop together with framer.frame(): kept small, with
    // the once-per-batch work in openBatch and publishBatch (see RecordFramer.frame on the budget).
    const framer = scan.framer;
    const view = framer.view;
    const at = framer.at;
    if (!isCurrentEntry(view, at)) return false;
    const topicId = recordTopicId(view, at);
    const last = scan.lastTopic;
    const topic = last !== undefined && last.id === topicId ? last : this.topics.get(topicId);
    if (topic === undefined) return false;
    const batch = scan.batch;
    const count = batch.count;
    const seq = topic.nextSeq + count;
    const batchSize = recordBatchSize(view, at);
    const batchIndex = recordBatchIndex(view, at);
    // It fits when it is its topic's next entry and the open batch's next one (or opens a batch).
    if (recordSeq(view, at) !== seq || batchIndex !== count || batchIndex >= batchSize) return false;
    if (count > 0 && (batch.topicId !== topicId || batch.size !== batchSize)) return false;
    topic.store(seq, scan.fileNo, scan.position, framer.total - RECORD_HEADER_BYTES);
    if (count === 0) scan.openBatch(topicId, batchSize);
    else batch.count = count + 1;
    if (batchIndex === batchSize - 1) this.publishBatch(scan, topic, seq);
    scan.lastTopic = topic;
    return true;
  }

  /** The last entry of the open batch (`seq`) has been stored: the batch becomes visible. */
  private publishBatch(scan: FileScan, topic: TopicState, seq: number): void {
    topic.publish();
    topic.nextSeq = seq + 1;
    this.report.entriesRecovered += scan.batch.count;
    scan.batch.count = 0;
    scan.noteHeld(topic.id, seq);
  }

  /** Everything the fast path did not take: declarations, cursors, and entries that do not fit. Returns why the scan stops, if it does. */
  private applyRecord(scan: FileScan): string | undefined {
    const { source, view, at, total } = scan.framer;
    const checked = readRecordHeader(view, at);
    if (!checked.ok) return checked.reason;
    return this.apply(checked.header, source.subarray(at + RECORD_HEADER_BYTES, at + total), scan.batch);
  }

  /** Reports how the scan ended (torn tail, incomplete batch); returns where the file's valid records end. */
  private end(scan: FileScan, path: string): number {
    const { batch, size } = scan;
    let position = scan.position;
    // Fewer than 32 bytes left: the end, unless they hold something (a header cut by the end of the file).
    if (
      scan.stop === undefined &&
      position < size &&
      position + RECORD_HEADER_BYTES > size &&
      !isZero(scan.framer.reader.bytes(position, size - position), 0, size - position)
    ) {
      scan.stop = 'a record header cut short by the end of the file';
    }
    if (batch.count > 0) {
      this.report.incompleteBatches += 1;
      this.topics.get(batch.topicId)?.unstore();
      position = batch.start;
    }
    if (scan.stop !== undefined) this.report.tornTails.push({ file: path, offset: position, reason: scan.stop });
    return position;
  }

  /**
   * Applies a declaration or cursor record. An entry reaches here only when the fast path found
   * that it does not continue its topic; the answer is then why.
   */
  private apply(header: RecordHeader, payload: Buffer, batch: Readonly<OpenBatch>): string | undefined {
    const open = batch.count > 0;
    if (open && (header.kind !== RecordKind.entry || header.batchSize === 1)) return 'a batch is cut short';
    if (header.kind === RecordKind.topic) return this.declare(header, payload.toString('utf8'));
    const topic = this.topics.get(header.topicId);
    if (topic === undefined) return `record for undeclared topic id ${header.topicId}`;
    if (header.kind === RecordKind.cursor) {
      if (header.seq > topic.nextSeq) return `cursor ${header.seq} beyond the end of topic ${topic.name}`;
      this.cursors.set(topic.id, Math.max(this.cursors.get(topic.id) ?? 0, header.seq));
      return undefined;
    }
    if (header.batchIndex !== batch.count) return 'a batch is out of order';
    if (open && (batch.topicId !== header.topicId || batch.size !== header.batchSize)) return 'a batch mixes topics';
    return `topic ${topic.name} seq ${header.seq} where ${topic.nextSeq + batch.count} was expected`;
  }

  private declare(header: RecordHeader, name: string): string | undefined {
    const byId = this.topics.get(header.topicId);
    const byName = this.byName.get(name);
    if (byId !== undefined && byId.name !== name) return `topic id ${header.topicId} names both ${byId.name} and ${name}`;
    if (byName !== undefined && byName.id !== header.topicId) return `topic ${name} has ids ${byName.id} and ${header.topicId}`;
    const topic = byId ?? new TopicState(header.topicId, name, header.seq);
    if (byId === undefined) {
      this.topics.set(topic.id, topic);
      this.byName.set(name, topic);
      // First seen past seq 0: the earlier entries were in reclaimed files (fine if consumed).
      if (header.seq > 0) this.report.lostRanges.push({ topic: name, fromSeq: 0, toSeq: header.seq - 1 });
    }
    if (header.seq < topic.nextSeq) return `topic ${name} declared at seq ${header.seq} after seq ${topic.nextSeq - 1}`;
    if (header.seq > topic.nextSeq) {
      // Entries between are in no surviving file, and the index restarts after them, so the ones
      // before the gap are dropped from service too: all reported unless the cursor had passed them.
      this.report.lostRanges.push({ topic: name, fromSeq: topic.lowSeq, toSeq: header.seq - 1 });
      topic.restartAt(header.seq);
    }
    return undefined;
  }

  /** Applies the cursors, dropping lost ranges that were consumed anyway from the report. */
  finish(): void {
    // A range is lost only if the cursor on disk had not consumed all of it (judged before clamping).
    this.report.lostRanges = this.report.lostRanges.filter((range) => {
      const topic = this.byName.get(range.topic);
      return topic === undefined || range.toSeq >= (this.cursors.get(topic.id) ?? 0);
    });
    for (const topic of this.topics.values()) {
      const cursor = Math.min(Math.max(this.cursors.get(topic.id) ?? topic.lowSeq, topic.lowSeq), topic.visibleSeq);
      topic.cursor = cursor;
      topic.persistedCursor = cursor;
    }
  }
}

/** Why a record could not be framed, as a torn tail's reason; undefined when that is the end of the data. */
function unframedReason(scan: FileScan, framing: Exclude<Framing, 'framed'>): string | undefined {
  if (framing === 'end' || framing === 'unread') return undefined;
  if (framing === 'too-long') return 'record runs past the end of the file';
  const { source, at } = scan.framer;
  if (!isZero(source, at, RECORD_HEADER_BYTES)) return 'no record magic';
  // Zeros end the data only if nothing follows them: a zeroed header before more records is damage.
  return zerosFollow(scan.framer.reader, scan.position, scan.size) ? undefined : 'a zeroed record header with data after it';
}

/** Checks the framed record's CRC; with bulk checksums one call checks every whole record left in the chunk. */
function crcMatches(scan: FileScan): boolean {
  const { framer } = scan;
  if (!(checksums.bulk && framer.inChunk)) return recordCrcMatches(framer.source, framer.view, framer.at, framer.total);
  const end = scan.position + framer.total;
  // Later records of the chunk skip their own call.
  if (end > scan.verifiedEnd)
    scan.verifiedEnd = framer.reader.start + checksums.verifyRecords(framer.source, framer.at, framer.reader.filled);
  return end <= scan.verifiedEnd;
}

/** How far past a zeroed header to look for data before calling the zeros the end. */
const ZERO_LOOKAHEAD_BYTES = 1024 * 1024;

function isZero(buffer: Buffer, offset: number, length: number): boolean {
  for (let i = offset; i < offset + length; i++) if (buffer[i] !== 0) return false;
  return true;
}

function zerosFollowHeader(file: StorageFile, size: number): boolean {
  return zerosFollow(new ChunkReader(file), 0, size);
}

function zerosFollow(reader: ChunkReader, position: number, size: number): boolean {
  const end = Math.min(size, position + ZERO_LOOKAHEAD_BYTES);
  for (let at = position; at < end; at += 64 * 1024) {
    const bytes = reader.bytes(at, Math.min(64 * 1024, end - at));
    if (!bytes.every((byte) => byte === 0)) return false;
  }
  return true;
}

interface DataFileName {
  readonly name: string;
  readonly fileNo: number;
}

function listDataFiles(dir: string): DataFileName[] {
  return readdirSync(dir)
    .map((name) => ({ name, fileNo: parseDataFileName(name) }))
    .filter((entry): entry is DataFileName => entry.fileNo !== undefined)
    .sort((a, b) => a.fileNo - b.fileNo);
}

function scanDirectory(dir: string, backend: StorageBackend, verifyCrc: boolean, progressOptions?: RecoveryProgressOptions): Recovery {
  const names = listDataFiles(dir);
  // Only the progress lines need the files' allocated bytes (a stat per file).
  const progress =
    progressOptions === undefined
      ? undefined
      : new RecoveryProgress(
          progressOptions,
          dir,
          names.map(({ name }) => statSync(join(dir, name)).blocks * 512),
        );
  const scanner = new Scanner(verifyCrc, progress);
  const files: RecoveredFile[] = [];
  try {
    for (const entry of names) {
      scanFile(dir, entry, backend, scanner, files);
      progress?.fileDone();
    }
  } catch (error) {
    closeAll(files);
    throw error;
  }
  scanner.finish();
  progress?.finish(scanner.report.entriesRecovered);
  const highestFileNo = names.length === 0 ? 0 : (names[names.length - 1]?.fileNo ?? 0);
  return { topics: scanner.topics, files, highestFileNo, fileTopics: scanner.fileTopics, report: scanner.report };
}

function closeAll(files: readonly RecoveredFile[]): void {
  for (const recovered of files) void recovered.file.close();
}

/**
 * Lists data files in log order, opens and scans them, checking every CRC on this thread. With
 * `progress` it logs the same progress lines as `recover` (both scans are synchronous, so both
 * can): through a logger whose destination writes asynchronously they come out once the scan is
 * over, each with the time it was logged at.
 */
export function recoverSync(dir: string, backend: StorageBackend, progress?: RecoveryProgressOptions): Recovery {
  return scanDirectory(dir, backend, true, progress);
}

/** Checks the CRCs of `paths` on a worker thread that uses the same checksum code as this one. */
export function verifyInWorker(paths: readonly string[]): Promise<VerifyResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./verify-worker.js', import.meta.url), {
      workerData: { paths, nativeSwitchedOff: nativeAddonSwitchedOff() } satisfies VerifyRequest,
    });
    worker.once('message', (result: VerifyResult) => resolve(result));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`checksum worker exited with code ${code}`)));
  });
}

/**
 * Recovery as `recoverSync`, but for a log of at least `parallelBytesMin` allocated bytes the CRCs are
 * checked by a worker thread while this thread builds the index. If the worker finds a bad CRC
 * inside what the structural scan kept (or fails), the directory is scanned again with checks.
 */
export async function recover(
  dir: string,
  backend: StorageBackend,
  // With bulk (native) checksums the CRCs cost less than a second pass over the files would.
  parallelBytesMin = checksums.bulk ? Number.POSITIVE_INFINITY : limits.parallelRecoveryBytesMin,
  progress?: RecoveryProgressOptions,
): Promise<Recovery> {
  const paths = listDataFiles(dir).map(({ name }) => join(dir, name));
  let allocated = 0;
  for (const path of paths) allocated += statSync(path).blocks * 512;
  if (allocated < parallelBytesMin) return recoverSync(dir, backend, progress);
  const verified = verifyInWorker(paths);
  // Nothing else may run between the worker's start and this scan: it is synchronous. Its
  // progress lines cover the structural scan; the wait for the worker after it is not reported.
  const fast = scanDirectory(dir, backend, false, progress);
  let result: VerifyResult | undefined;
  try {
    result = await verified;
  } catch {
    result = undefined;
  }
  const trusted =
    result !== undefined &&
    fast.files.every((recovered) => {
      const badAt = result.badAt[recovered.file.path];
      return badAt === null || (badAt !== undefined && badAt >= recovered.validEnd);
    });
  if (trusted) return fast;
  closeAll(fast.files);
  // The scan again with checks reports its progress from the start again.
  const checked = recoverSync(dir, backend, progress);
  checked.report.unreadableFiles.unshift(...fast.report.unreadableFiles);
  return checked;
}

/** Opens and scans one data file (or sets it aside as unreadable), adding it to `files`. */
function scanFile(dir: string, { name, fileNo }: DataFileName, backend: StorageBackend, scanner: Scanner, files: RecoveredFile[]): void {
  const file = backend.open(join(dir, name), { create: false });
  const size = file.size();
  const head = Buffer.alloc(FILE_HEADER_BYTES);
  file.read(head, 0, FILE_HEADER_BYTES, 0);
  const checked = readFileHeader(head);
  scanner.report.filesScanned += 1;
  if (checked.state === 'too-new') {
    void file.close();
    throw new StorageError(
      'FORMAT_TOO_NEW',
      `${file.path} was written by on-disk format version ${checked.version}; this Walrus reads version 1. Upgrade Walrus to open this directory.`,
      { details: { file: file.path, version: checked.version } },
    );
  }
  if (checked.state === 'ok' && checked.fileNo !== fileNo) {
    // A file renamed or copied into the wrong place: its records may not continue the log here.
    scanner.report.unreadableFiles.push({ file: `${file.path}.unreadable`, reason: `its header says it is data file ${checked.fileNo}` });
    void file.close();
    renameSync(file.path, `${file.path}.unreadable`);
    syncDirectory(dir);
    return;
  }
  if (checked.state === 'corrupt') {
    // Kept for inspection under another name, so that it is neither scanned nor written again.
    scanner.report.unreadableFiles.push({ file: `${file.path}.unreadable`, reason: checked.reason });
    void file.close();
    renameSync(file.path, `${file.path}.unreadable`);
    syncDirectory(dir);
    return;
  }
  if (checked.state === 'empty') {
    files.push({ fileNo, file, validEnd: FILE_HEADER_BYTES, hasHeader: false, cleanEnd: zerosFollowHeader(file, size) });
    return;
  }
  const torn = scanner.report.tornTails.length + scanner.report.incompleteBatches;
  const validEnd = scanner.scan(file, fileNo, size);
  const cleanEnd = scanner.report.tornTails.length + scanner.report.incompleteBatches === torn;
  files.push({ fileNo, file, validEnd, hasHeader: true, cleanEnd });
}
