// The raft plugin's side of the Consensus contract (src/contracts/consensus.ts): RaftConsensus
// answers for a RaftNode once the plugin has started it (src/node/machine-slot.ts keeps what was
// applied before the node's state machine registered).

import type { Consensus, ConsensusStatus, RaftMetrics, StateMachine } from '../../contracts/consensus.js';
import { ConfigError } from '../../kernel/errors.js';
import { MachineSlot } from '../../node/machine-slot.js';
import type { NodeId } from './core/types.js';
import { raftMetrics } from './metrics.js';
import type { RaftNode, RaftTiming } from './node.js';

export interface RaftSettings {
  readonly tickMs: number;
  readonly electionTimeoutMinMs: number;
  readonly electionTimeoutMaxMs: number;
  readonly heartbeatMs: number;
  readonly snapshotEvery: number;
}

/** Checks the relations between the timing settings that the schema cannot express alone. */
export function timingOf(settings: RaftSettings): RaftTiming {
  const problems: string[] = [];
  if (settings.electionTimeoutMaxMs <= settings.electionTimeoutMinMs)
    problems.push('raft.electionTimeoutMaxMs: must be greater than raft.electionTimeoutMinMs');
  if (settings.heartbeatMs >= settings.electionTimeoutMinMs) problems.push('raft.heartbeatMs: must be less than raft.electionTimeoutMinMs');
  if (settings.tickMs > settings.heartbeatMs) problems.push('raft.tickMs: must not exceed raft.heartbeatMs');
  if (problems.length > 0) throw new ConfigError('CONFIG_INVALID', `invalid raft timing:\n  ${problems.join('\n  ')}`);
  return {
    tickMs: settings.tickMs,
    electionMinMs: settings.electionTimeoutMinMs,
    electionMaxMs: settings.electionTimeoutMaxMs,
    heartbeatMs: settings.heartbeatMs,
  };
}

/** The Consensus a kernel resolves: a RaftNode once the plugin has started it. */
export class RaftConsensus implements Consensus {
  readonly slot = new MachineSlot();
  node: RaftNode | undefined;

  private started(): RaftNode {
    if (this.node === undefined) throw new Error('consensus is not started yet');
    return this.node;
  }

  register(machine: StateMachine): void {
    this.slot.register(machine);
  }

  propose(command: Uint8Array): Promise<unknown> {
    return this.started().propose(command);
  }

  readBarrier(): Promise<void> {
    return this.started().readBarrier();
  }

  addLearner(id: NodeId, raftAddress: { readonly host: string; readonly port: number }): Promise<void> {
    const { voters, learners } = this.started().status().membership;
    return this.started().changeMembership({ voters, learners: [...learners, id] }, { id, at: raftAddress });
  }

  promote(id: NodeId): Promise<void> {
    const { voters, learners } = this.started().status().membership;
    return this.started().changeMembership({ voters: [...voters, id], learners: learners.filter((learner) => learner !== id) });
  }

  remove(id: NodeId): Promise<void> {
    const { voters, learners } = this.started().status().membership;
    return this.started().changeMembership({
      voters: voters.filter((voter) => voter !== id),
      learners: learners.filter((learner) => learner !== id),
    });
  }

  setMemberAddress(id: NodeId, address: { readonly host: string; readonly port: number }): void {
    this.started().setPeer(id, address);
  }

  status(): ConsensusStatus {
    const status = this.started().status();
    return {
      id: status.id,
      role: status.role,
      term: status.term,
      leader: status.leader,
      commitIndex: status.commit,
      appliedIndex: status.applied,
      voters: status.membership.voters,
      learners: status.membership.learners,
    };
  }

  quorumContactAgeMs(): number {
    return this.node?.quorumContactAgeMs() ?? Number.POSITIVE_INFINITY;
  }

  memberSilenceMs(id: NodeId): number | undefined {
    return this.node?.memberSilenceMs(id);
  }

  metrics(): RaftMetrics {
    return raftMetrics(this.started());
  }

  liveMembers(): readonly NodeId[] {
    return this.node?.liveMembers() ?? [];
  }
}
