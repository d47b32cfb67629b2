// The simulator's command line: runs a range of seeds and prints, for each failing one, its
// first violation and the exact command that replays it. The last line is always
// `seeds: N, violations: V` (V counts failing seeds), and the exit code is 1 when V > 0.
//
//   node build/src/plugins/raft/sim/cli.js --seeds N [--start S] [--nodes 3|5] [--steps K]
//                                          [--voters V] [--membership 0|1]
//
// --voters: how many of the nodes start as voters (default: all; the rest start outside the
// group); --membership 1 adds membership changes to the random actions (default: see
// MEMBERSHIP_BY_DEFAULT in simulator.ts).

import { DEFAULT_STEPS, MEMBERSHIP_BY_DEFAULT, type SimResult, simulate } from './simulator.js';

interface CliOptions {
  readonly seeds: number;
  readonly start: number;
  readonly nodes: number;
  readonly steps: number;
  readonly voters: number;
  readonly membership: boolean;
}

const USAGE = 'usage: cli.js --seeds N [--start S] [--nodes 3|5] [--steps K] [--voters V] [--membership 0|1]';
const FLAGS = ['--seeds', '--start', '--nodes', '--steps', '--voters', '--membership'];

/** How often (in seeds) a progress line goes to stderr on long runs. */
const PROGRESS_EVERY = 100;

function parseArgs(argv: readonly string[]): CliOptions {
  const values = new Map<string, number>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] ?? '';
    const value = Number(argv[i + 1]);
    if (!FLAGS.includes(flag) || !Number.isInteger(value) || value < 0) {
      throw new Error(`bad argument ${flag} ${argv[i + 1] ?? ''}\n${USAGE}`);
    }
    values.set(flag, value);
  }
  const seeds = values.get('--seeds');
  if (seeds === undefined) throw new Error(`--seeds is required\n${USAGE}`);
  const nodes = values.get('--nodes') ?? 3;
  if (nodes !== 3 && nodes !== 5) throw new Error(`--nodes must be 3 or 5\n${USAGE}`);
  const voters = values.get('--voters') ?? nodes;
  if (voters < 1 || voters > nodes) throw new Error(`--voters must be within 1..${nodes}\n${USAGE}`);
  const membership = values.get('--membership') ?? (MEMBERSHIP_BY_DEFAULT ? 1 : 0);
  if (membership !== 0 && membership !== 1) throw new Error(`--membership must be 0 or 1\n${USAGE}`);
  return {
    seeds,
    start: values.get('--start') ?? 1,
    nodes,
    steps: values.get('--steps') ?? DEFAULT_STEPS,
    voters,
    membership: membership === 1,
  };
}

/** One line: the first violation, then the command that replays the seed. */
function failureLine(result: SimResult): string {
  const group = `--voters ${result.voters ?? result.nodes} --membership ${(result.membership ?? MEMBERSHIP_BY_DEFAULT) ? 1 : 0}`;
  const replay = `npm run sim -- --seeds 1 --start ${result.seed} --nodes ${result.nodes} --steps ${result.steps} ${group}`;
  const first = result.violations[0];
  const what = first === undefined ? 'liveness: not live' : `${first.kind} at tick ${first.tick}: ${first.detail}`;
  return `seed ${result.seed}: ${what.replace(/\s*\n\s*/g, ' ')} [${result.violations.length} violation(s)] — replay: ${replay}`;
}

function main(argv: readonly string[]): number {
  const options = parseArgs(argv);
  const began = Date.now();
  let failing = 0;
  for (let i = 0; i < options.seeds; i++) {
    const { nodes, steps, voters, membership } = options;
    const result = simulate({ seed: options.start + i, nodes, steps, voters, membership });
    if (result.violations.length > 0 || !result.live) {
      failing++;
      console.log(failureLine(result));
    }
    if ((i + 1) % PROGRESS_EVERY === 0 && i + 1 < options.seeds) {
      const seconds = ((Date.now() - began) / 1000).toFixed(1);
      process.stderr.write(`… ${i + 1}/${options.seeds} seeds, ${failing} failing, ${seconds}s\n`);
    }
  }
  console.log(`seeds: ${options.seeds}, violations: ${failing}`);
  return failing > 0 ? 1 : 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 2;
}
