// The data-path simulator (src/node/sim/data-sim.ts) as a test: a run is a pure function of its
// seed, and a few seeds under kills, pauses and link cuts find no lost, doubled, refused-but-kept
// or reordered entry and no disagreeing copies. The full run (1,000 seeds, 3 and 5 nodes) is
// `npm run sim:data -- --seeds 1000` (docs/operations.md).

import test from 'ava';
import { simulateDataPath } from '../../src/node/sim/data-sim.js';

test('the same seed gives the same run, event for event', async (t) => {
  const first = await simulateDataPath({ seed: 7, trace: true });
  const second = await simulateDataPath({ seed: 7, trace: true });
  t.deepEqual(second, first);
  t.true(first.trace.length > 0);
});

test('20 seeds of replicated segments under faults: no violation, and the faults do cause failovers', async (t) => {
  let failovers = 0;
  let acked = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const result = await simulateDataPath({ seed });
    t.deepEqual(result.violations, [], `seed ${seed}`);
    failovers += result.failovers;
    acked += result.acked;
  }
  t.true(failovers > 0, 'some seeds fail a segment over');
  t.true(acked > 1000, `${acked} PUTs acknowledged`);
});
