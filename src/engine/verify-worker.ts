// Checksum verification for recovery, on a second thread. The main thread scans the data files
// for structure and builds the index without computing CRCs; this worker walks the same records
// and checks every CRC. The CRC call per record is most of a scan's cost, so on two cores the
// two halves run side by side. Each file is reported with the offset of its first record whose
// CRC fails (or null); recovery falls back to a checked scan if that lies inside what it kept.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { limits } from '../kernel/limits.js';
import { checksums } from './checksum.js';
import { ChunkReader } from './chunk-reader.js';
import { FILE_HEADER_BYTES, RECORD_CRC_FROM, RECORD_HEADER_BYTES, RECORD_MAGIC } from './format.js';

export interface VerifyRequest {
  readonly paths: readonly string[];
}

export interface VerifyResult {
  /** Per path: where the first record with a bad CRC starts, or null when every framed record checks. */
  readonly badAt: Record<string, number | null>;
}

/** Walks one file's records from after the header; returns the first bad CRC's offset, or null. */
export function firstBadCrc(path: string): number | null {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const reader = new ChunkReader({ read: (buffer, offset, length, position) => readSync(fd, buffer, offset, length, position) });
    const { chunk } = reader;
    let position = FILE_HEADER_BYTES;
    while (position + RECORD_HEADER_BYTES <= size) {
      if (!reader.ensure(position, RECORD_HEADER_BYTES)) return null;
      const at = position - reader.start;
      if (chunk.readUInt32LE(at) !== RECORD_MAGIC) return null;
      const total = RECORD_HEADER_BYTES + chunk.readUInt32LE(at + 16);
      if (position + total > size || total - RECORD_HEADER_BYTES > limits.entryBytesMax) return null;
      let crc: number;
      let stored: number;
      if (total <= chunk.length) {
        if (!reader.ensure(position, total)) return null;
        const from = position - reader.start;
        stored = chunk.readUInt32LE(from + 4);
        crc = checksums.crc32(chunk.subarray(from + RECORD_CRC_FROM, from + total));
      } else {
        const big = reader.bytes(position, total);
        if (big.length < total) return null;
        stored = big.readUInt32LE(4);
        crc = checksums.crc32(big.subarray(RECORD_CRC_FROM));
      }
      if (crc !== stored) return position;
      position += total;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

if (parentPort !== null) {
  const request = workerData as VerifyRequest;
  const badAt: Record<string, number | null> = {};
  for (const path of request.paths) badAt[path] = firstBadCrc(path);
  parentPort.postMessage({ badAt } satisfies VerifyResult);
}
