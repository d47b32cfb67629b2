// Runs the benchmark suites and prints ops/s per case, side by side within each suite.
// Usage: npm run bench [-- SUITE...]   (no names: every suite)

import type Benchmark from 'benchmark';
import { kernelSuite } from './kernel.bench.js';

const SUITES: Record<string, () => Benchmark.Suite> = { kernel: kernelSuite };

function run(name: string, suite: Benchmark.Suite): Promise<void> {
  return new Promise((done) => {
    console.log(`\n${name}`);
    suite
      .on('cycle', (event: Benchmark.Event) => {
        const bench = event.target;
        const hz = bench.hz ?? 0;
        const rme = bench.stats?.rme ?? 0;
        console.log(`  ${String(bench.name).padEnd(50)} ${Math.round(hz).toLocaleString('en-US').padStart(12)} ops/s  ±${rme.toFixed(1)}%`);
      })
      .on('complete', () => done())
      .run({ async: true });
  });
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !(name in SUITES));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}`);
  process.exit(2);
}
for (const name of wanted.length === 0 ? Object.keys(SUITES) : wanted) {
  const make = SUITES[name];
  if (make !== undefined) await run(name, make());
}
