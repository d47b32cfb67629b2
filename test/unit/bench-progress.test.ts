// The benchmarks' progress helper (bench/progress.ts): not on a terminal it prints plain
// `    … label: N of M (rate/s)` lines while a row runs and none after it; on a terminal it draws
// a bar and clears it before the row's promise settles, so the row's result line starts clean.

import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { withProgress } from '../../bench/progress.js';

/** A stream that keeps what is written to it. */
function stream(isTTY: boolean): { isTTY: boolean; writes: string[]; write(text: string): boolean } {
  const writes: string[] = [];
  return { isTTY, writes, write: (text: string) => writes.push(text) > 0 };
}

/** A row of `ms` whose done count grows by 10 every 5 ms. */
function row(ms: number): { done: () => number; work: Promise<string> } {
  let count = 0;
  const timer = setInterval(() => {
    count += 10;
  }, 5);
  const work = sleep(ms).then(() => {
    clearInterval(timer);
    return 'result';
  });
  return { done: () => count, work };
}

test('not on a terminal: plain progress lines while the row runs, none after it', async (t) => {
  const out = stream(false);
  const { done, work } = row(200);
  t.is(await withProgress('Walrus produce', 2_000, done, work, { stream: out, lineMs: 40 }), 'result');
  const lines = [...out.writes];
  t.true(lines.length >= 2, `${lines.length} lines`);
  const counts = lines.map((line) => {
    const match = /^ {4}… Walrus produce: ([\d,]+) of 2,000 \(([\d,]+)\/s\)\n$/.exec(line);
    t.not(match, null, JSON.stringify(line));
    return Number((match?.[1] ?? '').replaceAll(',', ''));
  });
  for (let index = 1; index < counts.length; index++) t.true((counts[index] ?? 0) >= (counts[index - 1] ?? 0), counts.join(' '));
  t.true((counts[counts.length - 1] ?? 0) > 0, counts.join(' '));
  t.false(lines.join('').includes('\x1b'), 'no terminal control sequences');
  await sleep(120);
  t.is(out.writes.length, lines.length, 'no line once the row is over');
});

test('not on a terminal: a row that fails rejects with its error and its lines stop', async (t) => {
  const out = stream(false);
  const failing = sleep(100).then(() => {
    throw new Error('row failed');
  });
  await t.throwsAsync(
    withProgress('Redis consume', 10, () => 1, failing, { stream: out, lineMs: 20 }),
    { message: 'row failed' },
  );
  const written = out.writes.length;
  t.true(written >= 1);
  await sleep(80);
  t.is(out.writes.length, written);
});

test('on a terminal: a bar with the label and counts, cleared before the row settles', async (t) => {
  const out = stream(true);
  const { done, work } = row(500);
  await withProgress('JetStream consume', 1_000, done, work, { stream: out });
  const text = out.writes.join('');
  t.regex(text, / {4}JetStream consume \[.+\] \d+% [\d,]+ of 1,000 \([\d,]+\/s\)/);
  t.false(text.includes('… JetStream consume'), 'no plain lines on a terminal');
  // The last thing written erases the bar's line: the next line printed starts on a clean line.
  t.is(out.writes[out.writes.length - 1], '\x1b[2K');
  const written = out.writes.length;
  await sleep(300);
  t.is(out.writes.length, written, 'nothing is drawn once the row is over');
});
