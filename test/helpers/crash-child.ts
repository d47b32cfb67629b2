// A child process for crash tests: it appends (or consumes) as fast as it can and prints one
// line per acknowledgement, so the parent knows exactly what was acknowledged when it sends
// SIGKILL. Usage: node crash-child.js <dir> <append|consume> <each|none|every> [backend (default auto)]
// stdout lines: `ack <index>` (append: entry index acknowledged; consume: seq consumed).

import { writeSync } from 'node:fs';
import { type BackendName, Walrus } from '../../src/engine/walrus.js';
import { payloadOf } from './crash-payload.js';

const [dir, mode, fsyncName, backendName = 'auto'] = process.argv.slice(2);
if (dir === undefined || mode === undefined || fsyncName === undefined)
  throw new Error('usage: crash-child <dir> <append|consume> <each|none|every>');
const fsync = fsyncName === 'every' ? { everyMs: 20 } : (fsyncName as 'each' | 'none');

/**
 * Writes straight to the pipe, so what the parent reads is exactly what happened before the kill
 * (process.stdout would queue it until the event loop turns). The pipe is non-blocking: when it is
 * full, retry until the parent has read some.
 */
function say(line: string): void {
  const bytes = Buffer.from(line);
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(1, bytes, done, bytes.length - done);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    }
  }
}

async function append(wal: Walrus): Promise<void> {
  let next = 0;
  // Several appends in flight at once, plus a batch every so often: the crash lands mid-group.
  for (;;) {
    const round: Promise<number>[] = [];
    for (let k = 0; k < 16; k++) {
      const index = next++;
      round.push(wal.append('crash', payloadOf(index)).then(() => index));
    }
    const batch = [next, next + 1, next + 2, next + 3, next + 4];
    next += batch.length;
    round.push(wal.appendBatch('crash-batch', batch.map(payloadOf)).then(() => batch[batch.length - 1] as number));
    for (const done of await Promise.all(round)) say(`ack ${done}\n`);
  }
}

async function consume(wal: Walrus): Promise<void> {
  for (;;) {
    const entry = await wal.readNext('crash');
    if (entry === null) {
      say('empty\n');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      continue;
    }
    say(`ack ${entry.seq}\n`);
  }
}

const wal = await Walrus.open({ dataDir: dir, fsync, consistency: 'strict', backend: backendName as BackendName });
say('ready\n');
await (mode === 'append' ? append(wal) : consume(wal));
