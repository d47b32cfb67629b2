// The data-path simulator's command line (docs/operations.md, "The data-path simulator"): runs a
// range of seeds and prints, for each failing one, its first violations and the command that
// replays it with a trace (`--trace 1` prints every seed's trace). The last line is always `seeds: N, violations: V` (V counts failing
// seeds); the exit code is 1 when V > 0.
//
//   node build/src/node/sim/cli.js --seeds N [--start S] [--nodes 3|5] [--duration MS] [--trace 1]

import { simulateDataPath } from './data-sim.js';

const USAGE = 'usage: cli.js --seeds N [--start S] [--nodes 3|5] [--duration MS] [--trace 1]';
const FLAGS = ['--seeds', '--start', '--nodes', '--duration', '--trace'];
const PROGRESS_EVERY = 50;

async function main(argv: readonly string[]): Promise<number> {
  const values = new Map<string, number>();
  for (let at = 0; at < argv.length; at += 2) {
    const flag = argv[at] ?? '';
    const value = Number(argv[at + 1]);
    if (!FLAGS.includes(flag) || !Number.isInteger(value) || value < 0)
      throw new Error(`bad argument ${flag} ${argv[at + 1] ?? ''}\n${USAGE}`);
    values.set(flag, value);
  }
  const seeds = values.get('--seeds');
  if (seeds === undefined) throw new Error(`--seeds is required\n${USAGE}`);
  const nodes = values.get('--nodes') ?? 3;
  if (nodes !== 3 && nodes !== 5) throw new Error(`--nodes must be 3 or 5\n${USAGE}`);
  const start = values.get('--start') ?? 1;
  const durationMs = values.get('--duration') ?? 8_000;
  const trace = values.get('--trace') === 1;
  let failing = 0;
  const totals = { acked: 0, refused: 0, unsure: 0, failovers: 0, faults: 0, segments: 0 };
  const began = performance.now();
  for (let seed = start; seed < start + seeds; seed++) {
    const result = await simulateDataPath({ seed, nodes, factor: Math.min(3, nodes), durationMs, trace });
    totals.acked += result.acked;
    totals.refused += result.refused;
    totals.unsure += result.unsure;
    totals.failovers += result.failovers;
    totals.faults += result.faults;
    totals.segments += result.segments;
    if (result.violations.length > 0) {
      failing += 1;
      console.log(`seed ${seed}: ${result.violations.slice(0, 5).join('; ')}${result.violations.length > 5 ? '; ...' : ''}`);
      console.log(`  replay: node build/src/node/sim/cli.js --seeds 1 --start ${seed} --nodes ${nodes} --duration ${durationMs} --trace 1`);
    }
    if (trace) for (const line of result.trace) console.log(`  ${line}`);
    const done = seed - start + 1;
    if (done % PROGRESS_EVERY === 0 && done < seeds)
      console.error(`${done} of ${seeds} seeds, ${failing} failing, ${Math.round((performance.now() - began) / 1000)} s`);
  }
  console.log(
    `${totals.acked} PUTs acknowledged, ${totals.refused} refused, ${totals.unsure} unsure; ${totals.faults} faults, ${totals.failovers} failovers, ${totals.segments} segments; ${Math.round((performance.now() - began) / 1000)} s`,
  );
  console.log(`seeds: ${seeds}, violations: ${failing}`);
  return failing > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error((error as Error).message);
    process.exitCode = 2;
  },
);
