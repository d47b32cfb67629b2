// What one simulated node has on stable storage. It is the only thing that survives a crash, so
// it is written exactly as the host loop prescribes: hard state, snapshot, then entries that
// replace the stored log from their first index on.

import type { Entry, HardState, Membership, Ready, Snapshot } from '../core/types.js';

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: 0, commit: 0 };

/** Read-only access to a persisted log, for the checks. */
export interface PersistedView {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | undefined;
  readonly entries: readonly Entry[];
  /** Index of the last stored entry (or of the snapshot when the log after it is empty). */
  lastIndex(): number;
  /** The stored entry at `index`, undefined when absent or folded into the snapshot. */
  entryAt(index: number): Entry | undefined;
  /** The term at `index`, covering the snapshot point; undefined when unknown. */
  termAt(index: number): number | undefined;
  /**
   * The membership this log implies: its newest membership entry, else its snapshot's; undefined
   * when it has neither (the node then runs with the group's initial membership).
   */
  membership(): Membership | undefined;
}

export class NodeStorage implements PersistedView {
  hardState: HardState = EMPTY_HARD_STATE;
  snapshot: Snapshot | undefined = undefined;
  private stored: Entry[] = [];
  /** Indexes of the membership entries in `stored`, ascending (so membership() need not scan the log). */
  private membershipIndexes: number[] = [];

  get entries(): Entry[] {
    return this.stored;
  }

  /** Replaces the whole log after the snapshot (tests build histories this way). */
  set entries(entries: Entry[]) {
    this.stored = entries;
    this.membershipIndexes = entries.filter((entry) => entry.kind === 'membership').map((entry) => entry.index);
  }

  /** Index just before the first stored entry. */
  private get base(): number {
    return this.snapshot?.index ?? 0;
  }

  lastIndex(): number {
    return this.base + this.stored.length;
  }

  entryAt(index: number): Entry | undefined {
    if (index <= this.base) return undefined;
    return this.stored[index - this.base - 1];
  }

  termAt(index: number): number | undefined {
    if (this.snapshot !== undefined && index === this.snapshot.index) return this.snapshot.term;
    return this.entryAt(index)?.term;
  }

  membership(): Membership | undefined {
    const last = this.membershipIndexes[this.membershipIndexes.length - 1];
    return (last === undefined ? undefined : this.entryAt(last)?.membership) ?? this.snapshot?.membership;
  }

  /**
   * Writes what a Ready asks to be persisted. Returns a description of the problem when the
   * entries would leave a gap in the log (a core bug the harness must not paper over).
   */
  persist(ready: Ready): string | undefined {
    if (ready.hardState !== undefined) this.hardState = ready.hardState;
    if (ready.snapshot !== undefined) this.installSnapshot(ready.snapshot);
    return this.writeEntries(ready.entries);
  }

  /** The host's own snapshot (its state machine at `snapshot.index`): the log up to there goes. */
  compact(snapshot: Snapshot): void {
    if (snapshot.index <= this.base) return;
    this.entries = this.stored.filter((entry) => entry.index > snapshot.index);
    this.snapshot = snapshot;
  }

  private installSnapshot(snapshot: Snapshot): void {
    // Entries past the snapshot are kept only when the log agrees with it at its last index;
    // otherwise the whole log is stale (Raft §7, InstallSnapshot step 6–7).
    const agrees = this.termAt(snapshot.index) === snapshot.term;
    this.entries = agrees ? this.stored.filter((entry) => entry.index > snapshot.index) : [];
    this.snapshot = snapshot;
  }

  private writeEntries(entries: readonly Entry[]): string | undefined {
    const first = entries[0];
    if (first === undefined) return undefined;
    if (first.index > this.lastIndex() + 1) return `entries from ${first.index} after a log ending at ${this.lastIndex()}`;
    if (first.index <= this.base) return `entries from ${first.index} inside the snapshot (up to ${this.base})`;
    this.stored.length = first.index - this.base - 1;
    while ((this.membershipIndexes[this.membershipIndexes.length - 1] ?? 0) >= first.index) this.membershipIndexes.pop();
    for (const entry of entries) {
      this.stored.push(entry);
      if (entry.kind === 'membership') this.membershipIndexes.push(entry.index);
    }
    return undefined;
  }
}
