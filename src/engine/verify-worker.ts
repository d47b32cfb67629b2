// Checksum verification for recovery, on a second thread. The main thread scans the data files
// for structure and builds the index without computing CRCs; this worker walks the same records
// and checks every CRC. The CRC call per record is most of a scan's cost, so on two cores the
// two halves run side by side. Each file is reported with the offset of its first record whose
// CRC fails (or null); recovery falls back to a checked scan if that lies inside what it kept.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { checksums, recordCrcMatches } from './checksum.js';
import { RecordFramer } from './chunk-reader.js';
import { FILE_HEADER_BYTES } from './format.js';
import { disableNativeAddon } from './native-addon.js';

export interface VerifyRequest {
  readonly paths: readonly string[];
  /** The parent's disableNativeAddon reason: a worker uses the same checksum code as its parent. */
  readonly nativeSwitchedOff: string | undefined;
}

export interface VerifyResult {
  /** Per path: where the first record with a bad CRC starts, or null when every framed record checks. */
  readonly badAt: Record<string, number | null>;
  /** The checksum code the worker used (checksums.implementation): the parent's, by nativeSwitchedOff. */
  readonly implementation: string;
}

/** Walks one file's records from after the header; returns the first bad CRC's offset, or null. */
export function firstBadCrc(path: string): number | null {
  const fd = openSync(path, 'r');
  try {
    const framer = new RecordFramer(
      { read: (buffer, offset, length, position) => readSync(fd, buffer, offset, length, position) },
      fstatSync(fd).size,
    );
    // Framed as the scan frames them: where framing stops, so does the scan, and nothing after counts.
    for (let position = FILE_HEADER_BYTES; framer.frame(position) === 'framed'; position += framer.total) {
      if (!recordCrcMatches(framer.source, framer.view, framer.at, framer.total)) return position;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

if (parentPort !== null) {
  const request = workerData as VerifyRequest;
  if (request.nativeSwitchedOff !== undefined) disableNativeAddon(request.nativeSwitchedOff);
  const badAt: Record<string, number | null> = {};
  for (const path of request.paths) badAt[path] = firstBadCrc(path);
  parentPort.postMessage({ badAt, implementation: checksums.implementation } satisfies VerifyResult);
}
