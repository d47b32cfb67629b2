// The Consensus contract: what the node asks of whatever keeps its metadata (the raft plugin; an
// etcd-backed one later). A state machine registers to receive every committed command in order;
// propose() resolves once the command is committed and applied here; status() and metrics()
// describe the member; quorumContactAgeMs() says how fresh this member's contact with a quorum is,
// which is what makes a write lease valid (docs/ARCHITECTURE.md, lease fencing); liveMembers()
// names the voters known to be up, for rollover rotation and topic placement.

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

/** An entry's id as OpenRaft writes it: the term and node that led it, and the index. */
export interface LogIdJson {
  readonly leader_id: { readonly term: number; readonly node_id: NodeId };
  readonly index: number;
}

/**
 * What the METRICS command reports, in this field order: the shape of OpenRaft's RaftMetrics that
 * the original's scripts read (reference/cluster.md §1.7, docs/protocol.md).
 */
export interface RaftMetrics {
  readonly running_state: { readonly Ok: null } | { readonly Err: string };
  readonly id: NodeId;
  readonly current_term: number;
  /** The member voted for in `current_term`; `committed` once it is known to lead. */
  readonly vote: { readonly leader_id: { readonly term: number; readonly node_id: NodeId }; readonly committed: boolean };
  readonly last_log_index: number;
  readonly last_applied: LogIdJson | null;
  /** The entry the latest snapshot covers up to; the log before it is gone (`purged`, the same). */
  readonly snapshot: LogIdJson | null;
  readonly purged: LogIdJson | null;
  readonly state: 'Leader' | 'Follower' | 'Candidate' | 'Learner';
  readonly current_leader: NodeId | null;
  /** On the leader: milliseconds since a quorum last answered it; null elsewhere. */
  readonly millis_since_quorum_ack: number | null;
  readonly membership_config: {
    readonly log_id: LogIdJson | null;
    readonly membership: {
      /** The voter sets (one; two only during a joint change, which Walrus does not make). */
      readonly configs: readonly (readonly NodeId[])[];
      /** Every member, learners included, by decimal id: where its Raft listener is. */
      readonly nodes: Readonly<Record<string, { readonly addr: string }>>;
    };
  };
  /** On the leader: each member's highest entry known to match, itself included; null elsewhere. */
  readonly replication: Readonly<Record<string, LogIdJson | null>> | null;
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
   * Where member `id`'s consensus traffic goes (its internal address), for members this node did
   * not start with: nodes that joined later, learned from the metadata or a join reply.
   */
  setMemberAddress(id: NodeId, address: { readonly host: string; readonly port: number }): void;
  /**
   * Milliseconds since this member last had contact with a quorum: on a leader, since a majority of
   * voters (itself included) last answered it; on a follower, since it last heard from its leader.
   * Infinity when there is no such contact (no leader known, or not started).
   */
  quorumContactAgeMs(): number;
  /**
   * On the leader: milliseconds since member `id` last answered it, counted from no earlier than
   * the start of this leadership (so a new leader judges nobody down before a full timeout); 0
   * for itself. Undefined on a member that does not lead. Failover decides with it that a
   * segment's leader is unreachable.
   */
  memberSilenceMs(id: NodeId): number | undefined;
  /**
   * The voters known to be up, this member always included, in ascending id order: what rollover
   * rotation and topic placement choose from. It may leave out a member that is up (it has not
   * been heard from lately, or this member has not been told); it never names one that nobody has
   * heard from recently. Just this member when it knows nothing better; empty before it has started.
   */
  liveMembers(): readonly NodeId[];
}
