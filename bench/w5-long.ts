// W5 at 64 appends in flight (fsync 'each'), 20 times longer than the suite's case: 100,000
// appends of 256 B per backend, three rounds, each round's backends back to back. The suite's
// 5,000-append case lasts about 20 ms, so a fixed start-up cost per data file (the first access
// to a new mapping, for mmap) weighs on it; this run shows the steady rate.
//
//   npm run build && node build/bench/w5-long.js

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { resolveBackend } from '../src/engine/storage/select.js';
import { Walrus } from '../src/engine/walrus.js';

const APPENDS = 100_000;
const IN_FLIGHT = 64;
const ROUNDS = 3;
const payload = Buffer.alloc(256, 7);
const logger = pino({ level: 'silent' });

const backends: string[] = [];
for (const name of ['fd', 'mmap', 'uring']) {
  try {
    await resolveBackend(name);
    backends.push(name);
  } catch (error) {
    console.log(`${name} left out: ${(error as Error).message}`);
  }
}

const rates = new Map<string, number[]>(backends.map((name) => [name, []]));
for (let round = 1; round <= ROUNDS; round++) {
  for (const backend of backends) {
    const dir = mkdtempSync(join(tmpdir(), 'walrus-w5-'));
    try {
      const wal = await Walrus.open({ dataDir: dir, backend: backend as 'fd', fsync: 'each', logger });
      let started = 0;
      const begin = performance.now();
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (started < APPENDS) {
            started += 1;
            await wal.append('bench', payload);
          }
        }),
      );
      const rate = (APPENDS * 1000) / (performance.now() - begin);
      await wal.close();
      rates.get(backend)?.push(rate);
      console.log(`round ${round} ${backend.padEnd(5)} ${Math.round(rate).toLocaleString('en-US').padStart(9)} appends/s`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
for (const [backend, list] of rates) {
  const sorted = [...list].sort((a, b) => a - b);
  console.log(`${backend}: median ${Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0).toLocaleString('en-US')} appends/s`);
}
