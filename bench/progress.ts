// Progress of a long benchmark row while it runs. On a terminal a cli-progress bar, redrawn in
// place and cleared when the row ends, so that the row's result line prints on a clean line; on
// anything else (CI, a log file) a plain line every few seconds, `    … label: N of M (rate/s)`,
// since a bar's carriage returns would only clutter a file. Both go to the stream the benchmarks'
// own lines go to (stdout).

import { Presets, SingleBar } from 'cli-progress';

/** What the progress is written to: a terminal when `isTTY` is set. */
export interface ProgressStream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

export interface ProgressOptions {
  /** Default process.stdout. */
  readonly stream?: ProgressStream;
  /** How often a plain line is printed (not on a terminal); default 3000 ms. */
  readonly lineMs?: number;
}

const LINE_MS = 3_000;
/** How often the bar is updated on a terminal. */
const BAR_MS = 200;

function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

/** The plain progress line of `count` of `total` after `seconds`. */
export function progressLine(label: string, count: number, total: number, seconds: number): string {
  return `    … ${label}: ${formatCount(count)} of ${formatCount(total)} (${formatCount(seconds > 0 ? count / seconds : 0)}/s)`;
}

/**
 * Shows the progress of `work` until it settles: `done()` says how many of `total` are done so
 * far. The bar (or the timer of the plain lines) is stopped before the returned promise settles,
 * also when `work` rejects.
 */
export async function withProgress<T>(
  label: string,
  total: number,
  done: () => number,
  work: Promise<T>,
  options: ProgressOptions = {},
): Promise<T> {
  const stream = options.stream ?? process.stdout;
  const stop =
    stream.isTTY === true ? showBar(stream, label, total, done) : printLines(stream, label, total, done, options.lineMs ?? LINE_MS);
  try {
    return await work;
  } finally {
    stop();
  }
}

/** Plain lines every `lineMs`; returns what stops them. */
function printLines(stream: ProgressStream, label: string, total: number, done: () => number, lineMs: number): () => void {
  const started = performance.now();
  const timer = setInterval(() => {
    stream.write(`${progressLine(label, done(), total, (performance.now() - started) / 1000)}\n`);
  }, lineMs);
  return () => clearInterval(timer);
}

/** A bar redrawn every BAR_MS; returns what stops and clears it. */
function showBar(stream: ProgressStream, label: string, total: number, done: () => number): () => void {
  const started = performance.now();
  const bar = new SingleBar(
    {
      // cli-progress writes to a NodeJS.WriteStream; a terminal stream is one.
      stream: stream as NodeJS.WriteStream,
      format: `    ${label} [{bar}] {percentage}% {count} of {all} ({rate}/s)`,
      barsize: 20,
      clearOnComplete: true,
      // Cut to the terminal's width instead of switching line wrapping off: a benchmark stopped
      // with Ctrl-C then leaves the terminal as it was (the cursor is not hidden, for the same reason).
      linewrap: true,
    },
    Presets.shades_classic,
  );
  const payload = (count: number) => ({
    count: formatCount(count),
    all: formatCount(total),
    rate: formatCount(count / Math.max(1e-3, (performance.now() - started) / 1000)),
  });
  bar.start(total, 0, payload(0));
  const timer = setInterval(() => {
    const count = done();
    bar.update(Math.min(count, total), payload(count));
  }, BAR_MS);
  return () => {
    clearInterval(timer);
    bar.stop();
  };
}
