// Recovery's progress lines: while the scan on open runs, at most one `info` line every
// `intervalMs` with the files and bytes scanned of the totals and the rate so far, and one line
// at the end when the scan took at least that long (a small open says nothing). Bytes are the
// files' allocated blocks, so the hole past the last records of the newest file (it grows in
// extents) does not count as scanned in no time. The scan is
// synchronous, so no timer could fire: the scanner calls `check` once per file and once per
// recovery chunk of records (limits.recoveryChunkBytes), never per record, and only `check`
// reads the clock.

import type { Logger } from 'pino';

/** Where recovery's progress lines go and how often: Walrus.open's `logger` and `recoveryProgressMs`. */
export interface RecoveryProgressOptions {
  readonly log: Logger;
  readonly intervalMs: number;
}

/** 10^6 bytes, as the benchmarks count a MB. */
const MB = 1_000_000;

export class RecoveryProgress {
  private readonly options: RecoveryProgressOptions;
  private readonly dir: string;
  /** Allocated bytes of each data file, in the order they are scanned. */
  private readonly fileBytes: readonly number[];
  private readonly bytesTotal: number;
  private readonly started = performance.now();
  private lastLine = this.started;
  private filesDone = 0;
  /** Bytes of the files done: a file counts whole once done. */
  private bytesDone = 0;

  constructor(options: RecoveryProgressOptions, dir: string, fileBytes: readonly number[]) {
    this.options = options;
    this.dir = dir;
    this.fileBytes = fileBytes;
    this.bytesTotal = fileBytes.reduce((sum, bytes) => sum + bytes, 0);
  }

  /** The file being scanned is done (scanned, or set aside as unreadable). */
  fileDone(): void {
    this.bytesDone += this.fileBytes[this.filesDone] ?? 0;
    this.filesDone += 1;
    this.check(0);
  }

  /** The scan has reached `position` in the file after the ones done; logs a line if one is due. */
  check(position: number): void {
    const now = performance.now();
    if (now - this.lastLine < this.options.intervalMs) return;
    this.lastLine = now;
    // A position counts for no more than its file's allocated bytes.
    const bytesScanned = this.bytesDone + Math.min(position, this.fileBytes[this.filesDone] ?? 0);
    this.options.log.info(
      {
        dir: this.dir,
        filesScanned: this.filesDone,
        filesTotal: this.fileBytes.length,
        bytesScanned,
        bytesTotal: this.bytesTotal,
        percent: Math.floor((100 * bytesScanned) / Math.max(1, this.bytesTotal)),
        mbPerSec: rate(bytesScanned, now - this.started),
      },
      'recovery: scanning',
    );
  }

  /** The scan is over, with `entries` recovered: one line with the totals if it took an interval or more. */
  finish(entries: number): void {
    const ms = performance.now() - this.started;
    if (ms < this.options.intervalMs) return;
    this.options.log.info(
      {
        dir: this.dir,
        files: this.filesDone,
        bytes: this.bytesDone,
        entries,
        ms: Math.round(ms),
        mbPerSec: rate(this.bytesDone, ms),
      },
      'recovery: scanned',
    );
  }
}

/** MB/s with one decimal. */
function rate(bytes: number, ms: number): number {
  return ms <= 0 ? 0 : Math.round((bytes / MB / (ms / 1000)) * 10) / 10;
}
