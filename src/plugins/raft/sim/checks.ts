// Raft's safety properties, checked against a running cluster. The checker watches four
// streams — messages as they leave a node (with what that node had persisted), log writes,
// entries as they are applied, and the whole cluster at the end of each tick — and keeps the
// history it needs (who led which term, what was committed, which entry sits at each index and
// term) so that a property broken at any moment is caught. The per-tick work is incremental, so
// long runs stay linear; checkAll() redoes everything from scratch, for the end of a run.

import type { Entry, Message, NodeId, Ready } from '../core/types.js';
import { type ClusterObserver, type ClusterView, type HarnessFault, sameBytes } from './cluster.js';
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
  /** A committed entry that is no longer on the persisted logs of a quorum. */
  | 'committed-lost'
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

  constructor(private readonly quorum: number) {}

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
    this.checkLeaders(cluster, tick);
    this.checkLeaderCompleteness(cluster, tick);
    this.checkCommittedKept(cluster, tick, this.recountFrom);
    this.recountFrom = Number.POSITIVE_INFINITY;
  }

  /** Everything from scratch, including pairwise log matching (for the end of a run, and tests). */
  checkAll(cluster: ClusterView, tick: number): void {
    this.check(cluster, tick);
    this.checkLogMatching(cluster, tick);
    this.checkCommittedKept(cluster, tick, 1);
  }

  private noteLeader(term: number, id: NodeId, tick: number): void {
    const known = this.leaderOfTerm.get(term);
    if (known === undefined) this.leaderOfTerm.set(term, id);
    else if (known !== id) this.report('election-safety', `nodes ${known} and ${id} both led term ${term}`, tick);
  }

  private checkLeaders(cluster: ClusterView, tick: number): void {
    for (const id of cluster.ids) {
      const status = cluster.node(id).status;
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

  private checkLeaderCompleteness(cluster: ClusterView, tick: number): void {
    for (const id of cluster.ids) {
      const view = cluster.node(id);
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

  /** Every committed entry from `from` on must still be on the persisted logs of a quorum. */
  private checkCommittedKept(cluster: ClusterView, tick: number, from: number): void {
    if (from === Number.POSITIVE_INFINITY) return;
    const logs = cluster.ids.map((id) => cluster.node(id).persisted);
    for (let index = from, known = this.committed.get(index); known !== undefined; known = this.committed.get(++index)) {
      const entry = known.entry;
      const holders = logs.filter((log) => holds(log, entry)).length;
      if (holders < this.quorum) {
        this.report('committed-lost', `${describeEntry(entry)} is on ${holders} persisted logs, fewer than ${this.quorum}`, tick);
      }
    }
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
  return a.index === b.index && a.term === b.term && a.kind === b.kind && sameBytes(a.data, b.data);
}

function describeEntry(entry: Entry): string {
  const data = entry.kind === 'command' ? ` ${JSON.stringify(new TextDecoder().decode(entry.data))}` : '';
  return `entry ${entry.index} (term ${entry.term}, ${entry.kind}${data})`;
}

function describe(message: Message): string {
  return `${message.type} ${message.from}→${message.to} at term ${message.term}`;
}
