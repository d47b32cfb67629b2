// The node's segment store: each segment of a topic is one engine topic keyed `t_<topic>_s_<n>`.
// An append checks the write lease and stages the entry in one synchronous step, so a lease given
// up (or moved by a rollover) between the check and the write cannot let an entry in. Appends do
// not wait for one another's acknowledgement: those of one tick are written together (and synced
// together under fsync `each`). What must not overlap an append in flight — a follower's replica
// append, a fence, closing a segment early — takes the key's lock and waits for the appends in
// flight to settle; an append that finds the key locked queues behind it, in arrival order.
// Counts come from what the engine holds, so they survive a
// restart (the original counted in memory and sealed wrong counts after one). A segment that has
// reached `maxEntries` takes no more appends: the caller gets a retriable SEGMENT_FULL and the
// lease is given up locally until the rollover that seals it has applied, so no acknowledged
// entry can land beyond the sealed count.
//
// A failed write or sync (ENOSPC, EIO) starts an outage: appends are refused with a retriable
// STORAGE_UNAVAILABLE naming the cause, reads go on from the failed engine (it still serves what
// it had made readable), and GET's consumption moves are kept in memory. Every storageRetryMs the
// store writes and syncs a probe file; once the disk takes it, the engine is closed (cutting off
// the refused appends) and reopened, the kept consumption moves are written, and appends resume.

import { closeSync, fdatasyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Lease, WriteFencing } from '../contracts/fencing.js';
import type { PayloadRun } from '../engine/payload-run.js';
import { Walrus } from '../engine/walrus.js';
import { type WalrusError, walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { KeyedLock } from './keyed-lock.js';
import { notLeaderFor, segmentKey } from './leases.js';

/** The part of the write fencing the store needs. */
export type LeaseCheck = Pick<WriteFencing, 'check' | 'stillValid' | 'surrender'>;

export interface SegmentStoreOptions {
  /** The engine; undefined when it could not be opened (`openFailure` says why: the store starts in an outage). */
  readonly wal: Walrus | undefined;
  /** The engine's directory, where the disk is probed during an outage (default: the engine's). */
  readonly dir?: string;
  /** Why the engine could not be opened at start (a full or failing disk), when `wal` is undefined. */
  readonly openFailure?: Error;
  readonly leases: LeaseCheck;
  /** Entries after which an open segment takes no more appends (the rollover threshold). */
  readonly maxEntries: number;
  /** Called once when a segment reaches maxEntries (the rollover monitor can propose at once). */
  readonly onFull?: (topic: string, segment: number, count: number) => void;
  /** Opens the engine's directory again after a storage failure (without it, an outage lasts until restart). */
  readonly reopen?: () => Promise<Walrus>;
  /** Where outages and attempts to end them are logged. */
  readonly log?: StoreLog;
  /** Time between attempts to end an outage (default limits.storageRetryMs; tests shorten it). */
  readonly retryMs?: number;
  /**
   * Where the fences (segments a failover ended this node's part in) are kept, so that a restart
   * does not forget one (an old leader could otherwise get an entry past the seal confirmed by a
   * restarted follower). Absent: kept in memory only.
   */
  readonly fencesFile?: string;
}

export interface StoreLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

/** A storage outage in progress. */
interface Outage {
  /** The failure that started it, as the operator should read it (`ENOSPC: no space left…`). */
  readonly cause: string;
  /** The errno code (ENOSPC, EIO) when the failure carried one. */
  readonly errno: string | undefined;
  readonly since: number;
  attempts: number;
  lastWarnAt: number;
  /** The last failed attempt's error message: a new kind of failure is logged as a warning at once. */
  lastError: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** The errno code somewhere in the cause chain of `error` (or named in its message). */
export function errnoOf(error: unknown): string | undefined {
  for (let at: unknown = error, depth = 0; at !== undefined && at !== null && depth < 5; depth++) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
    at = (at as { cause?: unknown }).cause;
  }
  const match = /\b(E[A-Z]{2,})\b/.exec((error as Error)?.message ?? '');
  return match?.[1];
}

export class SegmentStore {
  private readonly options: SegmentStoreOptions;
  /** Per key: held by what must not overlap an append in flight; appends that find it held queue behind. */
  private readonly locks = new KeyedLock();
  /** Per key: leader appends staged and not yet settled (acknowledged or refused). */
  private readonly inFlight = new Map<string, InFlightAppends>();
  /** Undefined while an outage has no engine to read from (it could not be opened, or is being reopened). */
  private wal: Walrus | undefined;
  private outage: Outage | undefined;
  /** During an outage: per key, the consumption position GET has reached (not yet written). */
  private readonly consumedInOutage = new Map<string, number>();
  /** Open segments closed early (handed over before a node leaves): no more appends, as if full. */
  private readonly closedEarly = new Set<string>();
  /** Segments this node keeps as a follower that a failover has ended: no more replica appends. */
  private readonly fenced = new Set<string>();
  /** Per segment key: how many entries readers may see (a replicated segment's commit count). */
  private readonly readLimits = new Map<string, number>();
  /** Told of every move of a GET position (replication sends it to the followers). */
  private readonly consumeListeners = new Set<(topic: string, segment: number, consumed: number) => void>();
  private closed = false;
  private readonly dir: string;
  /** The attempt to end an outage that is running, which close() waits for. */
  private attempting: Promise<void> | undefined;

  constructor(options: SegmentStoreOptions) {
    this.options = options;
    this.wal = options.wal;
    const dir = options.dir ?? options.wal?.dir;
    if (dir === undefined) throw walrusError('INVALID_ARGUMENT', 'a segment store needs its engine or its directory');
    this.dir = dir;
    if (options.wal === undefined) this.fail(options.openFailure ?? new Error(`cannot open ${dir}`));
    if (options.fencesFile !== undefined) for (const key of readFences(options.fencesFile)) this.fenced.add(key);
  }

  /** The engine in use (replaced by a reopen after an outage); undefined while an outage has none. */
  get engine(): Walrus | undefined {
    return this.wal;
  }

  /** The outage in progress, if any: its cause and since when (for STATE, logs and tests). */
  get unavailable(): { readonly cause: string; readonly errno: string | undefined; readonly since: number } | undefined {
    return this.outage;
  }

  /** Stops trying to end an outage and closes the engine. */
  async close(): Promise<void> {
    this.closed = true;
    const outage = this.outage;
    if (outage?.timer !== undefined) clearTimeout(outage.timer);
    await this.attempting;
    if (this.wal === undefined) return;
    try {
      await this.wal.close();
    } catch (error) {
      // A failed engine may not close cleanly (its last writes did not reach the disk): that is the
      // outage already reported, and recovery deals with it at the next start; a stop still succeeds.
      if (outage === undefined) throw error;
      this.options.log?.warn({ error: (error as Error).message, errno: errnoOf(error) }, 'engine closed during a storage outage');
    }
  }

  /**
   * Appends `payload` to the open segment `segment` of `topic` if this node holds its lease and
   * it is not full; resolves with the entry's 0-based offset within the segment once the engine
   * has acknowledged it.
   */
  append(topic: string, segment: number, payload: Uint8Array | string): Promise<number> {
    try {
      const offset = this.appendNow(topic, segment, payload);
      return typeof offset === 'number' ? Promise.resolve(offset) : offset;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * append() for the request path: when the key is free and the engine acknowledges the entry at
   * once (fsync `interval` or `none`), the offset is returned synchronously, with no promise made;
   * otherwise a promise of it. Refusals found before any waiting (no lease, segment full) throw.
   */
  appendNow(topic: string, segment: number, payload: Uint8Array | string): number | Promise<number> {
    const key = segmentKey(topic, segment);
    return this.whenFree(key, () => this.appendStaged(key, topic, segment, payload));
  }

  /**
   * Runs `stage` now, or once `key` is free: behind a replica append, a fence or an early close
   * (or appends already queued behind one). Its turn ends once it is staged, so appends arriving
   * meanwhile do not queue behind its acknowledgement.
   */
  private whenFree<T>(key: string, stage: () => T | Promise<T>): T | Promise<T> {
    if (!this.locks.isHeld(key)) return stage();
    return this.locks.acquire(key).then((release) => {
      try {
        return stage();
      } finally {
        release();
      }
    });
  }

  /**
   * The payloads of one MPUT, appended together: one lease check and one engine appendBatch, so
   * they get consecutive offsets in this segment and, after a crash, are all kept or none. A
   * batch goes wholly into the open segment when the segment is not full, even if that takes it
   * past maxEntries (it is then full and rolls over); it is never split between two segments.
   * Resolves with the first payload's offset once the engine has acknowledged them. It is staged
   * at once, as appendNow's entries are: appends after it follow it in the log, and batches and
   * entries of one tick share one write (and one sync).
   */
  appendBatchNow(topic: string, segment: number, payloads: PayloadRun): Promise<number> {
    const key = segmentKey(topic, segment);
    try {
      return Promise.resolve(this.whenFree(key, () => this.batchStaged(key, topic, segment, payloads)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private batchStaged(key: string, topic: string, segment: number, payloads: PayloadRun): Promise<number> {
    const wal = this.writable();
    const { lease, count } = this.admit(key, topic, segment);
    // Not exclusive: the engine would refuse this segment's next appends until the batch is acknowledged.
    const written = wal.appendBatch(key, payloads, { exclusive: false });
    const appends = this.inFlightFor(key);
    appends.count += 1;
    return written.then(
      () => {
        this.settledOne(key, appends);
        return this.appended(lease, topic, segment, count, payloads.count);
      },
      (error: unknown) => {
        this.settledOne(key, appends);
        throw this.storageFailed(error);
      },
    );
  }

  /**
   * Whether an append to `key` may go ahead now: this node holds the segment's lease and the
   * segment is neither full nor closed early. Returns the lease and the count before the append.
   */
  private admit(key: string, topic: string, segment: number): { readonly lease: Lease; readonly count: number } {
    const wal = this.writable();
    const lease = this.options.leases.check(key);
    const count = wal.appendedCount(key);
    if (this.closedEarly.has(key)) {
      throw walrusError('SEGMENT_FULL', `segment ${key} is being handed over to another node (${count} entries); retry`, {
        details: { key, count },
      });
    }
    if (count >= this.options.maxEntries) {
      // With appends in flight, the one that filled the segment gives the lease up and reports it
      // once it is acknowledged (giving the lease up now would leave them unconfirmed).
      if (!this.inFlight.has(key)) {
        this.options.leases.surrender(key);
        this.options.onFull?.(topic, segment, count);
      }
      throw walrusError('SEGMENT_FULL', `segment ${key} is full (${count} entries) and is being rolled over; retry`, {
        details: { key, count },
      });
    }
    return { lease, count };
  }

  /**
   * The lease check and the append, in one synchronous step. The entry's offset is the count of
   * entries appended before it, acknowledged or not, so appends of one tick stage back to back.
   */
  private appendStaged(key: string, topic: string, segment: number, payload: Uint8Array | string): number | Promise<number> {
    const wal = this.writable();
    const { lease, count } = this.admit(key, topic, segment);
    const written = wal.append(key, payload);
    if (Walrus.acknowledged(written)) return this.appended(lease, topic, segment, count);
    const appends = this.inFlightFor(key);
    appends.count += 1;
    return written.then(
      () => {
        this.settledOne(key, appends);
        return this.appended(lease, topic, segment, count);
      },
      (error: unknown) => {
        this.settledOne(key, appends);
        throw this.storageFailed(error);
      },
    );
  }

  private inFlightFor(key: string): InFlightAppends {
    let appends = this.inFlight.get(key);
    if (appends === undefined) {
      appends = { count: 0, idle: undefined, settled: undefined };
      this.inFlight.set(key, appends);
    }
    return appends;
  }

  private settledOne(key: string, appends: InFlightAppends): void {
    appends.count -= 1;
    if (appends.count > 0) return;
    this.inFlight.delete(key);
    appends.idle?.();
  }

  /** Resolves once every leader append of `key` in flight now has settled (at once when none is). */
  private appendsSettled(key: string): Promise<void> {
    const appends = this.inFlight.get(key);
    if (appends === undefined) return SETTLED;
    appends.settled ??= new Promise((resolve) => {
      appends.idle = resolve;
    });
    return appends.settled;
  }

  /** An engine failure during an append: an IO failure starts (or is part of) an outage. */
  private storageFailed(error: unknown): unknown {
    const failure = this.wal?.failure;
    if ((error as WalrusError).code !== 'IO' || failure === undefined) return error;
    return this.refusal(this.fail(failure));
  }

  /** The outage in progress; a failure the engine has reported since starts one. */
  private currentOutage(): Outage | undefined {
    const failure = this.wal?.failure;
    return this.outage === undefined && failure !== undefined ? this.fail(failure) : this.outage;
  }

  /** The engine for a write, or the outage's refusal. */
  private writable(): Walrus {
    const outage = this.currentOutage();
    if (outage !== undefined) throw this.refusal(outage);
    return this.readable();
  }

  /** Starts the outage for `failure` (once) and schedules the first attempt to end it. */
  private fail(failure: Error): Outage {
    if (this.outage !== undefined) return this.outage;
    const errno = errnoOf(failure);
    // The errno leads the refusal already: `storage unavailable (ENOSPC): no space left on device, write`.
    const raw = ((failure.cause as Error | undefined)?.message ?? failure.message).trim();
    const cause = errno !== undefined && raw.startsWith(`${errno}: `) ? raw.slice(errno.length + 2) : raw;
    const now = Date.now();
    const outage: Outage = { cause, errno, since: now, attempts: 0, lastWarnAt: now, lastError: undefined, timer: undefined };
    this.outage = outage;
    this.options.log?.warn(
      { errno, cause, dir: this.dir, retryMs: this.retryMs },
      this.wal === undefined
        ? 'storage failed: the engine cannot be opened; reads and writes are refused until the disk accepts writes again'
        : 'storage failed: writes are refused until the disk accepts them again; reads go on',
    );
    this.scheduleAttempt(outage);
    return outage;
  }

  private get retryMs(): number {
    return this.options.retryMs ?? limits.storageRetryMs;
  }

  private refusal(outage: Outage): WalrusError {
    return walrusError(
      'STORAGE_UNAVAILABLE',
      `storage unavailable (${outage.errno ?? 'I/O error'}): ${outage.cause}; writes are refused until the disk accepts them again; retry later`,
      { details: { errno: outage.errno, since: outage.since } },
    );
  }

  private scheduleAttempt(outage: Outage): void {
    if (this.closed || this.options.reopen === undefined) return;
    outage.timer = setTimeout(() => {
      outage.timer = undefined;
      this.attempting = this.attempt(outage)
        .catch((error: unknown) => {
          // attempt() handles its own failures; this only guards the timer against a rejection.
          this.options.log?.warn({ error: (error as Error).message }, 'storage retry failed unexpectedly');
          this.scheduleAttempt(outage);
        })
        .finally(() => {
          this.attempting = undefined;
        });
    }, this.retryMs);
    outage.timer.unref();
  }

  /** One attempt to end the outage: probe the disk, then reopen the engine and write what GET consumed. */
  private async attempt(outage: Outage): Promise<void> {
    const reopen = this.options.reopen;
    if (this.closed || reopen === undefined || this.outage !== outage) return;
    outage.attempts += 1;
    const dir = this.dir;
    try {
      probeDisk(dir);
    } catch (error) {
      this.attemptFailed(outage, error);
      return;
    }
    let wal: Walrus;
    try {
      const old = this.wal;
      this.wal = undefined;
      await old?.close().catch(() => undefined);
      wal = await reopen();
      if (this.closed) {
        // The node stopped while the engine opened: close it again, nothing is served any more.
        await wal.close();
        return;
      }
    } catch (error) {
      // The old instance is closed: reads wait for a later attempt (refused as unavailable meanwhile).
      this.attemptFailed(outage, error);
      return;
    }
    this.wal = wal;
    try {
      await this.writeConsumedInOutage();
    } catch (error) {
      // The reopened engine failed at once: stay in the outage, with it serving reads.
      this.attemptFailed(outage, error);
      return;
    }
    this.outage = undefined;
    this.options.log?.info(
      { dir, errno: outage.errno, attempts: outage.attempts, outageMs: Date.now() - outage.since },
      'storage accepts writes again: writes resume',
    );
  }

  private attemptFailed(outage: Outage, error: unknown): void {
    const fields = { dir: this.dir, attempt: outage.attempts, errno: errnoOf(error), error: (error as Error).message };
    const now = Date.now();
    const changed = fields.error !== outage.lastError;
    outage.lastError = fields.error;
    if (changed || now - outage.lastWarnAt >= limits.storageRetryLogMs) {
      outage.lastWarnAt = now;
      this.options.log?.warn(fields, 'storage still refuses writes; will try again');
    } else {
      this.options.log?.debug(fields, 'storage still refuses writes; will try again');
    }
    this.scheduleAttempt(outage);
  }

  /** After a reopen: moves each engine cursor to where GET got during the outage, and waits for it. */
  private async writeConsumedInOutage(): Promise<void> {
    const wal = this.wal;
    const moves: Promise<void>[] = [];
    if (wal === undefined) return;
    for (const [key, position] of this.consumedInOutage) {
      for (let at = wal.entryCount(key) - wal.pendingCount(key); at < position; at++) moves.push(wal.consumeAt(key, at));
    }
    await Promise.all(moves);
    this.consumedInOutage.clear();
  }

  /**
   * Reads are refused only while there is no engine to read from: it is being swapped (a moment,
   * after the disk took a probe), or it could not be opened at start.
   */
  private readable(): Walrus {
    if (this.wal === undefined) throw this.refusal(this.fail(new Error('no engine')));
    return this.wal;
  }

  /**
   * After the append of entry `count`: the lease must still be the one the append started under
   * (same epoch, quorum heard from recently), else the entry is not acknowledged — the segment may
   * have moved to another leader meanwhile. The entry that filled the segment ends its appends.
   */
  private appended(lease: Lease, topic: string, segment: number, count: number, entries = 1): number {
    const key = lease.key;
    if (!this.options.leases.stillValid(lease)) {
      // The entry is written: whether it stays readable is unknown (it may be replicated and
      // sealed in by a failover, or be past a seal), so the PUT is neither OK nor a "not mine"
      // that would be sent again — that could put the entry in the log twice.
      throw walrusError(
        'NOT_COMMITTED',
        `the PUT was written on this node but its write lease on ${key} ended during the write (no contact with the Raft majority, or the segment moved); whether it is kept is unknown`,
        { details: { key, epoch: lease.epoch, offset: count } },
      );
    }
    if (count + entries >= this.options.maxEntries) {
      this.options.leases.surrender(key);
      this.options.onFull?.(topic, segment, count + entries);
    }
    return count;
  }

  /**
   * Makes every entry appended so far durable (one sync). A rollover calls it before proposing a
   * seal: the metadata must never record a sealed count that a power cut could take back from the
   * data (under fsync `interval` the last entries wait up to fsyncIntervalMs for their sync).
   * Refused with STORAGE_UNAVAILABLE during an outage, when nothing can be made durable.
   */
  async persist(): Promise<void> {
    const wal = this.writable();
    try {
      await wal.flush();
    } catch (error) {
      throw this.storageFailed(error);
    }
  }

  /** Whether the segment holds its full count (or was closed early) and takes no more appends until its rollover. */
  full(topic: string, segment: number): boolean {
    return this.closedEarly.has(segmentKey(topic, segment)) || this.count(topic, segment) >= this.options.maxEntries;
  }

  /**
   * Closes an open segment before it is full, so that it can be sealed and its topic moved on to
   * another node (this one is leaving): later appends are refused as for a full segment, and the
   * ones in flight finish first. Resolves with the entries it holds, made durable. reopen() undoes
   * it when the seal could not be proposed.
   */
  async closeEarly(topic: string, segment: number): Promise<number> {
    const key = segmentKey(topic, segment);
    this.closedEarly.add(key);
    await this.locks.run(key, () => this.appendsSettled(key));
    await this.persist();
    return this.count(topic, segment);
  }

  /** Takes appends again on a segment closeEarly() closed (its seal was not proposed). */
  reopen(topic: string, segment: number): void {
    this.closedEarly.delete(segmentKey(topic, segment));
  }

  /**
   * A follower's copy of a segment another node leads: appends `payloads` at `offset` onward and
   * returns the count it then holds, once the engine has acknowledged them (after their fsync
   * under `fsync: each`). Entries it holds already are not written again, so a run sent twice
   * changes nothing; a run past its end (it missed some) writes nothing and the count tells the
   * leader where to start again. Refused with NOT_LEADER_FOR_PARTITION once fenced.
   */
  appendReplica(
    topic: string,
    segment: number,
    offset: number,
    payloads: readonly Uint8Array[],
    consumed = 0,
    sealed: number | undefined = undefined,
  ): Promise<number> {
    const key = segmentKey(topic, segment);
    return this.locks.run(key, async () => {
      await this.appendsSettled(key);
      const wal = this.writable();
      const count = wal.entryCount(key);
      const plan = replicaWrite(count, offset, payloads.length, sealed, this.fenced.has(key));
      if (plan === 'fenced') throw notLeaderFor(key, { fenced: true });
      if (plan.to > plan.from) {
        try {
          await wal.appendBatch(key, payloads.slice(plan.from, plan.to));
        } catch (error) {
          throw this.storageFailed(error);
        }
      }
      const held = wal.entryCount(key);
      // The leader's GET position, as far as this copy holds entries (the engine persists it).
      const moves: Promise<void>[] = [];
      for (let at = this.consumed(topic, segment); at < Math.min(consumed, held); at++) moves.push(this.consumeAt(topic, segment, at));
      await Promise.all(moves);
      return held;
    });
  }

  /**
   * Ends this node's part in appends to a segment it keeps as a follower (a failover is sealing
   * it): after the replica append in progress, none is taken. Returns the count it holds.
   */
  fence(topic: string, segment: number): Promise<number> {
    const key = segmentKey(topic, segment);
    if (!this.fenced.has(key)) {
      this.fenced.add(key);
      // On disk before the count is told: a restart must not take a replica append after it.
      if (this.options.fencesFile !== undefined) writeFences(this.options.fencesFile, this.fenced);
    }
    return this.locks.run(key, async () => {
      await this.appendsSettled(key);
      return this.readable().entryCount(key);
    });
  }

  /** Whether a failover fenced this node's copy of the segment. */
  isFenced(topic: string, segment: number): boolean {
    return this.fenced.has(segmentKey(topic, segment));
  }

  /** Entries the segment holds on this node (0 for a segment it never wrote). */
  count(topic: string, segment: number): number {
    return this.readable().entryCount(segmentKey(topic, segment));
  }

  /**
   * The entry at 0-based `offset` of the segment, or null past its end — or past its read limit:
   * readers see only the committed entries of a replicated segment (limitReads). Moves no cursor.
   */
  read(topic: string, segment: number, offset: number): Buffer | null {
    const key = segmentKey(topic, segment);
    const limit = this.readLimits.get(key);
    if (limit !== undefined && offset >= limit) return null;
    return this.readable().readAt(key, offset);
  }

  /**
   * read() of up to `max` consecutive entries from `offset`, at most `maxBytes` of payload but at
   * least one (see Walrus.readRunAt); none past the read limit. The payloads are read-only views
   * of the engine's read buffers (Walrus.readRunShared): they are framed into replies as they are.
   */
  readRun(topic: string, segment: number, offset: number, max: number, maxBytes: number): Buffer[] {
    const key = segmentKey(topic, segment);
    const limit = this.readLimits.get(key);
    const count = limit === undefined ? max : Math.min(max, limit - offset);
    return count <= 0 ? [] : this.readable().readRunShared(key, offset, count, maxBytes);
  }

  /** read() without the read limit: what this node holds (a leader sending its entries to the followers). */
  readHeld(topic: string, segment: number, offset: number): Buffer | null {
    return this.readable().readAt(segmentKey(topic, segment), offset);
  }

  /** Calls `listener` with the new position each time GET consumes an entry of a segment here. */
  onConsume(listener: (topic: string, segment: number, consumed: number) => void): () => void {
    this.consumeListeners.add(listener);
    return () => this.consumeListeners.delete(listener);
  }

  /** Readers see at most `count` entries of the segment `key` (its commit count); undefined lifts the limit. */
  limitReads(key: string, count: number | undefined): void {
    if (count === undefined) this.readLimits.delete(key);
    else this.readLimits.set(key, count);
  }

  /** Entries of the segment consumed by GET so far (its engine cursor, persisted with it). */
  consumed(topic: string, segment: number): number {
    const key = segmentKey(topic, segment);
    const wal = this.readable();
    const engine = wal.entryCount(key) - wal.pendingCount(key);
    return Math.max(engine, this.consumedInOutage.get(key) ?? 0);
  }

  /**
   * Marks entry `offset` of the segment, which must be at its consumption position, consumed (the
   * engine persists the position, so a restart neither replays nor skips it). The promise is one
   * for which Walrus.acknowledged() is true when that was done at once.
   */
  consumeAt(topic: string, segment: number, offset: number): Promise<void> {
    return this.consumeRun(topic, segment, offset, 1);
  }

  /** consumeAt() for the `count` entries from `offset` (an MGET's run): the position moves past them all, persisted once. */
  consumeRun(topic: string, segment: number, offset: number, count: number): Promise<void> {
    const key = segmentKey(topic, segment);
    if (this.currentOutage() !== undefined) {
      // The position cannot be written now: it is kept here and written when the outage ends (a
      // crash before then replays these entries: at least once, never skipped).
      if (offset !== this.consumed(topic, segment))
        return Promise.reject(walrusError('INVALID_ARGUMENT', `${key}: ${offset} is not the next entry to consume`));
      this.consumedInOutage.set(key, offset + count);
      return CONSUMED_IN_MEMORY;
    }
    const wal = this.readable();
    const moved = count === 1 ? wal.consumeAt(key, offset) : wal.consumeRun(key, offset, count);
    for (const listener of this.consumeListeners) listener(topic, segment, offset + count);
    if (Walrus.acknowledged(moved)) return moved;
    return moved.catch((error: unknown) => {
      throw this.storageFailed(error);
    });
  }
}

const CONSUMED_IN_MEMORY: Promise<void> = Promise.resolve();
const SETTLED: Promise<void> = Promise.resolve();

/** A key's leader appends in flight, and the wait of whoever needs them settled. */
interface InFlightAppends {
  count: number;
  idle: (() => void) | undefined;
  settled: Promise<void> | undefined;
}

/**
 * What a follower's copy holding `count` entries writes of a run of `length` entries at `offset`:
 * the run's entries `from`..`to` (none when it holds them already, or the run starts past its end:
 * its count tells the leader where to go on), or `fenced`. A sealed segment (`sealed`, as this
 * node's metadata has it) takes only what its seal counts — the catch-up of a copy from the
 * replica that serves it, fenced or not; an open one takes nothing once fenced. The data-path
 * simulator applies the same rule.
 */
export function replicaWrite(
  count: number,
  offset: number,
  length: number,
  sealed: number | undefined,
  fenced: boolean,
): 'fenced' | { readonly from: number; readonly to: number } {
  if (sealed === undefined && fenced) return 'fenced';
  const end = Math.min(offset + length, sealed ?? Number.POSITIVE_INFINITY);
  if (offset > count || end <= count) return { from: 0, to: 0 };
  return { from: count - offset, to: end - offset };
}

/** The fenced segment keys kept in `file` (none when it does not exist yet). */
function readFences(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((key) => typeof key === 'string'))
    throw walrusError(
      'CORRUPT_RECORD',
      `${file} is not a list of fenced segment keys; it is written only by this node: restore it or, if no failover ever fenced this node, remove it`,
    );
  return value;
}

/** Writes the fenced keys to `file` durably: a temp file, synced, renamed over it. */
function writeFences(file: string, keys: ReadonlySet<string>): void {
  mkdirSync(dirname(file), { recursive: true });
  const temp = `${file}.tmp`;
  const fd = openSync(temp, 'w');
  try {
    const bytes = Buffer.from(JSON.stringify([...keys]));
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  const dirFd = openSync(dirname(file), 'r');
  try {
    fdatasyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Writes and syncs a probe file in `dir`, then removes it: throws if the disk does not take it. */
function probeDisk(dir: string): void {
  const path = join(dir, '.storage-probe');
  // The directory itself may not exist yet when the node started on a disk that refused it.
  mkdirSync(dir, { recursive: true });
  try {
    const fd = openSync(path, 'w');
    try {
      const bytes = Buffer.alloc(limits.storageProbeBytes, 0x5a);
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(path, { force: true });
  }
}
