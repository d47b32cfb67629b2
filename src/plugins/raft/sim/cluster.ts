// An in-memory, deterministic Raft cluster: N cores (ids 1..N) wired to a simulated network and
// to simulated stable storage, driven tick by tick. Each node runs the host loop exactly as the
// core asks (persist, then send, then apply, then advance), and a crash throws away everything
// but what was persisted. Tests and the simulator both drive the core through this class.
//
// The N ids are slots: the group's initial membership may name only some of them (the others run
// idle until a membership change adds them), and membership changes may later add, promote and
// remove servers among the slots.

import { Rng } from '../../../kernel/rng.js';
import { NotLeaderError, Raft, RaftBusyError } from '../core/raft.js';
import {
  type Entry,
  type Membership,
  type Message,
  NONE,
  type NodeId,
  type RaftConfig,
  type Ready,
  type Snapshot,
  type Status,
} from '../core/types.js';
import { type MessageCounters, Network, type NetworkOptions } from './network.js';
import { NodeStorage, type PersistedView } from './storage.js';

/** Something the harness itself noticed: the core threw, or handed out a Ready it cannot honour. */
export interface HarnessFault {
  readonly node: NodeId;
  readonly kind: 'core-error' | 'apply-order' | 'log-gap' | 'stale-read';
  readonly detail: string;
}

/** Hooks for whoever checks the run (see checks.ts); every one is optional. */
export interface ClusterObserver {
  /** `message` is leaving `from`; `persisted` is that node's stable storage at this moment. */
  sent?(message: Message, persisted: PersistedView, tick: number): void;
  /** `node` wrote what `ready` asked to `log`, whose last index was `previousLast` before. */
  persisted?(node: NodeId, ready: Ready, previousLast: number, log: PersistedView, tick: number): void;
  /** `node` applied `entry` to its state machine. */
  applied?(node: NodeId, entry: Entry, tick: number): void;
  fault?(fault: HarnessFault, tick: number): void;
  /** The end of a tick, with the cluster quiet (every node's Ready handled). */
  tick?(cluster: ClusterView, tick: number): void;
}

/** One node as the checks see it. */
export interface NodeView {
  readonly id: NodeId;
  readonly up: boolean;
  /** The core's status; undefined while the node is down. */
  readonly status: Status | undefined;
  readonly persisted: PersistedView;
  /** The node's state machine: applied entries by index (rebuilt from the log after a restart). */
  readonly applied: ReadonlyMap<number, Entry>;
}

export interface ClusterView {
  readonly ids: readonly NodeId[];
  node(id: NodeId): NodeView;
}

export interface ClusterOptions {
  /** Node slots, ids 1..nodes. */
  readonly nodes: number;
  readonly seed: number;
  /** The group every node starts from (default: every slot a voter); ids must be within 1..nodes. */
  readonly membership?: Membership;
  readonly electionTicksMin?: number;
  readonly electionTicksMax?: number;
  readonly heartbeatTicks?: number;
  readonly maxEntriesPerMessage?: number;
  readonly maxInflight?: number;
  readonly network?: Partial<NetworkOptions>;
  readonly observer?: ClusterObserver;
}

/** Where a proposal went. */
export interface Proposal {
  readonly node: NodeId;
  readonly index: number;
  readonly term: number;
}

/** Rounds of zero-delay delivery within one tick before the rest waits for the next tick. */
const MAX_DELIVERY_ROUNDS = 64;

class SimNode {
  raft: Raft | undefined;
  readonly storage = new NodeStorage();
  applied = new Map<number, Entry>();
  /** Highest index applied (or covered by an applied snapshot). */
  appliedIndex = 0;
  /** Read-index rounds asked of this core: id → the highest index any node had applied by then. */
  reads = new Map<number, number>();

  constructor(readonly id: NodeId) {}
}

export class Cluster implements ClusterView {
  readonly ids: readonly NodeId[];
  readonly network: Network;
  readonly rng: Rng;
  /** The current tick. */
  now = 0;
  observer: ClusterObserver | undefined;
  /**
   * Asked after a node handled a message: true reboots it on the spot. Crashes between ticks
   * cannot land inside an exchange that completes within one tick; this can.
   */
  rebootAfter: ((id: NodeId, message: Message) => boolean) | undefined;
  /** Read-index rounds that completed (all checked against what was applied before they began). */
  readsServed = 0;
  private readonly nodes = new Map<NodeId, SimNode>();
  /** What a node with neither a snapshot nor a membership entry believes the group is. */
  readonly initialMembership: Membership;
  /** The highest index any node ever applied: what a client may have seen acknowledged. */
  private highestApplied = 0;
  /** State machines saved by compact(), by the name a snapshot's data carries. */
  private readonly savedStates = new Map<string, ReadonlyMap<number, Entry>>();

  constructor(private readonly options: ClusterOptions) {
    this.ids = Array.from({ length: options.nodes }, (_, i) => i + 1);
    this.rng = new Rng(options.seed);
    this.network = new Network(this.rng.fork(), options.network);
    this.observer = options.observer;
    this.initialMembership = initialMembership(this.ids, options.membership);
    for (const id of this.ids) {
      const node = new SimNode(id);
      this.nodes.set(id, node);
      this.boot(node);
    }
  }

  // ---- time ----

  /** Advances the clock `count` ticks: every live core ticks, then messages due are delivered. */
  tick(count = 1): void {
    for (let i = 0; i < count; i++) this.tickOnce();
  }

  /** Ticks until `predicate` holds (checked before each tick too); false if `maxTicks` pass first. */
  runUntil(predicate: () => boolean, maxTicks: number): boolean {
    for (let i = 0; i < maxTicks; i++) {
      if (predicate()) return true;
      this.tickOnce();
    }
    return predicate();
  }

  private tickOnce(): void {
    this.now += 1;
    for (const node of this.nodes.values()) {
      this.guard(node, (raft) => raft.tick());
    }
    this.deliverDue();
    this.observer?.tick?.(this, this.now);
  }

  /** Delivers what is due, including zero-delay replies to it, a bounded number of rounds. */
  private deliverDue(): void {
    for (let round = 0; round < MAX_DELIVERY_ROUNDS; round++) {
      const due = this.network.takeDue(this.now);
      if (due.length === 0) return;
      for (const message of due) this.deliver(message);
    }
  }

  private deliver(message: Message): void {
    const node = this.nodes.get(message.to);
    if (node?.raft === undefined) return;
    this.guard(node, (raft) => raft.step(message));
    if (node.raft !== undefined && this.rebootAfter?.(node.id, message) === true) {
      this.crash(node.id);
      this.restart(node.id);
    }
  }

  // ---- the host loop ----

  /**
   * Runs `action` on a live node's core and then handles its Ready. A throw is a fault, and
   * crashes the node; a refusal (NotLeaderError, RaftBusyError) goes back to the caller.
   */
  private guard(node: SimNode, action: (raft: Raft) => void): void {
    const raft = node.raft;
    if (raft === undefined) return;
    try {
      action(raft);
      this.drain(node, raft);
    } catch (error) {
      if (isRefusal(error)) throw error;
      this.fault({ node: node.id, kind: 'core-error', detail: describeError(error) });
      this.crash(node.id);
    }
  }

  private drain(node: SimNode, raft: Raft): void {
    while (raft.hasReady()) {
      const ready = raft.ready();
      const previousLast = node.storage.lastIndex();
      const gap = node.storage.persist(ready);
      if (gap !== undefined) this.fault({ node: node.id, kind: 'log-gap', detail: gap });
      this.observer?.persisted?.(node.id, ready, previousLast, node.storage, this.now);
      for (const message of ready.messages) this.send(node, message);
      this.apply(node, ready);
      this.settleReads(node, ready);
      raft.advance(ready);
    }
  }

  private send(node: SimNode, message: Message): void {
    this.observer?.sent?.(message, node.storage, this.now);
    this.network.send(message, this.now);
  }

  private apply(node: SimNode, ready: Ready): void {
    if (ready.snapshot !== undefined) this.restoreState(node, ready.snapshot);
    for (const entry of ready.committed) {
      if (entry.index !== node.appliedIndex + 1) {
        this.fault({ node: node.id, kind: 'apply-order', detail: `applied ${entry.index} after ${node.appliedIndex}` });
      }
      node.appliedIndex = entry.index;
      node.applied.set(entry.index, entry);
      this.highestApplied = Math.max(this.highestApplied, entry.index);
      this.observer?.applied?.(node.id, entry, this.now);
    }
  }

  /**
   * Replaces a node's state machine with a snapshot's. The snapshot's data names a saved copy of
   * the state machine it was taken from, so its contents are checked like any applied entry.
   */
  private restoreState(node: SimNode, snapshot: Snapshot): void {
    const state = this.savedStates.get(text(snapshot.data));
    if (state === undefined) {
      this.fault({ node: node.id, kind: 'core-error', detail: `snapshot at ${snapshot.index} with unknown data` });
      return;
    }
    node.applied = new Map(state);
    node.appliedIndex = snapshot.index;
    for (const entry of state.values()) this.observer?.applied?.(node.id, entry, this.now);
  }

  /**
   * A read is linearisable when its read index covers every write acknowledged before it was
   * asked for: anything lower could return state older than a write the client already saw.
   */
  private settleReads(node: SimNode, ready: Ready): void {
    for (const read of ready.reads) {
      const floor = node.reads.get(read.id);
      if (floor === undefined) {
        this.fault({ node: node.id, kind: 'stale-read', detail: `read ${read.id} completed but was never asked for (or twice)` });
        continue;
      }
      node.reads.delete(read.id);
      this.readsServed += 1;
      if (read.index < floor) {
        const detail = `read ${read.id} at index ${read.index}, but index ${floor} was applied before it was asked for`;
        this.fault({ node: node.id, kind: 'stale-read', detail });
      }
    }
  }

  /** Asks `id` for a read index; false when it refused (not the leader). */
  read(id: NodeId): boolean {
    const node = this.get(id);
    let readId = 0;
    try {
      this.guard(node, (core) => {
        readId = core.readIndex();
        // Recorded before the Ready is handled: a one-voter group may complete it at once.
        node.reads.set(readId, this.highestApplied);
      });
    } catch (error) {
      if (isRefusal(error)) return false;
      throw error;
    }
    return readId > 0;
  }

  /** Asks the leader to hand leadership to `to`; false when there is no leader or it refused. */
  transferLeadership(to: NodeId): boolean {
    const leader = this.leader();
    if (leader === undefined) return false;
    // The core rejects a target outside its voters as a caller error; here it is just a refusal.
    if (!(this.status(leader)?.membership.voters.includes(to) ?? false)) return false;
    try {
      this.guard(this.get(leader), (core) => core.transferLeadership(to));
    } catch (error) {
      if (isRefusal(error)) return false;
      throw error;
    }
    return true;
  }

  /**
   * Takes a snapshot of a node's state machine at what it has applied, and lets the core and the
   * node's storage drop the log up to there. False when there is nothing new to compact.
   */
  compact(id: NodeId): boolean {
    const node = this.get(id);
    const raft = node.raft;
    const index = node.appliedIndex;
    const term = node.storage.termAt(index);
    if (raft === undefined || index <= (node.storage.snapshot?.index ?? 0) || term === undefined) return false;
    const name = `state ${this.savedStates.size + 1}`;
    this.savedStates.set(name, new Map(node.applied));
    // The snapshot stored is the one the core made: its membership is the core's account of the
    // group as of `index` (not the current one, which may come from a later, uncommitted entry).
    let snapshot: Snapshot | undefined;
    this.guard(node, (core) => {
      snapshot = core.compact(index, bytes(name));
    });
    // A core that threw has been crashed by guard(); its storage keeps the log it had.
    if (node.raft === undefined || snapshot === undefined) return false;
    node.storage.compact(snapshot);
    return true;
  }

  private fault(fault: HarnessFault): void {
    this.observer?.fault?.(fault, this.now);
  }

  // ---- crashes ----

  /** Stops a node: its core, unsent messages and state machine are gone; its storage stays. */
  crash(id: NodeId): void {
    const node = this.get(id);
    node.raft = undefined;
    node.applied = new Map();
    node.appliedIndex = 0;
    node.reads = new Map();
  }

  /** Starts a crashed node again from what it had persisted. */
  restart(id: NodeId): void {
    const node = this.get(id);
    if (node.raft !== undefined) return;
    this.boot(node);
  }

  private boot(node: SimNode): void {
    const { storage } = node;
    node.applied = new Map();
    node.appliedIndex = 0;
    if (storage.snapshot !== undefined) this.restoreState(node, storage.snapshot);
    node.raft = new Raft(this.config(node.id), {
      hardState: storage.hardState,
      snapshot: storage.snapshot,
      entries: [...storage.entries],
      initialMembership: this.initialMembership,
    });
    this.guard(node, () => {});
  }

  private config(id: NodeId): RaftConfig {
    const random = this.rng.fork();
    const { electionTicksMin = 10, electionTicksMax = 20, heartbeatTicks = 2 } = this.options;
    return {
      id,
      electionTicksMin,
      electionTicksMax,
      heartbeatTicks,
      random: () => random.next(),
      maxEntriesPerMessage: this.options.maxEntriesPerMessage,
      maxInflight: this.options.maxInflight,
    };
  }

  isUp(id: NodeId): boolean {
    return this.get(id).raft !== undefined;
  }

  upNodes(): NodeId[] {
    return this.ids.filter((id) => this.isUp(id));
  }

  downNodes(): NodeId[] {
    return this.ids.filter((id) => !this.isUp(id));
  }

  // ---- network ----

  /**
   * Symmetric partition, replacing any earlier partition or one-way block: nodes talk only within
   * their group; a node named in no group is alone.
   */
  partition(...groups: readonly (readonly NodeId[])[]): void {
    this.network.heal();
    this.network.partition(this.ids, groups);
  }

  /** Cuts `id` off from every other node, both ways (on top of any existing partition). */
  isolate(id: NodeId): void {
    for (const other of this.ids) {
      this.network.blockLink(id, other);
      this.network.blockLink(other, id);
    }
  }

  /** Reconnects `id` to every node (other blocks stay). */
  reconnect(id: NodeId): void {
    for (const other of this.ids) {
      this.network.unblockLink(id, other);
      this.network.unblockLink(other, id);
    }
  }

  heal(): void {
    this.network.heal();
  }

  get counters(): MessageCounters {
    return this.network.counters;
  }

  // ---- observation ----

  node(id: NodeId): NodeView {
    const node = this.get(id);
    return { id, up: node.raft !== undefined, status: node.raft?.status(), persisted: node.storage, applied: node.applied };
  }

  /** Ticks since node `id` last had quorum contact (Raft.quorumContactTicks); undefined while it is down. */
  quorumContactTicks(id: NodeId): number | undefined {
    return this.get(id).raft?.quorumContactTicks();
  }

  status(id: NodeId): Status | undefined {
    return this.get(id).raft?.status();
  }

  /** The node's state machine: applied entries by index. */
  applied(id: NodeId): ReadonlyMap<number, Entry> {
    return this.get(id).applied;
  }

  /** The commands a node applied, in log order (no-ops and membership entries left out). */
  commands(id: NodeId): Uint8Array[] {
    const entries = [...this.get(id).applied.values()].sort((a, b) => a.index - b.index);
    return entries.filter((entry) => entry.kind === 'command').map((entry) => entry.data);
  }

  persisted(id: NodeId): PersistedView {
    return this.get(id).storage;
  }

  /** Live nodes that believe they lead, with their terms. */
  leaders(among: readonly NodeId[] = this.ids): { id: NodeId; term: number }[] {
    const found: { id: NodeId; term: number }[] = [];
    for (const id of among) {
      const status = this.status(id);
      if (status?.role === 'leader') found.push({ id, term: status.term });
    }
    return found;
  }

  /** The live leader with the highest term among `among` (a stale leader cut off elsewhere loses). */
  leader(among: readonly NodeId[] = this.ids): NodeId | undefined {
    let best: { id: NodeId; term: number } | undefined;
    for (const candidate of this.leaders(among)) {
      if (best === undefined || candidate.term > best.term) best = candidate;
    }
    return best?.id;
  }

  /** Terms of the live nodes among `among`. */
  terms(among: readonly NodeId[] = this.ids): number[] {
    return among.flatMap((id) => {
      const status = this.status(id);
      return status === undefined ? [] : [status.term];
    });
  }

  /** How many live nodes applied an entry at `index`. */
  committedCount(index: number, among: readonly NodeId[] = this.ids): number {
    return among.filter((id) => this.isUp(id) && this.get(id).appliedIndex >= index).length;
  }

  // ---- client actions ----

  /**
   * Proposes `data` at `target` (or at the current leader). Undefined when there is no leader or
   * the target turned out not to lead.
   */
  propose(target: NodeId | 'leader', data: Uint8Array): Proposal | undefined {
    const id = target === 'leader' ? this.leader() : target;
    if (id === undefined) return undefined;
    const node = this.get(id);
    const raft = node.raft;
    if (raft === undefined) return undefined;
    let index = 0;
    try {
      this.guard(node, (core) => {
        index = core.propose(data);
      });
    } catch (error) {
      if (isRefusal(error)) return undefined;
      throw error;
    }
    const term = node.raft?.status().term ?? 0;
    return index > 0 ? { node: id, index, term } : undefined;
  }

  /**
   * Proposes a new membership at `target` (or at the current leader). Throws what the core throws
   * when it turns the change down — NotLeaderError (also when there is no leader or the target is
   * down), RaftBusyError, or an Error for a change the core does not allow — and the node keeps
   * running: a refusal is an answer, not a fault. Anything thrown after the core began appending
   * is a fault, as for any other call.
   */
  proposeMembership(next: Membership, target: NodeId | 'leader' = 'leader'): Proposal {
    const id = target === 'leader' ? this.leader() : target;
    const node = id === undefined ? undefined : this.get(id);
    if (id === undefined || node?.raft === undefined) throw new NotLeaderError(NONE, 'change membership');
    let index = 0;
    let refusal: unknown;
    this.guard(node, (core) => {
      const before = core.status().lastIndex;
      try {
        index = core.proposeMembership(next);
      } catch (error) {
        if (core.status().lastIndex !== before) throw error;
        refusal = error;
      }
    });
    if (refusal !== undefined) throw refusal;
    // guard() crashed the node if the core threw while appending: the change is as good as lost.
    const term = node.raft?.status().term;
    if (index === 0 || term === undefined) throw new NotLeaderError(NONE, 'change membership');
    return { node: id, index, term };
  }

  /** The group as the current leader sees it (undefined with no leader). */
  members(): Membership | undefined {
    const leader = this.leader();
    return leader === undefined ? undefined : this.status(leader)?.membership;
  }

  /** Ticks until `count` live nodes (default: all live nodes) applied `index`. */
  waitCommitted(index: number, options: { count?: number; maxTicks?: number } = {}): boolean {
    const { maxTicks = 200 } = options;
    return this.runUntil(() => this.committedCount(index) >= (options.count ?? this.upNodes().length), maxTicks);
  }

  /**
   * Gets `data` committed on at least `count` nodes — or, with 'members', on every voter and
   * learner of the group as the leader sees it — re-proposing when a leader loses it (the classic
   * lab helper `one`). Returns its index, or undefined when `maxTicks` pass first.
   */
  replicate(data: Uint8Array, count: number | 'members', maxTicks = 1000): number | undefined {
    const deadline = this.now + maxTicks;
    const settle = 4 * (this.options.electionTicksMax ?? 20);
    while (this.now < deadline) {
      const proposal = this.propose('leader', data);
      if (proposal === undefined) {
        this.tick();
        continue;
      }
      const until = Math.min(deadline, this.now + settle);
      const done = this.runUntil(() => this.holdsAt(proposal.index, data, count) || this.lost(proposal), until - this.now);
      if (done && this.holdsAt(proposal.index, data, count)) return proposal.index;
    }
    return undefined;
  }

  /** True when `count` live nodes (or every member, with 'members') applied exactly `data` at `index`. */
  private holdsAt(index: number, data: Uint8Array, count: number | 'members'): boolean {
    const holders = this.upNodes().filter((id) => {
      const entry = this.get(id).applied.get(index);
      return entry !== undefined && sameBytes(entry.data, data);
    });
    if (count !== 'members') return holders.length >= count;
    const members = this.members();
    return members !== undefined && [...members.voters, ...members.learners].every((id) => holders.includes(id));
  }

  /** True when some node applied something else at the proposal's index: it will never commit. */
  private lost(proposal: Proposal): boolean {
    return this.upNodes().some((id) => {
      const entry = this.get(id).applied.get(proposal.index);
      return entry !== undefined && entry.term !== proposal.term;
    });
  }

  private get(id: NodeId): SimNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`cluster: no node ${id}`);
    return node;
  }
}

function initialMembership(ids: readonly NodeId[], given: Membership | undefined): Membership {
  if (given === undefined) return { voters: ids, learners: [] };
  for (const id of [...given.voters, ...given.learners]) {
    if (!ids.includes(id)) throw new Error(`cluster: member ${id} is not one of the node slots 1..${ids.length}`);
  }
  if (given.voters.length === 0) throw new Error('cluster: the initial membership needs a voter');
  return given;
}

/** One line: the message and where it was thrown (the simulator prints one line per failure). */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const frame = error.stack?.split('\n').find((line) => line.trimStart().startsWith('at '));
  return frame === undefined ? error.message : `${error.message} (${frame.trim()})`;
}

/** A request the core turned down (not a leader, or busy handing leadership over): not a fault. */
function isRefusal(error: unknown): boolean {
  return error instanceof NotLeaderError || error instanceof RaftBusyError;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function text(data: Uint8Array): string {
  return decoder.decode(data);
}
