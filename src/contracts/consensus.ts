// The Consensus contract: what the node asks of whatever keeps its metadata (the raft plugin; an
// etcd-backed one later). A state machine registers to receive every committed command in order;
// propose() resolves once the command is committed and applied here; status() and metrics()
// describe the member; quorumContactAgeMs() says how fresh this member's contact with a quorum is,
// which is what makes a write lease valid (docs/ARCHITECTURE.md, lease fencing).

/** A member's id: a positive integer (0 means "none", e.g. no leader known). */
export type NodeId = number;

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** What the replicated log drives: apply is total (a bad command gives an error result, never a throw). */
export interface StateMachine {
  apply(command: Uint8Array, index: number): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
  /** False while a snapshot cannot be taken (no snapshots are taken then). Absent means always. */
  snapshotReady?(): boolean;
}

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
  /**
   * Milliseconds since this member last had contact with a quorum: on a leader, since a majority of
   * voters (itself included) last answered it; on a follower, since it last heard from its leader.
   * Infinity when there is no such contact (no leader known, or not started).
   */
  quorumContactAgeMs(): number;
}
