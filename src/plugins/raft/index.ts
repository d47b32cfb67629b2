// raft: Raft consensus for the cluster metadata. It runs one member of the group (a group of one
// on a single node, so the same code serves one node and many): its files live in
// `<node.dataDir>/node_<id>/raft/`, it listens on `node.raftHost:node.raftPort`, and the group's
// first members are the `cluster.nodes` entries (or this node alone). It binds the Consensus
// contract (./consensus.ts). Its listener is the node's internal port, which it also provides
// (`internal-port`): node-to-node requests arrive there beside Raft's traffic. Design and
// formats: docs/raft.md.

import { join } from 'node:path';
import type { InternalPort } from '../../contracts/internal-port.js';
import { CONSENSUS, INTERNAL_PORT } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { type Infer, s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { lateInternalPort } from '../../node/internal-port.js';
import { RaftConsensus, timingOf } from './consensus.js';
import { RaftNode } from './node.js';

export const raftSchema = s.object(
  {
    tickMs: s.int({ default: 50, min: 1, max: 10_000, description: 'Length of one Raft clock tick, in milliseconds.' }),
    electionTimeoutMinMs: s.int({
      default: 1000,
      min: 10,
      max: 600_000,
      description: 'Shortest election timeout, in milliseconds (each election draws one in [min, max)).',
    }),
    electionTimeoutMaxMs: s.int({ default: 2000, min: 11, max: 600_000, description: 'Longest election timeout, in milliseconds.' }),
    heartbeatMs: s.int({ default: 150, min: 1, max: 600_000, description: "Interval of the leader's heartbeats, in milliseconds." }),
    snapshotEvery: s.int({
      default: 10_000,
      min: 10,
      max: Number.MAX_SAFE_INTEGER,
      description: 'Applied entries between two snapshots of the state machine (the log before a snapshot is dropped).',
    }),
  },
  'Raft consensus timing and snapshots.',
);

type RaftConfig = Infer<typeof raftSchema>;

interface NodeSection {
  readonly id: number;
  readonly dataDir: string;
  readonly raftHost: string;
  readonly raftPort: number;
  readonly join: string | null;
}

interface ClusterSection {
  readonly nodes: readonly { readonly id: number; readonly raftHost: string; readonly raftPort: number }[];
}

export const raftPlugin: Plugin<RaftConfig> = {
  manifest: {
    name: 'raft',
    description: 'Raft consensus for cluster metadata',
    provides: [CAPABILITIES.consensus, CAPABILITIES.internalPort],
    requires: [],
  },
  config: { key: 'raft', schema: raftSchema },
  register(scope, config) {
    // Checked here so that a bad combination fails before anything starts.
    timingOf(config);
    scope.provide(CONSENSUS, () => new RaftConsensus());
    // The listener exists once the node has started; until then the port is not there to take.
    scope.provide(INTERNAL_PORT, (): InternalPort => {
      const consensus = scope.resolve(CONSENSUS) as RaftConsensus;
      return lateInternalPort(() => {
        if (consensus.node === undefined) throw new Error('the internal port opens when the raft plugin starts');
        return consensus.node.internalPort;
      });
    });
  },
  async start(scope) {
    const config = scope.config.raft as RaftConfig;
    const node = scope.config.node as NodeSection;
    const cluster = scope.config.cluster as ClusterSection;
    const consensus = scope.resolve(CONSENSUS) as RaftConsensus;
    const members = new Map(
      cluster.nodes.length > 0
        ? cluster.nodes.map((entry) => [entry.id, { host: entry.raftHost, port: entry.raftPort }] as const)
        : [[node.id, { host: node.raftHost, port: node.raftPort }] as const],
    );
    const dir = join(node.dataDir, `node_${node.id}`, 'raft');
    consensus.node = await RaftNode.start(
      {
        id: node.id,
        dir,
        host: node.raftHost,
        port: node.raftPort,
        members,
        // Joining: no group of its own; the leader adds it (src/node/membership.ts). Only the
        // first start counts: after that its files say what it is.
        joining: node.join !== null,
        timing: timingOf(config),
        snapshotEvery: config.snapshotEvery,
        onProblem: (problem) => scope.log.warn(problem),
        onRoleChange: (status) =>
          scope.log.info({ role: status.role, term: status.term, leader: status.leader === 0 ? null : status.leader }, 'raft role changed'),
      },
      consensus.slot,
    );
    const status = consensus.status();
    scope.log.info(
      { dir, port: consensus.node.port, voters: status.voters, role: status.role, term: status.term },
      `raft member ${node.id} started`,
    );
  },
  async stop(scope) {
    const consensus = scope.resolve(CONSENSUS) as RaftConsensus;
    await consensus.node?.stop();
  },
};
