// On-disk format, version 1 (docs/format.md describes every byte): the one place that knows
// where each field of a file header and a record header lies. The writer (log.ts), the scanner
// (recovery.ts), the checksum code (checksum.ts), the checksum worker (verify-worker.ts) and the
// reader (walrus.ts) go through the constants and functions here; the C side of the CRC
// (native/crc32.c) has its own copy of the few it needs, and a unit test keeps the two equal.
//
// A data file is a 64-byte file header followed by records packed back to back; the rest of the
// file is zeros. Every record is a 32-byte header plus payload, and its CRC-32 covers both, so
// recovery finds the end of valid data by checking records one by one, never by guessing block
// sizes. All integers are little-endian. Batches carry (size, index) so a batch cut short by a
// crash is dropped whole. This module imports nothing of the engine's (checksum.ts imports it).

import { crc32 } from 'node:zlib';
import type { PayloadRun } from './payload-run.js';

export const FORMAT_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// File header: magic u32 | version u16 | header length u16 | file number lo u32, hi u32 |
// reserved | CRC-32 of bytes [0, 60) at 60.

export const FILE_HEADER_BYTES = 64;
/** "WALF" read as a little-endian u32. */
export const FILE_MAGIC = 0x464c4157;
/** Where the file header's fields lie (read once per file, so an object is cheap enough). */
const FileAt = {
  version: 4,
  headerBytes: 6,
  fileNoLow: 8,
  fileNoHigh: 12,
  /** The file header's CRC sits here and covers every byte before it. */
  crc: 60,
} as const;

// ---------------------------------------------------------------------------------------------
// Record header (32 bytes), by byte offset:
//   0 magic u32 | 4 CRC u32 | 8 version u8 | 9 kind u8 | 10 flags u16 | 12 topicId u32 |
//   16 payloadBytes u32 | 20 seq lo u32 | 24 seq hi u32 | 28 batchSize u16 | 30 batchIndex u16

export const RECORD_HEADER_BYTES = 32;
/** "WREC" read as a little-endian u32. */
export const RECORD_MAGIC = 0x43455257;
/** Where the record's CRC is stored. */
export const RECORD_CRC_AT = 4;
/** Where the CRC-covered part of a record starts: the CRC covers header bytes [8, 32) and the payload. */
export const RECORD_CRC_FROM = 8;
const RECORD_VERSION_AT = 8;
const RECORD_KIND_AT = 9;
/** The u32 at 8 holds version, kind and flags (0): written as one word. */
const RECORD_VERSION_KIND_FLAGS_AT = 8;
const RECORD_TOPIC_AT = 12;
export const RECORD_LENGTH_AT = 16;
const RECORD_SEQ_LOW_AT = 20;
const RECORD_SEQ_HIGH_AT = 24;
/** The u32 at 28 holds batchSize (low half) and batchIndex (high half): written as one word. */
const RECORD_BATCH_AT = 28;
const RECORD_BATCH_SIZE_AT = 28;
const RECORD_BATCH_INDEX_AT = 30;

/** What the CRC code in C (native/crc32.c) must agree on; the addon exports its own copy as `recordLayout`. */
export const RECORD_LAYOUT = {
  headerBytes: RECORD_HEADER_BYTES,
  magic: RECORD_MAGIC,
  crcAt: RECORD_CRC_AT,
  crcFrom: RECORD_CRC_FROM,
  lengthAt: RECORD_LENGTH_AT,
} as const;

export const RecordKind = {
  /** An entry of a topic: seq is its position in the topic. */
  entry: 1,
  /** Declares topic id ↔ name; seq is the topic's next sequence number when written. */
  topic: 2,
  /** A consumption cursor: seq is the next sequence number the topic's reader will get. */
  cursor: 3,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

const U32 = 2 ** 32;
/** The version byte and kind byte of a current-version entry, read as one little-endian u16. */
const CURRENT_ENTRY_VERSION_KIND = FORMAT_VERSION | (RecordKind.entry << 8);

export interface RecordHeader {
  readonly kind: RecordKind;
  readonly topicId: number;
  readonly payloadBytes: number;
  readonly seq: number;
  readonly batchSize: number;
  readonly batchIndex: number;
}

// ---------------------------------------------------------------------------------------------
// Field reads. All take a DataView: Buffer's readUInt*LE check bounds on every call, which shows
// on the scan and read paths. They are small enough for V8 to inline into the loops that use them.

/** True when the record at `at` starts with the record magic. */
export function hasRecordMagic(view: DataView, at: number): boolean {
  return view.getUint32(at, true) === RECORD_MAGIC;
}

export function recordPayloadBytes(view: DataView, at: number): number {
  return view.getUint32(at + RECORD_LENGTH_AT, true);
}

export function recordStoredCrc(view: DataView, at: number): number {
  return view.getUint32(at + RECORD_CRC_AT, true);
}

/** True when the record at `at` is an entry of the current format version (the common case of a scan). */
export function isCurrentEntry(view: DataView, at: number): boolean {
  // Version and kind are adjacent bytes: one 16-bit read compares both.
  return view.getUint16(at + RECORD_VERSION_AT, true) === CURRENT_ENTRY_VERSION_KIND;
}

export function recordTopicId(view: DataView, at: number): number {
  return view.getUint32(at + RECORD_TOPIC_AT, true);
}

export function recordSeq(view: DataView, at: number): number {
  return view.getUint32(at + RECORD_SEQ_LOW_AT, true) + view.getUint32(at + RECORD_SEQ_HIGH_AT, true) * U32;
}

export function recordBatchSize(view: DataView, at: number): number {
  return view.getUint16(at + RECORD_BATCH_SIZE_AT, true);
}

export function recordBatchIndex(view: DataView, at: number): number {
  return view.getUint16(at + RECORD_BATCH_INDEX_AT, true);
}

// ---------------------------------------------------------------------------------------------
// Record headers, whole.

/**
 * Writes the header fields (not the CRC) of a record at byte `at` of `view`. Whole
 * little-endian words: version, kind and flags (0) at 8–11; batch size and index at 28–31. The
 * CRC at 4–7 is left for whoever seals the record (checksum.ts).
 */
export function writeRecordFields(
  view: DataView,
  at: number,
  kind: RecordKind,
  topicId: number,
  payloadBytes: number,
  seq: number,
  batchSize: number,
  batchIndex: number,
): void {
  if (at < 0 || at + RECORD_HEADER_BYTES > view.byteLength) throw new RangeError('record header outside its buffer');
  writeFields(view, at, FORMAT_VERSION | (kind << 8), topicId, payloadBytes, seq, (batchSize | (batchIndex << 16)) >>> 0);
}

/** The header words of writeRecordFields, the version/kind/flags word and the batch word made by the caller. */
function writeFields(
  view: DataView,
  at: number,
  versionKind: number,
  topicId: number,
  payloadBytes: number,
  seq: number,
  batch: number,
): void {
  view.setUint32(at, RECORD_MAGIC, true);
  view.setUint32(at + RECORD_VERSION_KIND_FLAGS_AT, versionKind, true);
  view.setUint32(at + RECORD_TOPIC_AT, topicId, true);
  view.setUint32(at + RECORD_LENGTH_AT, payloadBytes, true);
  // `>>> 0` is the low 32 bits of any safe integer; `%` on a double would be a call to fmod.
  const low = seq >>> 0;
  view.setUint32(at + RECORD_SEQ_LOW_AT, low, true);
  view.setUint32(at + RECORD_SEQ_HIGH_AT, (seq - low) / U32, true);
  view.setUint32(at + RECORD_BATCH_AT, batch, true);
}

/**
 * Lays out the entries of one batch (seq `firstSeq` onwards) back to back from byte `at` of
 * `bytes` (`view` over the same memory), header then payload; the CRCs are left to the caller.
 * The caller has made sure they fit. Returns where the last one ends.
 */
export function writeEntryRecords(
  view: DataView,
  bytes: Uint8Array,
  at: number,
  topicId: number,
  firstSeq: number,
  payloads: readonly Uint8Array[],
): number {
  const count = payloads.length;
  // The word that is the same for every entry is made once.
  const versionKind = FORMAT_VERSION | (RecordKind.entry << 8);
  let end = at;
  for (let index = 0; index < count; index++) {
    const payload = payloads[index] as Uint8Array;
    writeFields(view, end, versionKind, topicId, payload.length, firstSeq + index, count | (index << 16));
    bytes.set(payload, end + RECORD_HEADER_BYTES);
    end += RECORD_HEADER_BYTES + payload.length;
  }
  return end;
}

/**
 * writeEntryRecords() for a PayloadRun: the payload bytes are copied to the end of the records'
 * space with one copy a part, then each payload is moved left to its place after its header
 * (payload i by (count - i - 1) headers; copyWithin makes no view, and moving in order never
 * overwrites bytes still to move), and the headers are written. Returns the end offset.
 */
export function writeEntryRun(view: DataView, bytes: Uint8Array, at: number, topicId: number, firstSeq: number, run: PayloadRun): number {
  const count = run.count;
  const sizes = run.sizes;
  const end = at + count * RECORD_HEADER_BYTES + run.bytes;
  // The payloads are copied back to back to the end of the space, from `landed` on.
  const landed = end - run.bytes;
  let to = landed;
  const parts = run.parts;
  for (let index = 0; index < parts.length; index++) {
    const part = parts[index] as Uint8Array;
    const from = index === 0 ? run.start : 0;
    bytes.set(from === 0 ? part : part.subarray(from), to);
    to += part.length - from;
  }
  const versionKind = FORMAT_VERSION | (RecordKind.entry << 8);
  // Where payload i lies now (`source`) and where its record starts (`record`).
  let source = landed;
  let record = at;
  for (let index = 0; index < count; index++) {
    const size = sizes[index] as number;
    const target = record + RECORD_HEADER_BYTES;
    if (target !== source) bytes.copyWithin(target, source, source + size);
    writeFields(view, record, versionKind, topicId, size, firstSeq + index, count | (index << 16));
    source += size;
    record = target + size;
  }
  return end;
}

export type HeaderCheck = { readonly ok: true; readonly header: RecordHeader } | { readonly ok: false; readonly reason: string };

/** Decodes and sanity-checks a record header (not its CRC, which needs the payload). */
export function readRecordHeader(view: DataView, at: number): HeaderCheck {
  if (!hasRecordMagic(view, at)) return { ok: false, reason: 'no record magic' };
  const version = view.getUint8(at + RECORD_VERSION_AT);
  if (version !== FORMAT_VERSION) return { ok: false, reason: `record format version ${version}` };
  const kind = view.getUint8(at + RECORD_KIND_AT);
  if (kind !== RecordKind.entry && kind !== RecordKind.topic && kind !== RecordKind.cursor)
    return { ok: false, reason: `unknown record kind ${kind}` };
  const batchSize = recordBatchSize(view, at);
  const batchIndex = recordBatchIndex(view, at);
  if (batchSize === 0 || batchIndex >= batchSize) return { ok: false, reason: `bad batch position ${batchIndex}/${batchSize}` };
  return {
    ok: true,
    header: {
      kind: kind as RecordKind,
      topicId: recordTopicId(view, at),
      payloadBytes: recordPayloadBytes(view, at),
      seq: recordSeq(view, at),
      batchSize,
      batchIndex,
    },
  };
}

/** True when the header at `at` is a current-version record of this kind, topic, seq and length (CRC not checked). */
export function recordMatches(view: DataView, at: number, kind: RecordKind, topicId: number, seq: number, payloadBytes: number): boolean {
  // This runs on every read: each field is compared as it is read, and the first mismatch ends it.
  return (
    hasRecordMagic(view, at) &&
    view.getUint8(at + RECORD_VERSION_AT) === FORMAT_VERSION &&
    view.getUint8(at + RECORD_KIND_AT) === kind &&
    recordTopicId(view, at) === topicId &&
    recordPayloadBytes(view, at) === payloadBytes &&
    view.getUint32(at + RECORD_SEQ_LOW_AT, true) === seq >>> 0 &&
    view.getUint32(at + RECORD_SEQ_HIGH_AT, true) === Math.floor(seq / U32)
  );
}

// ---------------------------------------------------------------------------------------------
// File headers and names. The file header's CRC is always zlib's: it is computed once per file.

export function encodeFileHeader(fileNo: number): Buffer {
  const header = Buffer.alloc(FILE_HEADER_BYTES);
  header.writeUInt32LE(FILE_MAGIC, 0);
  header.writeUInt16LE(FORMAT_VERSION, FileAt.version);
  header.writeUInt16LE(FILE_HEADER_BYTES, FileAt.headerBytes);
  header.writeUInt32LE(fileNo % U32, FileAt.fileNoLow);
  header.writeUInt32LE(Math.floor(fileNo / U32), FileAt.fileNoHigh);
  header.writeUInt32LE(crc32(header.subarray(0, FileAt.crc)), FileAt.crc);
  return header;
}

export type FileHeaderCheck =
  | { readonly state: 'ok'; readonly fileNo: number }
  | { readonly state: 'empty' }
  | { readonly state: 'too-new'; readonly version: number }
  | { readonly state: 'corrupt'; readonly reason: string };

export function readFileHeader(source: Buffer): FileHeaderCheck {
  if (source.length < FILE_HEADER_BYTES || source.subarray(0, FILE_HEADER_BYTES).every((byte) => byte === 0)) return { state: 'empty' };
  if (source.readUInt32LE(0) !== FILE_MAGIC) return { state: 'corrupt', reason: 'no file magic' };
  // The version comes before the checksum: a newer format may lay its header out differently.
  const version = source.readUInt16LE(FileAt.version);
  if (version > FORMAT_VERSION) return { state: 'too-new', version };
  if (crc32(source.subarray(0, FileAt.crc)) !== source.readUInt32LE(FileAt.crc))
    return { state: 'corrupt', reason: 'file header checksum mismatch' };
  const headerBytes = source.readUInt16LE(FileAt.headerBytes);
  if (headerBytes !== FILE_HEADER_BYTES) return { state: 'corrupt', reason: `file header says it is ${headerBytes} bytes` };
  return { state: 'ok', fileNo: source.readUInt32LE(FileAt.fileNoLow) + source.readUInt32LE(FileAt.fileNoHigh) * U32 };
}

/** Data files are named by their number, zero-padded so that names sort in log order. */
export function dataFileName(fileNo: number): string {
  return `${String(fileNo).padStart(12, '0')}.wal`;
}

export function parseDataFileName(name: string): number | undefined {
  const match = /^(\d{12})\.wal$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}
