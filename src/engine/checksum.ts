// CRC-32 for records, in bulk. The values are always zlib's CRC-32 (docs/format.md); only the
// speed differs. When Walrus's native addon loaded (built by `npm install`, see
// scripts/build-native.mjs), one call seals or verifies every record of a buffer with carry-less
// multiply folding; otherwise each record costs one `zlib.crc32` call (about 110 ns fixed plus
// 0.3–0.5 ns per byte here), which dominates small appends and reads. `WALRUS_DISABLE_NATIVE=1`
// forces the zlib path (tests use it to check both give the same bytes). Which bytes of a record
// the CRC covers and where it is stored is format.ts's to say; the addon's C code has its own copy,
// which it exports as `recordLayout` for a unit test to compare.

import { deflateSync, inflateSync, crc32 as zlibCrc32 } from 'node:zlib';
import { hasRecordMagic, RECORD_CRC_AT, RECORD_CRC_FROM, RECORD_HEADER_BYTES, recordPayloadBytes, recordStoredCrc } from './format.js';
import { loadAddon } from './native-addon.js';

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

function viewOf(buffer: Uint8Array): DataView {
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** The addon's argument checks, for the zlib path: a range inside the buffer. */
function checkRange(buffer: Uint8Array, start: number, end: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= buffer.length))
    throw new RangeError(`range [${start}, ${end}) is not inside a buffer of ${buffer.length} bytes`);
}

function zlibChecksums(reason: string | undefined): Checksums {
  // zlib picks its faster CRC code only once a stream has been initialised (about 1.4× here).
  inflateSync(deflateSync(Buffer.alloc(1)));
  const covered = (buffer: Uint8Array, at: number, next: number) =>
    zlibCrc32(new Uint8Array(buffer.buffer, buffer.byteOffset + at + RECORD_CRC_FROM, next - at - RECORD_CRC_FROM));
  return {
    crc32: (data, initial = 0) => zlibCrc32(data, initial),
    sealRecords(buffer, start, end) {
      checkRange(buffer, start, end);
      const view = viewOf(buffer);
      let at = start;
      while (at < end) {
        // A header cut short by `end` is not read (it may reach past the buffer): it runs past `end` whatever its length.
        const next = at + RECORD_HEADER_BYTES + (end - at < RECORD_HEADER_BYTES ? 0 : recordPayloadBytes(view, at));
        if (next > end) throw new RangeError(`record at ${at} runs past ${end}`);
        view.setUint32(at + RECORD_CRC_AT, covered(buffer, at, next), true);
        at = next;
      }
    },
    verifyRecords(buffer, start, end) {
      checkRange(buffer, start, end);
      const view = viewOf(buffer);
      let at = start;
      while (end - at >= RECORD_HEADER_BYTES && hasRecordMagic(view, at)) {
        const next = at + RECORD_HEADER_BYTES + recordPayloadBytes(view, at);
        if (next > end || recordStoredCrc(view, at) !== covered(buffer, at, next)) break;
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

/**
 * The checksum code this process uses, chosen at its first use (not at import, so the process's
 * owner can still call disableNativeAddon). The first property read replaces every accessor with
 * the chosen plain value, so later reads cost what reads of an ordinary object do.
 */
export const checksums: Checksums = chosenOnFirstUse();

function chosenOnFirstUse(): Checksums {
  const lazy = {} as Checksums;
  const keys: Record<keyof Checksums, true> = {
    crc32: true,
    sealRecords: true,
    verifyRecords: true,
    bulk: true,
    implementation: true,
    unavailableReason: true,
  };
  for (const key of Object.keys(keys) as (keyof Checksums)[]) {
    Object.defineProperty(lazy, key, {
      configurable: true,
      enumerable: true,
      get: () => {
        Object.defineProperties(lazy, Object.getOwnPropertyDescriptors(pick()));
        return lazy[key];
      },
    });
  }
  return lazy;
}

/** True when the CRC stored in the record at `at` of `record` (`view` over the same bytes, `total` bytes long) matches its bytes. */
export function recordCrcMatches(record: Uint8Array, view: DataView, at: number, total: number): boolean {
  return recordStoredCrc(view, at) === checksums.crc32(record.subarray(at + RECORD_CRC_FROM, at + total));
}

/** Seals a record whose header is at `at` of `target` and whose payload lives elsewhere (written after it). */
export function sealSplitRecord(target: Buffer, at: number, payload: Uint8Array): void {
  const crc = checksums.crc32(payload, checksums.crc32(target.subarray(at + RECORD_CRC_FROM, at + RECORD_HEADER_BYTES)));
  target.writeUInt32LE(crc, at + RECORD_CRC_AT);
}

/** The zlib implementation, whatever was picked (tests compare the two). */
export function zlibOnly(): Checksums {
  return zlibChecksums('requested');
}
