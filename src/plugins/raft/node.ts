// One Raft member as a running service: the pure core driven by a real clock, its durable log
// store and the TCP transport. Everything that touches the core goes through one queue, so the
// host loop's rule holds (persist, then send, then apply, then advance, with no other call to the
// core in between): while a Ready is being made durable, ticks, messages and proposals wait.

import type { StateMachine } from '../../contracts/consensus.js';
import type { InternalPort } from '../../contracts/internal-port.js';
import { BusyError } from '../../kernel/errors.js';
import { RaftLogStore } from './adapters/log-store.js';
import type { ForwardMessage, ForwardReplyMessage, LiveMessage, WireMessage } from './adapters/messages.js';
import { type PeerAddress, TcpTransport } from './adapters/transport.js';
import { NotLeaderError, Raft } from './core/raft.js';
import { type Entry, type Membership, NONE, type NodeId, type Ready, type Status } from './core/types.js';

export interface RaftTiming {
  /** Length of one core tick. */
  readonly tickMs: number;
  /** Election timeout, randomised in [min, max). */
  readonly electionMinMs: number;
  readonly electionMaxMs: number;
  readonly heartbeatMs: number;
}

/** Applied entries whose results are kept for forwarded proposals answered late. */
const RECENT_RESULTS = 4096;
/** Terms whose leader this member remembers (for the log ids METRICS shows). */
const TERM_LEADERS = 64;

export const DEFAULT_TIMING: RaftTiming = { tickMs: 50, electionMinMs: 1000, electionMaxMs: 2000, heartbeatMs: 150 };

export interface RaftNodeOptions {
  readonly id: NodeId;
  /** Folder for raft.log and snapshot.bin. */
  readonly dir: string;
  readonly host: string;
  readonly port: number;
  /** Every voter of a new group with its Raft address (this node included); ignored after the first start. */
  readonly members: ReadonlyMap<NodeId, PeerAddress>;
  /**
   * This node joins a running group instead of starting one: it starts with no membership, never
   * campaigns on its own, and waits for the group's leader to add it (see changeMembership).
   */
  readonly joining?: boolean;
  readonly timing?: RaftTiming;
  /** Take a snapshot after this many applied entries since the last one. */
  readonly snapshotEvery?: number;
  readonly random?: () => number;
  readonly onProblem?: (problem: string) => void;
  /** Called when this member's role, term or known leader changes (for logs and metrics). */
  readonly onRoleChange?: (status: Status) => void;
}

/** A proposal waiting for its entry to be applied here. */
interface Waiting {
  readonly term: number;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** Thrown to proposals whose entry was replaced by another leader's: they may be retried. */
export class ProposalDroppedError extends BusyError {
  constructor(index: number) {
    super('PROPOSAL_DROPPED', `the proposal at index ${index} was overwritten after a change of leader; retry it`, { details: { index } });
  }
}

export class RaftNode {
  readonly id: NodeId;
  private readonly options: RaftNodeOptions;
  private readonly timing: RaftTiming;
  private readonly store: RaftLogStore;
  private readonly raft: Raft;
  private transport: TcpTransport | undefined;
  private machine: StateMachine | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly queue: (() => void)[] = [];
  private driving = false;
  private stopped = false;
  private readonly waiting = new Map<number, Waiting>();
  private readonly reads = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private appliedSinceSnapshot = 0;
  private lastApplied = 0;
  private failure: Error | undefined;
  private lastRole = '';
  /** Proposals forwarded to the leader, by request id, until it says which entry they became. */
  private readonly forwarded = new Map<
    number,
    { resolve: (result: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }
  >();
  private lastForwardId = 0;
  /** Results of recently applied entries, for forwarded proposals whose answer comes after the apply. */
  private readonly recentResults = new Map<number, { readonly term: number; readonly result: unknown }>();
  /** Where each member's Raft listener is, as far as this member knows (itself included once bound). */
  private readonly addresses = new Map<NodeId, PeerAddress>();
  /** The leader of each recent term, as this member saw it (the core keeps only the current one). */
  private readonly termLeaders = new Map<number, NodeId>();
  /** Host ticks since start: the clock of the liveness reports (the same period as the core's). */
  private hostTicks = 0;
  /** Ticks within which a member must have been heard from to count as live. */
  private readonly liveWindowTicks: number;
  /** Leader: what it last told its followers, and when. */
  private lastReport: { readonly members: string; readonly atTick: number } | undefined;
  /** Follower: the latest liveness report of a leader. */
  private report:
    | { readonly from: NodeId; readonly term: number; readonly members: readonly NodeId[]; readonly atTick: number }
    | undefined;

  private constructor(options: RaftNodeOptions, store: RaftLogStore) {
    this.id = options.id;
    this.options = options;
    this.timing = options.timing ?? DEFAULT_TIMING;
    this.store = store;
    const stored = store.state();
    const voters = [...options.members.keys()].sort((a, b) => a - b);
    const initialMembership: Membership =
      options.joining === true ? { voters: [], learners: [] } : { voters: voters.length === 0 ? [options.id] : voters, learners: [] };
    const ticks = (ms: number): number => Math.max(1, Math.round(ms / this.timing.tickMs));
    this.raft = new Raft(
      {
        id: options.id,
        electionTicksMin: ticks(this.timing.electionMinMs),
        electionTicksMax: Math.max(ticks(this.timing.electionMaxMs), ticks(this.timing.electionMinMs) + 1),
        heartbeatTicks: ticks(this.timing.heartbeatMs),
        random: options.random ?? Math.random,
      },
      { ...stored, initialMembership },
    );
    this.lastApplied = stored.snapshot?.index ?? 0;
    // A member is live when it answered within the shortest election timeout: long enough for
    // several lost heartbeats, short enough that a stopped node drops out within about a second.
    this.liveWindowTicks = ticks(this.timing.electionMinMs);
    for (const [id, address] of options.members) this.addresses.set(id, address);
  }

  /** Opens the store, binds the Raft port and starts the clock. */
  static async start(options: RaftNodeOptions, machine: StateMachine): Promise<RaftNode> {
    const node = new RaftNode(options, RaftLogStore.open(options.dir));
    node.machine = machine;
    const snapshot = node.store.state().snapshot;
    if (snapshot !== undefined) machine.restore(snapshot.data);
    try {
      node.transport = await TcpTransport.listen({
        id: options.id,
        host: options.host,
        port: options.port,
        onMessage: (message) => node.enqueue(() => node.receive(message)),
        ...(options.onProblem === undefined ? {} : { onProblem: options.onProblem }),
      });
    } catch (error) {
      node.store.close();
      throw error;
    }
    // Its own address as the group knows it (cluster.nodes), else where it is bound.
    const advertised = options.members.get(options.id);
    if (advertised === undefined || advertised.port === 0)
      node.addresses.set(options.id, { host: advertised?.host ?? options.host, port: node.transport.port });
    for (const [id, address] of options.members) if (id !== options.id) node.transport.setPeer(id, address);
    node.timer = setInterval(() => node.enqueue(() => node.tick()), node.timing.tickMs);
    // A group of one cannot disrupt anybody: it elects itself at once instead of after a timeout.
    const voters = node.raft.status().membership.voters;
    if (voters.length === 1 && voters[0] === options.id) node.enqueue(() => node.raft.campaign());
    else node.enqueue(() => undefined);
    return node;
  }

  /** The listener Raft shares with node-to-node requests (src/contracts/internal-port.ts). */
  get internalPort(): InternalPort {
    if (this.transport === undefined) throw new Error('the raft node is not started');
    return this.transport.internalPort;
  }

  /** The port the transport listens on (useful with port 0). */
  get port(): number {
    return this.transport?.port ?? this.options.port;
  }

  /** On a leader, milliseconds since member `id` last answered it (see Raft.silenceTicks); undefined elsewhere. */
  memberSilenceMs(id: NodeId): number | undefined {
    const ticks = this.raft.silenceTicks(id);
    return ticks === undefined ? undefined : ticks * this.timing.tickMs;
  }

  /** Milliseconds since this member last had contact with a quorum (see Raft.quorumContactTicks). */
  quorumContactAgeMs(): number {
    return this.raft.quorumContactTicks() * this.timing.tickMs;
  }

  /**
   * The members known to be up, this one included, in ascending id order. A leader names the
   * voters that answered it within the longest election timeout. A follower cannot see the others
   * itself, so the leader sends it that list (a `live` message, when it changes and at least every
   * quarter window); a follower whose leader is live answers with the leader's latest list from
   * within the window, or with just its leader and itself when it has none. Without a live leader
   * a member knows only of itself. Each answer names only members someone heard from within the
   * window: it may miss a member that is up, never names one nobody has heard from.
   */
  liveMembers(): readonly NodeId[] {
    const status = this.raft.status();
    if (status.role === 'leader') return this.raft.liveVoters(this.liveWindowTicks);
    const leaderLive = status.role === 'follower' && status.leader !== NONE && this.raft.quorumContactTicks() <= this.liveWindowTicks;
    if (!leaderLive) return [this.id];
    const report = this.report;
    const fresh = report !== undefined && report.from === status.leader && report.term === status.term;
    const known = fresh && this.hostTicks - report.atTick <= this.liveWindowTicks ? report.members : [status.leader];
    // Only current voters: a report from before a removal may still name the removed node.
    const voters = new Set(status.membership.voters);
    return [...new Set([...known, status.leader, this.id])].filter((id) => id === this.id || voters.has(id)).sort((a, b) => a - b);
  }

  /** The storage failure that stopped this member, if one did. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Where a member's Raft listener is, if this member knows. */
  addressOf(id: NodeId): PeerAddress | undefined {
    return this.addresses.get(id);
  }

  /** The term of the entry at `index`, while the log (or the snapshot at its start) still holds it. */
  termAt(index: number): number | undefined {
    return this.raft.termAt(index);
  }

  /** Which member led `term`, if this member saw it lead (NONE otherwise, e.g. before a restart). */
  leaderOf(term: number): NodeId {
    return this.termLeaders.get(term) ?? NONE;
  }

  /**
   * Replicates `command`; resolves with the state machine's result once it is committed and
   * applied here. A follower forwards it to the leader it knows of; with no leader known (an
   * election under way) it rejects with NotLeaderError, which may be retried.
   */
  propose(command: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.enqueue(() => {
        if (this.failure !== undefined) {
          reject(this.failure);
          return;
        }
        const status = this.raft.status();
        if (status.role !== 'leader' && status.leader !== NONE) {
          this.forward(status.leader, command, resolve, reject);
          return;
        }
        try {
          const index = this.raft.propose(command);
          this.waiting.set(index, { term: this.raft.status().term, resolve, reject });
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  }

  private forward(leader: NodeId, command: Uint8Array, resolve: (result: unknown) => void, reject: (error: Error) => void): void {
    const id = ++this.lastForwardId;
    // No answer within two election timeouts: the leader is gone or unreachable; the caller may retry.
    const timer = setTimeout(() => {
      this.forwarded.delete(id);
      reject(new NotLeaderError(NONE, `propose (forwarded to node ${leader}, no answer)`));
    }, 2 * this.timing.electionMaxMs);
    timer.unref();
    this.forwarded.set(id, { resolve, reject, timer });
    this.transport?.send({ type: 'forward', from: this.id, to: leader, term: 0, id, command });
  }

  /** Everything the transport delivers: Raft messages for the core, forwarded proposals for this host. */
  private receive(message: WireMessage): void {
    if (message.type === 'forward') this.answerForward(message);
    else if (message.type === 'forwardReply') this.settleForward(message);
    else if (message.type === 'live') this.noteLiveReport(message);
    else this.raft.step(message);
  }

  private tick(): void {
    this.hostTicks += 1;
    this.raft.tick();
    this.reportLiveness();
  }

  /**
   * Leader: tells every other member which voters it hears from, when that changes and at least
   * every quarter of the liveness window, so that a follower's report is never older than the
   * window while its leader is live. A few bytes per member; no Raft state rides on it.
   */
  private reportLiveness(): void {
    const status = this.raft.status();
    if (status.role !== 'leader' || this.transport === undefined) return;
    const members = this.raft.liveVoters(this.liveWindowTicks);
    const key = `${status.term}:${members.join(',')}`;
    const every = Math.max(1, Math.floor(this.liveWindowTicks / 4));
    if (this.lastReport !== undefined && this.lastReport.members === key && this.hostTicks - this.lastReport.atTick < every) return;
    this.lastReport = { members: key, atTick: this.hostTicks };
    for (const peer of status.progress?.keys() ?? [])
      this.transport.send({ type: 'live', from: this.id, to: peer, term: status.term, members });
  }

  private noteLiveReport(message: LiveMessage): void {
    this.report = { from: message.from, term: message.term, members: message.members, atTick: this.hostTicks };
  }

  private answerForward(message: ForwardMessage): void {
    const reply = (index: number, entryTerm: number, error: string): void =>
      this.transport?.send({
        type: 'forwardReply',
        from: this.id,
        to: message.from,
        term: 0,
        id: message.id,
        index,
        entryTerm,
        error,
        leader: this.raft.status().leader,
      });
    try {
      const index = this.raft.propose(message.command);
      reply(index, this.raft.status().term, '');
    } catch (error) {
      reply(0, 0, (error as Error).message);
    }
  }

  private settleForward(message: ForwardReplyMessage): void {
    const pending = this.forwarded.get(message.id);
    if (pending === undefined) return;
    this.forwarded.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error !== '') {
      pending.reject(new NotLeaderError(message.leader === this.id ? NONE : message.leader, `propose (forwarded): ${message.error}`));
      return;
    }
    // Resolve once this member has applied the entry itself (it may already have).
    const done = this.recentResults.get(message.index);
    if (done !== undefined) {
      if (done.term === message.entryTerm) pending.resolve(done.result);
      else pending.reject(new ProposalDroppedError(message.index));
      return;
    }
    if (message.index <= this.lastApplied) {
      pending.reject(new ProposalDroppedError(message.index));
      return;
    }
    this.waiting.set(message.index, { term: message.entryTerm, resolve: pending.resolve, reject: pending.reject });
  }

  /** Resolves once the local state machine reflects every write committed before this call. */
  readBarrier(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.enqueue(() => {
        try {
          this.reads.set(this.raft.readIndex(), { resolve, reject });
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  }

  /** Hands leadership to another voter (used before a graceful stop). */
  transferLeadership(to: NodeId): void {
    this.enqueue(() => this.raft.transferLeadership(to));
  }

  /**
   * Changes the group's membership by one server (add a learner, promote one, remove a member);
   * resolves once the change is committed and applied here. Leader only. `address` is where a new
   * member's Raft listener is.
   */
  changeMembership(next: Membership, address?: { readonly id: NodeId; readonly at: PeerAddress }): Promise<void> {
    if (address !== undefined) this.setPeer(address.id, address.at);
    return new Promise((resolve, reject) => {
      this.enqueue(() => {
        try {
          const index = this.raft.proposeMembership(next);
          this.waiting.set(index, { term: this.raft.status().term, resolve: () => resolve(), reject });
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  }

  status(): Status {
    return this.raft.status();
  }

  /** Where a peer's Raft listener is (for members added later). */
  setPeer(id: NodeId, address: PeerAddress): void {
    if (id !== this.id) this.addresses.set(id, address);
    this.transport?.setPeer(id, address);
  }

  /**
   * Stops this member. A leader first hands leadership over (unless `handOver` is false, which
   * stops it as abruptly as a crash would, for tests and benchmarks).
   */
  async stop(options: { readonly handOver?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (options.handOver !== false) await this.handOver();
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    // Let a drive in progress finish its save before the files close.
    while (this.driving) await new Promise((resolve) => setTimeout(resolve, 5));
    const stopping = new NotLeaderError(NONE, 'this node is stopping');
    for (const waiting of this.waiting.values()) waiting.reject(stopping);
    this.waiting.clear();
    for (const read of this.reads.values()) read.reject(stopping);
    this.reads.clear();
    for (const pending of this.forwarded.values()) {
      clearTimeout(pending.timer);
      pending.reject(stopping);
    }
    this.forwarded.clear();
    await this.transport?.close();
    this.store.close();
  }

  /**
   * A leader that stops hands leadership to the most up-to-date other voter first, so the group
   * does not wait an election timeout; it gives up after one minimum election timeout.
   */
  private async handOver(): Promise<void> {
    const status = this.raft.status();
    if (status.role !== 'leader' || this.failure !== undefined) return;
    let best: NodeId = NONE;
    let bestMatch = -1;
    for (const [id, progress] of status.progress ?? []) {
      if (status.membership.voters.includes(id) && progress.match > bestMatch) {
        best = id;
        bestMatch = progress.match;
      }
    }
    if (best === NONE) return;
    this.transferLeadership(best);
    const deadline = Date.now() + this.timing.electionMinMs;
    while (Date.now() < deadline && this.raft.status().role === 'leader')
      await new Promise((resolve) => setTimeout(resolve, this.timing.tickMs));
  }

  // --- the host loop ---------------------------------------------------------------------------

  private enqueue(work: () => void): void {
    if (this.stopped) return;
    this.queue.push(work);
    if (!this.driving) void this.drive();
  }

  private async drive(): Promise<void> {
    this.driving = true;
    try {
      while (!this.stopped) {
        for (let work = this.queue.shift(); work !== undefined; work = this.queue.shift()) work();
        if (!this.raft.hasReady()) break;
        const ready = this.raft.ready();
        if (ready.hardState !== undefined || ready.snapshot !== undefined || ready.entries.length > 0) await this.store.save(ready);
        for (const message of ready.messages) this.transport?.send(message);
        this.applyReady(ready);
        this.raft.advance(ready);
        this.maybeSnapshot();
        this.noticeRoleChange();
      }
      this.noticeRoleChange();
    } catch (error) {
      // A failed fdatasync: nothing after it can be trusted; stop taking part.
      this.failure = error as Error;
      this.options.onProblem?.(`raft: storage failed, this node stops: ${(error as Error).message}`);
      if (this.timer !== undefined) clearInterval(this.timer);
    } finally {
      this.driving = false;
    }
  }

  private applyReady(ready: Ready): void {
    const machine = this.machine;
    if (ready.snapshot !== undefined) {
      machine?.restore(ready.snapshot.data);
      this.lastApplied = ready.snapshot.index;
      for (const [index, waiting] of this.waiting) {
        if (index <= ready.snapshot.index) {
          waiting.reject(new ProposalDroppedError(index));
          this.waiting.delete(index);
        }
      }
    }
    for (const entry of ready.committed) this.applyEntry(entry);
    for (const read of ready.reads) {
      // Reads complete after the entries of the same Ready are applied, so applied ≥ index holds.
      this.reads.get(read.id)?.resolve();
      this.reads.delete(read.id);
    }
  }

  private applyEntry(entry: Entry): void {
    if (entry.index <= this.lastApplied) return;
    this.lastApplied = entry.index;
    this.appliedSinceSnapshot += 1;
    const result = entry.kind === 'command' ? this.machine?.apply(entry.data, entry.index) : undefined;
    this.recentResults.set(entry.index, { term: entry.term, result });
    if (this.recentResults.size > RECENT_RESULTS) {
      const oldest = this.recentResults.keys().next().value;
      if (oldest !== undefined) this.recentResults.delete(oldest);
    }
    const waiting = this.waiting.get(entry.index);
    if (waiting === undefined) return;
    this.waiting.delete(entry.index);
    if (waiting.term === entry.term) waiting.resolve(result);
    else waiting.reject(new ProposalDroppedError(entry.index));
  }

  private noticeRoleChange(): void {
    const status = this.raft.status();
    const key = `${status.role}/${status.term}/${status.leader}`;
    if (key === this.lastRole) return;
    this.lastRole = key;
    if (status.leader !== NONE && this.termLeaders.get(status.term) !== status.leader) {
      this.termLeaders.set(status.term, status.leader);
      if (this.termLeaders.size > TERM_LEADERS) {
        const oldest = this.termLeaders.keys().next().value;
        if (oldest !== undefined) this.termLeaders.delete(oldest);
      }
    }
    this.options.onRoleChange?.(status);
  }

  private maybeSnapshot(): void {
    const every = this.options.snapshotEvery ?? 10_000;
    if (this.machine === undefined || this.appliedSinceSnapshot < every || this.machine.snapshotReady?.() === false) return;
    // The state machine has applied exactly up to `applied` (this runs right after advance()).
    const snapshot = this.raft.compact(this.raft.status().applied, this.machine.snapshot());
    if (snapshot !== undefined) this.store.saveSnapshot(snapshot);
    this.appliedSinceSnapshot = 0;
  }
}
