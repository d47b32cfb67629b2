// Raft cluster harness for tests. The cluster and network model live in src/plugins/raft/sim/
// (the simulator needs them too, and src must not import from test/); this layer adds the
// defaults the scenario tests share and a safety checker wired in from the first tick.

import { SafetyChecker, type Violation } from '../../src/plugins/raft/sim/checks.js';
import { Cluster, type ClusterOptions } from '../../src/plugins/raft/sim/cluster.js';

export { Rng } from '../../src/kernel/rng.js';
export { SafetyChecker, type Violation } from '../../src/plugins/raft/sim/checks.js';
export { bytes, Cluster, type ClusterOptions, type Proposal, sameBytes, text } from '../../src/plugins/raft/sim/cluster.js';
export { type NetworkOptions, RELIABLE } from '../../src/plugins/raft/sim/network.js';

/** Timing used by the scenario tests: elections in [10, 20) ticks, heartbeats every 2. */
export const TIMING = { electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2 } as const;

export interface CheckedCluster {
  readonly cluster: Cluster;
  readonly checker: SafetyChecker;
  /** Everything the checker found so far (after a from-scratch pass over the whole cluster). */
  violations(): readonly Violation[];
}

/** A cluster with the test timing and every safety property checked at the end of each tick. */
export function checkedCluster(options: Partial<ClusterOptions> & { nodes: number; seed: number }): CheckedCluster {
  const checker = new SafetyChecker(Math.floor(options.nodes / 2) + 1);
  const cluster = new Cluster({ ...TIMING, maxEntriesPerMessage: 64, ...options, observer: checker });
  return {
    cluster,
    checker,
    violations() {
      checker.checkAll(cluster, cluster.now);
      return checker.violations;
    },
  };
}

/** The commands a node applied, decoded, in log order. */
export function appliedTexts(cluster: Cluster, id: number): string[] {
  const decoder = new TextDecoder();
  return cluster.commands(id).map((data) => decoder.decode(data));
}
