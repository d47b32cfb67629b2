// The Consensus contract (docs/ARCHITECTURE.md) as the raft plugin offers it to a node: a state
// machine registers to receive every committed command in order; propose() resolves once the
// command is committed and applied here; status() and metrics() describe the member.

import { ConfigError } from '../../kernel/errors.js';
import { CAPABILITIES, token } from '../../kernel/tokens.js';
import type { NodeId, Role } from './core/types.js';
import type { RaftNode, RaftTiming, StateMachine } from './node.js';

export type { StateMachine } from './node.js';

export interface ConsensusStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  /** 0 when no leader is known. */
  readonly leader: NodeId;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** The fields the METRICS command reports (reference/cluster.md §1.7). */
export interface RaftMetrics {
  readonly id: NodeId;
  readonly current_term: number;
  readonly state: 'Leader' | 'Follower' | 'Candidate';
  readonly current_leader: NodeId | null;
  readonly last_log_index: number;
  readonly last_applied: number;
  readonly membership_config: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] };
  /** On the leader: each other member's matched index. */
  readonly replication: Readonly<Record<string, number>> | null;
}

export interface Consensus {
  /** The state machine that receives commands; commands applied before it registered are replayed to it. */
  register(machine: StateMachine): void;
  /** Resolves with the state machine's result once the command is committed and applied here. */
  propose(command: Uint8Array): Promise<unknown>;
  /** Resolves once this member's state reflects every command committed before the call (leader only). */
  readBarrier(): Promise<void>;
  status(): ConsensusStatus;
  metrics(): RaftMetrics;
  /** Adds a node as a learner (it receives the log, does not vote); leader only; resolves once committed. */
  addLearner(id: NodeId, raftAddress: { readonly host: string; readonly port: number }): Promise<void>;
  /** Makes a learner a voter; leader only. Promote once the learner has caught up. */
  promote(id: NodeId): Promise<void>;
  /** Removes a voter or a learner; leader only. */
  remove(id: NodeId): Promise<void>;
}

export const CONSENSUS = token<Consensus>(CAPABILITIES.consensus);

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

/**
 * Delivers applied commands to the registered state machine; until one registers, keeps them
 * (and the latest restored snapshot) to replay to it, so a consumer that starts after Raft has
 * replayed its log misses nothing.
 */
export class MachineSlot implements StateMachine {
  private machine: StateMachine | undefined;
  private pendingSnapshot: Uint8Array | undefined;
  private pending: { readonly command: Uint8Array; readonly index: number }[] = [];

  snapshotReady(): boolean {
    return this.machine !== undefined && (this.machine.snapshotReady?.() ?? true);
  }

  register(machine: StateMachine): void {
    if (this.machine !== undefined) throw new Error('a state machine is already registered with consensus');
    this.machine = machine;
    if (this.pendingSnapshot !== undefined) machine.restore(this.pendingSnapshot);
    for (const { command, index } of this.pending) machine.apply(command, index);
    this.pendingSnapshot = undefined;
    this.pending = [];
  }

  apply(command: Uint8Array, index: number): unknown {
    if (this.machine !== undefined) return this.machine.apply(command, index);
    this.pending.push({ command, index });
    return undefined;
  }

  snapshot(): Uint8Array {
    if (this.machine === undefined) throw new Error('no state machine to snapshot');
    return this.machine.snapshot();
  }

  restore(data: Uint8Array): void {
    if (this.machine !== undefined) {
      this.machine.restore(data);
      return;
    }
    this.pendingSnapshot = data;
    this.pending = [];
  }
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

  metrics(): RaftMetrics {
    const status = this.started().status();
    const state = status.role === 'leader' ? 'Leader' : status.role === 'follower' ? 'Follower' : 'Candidate';
    return {
      id: status.id,
      current_term: status.term,
      state,
      current_leader: status.leader === 0 ? null : status.leader,
      last_log_index: status.lastIndex,
      last_applied: status.applied,
      membership_config: { voters: status.membership.voters, learners: status.membership.learners },
      replication:
        status.progress === undefined
          ? null
          : Object.fromEntries([...status.progress].map(([id, progress]) => [String(id), progress.match])),
    };
  }
}
