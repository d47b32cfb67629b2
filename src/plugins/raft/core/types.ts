// The vocabulary of the Raft core: node ids, log entries, persistent state, messages, and the
// Ready batch through which the core hands work to its host. The core never touches a clock, a
// socket, a file or a random source of its own; everything it needs comes in through these types
// and the Config, and everything it wants done goes out through Ready.

export type NodeId = number;

/** No node: a vote not yet cast, a leader not yet known. Real node ids are ≥ 1. */
export const NONE: NodeId = 0;

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Cluster membership: voters count for elections and commitment; learners only receive the log. */
export interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export type EntryKind =
  /** A command for the state machine. */
  | 'command'
  /** Appended by every new leader: commits the entries of earlier terms (Raft §5.4.2, §8). */
  | 'noop'
  /** A new membership, in effect from the moment it is appended (one change at a time). */
  | 'membership';

export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** The command for 'command' entries; empty otherwise. */
  readonly data: Uint8Array;
  /** The membership for 'membership' entries. */
  readonly membership?: Membership;
}

/** What must be on stable storage before any message that depends on it leaves the node. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** A state-machine snapshot covering the log up to `index` (whose entry had `term`). */
export interface Snapshot {
  readonly index: number;
  readonly term: number;
  readonly membership: Membership;
  readonly data: Uint8Array;
}

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

export type Message =
  /** Would you vote for me at `term`? Sent without raising the sender's own term (pre-vote). */
  | (Envelope & { readonly type: 'preVote'; readonly lastIndex: number; readonly lastTerm: number })
  | (Envelope & { readonly type: 'preVoteReply'; readonly granted: boolean })
  /** `transfer`: the current leader asked for this election, so a live leader is no reason to refuse. */
  | (Envelope & { readonly type: 'vote'; readonly lastIndex: number; readonly lastTerm: number; readonly transfer: boolean })
  | (Envelope & { readonly type: 'voteReply'; readonly granted: boolean })
  /** AppendEntries; with no entries it is a heartbeat. `readId` echoes a read-index round. */
  | (Envelope & {
      readonly type: 'append';
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly Entry[];
      readonly commit: number;
      readonly readId: number;
    })
  /**
   * success: `matchIndex` is the last index now known to match the leader's log.
   * failure: `matchIndex` is the `prevIndex` that was refused (so stale refusals can be told
   * apart), `hintIndex` where the leader should try next (fast back-off), and `hintTerm` the term
   * of the follower's conflicting entry (0 when the follower's log is just shorter).
   */
  | (Envelope & {
      readonly type: 'appendReply';
      readonly success: boolean;
      readonly matchIndex: number;
      readonly hintIndex: number;
      readonly hintTerm: number;
      readonly readId: number;
    })
  | (Envelope & { readonly type: 'installSnapshot'; readonly snapshot: Snapshot })
  | (Envelope & { readonly type: 'installSnapshotReply'; readonly index: number })
  /** Leadership transfer: start an election now. */
  | (Envelope & { readonly type: 'timeoutNow' });

export type MessageType = Message['type'];

/** A linearisable read that may proceed once the local state machine has applied `index`. */
export interface ReadState {
  readonly id: number;
  readonly index: number;
}

/**
 * Work for the host, in this order: persist `hardState`, `snapshot` and `entries` durably (the
 * entries replace whatever the log held from their first index on); then send `messages`; then
 * apply `snapshot` (if any) and `committed` to the state machine; then call `advance()`.
 */
export interface Ready {
  readonly hardState: HardState | undefined;
  /** A snapshot received from the leader, to persist and restore (the log before it is gone). */
  readonly snapshot: Snapshot | undefined;
  readonly entries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly committed: readonly Entry[];
  /** Read-index rounds that completed: serve each once `applied ≥ index`. */
  readonly reads: readonly ReadState[];
}

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns: a random value in [min, max). */
  readonly electionTicksMin: number;
  readonly electionTicksMax: number;
  /** Ticks between a leader's heartbeats. */
  readonly heartbeatTicks: number;
  /** Uniform in [0, 1); the only randomness the core uses (the simulator passes a seeded one). */
  readonly random: () => number;
  /** Most entries per AppendEntries message. */
  readonly maxEntriesPerMessage?: number;
  /** Most AppendEntries messages in flight to one follower while replicating. */
  readonly maxInflight?: number;
}

/** What the core starts from: what the host found on stable storage (all empty for a new node). */
export interface RestoredState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | undefined;
  /** Entries after the snapshot, in order, contiguous. */
  readonly entries: readonly Entry[];
  /** Membership when there is neither a snapshot nor a membership entry (a brand-new group). */
  readonly initialMembership: Membership;
}

export interface Status {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId;
  /** The candidate this member voted for in `term` (NONE when it has not voted). */
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly membership: Membership;
  /** Index of the entry that set `membership`; 0 when it came from a snapshot or the group's start. */
  readonly membershipIndex: number;
  /** On the leader: each peer's match and next index. */
  readonly progress: ReadonlyMap<NodeId, { readonly match: number; readonly next: number }> | undefined;
}
