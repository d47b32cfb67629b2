// A pure, deterministic Raft state machine (Ongaro & Ousterhout; the dissertation's pre-vote,
// check-quorum, single-server membership changes, leadership transfer and read index). It has no
// timers, sockets, files or randomness of its own: the host calls tick() on its clock, step()
// with each message, and drains ready() — persist, then send, then apply — before advance().
// Between ready() and advance() the host calls nothing else on it.

import { BusyError, FencedError } from '../../../kernel/errors.js';
import { RaftLog } from './log.js';
import {
  type Entry,
  type HardState,
  type Membership,
  type Message,
  NONE,
  type NodeId,
  type RaftConfig,
  type ReadState,
  type Ready,
  type RestoredState,
  type Role,
  type Snapshot,
  type Status,
} from './types.js';

/** Thrown by calls only a leader can serve; `leader` is the one this node knows of (NONE if none). */
export class NotLeaderError extends FencedError {
  readonly leader: NodeId;

  constructor(leader: NodeId, what: string) {
    super('RAFT_NOT_LEADER', leader === NONE ? `${what}: no leader is known` : `${what}: node ${leader} is the leader`, {
      details: { leader },
    });
    this.leader = leader;
  }
}

/** Thrown when a request is valid only later (a membership change while another is pending, say). */
export class RaftBusyError extends BusyError {
  constructor(message: string) {
    super('RAFT_BUSY', message);
  }
}

const EMPTY = new Uint8Array(0);

/** The leader's view of one follower's log. */
interface Progress {
  /** Highest index known to match the leader's log. */
  match: number;
  /** Next index to send. */
  next: number;
  /** probe: one append at a time until a match is found; replicate: pipelined; snapshot: sending one. */
  state: 'probe' | 'replicate' | 'snapshot';
  /** probe: an append is out and unanswered. */
  paused: boolean;
  /** replicate: appends sent and not yet answered. */
  inflight: number;
  /** Heard from since the last quorum check. */
  recentActive: boolean;
  /** The tick at which it last answered (for quorumContactTicks). */
  heardAtTick: number;
  /** Whether `match` advanced since the last heartbeat (a stuck pipeline falls back to probing). */
  advanced: boolean;
  /** snapshot: ticks since it was sent (it is resent as a probe if no answer comes). */
  snapshotTicks: number;
}

interface PendingRead {
  readonly id: number;
  readonly index: number;
  readonly acks: Set<NodeId>;
}

function quorum(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

export class Raft {
  readonly id: NodeId;
  private readonly config: Required<RaftConfig>;
  private readonly log: RaftLog;

  private term: number;
  private vote: NodeId;
  private commit: number;
  private applied: number;
  private role: Role = 'follower';
  private leader: NodeId = NONE;

  private membership: Membership;
  /** The membership of a new group: in effect while neither a snapshot nor an entry says otherwise. */
  private readonly initialMembership: Membership;
  /** Index of the entry that set `membership` (0 when it came from a snapshot or the initial one). */
  private membershipIndex = 0;
  /** The latest snapshot this node holds (to send to followers that are too far behind). */
  private snapshot: Snapshot | undefined;
  /** A snapshot received from the leader, for the host to persist and restore. */
  private receivedSnapshot: Snapshot | undefined;

  private electionElapsed = 0;
  /** Ticks since start: the clock of quorumContactTicks. */
  private ticks = 0;
  /** Follower: the tick at which the leader was last heard from. */
  private leaderHeardAtTick = Number.NEGATIVE_INFINITY;
  /** The tick this member last became leader. */
  private leaderSinceTick = 0;
  /** The leader this member last followed, and (once it leads) that one with when it was last heard from. */
  private lastFollowed: NodeId = NONE;
  private formerLeader: NodeId = NONE;
  private formerLeaderHeardAtTick = Number.NEGATIVE_INFINITY;
  private heartbeatElapsed = 0;
  private electionTimeout = 0;
  private votes = new Map<NodeId, boolean>();
  private readonly progress = new Map<NodeId, Progress>();
  private transferee: NodeId = NONE;

  private messages: Message[] = [];
  private persisted: HardState;
  private readonly pendingReads: PendingRead[] = [];
  private readonly completedReads: ReadState[] = [];
  private lastReadId = 0;

  constructor(config: RaftConfig, restored: RestoredState) {
    if (!Number.isInteger(config.id) || config.id < 1) throw new Error(`raft: node id must be an integer ≥ 1, got ${config.id}`);
    if (!(config.electionTicksMin > config.heartbeatTicks && config.electionTicksMax > config.electionTicksMin)) {
      throw new Error('raft: need heartbeatTicks < electionTicksMin < electionTicksMax');
    }
    this.id = config.id;
    this.config = { maxEntriesPerMessage: 64, maxInflight: 256, ...config };
    const snapshot = restored.snapshot;
    this.log = new RaftLog(snapshot?.index ?? 0, snapshot?.term ?? 0, restored.entries);
    this.snapshot = snapshot;
    this.term = restored.hardState.term;
    this.vote = restored.hardState.vote;
    this.commit = Math.min(Math.max(restored.hardState.commit, snapshot?.index ?? 0), this.log.lastIndex);
    // The state machine starts from the snapshot: committed entries after it are applied again.
    this.applied = snapshot?.index ?? 0;
    this.persisted = { term: this.term, vote: this.vote, commit: this.commit };
    this.initialMembership = restored.initialMembership;
    this.membership = snapshot?.membership ?? restored.initialMembership;
    this.refreshMembership();
    this.resetElectionTimeout();
  }

  // --- inputs ----------------------------------------------------------------------------------

  tick(): void {
    this.ticks += 1;
    if (this.role === 'leader') this.tickLeader();
    else this.tickFollower();
  }

  step(message: Message): void {
    if (message.to !== this.id) return;
    if (message.term > this.term) {
      if (!this.acceptHigherTerm(message)) return;
    } else if (message.term < this.term) {
      this.answerStale(message);
      return;
    }
    switch (message.type) {
      case 'preVote':
        this.handlePreVote(message);
        break;
      case 'vote':
        this.handleVote(message);
        break;
      case 'preVoteReply':
        this.handleVoteReply(message.from, message.granted, 'preCandidate', message.term);
        break;
      case 'voteReply':
        this.handleVoteReply(message.from, message.granted, 'candidate', message.term);
        break;
      case 'append':
        this.followLeader(message.from);
        this.handleAppend(message);
        break;
      case 'appendReply':
        this.handleAppendReply(message);
        break;
      case 'installSnapshot':
        this.followLeader(message.from);
        this.handleInstallSnapshot(message.from, message.snapshot);
        break;
      case 'installSnapshotReply':
        this.handleInstallSnapshotReply(message.from, message.index);
        break;
      case 'timeoutNow':
        if (this.mayCampaign()) this.startElection(true);
        break;
    }
  }

  /** Appends a command; returns its index. Leader only (and not while handing leadership over). */
  propose(data: Uint8Array): number {
    this.requireLeader('propose');
    return this.appendEntry('command', data);
  }

  /**
   * Proposes a new membership. One server at a time: it may add or remove one voter, or add,
   * remove or promote one learner, relative to the current membership; and only once the previous
   * change has committed.
   */
  proposeMembership(next: Membership): number {
    this.requireLeader('change membership');
    if (this.membershipIndex > this.commit) throw new RaftBusyError('a membership change is still being committed');
    // Until an entry of its own term commits, a new leader may not know of a change an earlier
    // leader started: changing membership then could let two disjoint majorities form.
    if (this.log.termAt(this.commit) !== this.term) throw new RaftBusyError('this leader has not committed an entry of its term yet');
    checkSingleChange(this.membership, next);
    return this.appendEntry('membership', EMPTY, normalise(next));
  }

  /** Hands leadership to `to` once its log is complete (it then campaigns at once). */
  transferLeadership(to: NodeId): void {
    this.requireLeader('transfer leadership');
    if (to === this.id) return;
    if (!this.isVoter(to)) throw new Error(`raft: node ${to} is not a voter`);
    this.transferee = to;
    this.electionElapsed = 0;
    const progress = this.progress.get(to);
    if (progress !== undefined && progress.match === this.log.lastIndex)
      this.send({ type: 'timeoutNow', from: this.id, to, term: this.term });
    else this.sendAppend(to, true);
  }

  /**
   * Asks for a linearisable read point: once a quorum confirms this node still leads, Ready.reads
   * carries { id, index } and the read may be served when the state machine has applied `index`.
   * Returns the read's id.
   */
  readIndex(): number {
    this.requireLeader('read');
    const id = ++this.lastReadId;
    // settleReads also waits for an entry of this term to commit: until then the commit index may
    // lag what earlier leaders committed.
    const read: PendingRead = { id, index: this.commit, acks: new Set([this.id]) };
    this.pendingReads.push(read);
    if (this.voters().length === 1) this.settleReads();
    else this.broadcastHeartbeat();
    return id;
  }

  /** Starts an election now (no pre-vote): for tests, and a one-node group's first start. */
  campaign(): void {
    if (this.mayCampaign() && this.role !== 'leader') this.startElection(false);
  }

  /**
   * The host took a snapshot of its state machine at `index` (≤ what it has applied): the log up
   * to there is no longer needed, and followers too far behind get this snapshot instead.
   * Returns the snapshot for the host to persist (undefined when nothing was compacted).
   */
  compact(index: number, data: Uint8Array): Snapshot | undefined {
    if (index > this.applied) throw new Error(`raft: cannot snapshot at ${index}, only ${this.applied} is applied`);
    if (index <= this.log.snapshotIndex) return undefined;
    const term = this.log.termAt(index);
    if (term === undefined) throw new Error(`raft: no entry at ${index} to snapshot`);
    this.snapshot = { index, term, membership: this.membershipAt(index), data };
    this.log.compact(index, term);
    return this.snapshot;
  }

  // --- output ----------------------------------------------------------------------------------

  hasReady(): boolean {
    return (
      this.messages.length > 0 ||
      this.log.unstableFrom <= this.log.lastIndex ||
      this.commit > this.applied ||
      this.receivedSnapshot !== undefined ||
      this.completedReads.length > 0 ||
      this.hardStateChanged()
    );
  }

  ready(): Ready {
    const messages = this.messages;
    this.messages = [];
    const reads = this.completedReads.splice(0);
    const snapshot = this.receivedSnapshot;
    const from = Math.max(this.applied, snapshot?.index ?? 0) + 1;
    return {
      hardState: this.hardStateChanged() ? { term: this.term, vote: this.vote, commit: this.commit } : undefined,
      snapshot,
      entries: this.log.unstable(),
      messages,
      committed: this.log.slice(from, this.commit),
      reads,
    };
  }

  advance(ready: Ready): void {
    if (ready.hardState !== undefined) this.persisted = ready.hardState;
    if (ready.snapshot !== undefined) {
      this.applied = Math.max(this.applied, ready.snapshot.index);
      if (this.receivedSnapshot === ready.snapshot) this.receivedSnapshot = undefined;
    }
    const last = ready.entries[ready.entries.length - 1];
    if (last !== undefined) this.log.stableTo(last.index, last.term);
    const applied = ready.committed[ready.committed.length - 1];
    if (applied !== undefined) this.applied = Math.max(this.applied, applied.index);
    // A leader removed from the group steps down once the change is applied.
    if (this.role === 'leader' && !this.isVoter(this.id) && this.membershipIndex <= this.applied) this.becomeFollower(this.term, NONE);
  }

  /**
   * Ticks since this member last had contact with a quorum (what a write lease rests on): a leader
   * counts from the latest tick by which a majority of voters, itself included, had answered it; a
   * follower from its leader's last message. Infinity without a leader.
   */
  quorumContactTicks(): number {
    if (this.role === 'leader') {
      // Asked on every write (twice per PUT), so without allocating: the quorum-th most recent
      // contact is the latest tick t that at least a quorum of voters were heard at or after.
      const voters = this.voters();
      if (voters.length === 1) return 0;
      const need = quorum(voters.length);
      let best = Number.NEGATIVE_INFINITY;
      for (const candidate of voters) {
        const at = this.heardAt(candidate);
        if (at <= best) continue;
        let heard = 0;
        for (const voter of voters) if (this.heardAt(voter) >= at) heard += 1;
        if (heard >= need) best = at;
      }
      return this.ticks - best;
    }
    if (this.role === 'follower' && this.leader !== NONE) return this.ticks - this.leaderHeardAtTick;
    return Number.POSITIVE_INFINITY;
  }

  /** The tick voter `id` was last heard at, as this leader knows (its own: now). */
  private heardAt(id: NodeId): number {
    return id === this.id ? this.ticks : (this.progress.get(id)?.heardAtTick ?? Number.NEGATIVE_INFINITY);
  }

  status(): Status {
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      leader: this.leader,
      vote: this.vote,
      commit: this.commit,
      applied: this.applied,
      lastIndex: this.log.lastIndex,
      firstIndex: this.log.firstIndex,
      membership: this.membership,
      membershipIndex: this.membershipIndex,
      progress:
        this.role === 'leader'
          ? new Map([...this.progress].map(([id, progress]) => [id, { match: progress.match, next: progress.next }]))
          : undefined,
    };
  }

  /**
   * On a leader, the voters that answered it within the last `windowTicks` ticks, itself included,
   * in ascending order; elsewhere just itself (a follower knows only of its leader: see
   * RaftNode.liveMembers). Right after an election nobody has answered yet, so for about one
   * heartbeat the new leader names only itself.
   */
  liveVoters(windowTicks: number): NodeId[] {
    if (this.role !== 'leader') return [this.id];
    const live = this.voters().filter(
      (voter) => voter === this.id || this.ticks - (this.progress.get(voter)?.heardAtTick ?? Number.NEGATIVE_INFINITY) <= windowTicks,
    );
    if (!live.includes(this.id)) live.push(this.id);
    return live.sort((a, b) => a - b);
  }

  /**
   * On a leader, ticks since member `id` last answered it, counted from no earlier than this
   * leadership's start (a new leader has heard from nobody yet, which says nothing of who is
   * down) — except the leader this member followed before, counted from when it last heard from
   * it (its silence is what started the election). 0 for itself. Undefined when this member does
   * not lead (it cannot see the others).
   */
  silenceTicks(id: NodeId): number | undefined {
    if (this.role !== 'leader') return undefined;
    if (id === this.id) return 0;
    const heard = this.progress.get(id)?.heardAtTick ?? Number.NEGATIVE_INFINITY;
    const since =
      id === this.formerLeader && this.formerLeaderHeardAtTick > Number.NEGATIVE_INFINITY
        ? this.formerLeaderHeardAtTick
        : this.leaderSinceTick;
    return this.ticks - Math.max(heard, since);
  }

  /** The term of the entry at `index`: undefined when the log no longer (or not yet) holds it. */
  termAt(index: number): number | undefined {
    return this.log.termAt(index);
  }

  /** The entry at `index`, if the log still holds it (for tests and the host's diagnostics). */
  entry(index: number): Entry | undefined {
    return this.log.entryAt(index);
  }

  // --- time ------------------------------------------------------------------------------------

  private tickFollower(): void {
    this.electionElapsed += 1;
    if (this.electionElapsed >= this.electionTimeout && this.mayCampaign()) {
      this.electionElapsed = 0;
      this.startPreVote();
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed += 1;
    this.electionElapsed += 1;
    if (this.electionElapsed >= this.config.electionTicksMin) {
      this.electionElapsed = 0;
      // Check quorum: a leader that has not heard from a majority for an election timeout steps
      // down, so a partitioned leader stops claiming leadership (and serving reads).
      if (!this.quorumActive()) {
        this.becomeFollower(this.term, NONE);
        return;
      }
      for (const progress of this.progress.values()) progress.recentActive = false;
      this.transferee = NONE;
    }
    if (this.heartbeatElapsed >= this.config.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private resetElectionTimeout(): void {
    const span = this.config.electionTicksMax - this.config.electionTicksMin;
    this.electionTimeout = this.config.electionTicksMin + Math.floor(this.config.random() * span);
  }

  // --- roles -----------------------------------------------------------------------------------

  private becomeFollower(term: number, leader: NodeId): void {
    if (term > this.term) {
      this.term = term;
      this.vote = NONE;
    }
    this.role = 'follower';
    this.leader = leader;
    this.electionElapsed = 0;
    this.transferee = NONE;
    this.progress.clear();
    this.pendingReads.length = 0;
    this.resetElectionTimeout();
  }

  private startPreVote(): void {
    this.role = 'preCandidate';
    this.leader = NONE;
    this.resetElectionTimeout();
    this.votes = new Map([[this.id, true]]);
    if (this.tallyWon()) {
      this.startElection(false);
      return;
    }
    for (const voter of this.voters()) {
      if (voter === this.id) continue;
      this.send({
        type: 'preVote',
        from: this.id,
        to: voter,
        term: this.term + 1,
        lastIndex: this.log.lastIndex,
        lastTerm: this.log.lastTerm,
      });
    }
  }

  private startElection(transfer: boolean): void {
    this.term += 1;
    this.vote = this.id;
    this.role = 'candidate';
    this.leader = NONE;
    this.electionElapsed = 0;
    this.resetElectionTimeout();
    this.votes = new Map([[this.id, true]]);
    if (this.tallyWon()) {
      this.becomeLeader();
      return;
    }
    for (const voter of this.voters()) {
      if (voter === this.id) continue;
      this.send({
        type: 'vote',
        from: this.id,
        to: voter,
        term: this.term,
        lastIndex: this.log.lastIndex,
        lastTerm: this.log.lastTerm,
        transfer,
      });
    }
  }

  private becomeLeader(): void {
    this.role = 'leader';
    this.leader = this.id;
    this.leaderSinceTick = this.ticks;
    this.formerLeader = this.lastFollowed;
    this.formerLeaderHeardAtTick = this.leaderHeardAtTick;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.transferee = NONE;
    this.progress.clear();
    for (const peer of this.peers()) this.progress.set(peer, this.newProgress());
    // A no-op of this term: once it commits, so has everything before it (Figure 8).
    this.appendEntry('noop', EMPTY);
  }

  private newProgress(): Progress {
    return {
      match: 0,
      next: this.log.lastIndex + 1,
      state: 'probe',
      paused: false,
      inflight: 0,
      recentActive: true,
      advanced: false,
      snapshotTicks: 0,
      heardAtTick: Number.NEGATIVE_INFINITY,
    };
  }

  private followLeader(leader: NodeId): void {
    if (this.role !== 'follower' || this.leader !== leader) this.becomeFollower(this.term, leader);
    this.electionElapsed = 0;
    this.leaderHeardAtTick = this.ticks;
    this.lastFollowed = leader;
  }

  // --- terms -----------------------------------------------------------------------------------

  /** A message from a later term: decides whether it moves this node to that term. */
  private acceptHigherTerm(message: Message): boolean {
    if (message.type === 'preVote') {
      // A pre-vote never changes terms; it is answered (below) by its own rules.
      return true;
    }
    if (message.type === 'preVoteReply' && message.granted) return true;
    if (message.type === 'vote' && !message.transfer && this.inLeaderLease()) {
      // Heard from a live leader within the minimum election timeout: this candidate is
      // disruptive (it was partitioned away); ignore it without adopting its term.
      return false;
    }
    const fromLeader = message.type === 'append' || message.type === 'installSnapshot';
    this.becomeFollower(message.term, fromLeader ? message.from : NONE);
    return true;
  }

  /** A message from an earlier term: tell a stale leader or pre-candidate about this term. */
  private answerStale(message: Message): void {
    if (message.type === 'append' || message.type === 'installSnapshot') {
      this.send({
        type: 'appendReply',
        from: this.id,
        to: message.from,
        term: this.term,
        success: false,
        matchIndex: 0,
        hintIndex: 0,
        hintTerm: 0,
        readId: 0,
      });
    } else if (message.type === 'preVote') {
      this.send({ type: 'preVoteReply', from: this.id, to: message.from, term: this.term, granted: false });
    }
  }

  private inLeaderLease(): boolean {
    return this.leader !== NONE && this.electionElapsed < this.config.electionTicksMin;
  }

  // --- elections -------------------------------------------------------------------------------

  private handlePreVote(message: Extract<Message, { type: 'preVote' }>): void {
    // Granted only for a later term, to a log at least as complete, when no leader is known to be alive.
    const granted = message.term > this.term && !this.inLeaderLease() && this.log.isUpToDate(message.lastIndex, message.lastTerm);
    this.send({ type: 'preVoteReply', from: this.id, to: message.from, term: granted ? message.term : this.term, granted });
  }

  private handleVote(message: Extract<Message, { type: 'vote' }>): void {
    const free = this.vote === NONE || this.vote === message.from;
    const granted = free && this.log.isUpToDate(message.lastIndex, message.lastTerm) && this.role !== 'leader';
    if (granted) {
      this.vote = message.from;
      this.electionElapsed = 0;
    }
    this.send({ type: 'voteReply', from: this.id, to: message.from, term: this.term, granted });
  }

  private handleVoteReply(from: NodeId, granted: boolean, role: Role, term: number): void {
    if (this.role !== role) return;
    if (role === 'preCandidate' && term !== this.term + 1) return;
    if (!this.isVoter(from)) return;
    this.votes.set(from, granted);
    if (this.tallyWon()) {
      if (role === 'preCandidate') this.startElection(false);
      else this.becomeLeader();
    } else if (this.tallyLost()) {
      this.becomeFollower(this.term, NONE);
    }
  }

  private tallyWon(): boolean {
    const voters = this.voters();
    let yes = 0;
    for (const voter of voters) if (this.votes.get(voter) === true) yes += 1;
    return yes >= quorum(voters.length);
  }

  private tallyLost(): boolean {
    const voters = this.voters();
    let no = 0;
    for (const voter of voters) if (this.votes.get(voter) === false) no += 1;
    return no > voters.length - quorum(voters.length);
  }

  // --- replication: follower side --------------------------------------------------------------

  private handleAppend(message: Extract<Message, { type: 'append' }>): void {
    const reply = (success: boolean, matchIndex: number, hintIndex = 0, hintTerm = 0): void =>
      this.send({
        type: 'appendReply',
        from: this.id,
        to: message.from,
        term: this.term,
        success,
        matchIndex,
        hintIndex,
        hintTerm,
        readId: message.readId,
      });
    if (message.prevIndex < this.commit) {
      // Everything up to the commit index matches the leader's log already (leader completeness);
      // take only what lies beyond it, after checking that what overlaps does agree.
      for (const entry of message.entries) {
        if (entry.index > this.commit) break;
        const term = this.log.termAt(entry.index);
        if (term !== undefined && term !== entry.term)
          throw new Error(`raft: leader ${message.from} conflicts with committed entry ${entry.index}`);
      }
      const beyond = message.entries.filter((entry) => entry.index > this.commit);
      if (beyond.length === 0) {
        reply(true, this.commit);
        return;
      }
      const first = beyond[0] as Entry;
      this.handleAppend({ ...message, prevIndex: first.index - 1, prevTerm: this.log.termAt(first.index - 1) ?? 0, entries: beyond });
      return;
    }
    const prevTerm = this.log.termAt(message.prevIndex);
    if (prevTerm === undefined) {
      reply(false, message.prevIndex, this.log.lastIndex + 1, 0);
      return;
    }
    if (prevTerm !== message.prevTerm) {
      reply(false, message.prevIndex, this.log.firstIndexOfTermAt(message.prevIndex), prevTerm);
      return;
    }
    for (const entry of message.entries) {
      const existing = this.log.termAt(entry.index);
      if (existing === entry.term) continue;
      if (existing !== undefined) {
        if (entry.index <= this.commit) throw new Error(`raft: leader ${message.from} conflicts with committed entry ${entry.index}`);
        this.log.truncateFrom(entry.index);
        if (this.membershipIndex >= entry.index) this.refreshMembership();
      }
      this.log.append(entry);
      if (entry.kind === 'membership') this.setMembership(entry);
    }
    const lastNew = message.prevIndex + message.entries.length;
    const commit = Math.min(message.commit, lastNew);
    if (commit > this.commit) this.commit = commit;
    reply(true, lastNew);
  }

  private handleInstallSnapshot(from: NodeId, snapshot: Snapshot): void {
    if (snapshot.index <= this.commit) {
      this.send({ type: 'installSnapshotReply', from: this.id, to: from, term: this.term, index: this.commit });
      return;
    }
    if (this.log.termAt(snapshot.index) === snapshot.term) {
      // The log already holds the snapshot's last entry: keep what follows it.
      this.log.compact(snapshot.index, snapshot.term);
    } else {
      // Otherwise the whole log is superseded.
      this.log.compact(snapshot.index, snapshot.term);
      if (this.log.lastIndex > snapshot.index) this.log.truncateFrom(snapshot.index + 1);
    }
    this.snapshot = snapshot;
    this.receivedSnapshot = snapshot;
    this.commit = snapshot.index;
    this.membership = snapshot.membership;
    this.membershipIndex = 0;
    this.refreshMembership();
    this.send({ type: 'installSnapshotReply', from: this.id, to: from, term: this.term, index: snapshot.index });
  }

  // --- replication: leader side ----------------------------------------------------------------

  private appendEntry(kind: Entry['kind'], data: Uint8Array, membership?: Membership): number {
    const entry: Entry =
      membership === undefined
        ? { index: this.log.lastIndex + 1, term: this.term, kind, data }
        : { index: this.log.lastIndex + 1, term: this.term, kind, data, membership };
    this.log.append(entry);
    if (membership !== undefined) this.setMembership(entry);
    this.maybeCommit();
    for (const peer of this.progress.keys()) this.sendAppend(peer, false);
    return entry.index;
  }

  private handleAppendReply(message: Extract<Message, { type: 'appendReply' }>): void {
    if (this.role !== 'leader') return;
    const progress = this.progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    progress.heardAtTick = this.ticks;
    if (message.readId > 0) this.ackReads(message.from, message.readId);
    if (message.success) {
      if (progress.state === 'replicate' && progress.inflight > 0) progress.inflight -= 1;
      if (message.matchIndex > progress.match) {
        progress.match = message.matchIndex;
        progress.advanced = true;
        if (progress.state === 'probe') {
          progress.state = 'replicate';
          progress.inflight = 0;
        }
      }
      progress.next = Math.max(progress.next, progress.match + 1);
      progress.paused = false;
      this.maybeCommit();
      if (message.from === this.transferee && progress.match === this.log.lastIndex) {
        this.send({ type: 'timeoutNow', from: this.id, to: message.from, term: this.term });
      }
      this.sendAppend(message.from, false);
      return;
    }
    // Refused. Stale refusals (for appends since superseded) change nothing.
    if (progress.state === 'replicate' ? message.matchIndex <= progress.match : message.matchIndex !== progress.next - 1) return;
    let next = message.hintIndex;
    if (message.hintTerm > 0) {
      // Fast back-off: if this log has entries of the follower's conflicting term, resume right
      // after the last of them; otherwise skip the whole conflicting term.
      const last = this.log.lastIndexOfTerm(message.hintTerm);
      if (last > 0) next = last + 1;
    }
    progress.next = Math.max(progress.match + 1, Math.min(next, message.matchIndex));
    progress.state = 'probe';
    progress.paused = false;
    progress.inflight = 0;
    this.sendAppend(message.from, true);
  }

  private handleInstallSnapshotReply(from: NodeId, index: number): void {
    if (this.role !== 'leader') return;
    const progress = this.progress.get(from);
    if (progress === undefined) return;
    progress.recentActive = true;
    progress.heardAtTick = this.ticks;
    if (index > progress.match) progress.match = index;
    progress.next = progress.match + 1;
    progress.state = 'probe';
    progress.paused = false;
    this.maybeCommit();
    this.sendAppend(from, false);
  }

  /** Sends `peer` what it lacks; with `allowEmpty`, a probe even when there is nothing new. */
  private sendAppend(peer: NodeId, allowEmpty: boolean): void {
    const progress = this.progress.get(peer);
    if (progress === undefined) return;
    if (progress.state === 'snapshot') return;
    if (progress.state === 'probe' && progress.paused) return;
    if (progress.state === 'replicate' && progress.inflight >= this.config.maxInflight) return;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.termAt(prevIndex);
    if (prevTerm === undefined) {
      // What the follower needs next was compacted away: send the snapshot instead.
      if (this.snapshot === undefined) return;
      progress.state = 'snapshot';
      progress.snapshotTicks = 0;
      this.send({ type: 'installSnapshot', from: this.id, to: peer, term: this.term, snapshot: this.snapshot });
      return;
    }
    const entries = this.log.slice(progress.next, progress.next + this.config.maxEntriesPerMessage - 1);
    if (entries.length === 0 && !allowEmpty) return;
    this.send({
      type: 'append',
      from: this.id,
      to: peer,
      term: this.term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.commit,
      readId: 0,
    });
    if (progress.state === 'replicate') {
      progress.next = prevIndex + entries.length + 1;
      progress.inflight += 1;
    } else {
      progress.paused = true;
    }
  }

  private broadcastHeartbeat(): void {
    const readId = this.pendingReads[this.pendingReads.length - 1]?.id ?? 0;
    for (const [peer, progress] of this.progress) {
      if (progress.state === 'snapshot') {
        progress.snapshotTicks += this.config.heartbeatTicks;
        if (progress.snapshotTicks >= this.config.electionTicksMin) {
          progress.state = 'probe';
          progress.paused = false;
        }
      }
      if (progress.state === 'replicate' && !progress.advanced && progress.match < this.log.lastIndex) {
        // Nothing acknowledged since the last heartbeat although entries are out: some were lost.
        progress.state = 'probe';
        progress.next = progress.match + 1;
        progress.inflight = 0;
      }
      progress.advanced = false;
      if (progress.state === 'probe') {
        progress.paused = false;
        this.sendAppend(peer, true);
        continue;
      }
      this.sendHeartbeat(peer, progress, readId);
    }
    if (readId > 0 && this.pendingReads.length > 0) {
      // Probes above carry no read id: acknowledge reads through any append reply of this round.
      for (const [peer, progress] of this.progress) if (progress.state !== 'replicate') this.sendHeartbeat(peer, progress, readId);
    }
  }

  /** A heartbeat at the known match point: it always fits, and carries the commit index (and a read round). */
  private sendHeartbeat(peer: NodeId, progress: Progress, readId: number): void {
    this.send({
      type: 'append',
      from: this.id,
      to: peer,
      term: this.term,
      prevIndex: progress.match,
      prevTerm: this.log.termAt(progress.match) ?? 0,
      entries: [],
      commit: Math.min(this.commit, progress.match),
      readId,
    });
  }

  private maybeCommit(): void {
    if (this.role !== 'leader') return;
    const matches = this.voters().map((voter) => (voter === this.id ? this.log.lastIndex : (this.progress.get(voter)?.match ?? 0)));
    matches.sort((a, b) => b - a);
    const index = matches[quorum(matches.length) - 1] ?? 0;
    // Only entries of the current term are committed by counting replicas (Figure 8).
    if (index > this.commit && this.log.termAt(index) === this.term) {
      this.commit = index;
      this.settleReads();
      // Tell followers the new commit index now rather than at the next heartbeat (an empty
      // append when they have every entry already): a follower applies a command one round trip
      // after it commits, not a heartbeat later.
      for (const peer of this.progress.keys()) this.sendAppend(peer, true);
    }
  }

  private quorumActive(): boolean {
    const voters = this.voters();
    let active = 0;
    for (const voter of voters) if (voter === this.id || this.progress.get(voter)?.recentActive === true) active += 1;
    return active >= quorum(voters.length);
  }

  // --- reads -----------------------------------------------------------------------------------

  private ackReads(from: NodeId, readId: number): void {
    if (!this.isVoter(from)) return;
    for (const read of this.pendingReads) if (read.id <= readId) read.acks.add(from);
    this.settleReads();
  }

  private settleReads(): void {
    const needed = quorum(this.voters().length);
    // Reads complete in order, and only once this term's first entry has committed.
    while (this.pendingReads.length > 0) {
      const read = this.pendingReads[0] as PendingRead;
      let acks = 0;
      for (const voter of this.voters()) if (read.acks.has(voter)) acks += 1;
      if (acks < needed || this.log.termAt(this.commit) !== this.term) return;
      this.pendingReads.shift();
      this.completedReads.push({ id: read.id, index: Math.max(read.index, this.commit) });
    }
  }

  // --- membership ------------------------------------------------------------------------------

  private voters(): readonly NodeId[] {
    return this.membership.voters;
  }

  private isVoter(id: NodeId): boolean {
    return this.membership.voters.includes(id);
  }

  /**
   * Voters campaign; so does a node that a membership change not yet committed has just removed:
   * the group may still need it to elect a leader (Raft dissertation §4.2.2). Its own vote then
   * does not count, as it is not in the membership the votes are counted in.
   */
  private mayCampaign(): boolean {
    return this.isVoter(this.id) || (this.membershipIndex > this.commit && this.membershipIndex > 0);
  }

  /** Everyone this node replicates to when it leads. */
  private peers(): NodeId[] {
    return [...this.membership.voters, ...this.membership.learners].filter((id) => id !== this.id);
  }

  private setMembership(entry: Entry): void {
    if (entry.membership === undefined) return;
    this.membership = entry.membership;
    this.membershipIndex = entry.index;
    if (this.role === 'leader') {
      for (const peer of this.peers()) if (!this.progress.has(peer)) this.progress.set(peer, this.newProgress());
      for (const peer of [...this.progress.keys()]) if (!this.peers().includes(peer)) this.progress.delete(peer);
      if (this.transferee !== NONE && !this.isVoter(this.transferee)) this.transferee = NONE;
    }
  }

  /** After a truncation or a snapshot: the membership is the newest one left in the log. */
  private refreshMembership(): void {
    const entry = this.log.lastMembershipEntry();
    if (entry?.membership !== undefined) {
      this.membership = entry.membership;
      this.membershipIndex = entry.index;
    } else {
      // Never the membership just truncated away: the one before it, from the snapshot or the start.
      this.membership = this.snapshot?.membership ?? this.initialMembership;
      this.membershipIndex = 0;
    }
  }

  private membershipAt(index: number): Membership {
    const entry = this.log.lastMembershipEntry(index);
    return entry?.membership ?? this.snapshot?.membership ?? this.initialMembership;
  }

  // --- helpers ---------------------------------------------------------------------------------

  private requireLeader(what: string): void {
    if (this.role !== 'leader') throw new NotLeaderError(this.leader, what);
    if (this.transferee !== NONE) throw new RaftBusyError(`${what}: leadership is being handed to node ${this.transferee}`);
  }

  private hardStateChanged(): boolean {
    return this.term !== this.persisted.term || this.vote !== this.persisted.vote || this.commit !== this.persisted.commit;
  }

  private send(message: Message): void {
    this.messages.push(message);
  }
}

function normalise(membership: Membership): Membership {
  const voters = [...new Set(membership.voters)].sort((a, b) => a - b);
  const learners = [...new Set(membership.learners)].filter((id) => !voters.includes(id)).sort((a, b) => a - b);
  return { voters, learners };
}

/** Throws unless `next` differs from `current` by one server (added, removed or promoted). */
function checkSingleChange(current: Membership, next: Membership): void {
  const a = normalise(current);
  const b = normalise(next);
  if (b.voters.length === 0) throw new Error('raft: a membership needs at least one voter');
  const all = new Set([...a.voters, ...a.learners, ...b.voters, ...b.learners]);
  let changed = 0;
  for (const id of all) {
    const before = a.voters.includes(id) ? 'voter' : a.learners.includes(id) ? 'learner' : 'none';
    const after = b.voters.includes(id) ? 'voter' : b.learners.includes(id) ? 'learner' : 'none';
    if (before !== after) changed += 1;
  }
  if (changed !== 1) throw new Error(`raft: a membership change must change exactly one server (this one changes ${changed})`);
}
