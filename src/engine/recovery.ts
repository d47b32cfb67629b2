// Recovery on open: scan every data file in log order, checking each record's framing, CRC,
// topic and sequence number, and keep the longest valid prefix of each file. A batch whose
// records are not all present is dropped whole. Nothing past the first bad record of a file is
// trusted. What was dropped is reported (bytes, records, gaps), never silently served.

import { readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { StorageError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import {
  FILE_HEADER_BYTES,
  parseDataFileName,
  RECORD_HEADER_BYTES,
  type RecordHeader,
  RecordKind,
  readFileHeader,
  readRecordHeader,
  recordCrcMatches,
} from './format.js';
import type { StorageBackend, StorageFile } from './storage.js';
import { TopicState } from './topic.js';

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

interface PendingEntry {
  readonly header: RecordHeader;
  readonly offset: number;
}

/** Reads a file sequentially through one reusable chunk. */
class ChunkReader {
  private readonly file: StorageFile;
  private readonly chunk: Buffer;
  private start = 0;
  private end = 0;

  constructor(file: StorageFile) {
    this.file = file;
    this.chunk = Buffer.allocUnsafe(limits.recoveryChunkBytes);
  }

  /** `length` bytes at `position` (a view into the chunk, or a fresh buffer for big records); short at EOF. */
  bytes(position: number, length: number): Buffer {
    if (position >= this.start && position + length <= this.end)
      return this.chunk.subarray(position - this.start, position - this.start + length);
    if (length > this.chunk.length) {
      const big = Buffer.allocUnsafe(length);
      const count = this.file.read(big, 0, length, position);
      return big.subarray(0, count);
    }
    const count = this.file.read(this.chunk, 0, this.chunk.length, position);
    this.start = position;
    this.end = position + count;
    return this.chunk.subarray(0, Math.min(count, length));
  }
}

class Scanner {
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

  /** Scans one file's records from just after its header; returns where the valid records end. */
  scan(file: StorageFile, fileNo: number, size: number): number {
    const reader = new ChunkReader(file);
    let position = FILE_HEADER_BYTES;
    let batch: PendingEntry[] = [];
    let batchStart = position;
    let stop: string | undefined;
    while (position + RECORD_HEADER_BYTES <= size) {
      const head = reader.bytes(position, RECORD_HEADER_BYTES);
      if (head.length < RECORD_HEADER_BYTES) break;
      if (head.every((byte) => byte === 0)) {
        // Zeros end the data only if nothing follows them: a zeroed header before more records is damage.
        if (!zerosFollow(reader, position, size)) stop = 'a zeroed record header with data after it';
        break;
      }
      const checked = readRecordHeader(head, 0);
      if (!checked.ok) {
        stop = checked.reason;
        break;
      }
      const { header } = checked;
      const total = RECORD_HEADER_BYTES + header.payloadBytes;
      if (header.payloadBytes > limits.entryBytesMax || position + total > size) {
        stop = 'record runs past the end of the file';
        break;
      }
      const record = reader.bytes(position, total);
      if (record.length < total || !recordCrcMatches(record, 0, record.subarray(RECORD_HEADER_BYTES))) {
        stop = 'checksum mismatch';
        break;
      }
      const problem = this.apply(header, record.subarray(RECORD_HEADER_BYTES), fileNo, position, batch);
      if (problem !== undefined) {
        stop = problem;
        break;
      }
      if (header.kind === RecordKind.entry && header.batchSize > 1) {
        if (header.batchIndex === 0) batchStart = position;
        batch.push({ header, offset: position });
        if (header.batchIndex === header.batchSize - 1) {
          for (const entry of batch) this.publish(entry.header, fileNo, entry.offset);
          batch = [];
        }
      }
      position += total;
    }
    if (batch.length > 0) {
      this.report.incompleteBatches += 1;
      position = batchStart;
    }
    if (stop !== undefined) this.report.tornTails.push({ file: file.path, offset: position, reason: stop });
    return position;
  }

  /** Applies one valid record; returns why it does not fit the log so far, if it does not. */
  private apply(header: RecordHeader, payload: Buffer, fileNo: number, offset: number, batch: readonly PendingEntry[]): string | undefined {
    const inBatch = batch.length > 0;
    if (header.kind !== RecordKind.entry || header.batchSize === 1) {
      if (inBatch) return 'a batch is cut short';
    }
    if (header.kind === RecordKind.topic) return this.declare(header, payload.toString('utf8'));
    const topic = this.topics.get(header.topicId);
    if (topic === undefined) return `record for undeclared topic id ${header.topicId}`;
    if (header.kind === RecordKind.cursor) {
      if (header.seq > topic.nextSeq) return `cursor ${header.seq} beyond the end of topic ${topic.name}`;
      this.cursors.set(topic.id, Math.max(this.cursors.get(topic.id) ?? 0, header.seq));
      return undefined;
    }
    if (header.batchSize > 1) {
      const previous = batch[batch.length - 1];
      const expectedIndex = previous === undefined ? 0 : previous.header.batchIndex + 1;
      if (header.batchIndex !== expectedIndex) return 'a batch is out of order';
      if (previous !== undefined && (previous.header.topicId !== header.topicId || previous.header.batchSize !== header.batchSize)) {
        return 'a batch mixes topics';
      }
      const expectedSeq = topic.nextSeq + batch.length;
      if (header.seq !== expectedSeq) return `topic ${topic.name} seq ${header.seq} where ${expectedSeq} was expected`;
      return undefined;
    }
    if (header.seq !== topic.nextSeq) return `topic ${topic.name} seq ${header.seq} where ${topic.nextSeq} was expected`;
    this.publish(header, fileNo, offset);
    return undefined;
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

  private publish(header: RecordHeader, fileNo: number, offset: number): void {
    const topic = this.topics.get(header.topicId);
    if (topic === undefined) throw new Error('invariant: publishing for an undeclared topic');
    topic.store(header.seq, fileNo, offset, header.payloadBytes);
    topic.publish();
    let held = this.fileTopics.get(fileNo);
    if (held === undefined) {
      held = new Map();
      this.fileTopics.set(fileNo, held);
    }
    held.set(topic.id, header.seq);
    topic.nextSeq = header.seq + 1;
    this.report.entriesRecovered += 1;
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

/** How far past a zeroed header to look for data before calling the zeros the end. */
const ZERO_LOOKAHEAD_BYTES = 1024 * 1024;

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

/** Lists data files in log order, opens and scans them. */
export function recover(dir: string, backend: StorageBackend): Recovery {
  const names = readdirSync(dir)
    .map((name) => ({ name, fileNo: parseDataFileName(name) }))
    .filter((entry): entry is { name: string; fileNo: number } => entry.fileNo !== undefined)
    .sort((a, b) => a.fileNo - b.fileNo);
  const scanner = new Scanner();
  const files: RecoveredFile[] = [];
  try {
    scanAll(dir, names, backend, scanner, files);
  } catch (error) {
    for (const recovered of files) void recovered.file.close();
    throw error;
  }
  scanner.finish();
  const highestFileNo = names.length === 0 ? 0 : (names[names.length - 1]?.fileNo ?? 0);
  return { topics: scanner.topics, files, highestFileNo, fileTopics: scanner.fileTopics, report: scanner.report };
}

function scanAll(
  dir: string,
  names: readonly { name: string; fileNo: number }[],
  backend: StorageBackend,
  scanner: Scanner,
  files: RecoveredFile[],
): void {
  for (const { name, fileNo } of names) {
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
    if (checked.state === 'corrupt') {
      // Kept for inspection under another name, so that it is neither scanned nor written again.
      scanner.report.unreadableFiles.push({ file: `${file.path}.unreadable`, reason: checked.reason });
      void file.close();
      renameSync(file.path, `${file.path}.unreadable`);
      continue;
    }
    if (checked.state === 'empty') {
      files.push({ fileNo, file, validEnd: FILE_HEADER_BYTES, hasHeader: false, cleanEnd: zerosFollowHeader(file, size) });
      continue;
    }
    const torn = scanner.report.tornTails.length + scanner.report.incompleteBatches;
    const validEnd = scanner.scan(file, fileNo, size);
    const cleanEnd = scanner.report.tornTails.length + scanner.report.incompleteBatches === torn;
    files.push({ fileNo, file, validEnd, hasHeader: true, cleanEnd });
  }
}
