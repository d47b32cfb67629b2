// The metadata command log kept in etcd (issue 15): the part of the consensus-etcd plugin that
// gives every node the same commands in the same order, applied once each.
//
// - A proposal is a put of a new key under `<prefix>/log/` (named by the proposing node and a
//   counter of its own, so no two proposals share a key). etcd orders every put in one revision
//   sequence, so a command's index is the etcd revision that created its key: two writers racing
//   need no coordination beyond etcd's own.
// - Every node applies the keys in creation-revision order: first those a range read finds past
//   what it has applied, then what a watch from just after that read delivers. A command whose
//   revision is not above the last applied one is skipped, so a watch that replays after a
//   reconnect applies nothing twice; a watch that cannot resume (its history was compacted) is
//   replaced by a new range read and watch.
// - `<prefix>/snapshot` holds the state machine's snapshot and the revision it covers. Keys the
//   snapshot covers may then be deleted (trim). A node that starts, or falls behind a trim,
//   restores the snapshot first: it reads the log and the snapshot at one revision, so a key
//   missing from the log is always covered by the snapshot it read.
//
// No process-wide state: the etcd client is the caller's, and several logs (nodes) can share one
// process, as the tests do.

import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { StateMachine } from '../../contracts/consensus.js';
import { walrusError } from '../../kernel/errors.js';

export interface CommandLogOptions {
  readonly client: Etcd3;
  /** Where this cluster's keys live (`etcd.prefix`), without a trailing slash. */
  readonly prefix: string;
  /** Names this node's proposals (its node id): unique within the cluster. */
  readonly writer: string;
  readonly machine: StateMachine;
  /** Told of trouble the log works around (a watch replaced, a catch-up retried). */
  readonly onProblem?: (problem: { readonly message: string; readonly error?: unknown }) => void;
  /** Pause before trying a failed catch-up again (default 200 ms). */
  readonly retryMs?: number;
  /** Called after each command applied here. */
  readonly onApplied?: () => void;
}

interface Proposal {
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** What the snapshot key holds: the revision it covers and the state machine's snapshot, base64. */
interface SnapshotRecord {
  readonly revision: number;
  readonly data: string;
}

export class EtcdCommandLog {
  private readonly options: CommandLogOptions;
  private readonly logPrefix: string;
  private readonly snapshotKey: string;
  /** The creation revision of the last command applied (or the snapshot's revision). */
  private appliedRevision = 0;
  private counter = 0;
  /** Tells this run's proposal keys from those of the writer's earlier runs (the counter starts again). */
  private readonly epoch = Date.now().toString(36);
  /** Proposals not sent yet, in call order, and whether one is being sent. */
  private readonly outbox: { readonly key: string; readonly command: Buffer }[] = [];
  private sending = false;
  /** This node's proposals not applied yet, by key. */
  private readonly proposals = new Map<string, Proposal>();
  /** Revisions waited for by barrier(). */
  private readonly waiters: { readonly revision: number; readonly resolve: () => void }[] = [];
  private watcher: Watcher | undefined;
  private stopped = false;
  private resyncing: Promise<void> | undefined;
  /** Commands applied (for metrics and tests). */
  private appliedCount = 0;

  constructor(options: CommandLogOptions) {
    this.options = options;
    this.logPrefix = `${options.prefix}/log/`;
    this.snapshotKey = `${options.prefix}/snapshot`;
  }

  /** The etcd revision of the last command applied here (the apply index). */
  get applied(): number {
    return this.appliedRevision;
  }

  /** How many commands this log has applied since it started (a restored snapshot counts none). */
  get appliedCommands(): number {
    return this.appliedCount;
  }

  /** Restores the snapshot, applies what follows it, and starts following new commands. */
  async start(): Promise<void> {
    await this.resync();
  }

  /**
   * Appends `command`; resolves with the state machine's result once it is applied here. Rejects
   * with CONSENSUS_UNAVAILABLE when etcd does not take it (whether it was written is then
   * unknown: the put may have reached etcd before the failure).
   */
  propose(command: Uint8Array): Promise<unknown> {
    if (this.stopped) return Promise.reject(walrusError('CLOSED', 'the consensus log is stopped'));
    this.counter += 1;
    const key = `${this.logPrefix}${this.options.writer}.${this.epoch}.${this.counter}`;
    return new Promise((resolve, reject) => {
      this.proposals.set(key, { resolve, reject });
      this.outbox.push({ key, command: Buffer.from(command) });
      this.sendNext();
    });
  }

  /**
   * Writes the next queued proposal once the one before has been taken: etcd orders concurrent
   * puts as they reach it, so a node's proposals keep their order only one at a time.
   */
  private sendNext(): void {
    if (this.sending || this.stopped) return;
    const next = this.outbox.shift();
    if (next === undefined) return;
    this.sending = true;
    this.options.client
      .put(next.key)
      .value(next.command)
      .exec()
      .then(
        (response) => {
          // Applied already (the watch can be faster than the put's answer), or soon: unless the
          // watch is gone, in which case a catch-up brings it.
          const revision = Number(response.header.revision);
          if (revision > this.appliedRevision && this.watcher === undefined) this.scheduleResync();
        },
        (error: unknown) => {
          const proposal = this.proposals.get(next.key);
          this.proposals.delete(next.key);
          proposal?.reject(
            walrusError(
              'CONSENSUS_UNAVAILABLE',
              `etcd did not take the metadata command (${(error as Error).message}); whether it was written is unknown, retry`,
              { cause: error },
            ),
          );
        },
      )
      .finally(() => {
        this.sending = false;
        this.sendNext();
      });
  }

  /**
   * Resolves once every command etcd had when this was called is applied here: those it holds
   * past what is applied are read (keys only), and their last one is waited for.
   */
  async barrier(): Promise<void> {
    const ahead = await this.options.client
      .getAll()
      .prefix(this.logPrefix)
      .minCreateRevision(this.appliedRevision + 1)
      .sort('Create', 'Descend')
      .limit(1)
      .exec();
    const last = ahead.kvs[0];
    if (last === undefined) return;
    const revision = Number(last.create_revision);
    if (revision <= this.appliedRevision) return;
    await new Promise<void>((resolve) => this.waiters.push({ revision, resolve }));
  }

  /**
   * Writes the state machine's snapshot at the applied revision to the snapshot key (unless a
   * newer one is there) and deletes the log keys it covers. Returns the revision it covers.
   */
  async snapshot(): Promise<number> {
    const revision = this.appliedRevision;
    const record: SnapshotRecord = { revision, data: Buffer.from(this.options.machine.snapshot()).toString('base64') };
    const current = await this.readSnapshot();
    if (current !== undefined && current.revision >= revision) return current.revision;
    await this.options.client.put(this.snapshotKey).value(JSON.stringify(record)).exec();
    // The keys it covers; created at or before `revision`.
    const covered = await this.options.client.getAll().prefix(this.logPrefix).sort('Create', 'Ascend').exec();
    const keys = covered.kvs.filter((kv) => Number(kv.create_revision) <= revision).map((kv) => kv.key.toString());
    for (let at = 0; at < keys.length; at += TRIM_BATCH) {
      const batch = keys.slice(at, at + TRIM_BATCH);
      await Promise.all(batch.map((key) => this.options.client.delete().key(key).exec()));
    }
    return revision;
  }

  /** Stops following the log; proposals not applied yet fail with CLOSED. */
  async stop(): Promise<void> {
    this.stopped = true;
    const watcher = this.watcher;
    this.watcher = undefined;
    for (const proposal of this.proposals.values())
      proposal.reject(walrusError('CLOSED', 'the consensus log stopped before the command was applied here'));
    this.proposals.clear();
    this.outbox.length = 0;
    await watcher?.cancel().catch(() => undefined);
  }

  private scheduleResync(): void {
    if (this.stopped || this.resyncing !== undefined) return;
    this.resyncing = this.resync().finally(() => {
      this.resyncing = undefined;
    });
    this.resyncing.catch(() => undefined);
  }

  /**
   * Reads the log and the snapshot at one revision, restores the snapshot if it is ahead of what
   * is applied, applies the rest in order, then watches from just after that revision.
   */
  private async resync(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      try {
        const old = this.watcher;
        this.watcher = undefined;
        await old?.cancel().catch(() => undefined);
        const log = await this.options.client.getAll().prefix(this.logPrefix).sort('Create', 'Ascend').exec();
        const at = Number(log.header.revision);
        const snapshot = await this.readSnapshot(at);
        if (snapshot !== undefined && snapshot.revision > this.appliedRevision) {
          this.options.machine.restore(Buffer.from(snapshot.data, 'base64'));
          this.appliedRevision = snapshot.revision;
        }
        for (const kv of log.kvs) this.applyKey(kv);
        this.advanceTo(at);
        await this.watchFrom(at + 1);
        return;
      } catch (error) {
        if (this.stopped) return;
        this.options.onProblem?.({ message: 'catching up with the etcd command log failed; trying again', error });
        await new Promise((resolve) => setTimeout(resolve, this.options.retryMs ?? 200));
      }
    }
  }

  private async watchFrom(revision: number): Promise<void> {
    const watcher = await this.options.client.watch().prefix(this.logPrefix).startRevision(String(revision)).create();
    if (this.stopped) {
      await watcher.cancel().catch(() => undefined);
      return;
    }
    this.watcher = watcher;
    watcher.on('put', (kv) => this.applyKey(kv));
    watcher.on('error', (error) => {
      if (this.watcher !== watcher) return;
      this.options.onProblem?.({ message: 'the etcd watch of the command log failed; catching up again', error });
      this.watcher = undefined;
      this.scheduleResync();
    });
  }

  /** Applies one log key if it is the next command (created after the last applied one). */
  private applyKey(kv: IKeyValue): void {
    const revision = Number(kv.create_revision);
    // An update of a key (none are made) or a command applied before: skipped.
    if (Number(kv.mod_revision) !== revision || revision <= this.appliedRevision) return;
    const result = this.options.machine.apply(kv.value, revision);
    this.appliedRevision = revision;
    this.appliedCount += 1;
    const key = kv.key.toString();
    const proposal = this.proposals.get(key);
    if (proposal !== undefined) {
      this.proposals.delete(key);
      proposal.resolve(result);
    }
    this.wake();
    this.options.onApplied?.();
  }

  /** Nothing in the log up to `revision` is left to apply: what waits for it may go on. */
  private advanceTo(revision: number): void {
    if (revision > this.appliedRevision) this.appliedRevision = revision;
    this.wake();
  }

  private wake(): void {
    for (let at = this.waiters.length - 1; at >= 0; at--) {
      const waiter = this.waiters[at] as { revision: number; resolve: () => void };
      if (waiter.revision > this.appliedRevision) continue;
      this.waiters.splice(at, 1);
      waiter.resolve();
    }
  }

  private async readSnapshot(revision?: number): Promise<SnapshotRecord | undefined> {
    const query = this.options.client.get(this.snapshotKey);
    if (revision !== undefined) query.revision(revision);
    const text = await query.string();
    if (text === null) return undefined;
    const record = JSON.parse(text) as SnapshotRecord;
    if (!Number.isSafeInteger(record.revision) || typeof record.data !== 'string') {
      throw walrusError('CORRUPT_SNAPSHOT', `the etcd key ${this.snapshotKey} does not hold a Walrus snapshot`);
    }
    return record;
  }
}

/** Log keys deleted at once after a snapshot. */
const TRIM_BATCH = 64;
