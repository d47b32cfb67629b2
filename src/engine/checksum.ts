// CRC-32 for records, in bulk. The values are always zlib's CRC-32 (docs/format.md); only the
// speed differs. When Walrus's native addon loaded (built by `npm install`, see
// scripts/build-native.mjs), one call seals or verifies every record of a buffer with carry-less
// multiply folding; otherwise each record costs one `zlib.crc32` call (about 110 ns fixed plus
// 0.3–0.5 ns per byte here), which dominates small appends and reads. `WALRUS_DISABLE_NATIVE=1`
// forces the zlib path (tests use it to check both give the same bytes).

import { deflateSync, inflateSync, crc32 as zlibCrc32 } from 'node:zlib';
import { loadAddon } from './native-addon.js';

/** Record layout facts the bulk functions rely on (format.ts owns them; repeated here to avoid a cycle). */
const HEADER_BYTES = 32;
const CRC_FROM = 8;
const MAGIC = 0x43455257;

interface NativeChecksums {
  crc32(data: Uint8Array, initial?: number): number;
  sealRecords(buffer: Uint8Array, start: number, end: number): void;
  verifyRecords(buffer: Uint8Array, start: number, end: number): number;
  readonly hasPclmul: boolean;
}

export interface Checksums {
  /** Same result as zlib.crc32(data, initial). */
  crc32(data: Uint8Array, initial?: number): number;
  /** Writes the CRC of every record laid back to back in buffer[start, end). */
  sealRecords(buffer: Uint8Array, start: number, end: number): void;
  /** Checks records from `start`; returns where the last record that verified ends (start if none). */
  verifyRecords(buffer: Uint8Array, start: number, end: number): number;
  /** True when one call covers many records cheaply (bulk verification pays off). */
  readonly bulk: boolean;
  /** Which code computes the CRCs: 'native (pclmul)', 'native (table)' or 'zlib'. */
  readonly implementation: string;
  /** Why the native addon is not used, when it is not. */
  readonly unavailableReason: string | undefined;
}

function readU32(buffer: Uint8Array, at: number): number {
  return ((buffer[at] ?? 0) | ((buffer[at + 1] ?? 0) << 8) | ((buffer[at + 2] ?? 0) << 16) | ((buffer[at + 3] ?? 0) << 24)) >>> 0;
}

function writeU32(buffer: Uint8Array, at: number, value: number): void {
  buffer[at] = value & 0xff;
  buffer[at + 1] = (value >>> 8) & 0xff;
  buffer[at + 2] = (value >>> 16) & 0xff;
  buffer[at + 3] = value >>> 24;
}

/** The addon's argument checks, for the zlib path: a range inside the buffer. */
function checkRange(buffer: Uint8Array, start: number, end: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= buffer.length))
    throw new RangeError(`range [${start}, ${end}) is not inside a buffer of ${buffer.length} bytes`);
}

function zlibChecksums(reason: string | undefined): Checksums {
  // zlib picks its faster CRC code only once a stream has been initialised (about 1.4× here).
  inflateSync(deflateSync(Buffer.alloc(1)));
  const view = (buffer: Uint8Array, from: number, to: number) => new Uint8Array(buffer.buffer, buffer.byteOffset + from, to - from);
  return {
    crc32: (data, initial = 0) => zlibCrc32(data, initial),
    sealRecords(buffer, start, end) {
      checkRange(buffer, start, end);
      let at = start;
      while (at < end) {
        const next = at + HEADER_BYTES + readU32(buffer, at + 16);
        if (next > end) throw new RangeError(`record at ${at} runs past ${end}`);
        writeU32(buffer, at + 4, zlibCrc32(view(buffer, at + CRC_FROM, next)));
        at = next;
      }
    },
    verifyRecords(buffer, start, end) {
      checkRange(buffer, start, end);
      let at = start;
      while (end - at >= HEADER_BYTES && readU32(buffer, at) === MAGIC) {
        const next = at + HEADER_BYTES + readU32(buffer, at + 16);
        if (next > end || readU32(buffer, at + 4) !== zlibCrc32(view(buffer, at + CRC_FROM, next))) break;
        at = next;
      }
      return at;
    },
    bulk: false,
    implementation: 'zlib',
    unavailableReason: reason,
  };
}

function loadNative(): NativeChecksums | string {
  const loaded = loadAddon();
  return 'unavailable' in loaded ? loaded.unavailable : (loaded.addon as unknown as NativeChecksums);
}

function pick(): Checksums {
  const native = loadNative();
  if (typeof native === 'string') return zlibChecksums(native);
  return {
    // The addon's functions do not use `this`: hand them out directly (no wrapper call per record run).
    crc32: native.crc32,
    sealRecords: native.sealRecords,
    verifyRecords: native.verifyRecords,
    bulk: true,
    implementation: native.hasPclmul ? 'native (pclmul)' : 'native (table)',
    unavailableReason: undefined,
  };
}

/** The checksum code this process uses, chosen once at load. */
export const checksums: Checksums = pick();

/** The zlib implementation, whatever was picked (tests compare the two). */
export function zlibOnly(): Checksums {
  return zlibChecksums('requested');
}
