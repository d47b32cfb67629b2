// On-disk format, version 1 (docs/format.md describes every byte). A data file is a 64-byte
// file header followed by records packed back to back; the rest of the file is zeros. Every
// record is a 32-byte header plus payload, and its CRC-32 covers both, so recovery finds the end
// of valid data by checking records one by one, never by guessing block sizes. All integers are
// little-endian. Batches carry (size, index) so a batch cut short by a crash is dropped whole.

import { crc32 } from 'node:zlib';
import { checksums } from './checksum.js';

export const FORMAT_VERSION = 1;

export const FILE_HEADER_BYTES = 64;
/** "WALF" read as a little-endian u32. */
export const FILE_MAGIC = 0x464c4157;

export const RECORD_HEADER_BYTES = 32;
/** "WREC" read as a little-endian u32. */
export const RECORD_MAGIC = 0x43455257;

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

export interface RecordHeader {
  readonly kind: RecordKind;
  readonly topicId: number;
  readonly payloadBytes: number;
  readonly seq: number;
  readonly batchSize: number;
  readonly batchIndex: number;
}

/** Where the CRC-covered part of a record header starts: the CRC covers [8, 32) and the payload. */
export const RECORD_CRC_FROM = 8;

/**
 * Writes the header fields (not the CRC) of a record at byte `at` of `view` (a DataView: Buffer's
 * writeUInt*LE calls check bounds and return offsets, which shows on the append path).
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
  // Whole little-endian words: version, kind and flags (0) at 8–11; batch size and index at 28–31.
  // The CRC at 4–7 is left for whoever seals the record.
  view.setUint32(at, RECORD_MAGIC, true);
  view.setUint32(at + 8, FORMAT_VERSION | (kind << 8), true);
  view.setUint32(at + 12, topicId, true);
  view.setUint32(at + 16, payloadBytes, true);
  // `>>> 0` is the low 32 bits of any safe integer; `%` on a double would be a call to fmod.
  const low = seq >>> 0;
  view.setUint32(at + 20, low, true);
  view.setUint32(at + 24, (seq - low) / U32, true);
  view.setUint32(at + 28, (batchSize | (batchIndex << 16)) >>> 0, true);
}

/** Seals a record whose header is at `offset` of `target` and whose payload lives elsewhere. */
export function sealSplitRecord(target: Buffer, offset: number, payload: Uint8Array): void {
  const crc = checksums.crc32(payload, checksums.crc32(target.subarray(offset + RECORD_CRC_FROM, offset + RECORD_HEADER_BYTES)));
  target.writeUInt32LE(crc, offset + 4);
}

export type HeaderCheck = { readonly ok: true; readonly header: RecordHeader } | { readonly ok: false; readonly reason: string };

/** Decodes and sanity-checks a record header (not its CRC, which needs the payload). */
export function readRecordHeader(source: Buffer, offset: number): HeaderCheck {
  if (source.readUInt32LE(offset) !== RECORD_MAGIC) return { ok: false, reason: 'no record magic' };
  const version = source[offset + 8] ?? 0;
  if (version !== FORMAT_VERSION) return { ok: false, reason: `record format version ${version}` };
  const kind = source[offset + 9] ?? 0;
  if (kind !== RecordKind.entry && kind !== RecordKind.topic && kind !== RecordKind.cursor)
    return { ok: false, reason: `unknown record kind ${kind}` };
  const batchSize = source.readUInt16LE(offset + 28);
  const batchIndex = source.readUInt16LE(offset + 30);
  if (batchSize === 0 || batchIndex >= batchSize) return { ok: false, reason: `bad batch position ${batchIndex}/${batchSize}` };
  return {
    ok: true,
    header: {
      kind: kind as RecordKind,
      topicId: source.readUInt32LE(offset + 12),
      payloadBytes: source.readUInt32LE(offset + 16),
      seq: source.readUInt32LE(offset + 20) + source.readUInt32LE(offset + 24) * U32,
      batchSize,
      batchIndex,
    },
  };
}

/** True when the header at `offset` is a current-version record of this kind, topic, seq and length (CRC not checked). */
export function recordMatches(
  source: DataView,
  offset: number,
  kind: RecordKind,
  topicId: number,
  seq: number,
  payloadBytes: number,
): boolean {
  // A DataView: this runs on every read, and Buffer's readUInt32LE checks bounds each call.
  return (
    source.getUint32(offset, true) === RECORD_MAGIC &&
    source.getUint8(offset + 8) === FORMAT_VERSION &&
    source.getUint8(offset + 9) === kind &&
    source.getUint32(offset + 12, true) === topicId &&
    source.getUint32(offset + 16, true) === payloadBytes &&
    source.getUint32(offset + 20, true) === seq >>> 0 &&
    source.getUint32(offset + 24, true) === Math.floor(seq / U32)
  );
}

export function encodeFileHeader(fileNo: number): Buffer {
  const header = Buffer.alloc(FILE_HEADER_BYTES);
  header.writeUInt32LE(FILE_MAGIC, 0);
  header.writeUInt16LE(FORMAT_VERSION, 4);
  header.writeUInt16LE(FILE_HEADER_BYTES, 6);
  header.writeUInt32LE(fileNo % U32, 8);
  header.writeUInt32LE(Math.floor(fileNo / U32), 12);
  header.writeUInt32LE(crc32(header.subarray(0, 60)), 60);
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
  const version = source.readUInt16LE(4);
  if (version > FORMAT_VERSION) return { state: 'too-new', version };
  if (crc32(source.subarray(0, 60)) !== source.readUInt32LE(60)) return { state: 'corrupt', reason: 'file header checksum mismatch' };
  const headerBytes = source.readUInt16LE(6);
  if (headerBytes !== FILE_HEADER_BYTES) return { state: 'corrupt', reason: `file header says it is ${headerBytes} bytes` };
  return { state: 'ok', fileNo: source.readUInt32LE(8) + source.readUInt32LE(12) * U32 };
}

/** Data files are named by their number, zero-padded so that names sort in log order. */
export function dataFileName(fileNo: number): string {
  return `${String(fileNo).padStart(12, '0')}.wal`;
}

export function parseDataFileName(name: string): number | undefined {
  const match = /^(\d{12})\.wal$/.exec(name);
  return match === null ? undefined : Number(match[1]);
}
