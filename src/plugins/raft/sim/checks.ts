// Raft's safety properties, checked against a running cluster. The checker watches four
// streams — messages as they leave a node (with what that node had persisted), log writes,
// entries as they are applied, and the whole cluster at the end of each tick — and keeps the
// history it needs (who led which term, what was committed, which entry sits at each index and
// term) so that a property broken at any moment is caught. The per-tick work is incremental, so
// long runs stay linear; checkAll() redoes everything from scratch, for the end of a run.
//
// Membership changes: the group a property is judged against is the one the committed log
// implies (its newest committed membership entry at or before the index in question, else the
// initial one). Each node must also run with the membership its own log implies, and each
// snapshot must record the membership in effect at its index.

import type { Entry, Membership, Message, NodeId, Ready, Snapshot } from '../core/types.js';
import { type ClusterObserver, type ClusterView, type HarnessFault, type NodeView, sameBytes } from './cluster.js';
import type { PersistedView } from './storage.js';

export type ViolationKind =
  /** Two leaders in one term. */
  | 'election-safety'
  /** Two logs agree on an entry's (index, term) but not on everything before it, or on the entry itself. */
  | 'log-matching'
  /** A leader whose log lacks an entry committed before its term. */
  | 'leader-completeness'
  /** Two nodes (or one node, before and after a restart) applied different entries at one index. */
  | 'state-machine-safety'
  /** A committed entry that is no longer on the persisted logs of a quorum (of the membership in effect; see checkCommittedKept). */
  | 'committed-lost'
  /** A node running with a membership its own log does not imply, or a snapshot recording the wrong one. */
  | 'membership'
  /** A message that depends on state the sender had not persisted yet. */
  | 'durability'
  /** The harness caught the core throwing, applying out of order, leaving a gap in its log, or serving a stale read. */
  | HarnessFault['kind']
  /** After healing everything, no leader, or no new proposal committed, within the bound. */
  | 'liveness';

export interface Violation {
  readonly kind: ViolationKind;
  readonly detail: string;
  readonly tick: number;
}

interface Committed {
  readonly entry: Entry;
  /**
   * The highest term any node had reached when the entry was first seen applied: whichever
   * leader committed it had a term no higher, so every leader of a higher term must hold it.
   */
  readonly termBound: number;
}

/** The first entry seen persisted at some (index, term), and the term of the entry before it. */
interface Placed {
  readonly entry: Entry;
  readonly prevTerm: number | undefined;
  readonly node: NodeId;
}

export class SafetyChecker implements ClusterObserver {
  readonly violations: Violation[] = [];
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly committed = new Map<number, Committed>();
  private highestTerm = 0;
  /** Violations already reported, so that a lasting one is reported once rather than every tick. */
  private readonly reported = new Set<string>();
  /** Per (leader, term): committed indexes already found in that leader's log (it only grows). */
  private readonly completeUpTo = new Map<string, number>();
  /** Every (index, term) ever persisted anywhere: log matching, one entry at a time. */
  private readonly placed = new Map<string, Placed>();
  /** Committed entries from this index on need their quorum counted again (a log lost entries, or they are new). */
  private recountFrom = Number.POSITIVE_INFINITY;
  /** Indexes of the committed membership entries, ascending. */
  private readonly committedConfigs: number[] = [];
  /** Persisted snapshots whose membership has been checked. */
  private readonly checkedSnapshots = new WeakSet<Snapshot>();
  /** The group before any membership entry; undefined: every node of the cluster votes. */
  private readonly initial: Membership | undefined;
  /** With no initial membership given, the quorum among all the cluster's nodes (as the checker always had). */
  private readonly fixedQuorum: number | undefined;

  /**
   * `initial` is the group every node starts from. A number instead is the quorum among all the
   * cluster's nodes, every one of them a voter (the checker's original form, for a group that
   * never changes).
   */
  constructor(initial: number | Membership) {
    if (typeof initial === 'number') {
      this.initial = undefined;
      this.fixedQuorum = initial;
    } else {
      this.initial = initial;
      this.fixedQuorum = undefined;
    }
  }

  get ok(): boolean {
    return this.violations.length === 0;
  }

  report(kind: ViolationKind, detail: string, tick: number): void {
    const key = `${kind}:${detail}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.violations.push({ kind, detail, tick });
  }

  // ---- streams ----

  sent(message: Message, persisted: PersistedView, tick: number): void {
    if (message.type === 'preVote' || message.type === 'preVoteReply') return;
    this.highestTerm = Math.max(this.highestTerm, message.term);
    if (message.type === 'append' || message.type === 'installSnapshot' || message.type === 'timeoutNow') {
      this.noteLeader(message.term, message.from, tick);
    }
    const problem = durabilityProblem(message, persisted);
    if (problem !== undefined) this.report('durability', `${describe(message)}: ${problem}`, tick);
  }

  /**
   * `node` wrote `ready` to `log`, whose last index was `previousLast` before. Each new entry is
   * checked against the first one persisted anywhere at its (index, term): same content, same
   * term before it. By induction that is exactly log matching, at a cost per entry written.
   */
  persisted(node: NodeId, ready: Ready, previousLast: number, log: PersistedView, tick: number): void {
    const first = ready.entries[0];
    if (ready.snapshot !== undefined) this.recountFrom = Math.min(this.recountFrom, ready.snapshot.index + 1);
    if (first !== undefined && first.index <= previousLast) this.recountFrom = Math.min(this.recountFrom, first.index);
    for (const entry of ready.entries) this.place(node, entry, log, tick);
  }

  private place(node: NodeId, entry: Entry, log: PersistedView, tick: number): void {
    const prevTerm = entry.index === 1 ? 0 : log.termAt(entry.index - 1);
    const key = `${entry.index}:${entry.term}`;
    const known = this.placed.get(key);
    if (known === undefined) {
      this.placed.set(key, { entry, prevTerm, node });
      return;
    }
    if (!sameEntry(known.entry, entry)) {
      const detail = `node ${node} persisted ${describeEntry(entry)}, node ${known.node} ${describeEntry(known.entry)}`;
      this.report('log-matching', detail, tick);
    } else if (prevTerm !== undefined && known.prevTerm !== undefined && prevTerm !== known.prevTerm) {
      const detail = `${describeEntry(entry)} follows term ${prevTerm} on node ${node} but term ${known.prevTerm} on node ${known.node}`;
      this.report('log-matching', detail, tick);
    }
  }

  applied(node: NodeId, entry: Entry, tick: number): void {
    const known = this.committed.get(entry.index);
    if (known === undefined) {
      this.committed.set(entry.index, { entry, termBound: this.highestTerm });
      this.recountFrom = Math.min(this.recountFrom, entry.index);
      if (entry.kind === 'membership') this.committedConfigs.splice(this.configsAfter(entry.index), 0, entry.index);
      return;
    }
    if (!sameEntry(known.entry, entry)) {
      const detail = `node ${node} applied ${describeEntry(entry)} where ${describeEntry(known.entry)} was applied before`;
      this.report('state-machine-safety', detail, tick);
    }
  }

  fault(fault: HarnessFault, tick: number): void {
    this.report(fault.kind, `node ${fault.node}: ${fault.detail}`, tick);
  }

  tick(cluster: ClusterView, tick: number): void {
    this.check(cluster, tick);
  }

  // ---- whole-cluster checks ----

  /** The whole-cluster checks, done incrementally (cheap enough for every step). */
  check(cluster: ClusterView, tick: number): void {
    const views = cluster.ids.map((id) => cluster.node(id));
    this.checkLeaders(views, tick);
    this.checkLeaderCompleteness(views, tick);
    this.checkMemberships(cluster, views, tick);
    this.checkCommittedKept(cluster, views, tick, this.recountFrom);
    this.recountFrom = Number.POSITIVE_INFINITY;
  }

  /** Everything from scratch, including pairwise log matching (for the end of a run, and tests). */
  checkAll(cluster: ClusterView, tick: number): void {
    this.check(cluster, tick);
    this.checkLogMatching(cluster, tick);
    this.checkCommittedKept(
      cluster,
      cluster.ids.map((id) => cluster.node(id)),
      tick,
      1,
    );
  }

  private noteLeader(term: number, id: NodeId, tick: number): void {
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) this.leaderOfTerm.set(term, id);
    else if (known !== id) this.report('election-safety', `nodes ${known} and ${id} both led term ${term}`, tick);
  }

  private checkLeaders(views: readonly NodeView[], tick: number): void {
    for (const { id, status } of views) {
      if (status === undefined) continue;
      this.highestTerm = Math.max(this.highestTerm, status.term);
      if (status.role === 'leader') this.noteLeader(status.term, id, tick);
    }
  }

  private checkLogMatching(cluster: ClusterView, tick: number): void {
    const ids = cluster.ids;
    for (let i = 0; i < ids.length; i++) {
      for (let j = i + 1; j < ids.length; j++) {
        const a = cluster.node(ids[i] as NodeId);
        const b = cluster.node(ids[j] as NodeId);
        const problem = logMatchingProblem(a.persisted, b.persisted);
        if (problem !== undefined) this.report('log-matching', `nodes ${a.id} and ${b.id}: ${problem}`, tick);
      }
    }
  }

  private checkLeaderCompleteness(views: readonly NodeView[], tick: number): void {
    for (const view of views) {
      const id = view.id;
      if (view.status?.role !== 'leader') continue;
      const term = view.status.term;
      const key = `${id}:${term}`;
      let index = (this.completeUpTo.get(key) ?? 0) + 1;
      for (let known = this.committed.get(index); known !== undefined; known = this.committed.get(++index)) {
        if (known.termBound < term && !holds(view.persisted, known.entry)) {
          this.report('leader-completeness', `leader ${id} of term ${term} lacks committed ${describeEntry(known.entry)}`, tick);
        }
      }
      this.completeUpTo.set(key, index - 1);
    }
  }

  /**
   * Every committed entry from `from` on must still be where no future leader can be elected
   * without it. With the group changing one server at a time, that is, for an entry at index i:
   *
   * - on a quorum of the voters of every membership committed at an index ≥ i (its own included,
   *   when it is a membership entry): such a membership entry was first committed by a leader
   *   whose newest membership was that very one (a leader appends no further change before it
   *   knows the last one committed), so a quorum of it holds that entry and hence, by log
   *   matching, this earlier one;
   * - on enough voters of the membership in effect at i (committed before it) that they cannot
   *   form a quorum without a holder. Not necessarily on a quorum of them: the leader may have
   *   committed the entry under the next membership, appended after it and never committed
   *   (4 voters and a fifth being promoted: 3 of 5 may include only 2 of the 4). One server
   *   apart, though, every quorum of the one meets every quorum of the other in a holder.
   *
   * Once a membership entry at j commits, earlier entries are checked against it only when their
   * count is redone (a log lost entries from below j), since they are on every log that holds j.
   * With no membership given (a number), every node votes and the quorum is the given one.
   */
  private checkCommittedKept(cluster: ClusterView, views: readonly NodeView[], tick: number, from: number): void {
    if (from === Number.POSITIVE_INFINITY) return;
    for (let index = from, known = this.committed.get(index); known !== undefined; known = this.committed.get(++index)) {
      const entry = known.entry;
      const own = this.configIndexAt(index);
      const ownVoters = this.votersOf(own, cluster);
      const ownQuorum = this.quorumOf(own, ownVoters);
      // Strict when the entry itself is the membership, or when no membership was given.
      const needed = own === index || this.initial === undefined ? ownQuorum : ownVoters.length - ownQuorum + 1;
      this.requireHolders(views, entry, ownVoters, needed, own, tick);
      for (let at = this.configsAfter(index); at < this.committedConfigs.length; at++) {
        const later = this.committedConfigs[at] as number;
        const voters = this.votersOf(later, cluster);
        this.requireHolders(views, entry, voters, this.quorumOf(later, voters), later, tick);
      }
    }
  }

  private requireHolders(
    views: readonly NodeView[],
    entry: Entry,
    voters: readonly NodeId[],
    needed: number,
    configIndex: number,
    tick: number,
  ): void {
    let holders = 0;
    for (const view of views) if (voters.includes(view.id) && holds(view.persisted, entry)) holders += 1;
    if (holders >= needed) return;
    const group = configIndex === 0 ? 'the initial membership' : `the membership of entry ${configIndex}`;
    const detail = `${describeEntry(entry)} is on ${holders} persisted logs of the ${voters.length} voters of ${group}, fewer than ${needed}`;
    this.report('committed-lost', detail, tick);
  }

  /**
   * Each live node runs with the membership its persisted log implies (the core's log and the
   * persisted one agree once every Ready is handled), and each snapshot on stable storage records
   * the membership the committed log implies at the snapshot's index.
   */
  private checkMemberships(cluster: ClusterView, views: readonly NodeView[], tick: number): void {
    for (const view of views) {
      const snapshot = view.persisted.snapshot;
      if (snapshot !== undefined && !this.checkedSnapshots.has(snapshot) && this.committed.has(snapshot.index)) {
        this.checkedSnapshots.add(snapshot);
        const expected = this.membershipOf(this.configIndexAt(snapshot.index), cluster);
        if (!sameMembership(snapshot.membership, expected)) {
          const detail = `node ${view.id} stored a snapshot at ${snapshot.index} with ${describeMembership(snapshot.membership)}, but the committed log has ${describeMembership(expected)} there`;
          this.report('membership', detail, tick);
        }
      }
      const status = view.status;
      if (status === undefined) continue;
      const implied = view.persisted.membership() ?? this.initial ?? { voters: cluster.ids, learners: [] };
      if (!sameMembership(status.membership, implied)) {
        const detail = `node ${view.id} runs with ${describeMembership(status.membership)}, but its log implies ${describeMembership(implied)}`;
        this.report('membership', detail, tick);
      }
    }
  }

  // ---- the committed memberships ----

  /** Position in committedConfigs of the first membership entry after `index`. */
  private configsAfter(index: number): number {
    let low = 0;
    let high = this.committedConfigs.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if ((this.committedConfigs[mid] as number) <= index) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** Index of the newest committed membership entry at or before `index` (0: the initial membership). */
  private configIndexAt(index: number): number {
    return this.committedConfigs[this.configsAfter(index) - 1] ?? 0;
  }

  private membershipOf(configIndex: number, cluster: ClusterView): Membership {
    const membership = configIndex === 0 ? this.initial : this.committed.get(configIndex)?.entry.membership;
    return membership ?? { voters: cluster.ids, learners: [] };
  }

  private votersOf(configIndex: number, cluster: ClusterView): readonly NodeId[] {
    return this.membershipOf(configIndex, cluster).voters;
  }

  private quorumOf(configIndex: number, voters: readonly NodeId[]): number {
    if (configIndex === 0 && this.fixedQuorum !== undefined) return this.fixedQuorum;
    return Math.floor(voters.length / 2) + 1;
  }
}

/** What is wrong with sending `message` given what its sender had persisted, if anything. */
export function durabilityProblem(message: Message, persisted: PersistedView): string | undefined {
  const { term, vote } = persisted.hardState;
  if (message.term > term) return `term ${message.term} sent while term ${term} is persisted`;
  if (message.type === 'vote' && (term !== message.term || vote !== message.from)) {
    return `own vote not persisted (term ${term}, vote ${vote})`;
  }
  if (message.type === 'voteReply' && message.granted && (term !== message.term || vote !== message.to)) {
    return `granted vote not persisted (term ${term}, vote ${vote})`;
  }
  if (message.type === 'appendReply' && message.success && persisted.lastIndex() < message.matchIndex) {
    return `acknowledges ${message.matchIndex} but only ${persisted.lastIndex()} is persisted`;
  }
  return undefined;
}

/**
 * Log matching between two persisted logs: once they agree on the term at some index, they must
 * hold identical entries at every index before it (that both still hold).
 */
export function logMatchingProblem(a: PersistedView, b: PersistedView): string | undefined {
  const low = Math.max(firstIndex(a), firstIndex(b));
  let index = Math.min(a.lastIndex(), b.lastIndex());
  while (index >= low && a.termAt(index) !== b.termAt(index)) index--;
  for (; index >= low; index--) {
    const x = a.entryAt(index);
    const y = b.entryAt(index);
    if (x === undefined || y === undefined) {
      if (a.termAt(index) !== b.termAt(index)) return `terms differ at ${index} below a matching entry`;
      continue;
    }
    if (!sameEntry(x, y)) return `${describeEntry(x)} and ${describeEntry(y)} below a matching entry (or with the same term)`;
  }
  return undefined;
}

function firstIndex(log: PersistedView): number {
  return log.snapshot?.index ?? 1;
}

/** True when a persisted log still holds `entry`, or a snapshot covers its index. */
function holds(log: PersistedView, entry: Entry): boolean {
  if (log.snapshot !== undefined && log.snapshot.index >= entry.index) return true;
  const stored = log.entryAt(entry.index);
  return stored !== undefined && stored.term === entry.term;
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.index !== b.index || a.term !== b.term || a.kind !== b.kind || !sameBytes(a.data, b.data)) return false;
  return a.membership === undefined || b.membership === undefined
    ? a.membership === b.membership
    : sameMembership(a.membership, b.membership);
}

function sameMembership(a: Membership, b: Membership): boolean {
  const same = (x: readonly NodeId[], y: readonly NodeId[]) => x.length === y.length && x.every((id) => y.includes(id));
  return same(a.voters, b.voters) && same(a.learners, b.learners);
}

function describeMembership(membership: Membership): string {
  const learners = membership.learners.length === 0 ? '' : `, learners ${[...membership.learners].sort((a, b) => a - b).join(',')}`;
  return `voters ${[...membership.voters].sort((a, b) => a - b).join(',')}${learners}`;
}

function describeEntry(entry: Entry): string {
  const data =
    entry.kind === 'command'
      ? ` ${JSON.stringify(new TextDecoder().decode(entry.data))}`
      : entry.membership === undefined
        ? ''
        : ` ${describeMembership(entry.membership)}`;
  return `entry ${entry.index} (term ${entry.term}, ${entry.kind}${data})`;
}

function describe(message: Message): string {
  return `${message.type} ${message.from}→${message.to} at term ${message.term}`;
}
