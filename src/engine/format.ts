// On-disk format, version 1 (docs/format.md describes every byte). A data file is a 64-byte
// file header followed by records packed back to back; the rest of the file is zeros. Every
// record is a 32-byte header plus payload, and its CRC-32 covers both, so recovery finds the end
// of valid data by checking records one by one, never by guessing block sizes. All integers are
// little-endian. Batches carry (size, index) so a batch cut short by a crash is dropped whole.

import { crc32 } from 'node:zlib';

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

/** Writes the header fields (not the CRC) of a record at `offset` of `target`. */
export function writeRecordFields(target: Buffer, offset: number, header: RecordHeader): void {
  target.writeUInt32LE(RECORD_MAGIC, offset);
  target[offset + 8] = FORMAT_VERSION;
  target[offset + 9] = header.kind;
  target.writeUInt16LE(0, offset + 10);
  target.writeUInt32LE(header.topicId, offset + 12);
  target.writeUInt32LE(header.payloadBytes, offset + 16);
  target.writeUInt32LE(header.seq % U32, offset + 20);
  target.writeUInt32LE(Math.floor(header.seq / U32), offset + 24);
  target.writeUInt16LE(header.batchSize, offset + 28);
  target.writeUInt16LE(header.batchIndex, offset + 30);
}

/** Writes a complete record header (fields and CRC) for `payload`, which may live elsewhere. */
export function writeRecordHeader(target: Buffer, offset: number, header: RecordHeader, payload: Uint8Array): void {
  writeRecordFields(target, offset, header);
  const crc = crc32(payload, crc32(target.subarray(offset + RECORD_CRC_FROM, offset + RECORD_HEADER_BYTES)));
  target.writeUInt32LE(crc, offset + 4);
}

/** Seals a record whose header and payload lie back to back in `target`: one CRC pass over both. */
export function sealContiguousRecord(target: Buffer, offset: number, payloadBytes: number): void {
  target.writeUInt32LE(crc32(target.subarray(offset + RECORD_CRC_FROM, offset + RECORD_HEADER_BYTES + payloadBytes)), offset + 4);
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
  source: Buffer,
  offset: number,
  kind: RecordKind,
  topicId: number,
  seq: number,
  payloadBytes: number,
): boolean {
  return (
    source.readUInt32LE(offset) === RECORD_MAGIC &&
    source[offset + 8] === FORMAT_VERSION &&
    source[offset + 9] === kind &&
    source.readUInt32LE(offset + 12) === topicId &&
    source.readUInt32LE(offset + 16) === payloadBytes &&
    source.readUInt32LE(offset + 20) === seq % U32 &&
    source.readUInt32LE(offset + 24) === Math.floor(seq / U32)
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
