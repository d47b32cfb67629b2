// Replicated segments on one node (issue 14): for each open segment this node leads whose replica
// set (metadata) has other nodes, a SegmentReplicator sends the appended entries to them; a PUT's
// reply waits until a majority of the set holds its entry (`acks: quorum`), and GET and FETCH of
// that segment see only committed entries (the store's read limit). As a follower, this node
// keeps the runs its segments' leaders send (`replicate`) and ends its part when fenced.
//
// A PUT whose entry does not get committed within commitTimeoutMs (no majority reachable) fails
// with NOT_COMMITTED: it was written on the leader, so whether it is kept is unknown, and it is
// never sent again.
//
// Failover (failover.ts, on the Raft leader) fences the replicas of a segment whose leader is
// gone (`fence`: this node's copy takes no more of that leader's runs, a fence kept on disk) and
// seals it at what they hold, or moves a sealed segment to a replica holding all of it. The
// replica named to serve a segment then catches the others up to its seal from its own copy.

import type { NodeId } from '../contracts/consensus.js';
import { type WalrusError, walrusError } from '../kernel/errors.js';
import { headCount, headString, PEER_OPS, type PeerRequests, splitRun } from './forwarding.js';
import { notLeaderFor } from './leases.js';
import { type MetadataCommand, type MetadataStateMachine, segmentKey } from './metadata.js';
import type { PeerHandler } from './peer-server.js';
import { type ReplicaAnswer, type ReplicaRun, SegmentReplicator } from './replicator.js';
import type { SegmentStore } from './segment-store.js';

export type Acks = 'quorum' | 'leader';

export interface ReplicationOptions {
  readonly nodeId: NodeId;
  readonly metadata: MetadataStateMachine;
  readonly store: SegmentStore;
  readonly peers: PeerRequests | undefined;
  /** `quorum`: a PUT is acknowledged once a majority of the segment's replicas hold it; `leader`: once the leader does. */
  readonly acks: Acks;
  /** How long a PUT waits for its entry to be committed before NOT_COMMITTED. */
  readonly commitTimeoutMs: number;
  /** Whether this node is in contact with a quorum (WriteFencing.inContact); absent: always. */
  readonly inContact?: () => boolean;
  /** The Raft leader as this node knows it (whom to ask to finish a failover that fenced a segment led here). */
  readonly raftLeader?: () => NodeId | undefined;
  readonly log: {
    info(fields: object, message: string): void;
    warn(fields: object, message: string): void;
    debug(fields: object, message: string): void;
  };
}

/** One follower of a replicated segment as its leader sees it (Replication.followerProgress). */
export interface FollowerProgress {
  readonly topic: string;
  readonly segment: number;
  readonly follower: NodeId;
  /** Entries the follower has confirmed holding. */
  readonly held: number;
  /** Entries the leader holds. */
  readonly leader: number;
}

export class Replication {
  private readonly options: ReplicationOptions;
  /** By segment key: the replicators of open segments led here that have followers. */
  private readonly replicators = new Map<string, SegmentReplicator>();
  private readonly unsubscribe: () => void;
  private closed = false;
  /** On the Raft leader: finishes a failover an old leader asks for (failover.ts). */
  private finisher: ((topic: string, segment: number) => Promise<void>) | undefined;
  /** Segment keys whose seal this node is asking the Raft leader for. */
  private readonly asking = new Set<string>();

  constructor(options: ReplicationOptions) {
    this.options = options;
    const unfollow = options.metadata.onChange((change) => {
      this.follow();
      this.served(change.command, change.result);
    });
    const unconsume = options.store.onConsume((topic, segment, consumed) => this.consumed(topic, segment, consumed));
    this.unsubscribe = () => {
      unfollow();
      unconsume();
    };
    this.follow();
  }

  /**
   * Each follower of each replicated open segment this node leads: the entries it is known to
   * hold against the leader's count (their difference is its lag), for /metrics and /api/cluster.
   */
  followerProgress(): FollowerProgress[] {
    const out: FollowerProgress[] = [];
    for (const replicator of this.replicators.values()) {
      const { topic, segment } = replicator.segmentOf;
      const leader = replicator.leaderCount;
      for (const [follower, held] of replicator.held()) out.push({ topic, segment, follower, held, leader });
    }
    return out;
  }

  /**
   * After the leader appended entry `offset` of a segment (`payload`, when given, is that entry): a promise of its commit when the PUT
   * must wait for it, else undefined (a segment kept by this node alone, or `acks: leader`).
   */
  appended(topic: string, segment: number, offset: number, payload?: string | Uint8Array): Promise<void> | undefined {
    const replicator = this.replicators.get(segmentKey(topic, segment));
    if (replicator === undefined) return undefined;
    // The runs take the entry from here rather than read it back from the log: a text payload's
    // UTF-8 bytes are what the engine wrote; bytes are copied (a view would keep alive the whole
    // chunk of requests it came in for as long as the runs keep it).
    const bytes = payload === undefined ? undefined : typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
    replicator.appended(offset + 1, bytes);
    return this.commitWait(replicator, topic, segment, offset, offset + 1, 'it');
  }

  /**
   * The wait of a PUT (or an MPUT) written at `offset` for the commit of the first `upTo`
   * entries; undefined with `acks: leader`. Whatever stops the wait, the entries are written
   * here: never a "not mine" that would have them sent again.
   */
  private commitWait(
    replicator: SegmentReplicator,
    topic: string,
    segment: number,
    offset: number,
    upTo: number,
    what: string,
  ): Promise<void> | undefined {
    if (this.options.acks === 'leader') return undefined;
    return this.committedWithin(replicator, upTo).catch((error: unknown) => {
      if ((error as WalrusError).code === 'NOT_COMMITTED') throw error;
      throw walrusError(
        'NOT_COMMITTED',
        `the PUT was written on this node but ${segmentKey(topic, segment)} stopped taking writes before a majority of its replicas confirmed ${what} (${(error as Error).message}); whether it is kept is unknown`,
        { details: { topic, segment, offset }, cause: error },
      );
    });
  }

  /**
   * appended() for the payloads of one MPUT, written at `offset` onward: handed to the runs as
   * they are, and one wait, for the commit of the last of them (commits are counts: it covers all).
   * The batch's payloads are only taken (as views, one object each) when the segment has a
   * replicator: a segment kept on this node alone costs nothing per entry here.
   */
  appendedBatch(
    topic: string,
    segment: number,
    offset: number,
    batch: { readonly payloads: readonly Uint8Array[] },
  ): Promise<void> | undefined {
    const replicator = this.replicators.get(segmentKey(topic, segment));
    if (replicator === undefined) return undefined;
    const payloads = batch.payloads;
    if (payloads.length === 0) return undefined;
    for (const [index, payload] of payloads.entries()) replicator.appended(offset + index + 1, Buffer.from(payload));
    return this.commitWait(replicator, topic, segment, offset, offset + payloads.length, `the batch of ${payloads.length}`);
  }

  /** Resolves once the first `count` entries of a segment led here are committed (at once when it is not replicated). */
  settled(topic: string, segment: number, count: number): Promise<void> {
    const replicator = this.replicators.get(segmentKey(topic, segment));
    return replicator === undefined ? Promise.resolve() : this.committedWithin(replicator, count);
  }

  /**
   * Before GET hands out the entry at `position` of a segment this node serves: undefined when it
   * may at once (the segment is kept here alone, or a majority of its replicas has recorded a GET
   * position of at least `position`), else a promise of that — so a failover, which hands the
   * segment to a copy with at least a majority's position, replays at most the one entry each
   * GET of it had out, never entries delivered before. A node cut off from its followers (or
   * serving from a stale view, whose runs the others refuse) gets no confirmation: its GETs fail
   * with a retriable error after `waitMs` instead of delivering entries twice.
   */
  positionConfirmed(topic: string, segment: number, position: number, waitMs: number): Promise<void> | undefined {
    const key = segmentKey(topic, segment);
    // An open segment led here has its replicator from follow(); a sealed one gets one now.
    const replicator = this.replicators.get(key) ?? this.sealedReplicator(topic, segment, this.options.store.consumed(topic, segment));
    if (replicator === undefined) return undefined;
    if (!(this.options.inContact?.() ?? true)) {
      return Promise.reject(
        walrusError(
          'TOPIC_BUSY',
          `GET of ${topic} waited for contact with the Raft majority, which this node has lost (${key} may have moved to another of its replicas); retry, through another node`,
          { details: { topic, segment } },
        ),
      );
    }
    if (position <= replicator.confirmedPosition) return undefined;
    return replicator.positionConfirmed(position, waitMs, () =>
      walrusError(
        'TOPIC_BUSY',
        `GET of ${topic} waited ${waitMs} ms for a majority of ${key}'s replicas to record its position (${position}), and they do not answer; retry`,
        { details: { topic, segment, position } },
      ),
    );
  }

  /** How this node answers its segments' leaders. */
  handlers(): Readonly<Record<string, PeerHandler>> {
    return {
      [PEER_OPS.replicate]: async (head, data) => {
        const topic = headString(head, 'topic');
        const segment = headCount(head, 'segment');
        const offset = headCount(head, 'offset');
        const payloads = head.sizes === undefined ? [] : splitRun(head.sizes, data);
        if (payloads === undefined) throw walrusError('PEER_PROTOCOL', 'a replicate whose sizes do not add up to its data');
        // Only the node serving the segment (as this node's metadata has it) moves this copy: an
        // old leader with a stale view is told it is fenced; a sender whose metadata is newer than
        // this node's is asked to try again (this node will learn that it serves the segment).
        const from = head.from;
        const server = this.options.metadata.segmentLeader(topic, segment);
        if (typeof from === 'number' && server !== undefined && from !== server) {
          const epoch = typeof head.epoch === 'number' ? head.epoch : 0;
          if (epoch <= this.options.metadata.epoch) return { head: { fenced: true } };
          throw walrusError(
            'RAFT_NOT_LEADER',
            `node ${this.options.nodeId} has not applied the metadata that makes node ${from} serve ${segmentKey(topic, segment)} yet; retry`,
          );
        }
        try {
          const consumed = head.consumed === undefined ? 0 : headCount(head, 'consumed');
          const sealed = this.options.metadata.sealedCount(topic, segment);
          return { head: { held: await this.options.store.appendReplica(topic, segment, offset, payloads, consumed, sealed) } };
        } catch (error) {
          if ((error as WalrusError).code === 'NOT_LEADER_FOR_PARTITION') return { head: { fenced: true } };
          throw error;
        }
      },
      [PEER_OPS.finish]: async (head) => {
        const finisher = this.finisher;
        if (finisher === undefined) throw walrusError('RAFT_NOT_LEADER', 'this node runs no failover: ask the Raft leader');
        await finisher(headString(head, 'topic'), headCount(head, 'segment'));
        return { head: {} };
      },
      [PEER_OPS.fence]: async (head) => ({
        head: { held: await this.fence(headString(head, 'topic'), headCount(head, 'segment')) },
      }),
    };
  }

  /**
   * Fences this node's copy of a segment for a failover and returns the entries it holds. A copy
   * this node leads is not fenced (its leader is alive: it is this node) and is answered as held.
   */
  async fence(topic: string, segment: number): Promise<number> {
    const { store, metadata, nodeId } = this.options;
    if (metadata.segmentLeader(topic, segment) === nodeId && metadata.sealedCount(topic, segment) === undefined) {
      throw walrusError('INVALID_ARGUMENT', `${segmentKey(topic, segment)} is led by this node, which is up: no failover`);
    }
    return store.fence(topic, segment);
  }

  /** Where `finish` requests go (the failover monitor of this node, when it runs one). */
  setFinisher(finisher: ((topic: string, segment: number) => Promise<void>) | undefined): void {
    this.finisher = finisher;
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    const stopping = walrusError('CLOSED', 'the node is stopping; whether the PUT is kept is unknown');
    for (const [key, replicator] of this.replicators) {
      replicator.stop(stopping);
      this.options.store.limitReads(key, undefined);
    }
    this.replicators.clear();
  }

  /**
   * A failover (or a move) named this node to serve a sealed segment: its copy holds all of it, the
   * other replicas may not (a follower that lagged, the old leader with entries past the seal):
   * a replicator brings each of them to the seal, with GET's position.
   */
  private served(command: MetadataCommand | undefined, result: unknown): void {
    if (this.closed || command === undefined || (result as { ok?: unknown } | undefined)?.ok !== true) return;
    const { nodeId, metadata, store } = this.options;
    let topic: string;
    let segment: number;
    let repaired: NodeId | undefined;
    if (command.kind === 'RolloverTopic' && command.sealedOwner === nodeId) {
      topic = command.topic;
      segment = command.expectedSegment;
    } else if (command.kind === 'MoveSegment' && command.owner === nodeId) {
      topic = command.topic;
      segment = command.segment;
    } else if (command.kind === 'ReplaceReplica' && metadata.segmentLeader(command.topic, command.segment) === nodeId) {
      topic = command.topic;
      segment = command.segment;
      repaired = command.added;
    } else return;
    const sealed = metadata.sealedCount(topic, segment);
    const key = segmentKey(topic, segment);
    if (sealed === undefined || metadata.segmentLeader(topic, segment) !== nodeId) return;
    if (repaired !== undefined) {
      // A new replica set: the replicator (if one is still catching the old set up) starts again.
      this.replicators.get(key)?.stop(notLeaderFor(key, { replaced: true }));
      this.replicators.delete(key);
    }
    if (this.replicators.has(key)) return;
    const replicator = this.start(topic, segment, 0, sealed);
    if (replicator === undefined) return;
    replicator.consumedTo(store.consumed(topic, segment));
    if (repaired === undefined) {
      this.options.log.info(
        { topic, segment, sealed, followers: [...replicator.held().keys()] },
        'serving a sealed segment after a failover: catching its other replicas up',
      );
      return;
    }
    this.reportRepair(replicator, topic, segment, sealed, repaired);
  }

  /**
   * Logs a repair's progress every REPAIR_REPORT_MS until the new copy holds the whole segment:
   * entries held of the sealed count, and the entries copied per second since the repair began.
   */
  private reportRepair(replicator: SegmentReplicator, topic: string, segment: number, sealed: number, added: NodeId): void {
    const started = performance.now();
    const heldAtStart = replicator.held().get(added) ?? 0;
    const log = this.options.log;
    log.info({ topic, segment, sealed, to: added }, 'repair: copying a sealed segment to its new replica');
    const timer = setInterval(() => {
      const held = replicator.held().get(added) ?? 0;
      if (held < sealed && (this.closed || this.replicators.get(segmentKey(topic, segment)) !== replicator)) {
        clearInterval(timer);
        return;
      }
      const ms = performance.now() - started;
      const entriesPerSec = Math.round(((Math.min(held, sealed) - heldAtStart) * 1000) / Math.max(1, ms));
      if (held >= sealed) {
        clearInterval(timer);
        log.info(
          { topic, segment, sealed, to: added, tookMs: Math.round(ms), entriesPerSec },
          'repair: done, the new replica holds the whole segment',
        );
        return;
      }
      const percent = Math.floor((100 * held) / Math.max(1, sealed));
      log.info({ topic, segment, to: added, held, sealed, percent, entriesPerSec }, 'repair: copying');
    }, REPAIR_REPORT_MS);
    timer.unref();
  }

  private committedWithin(replicator: SegmentReplicator, count: number): Promise<void> {
    return count <= replicator.commit ? COMMITTED : replicator.committed(count);
  }

  /**
   * GET consumed entries of a segment here: its followers' cursors follow. A sealed segment led
   * here gets a replicator for that when it has none (it was sealed before this process started).
   */
  private consumed(topic: string, segment: number, consumed: number): void {
    const replicator = this.replicators.get(segmentKey(topic, segment)) ?? this.sealedReplicator(topic, segment, consumed);
    replicator?.consumedTo(consumed);
  }

  /**
   * A replicator for a sealed segment this node serves that has none (it was sealed before this
   * process started, or its last one caught up and went), with GET's position `consumed` to pass
   * on; undefined when the segment is not a sealed one served here, or is kept here alone.
   */
  private sealedReplicator(topic: string, segment: number, consumed: number): SegmentReplicator | undefined {
    const { metadata, nodeId } = this.options;
    if (this.closed || metadata.segmentLeader(topic, segment) !== nodeId) return undefined;
    const sealed = metadata.sealedCount(topic, segment);
    if (sealed === undefined) return undefined;
    const replicator = this.start(topic, segment, 0, sealed);
    if (replicator === undefined) return undefined;
    // All of a sealed segment is committed: readers see it whole.
    this.options.store.limitReads(segmentKey(topic, segment), undefined);
    replicator.consumedTo(consumed);
    return replicator;
  }

  /** A replicator for a segment led here whose replica set has other nodes (undefined when it has none). */
  private start(topic: string, segment: number, startAt: number, local?: number): SegmentReplicator | undefined {
    const { metadata, nodeId, store, peers } = this.options;
    const followers = (metadata.segmentReplicas(topic, segment) ?? [nodeId]).filter((id) => id !== nodeId);
    if (followers.length === 0 || peers === undefined) return undefined;
    const key = segmentKey(topic, segment);
    const replicator = new SegmentReplicator({
      topic,
      segment,
      epoch: metadata.epoch,
      followers,
      startAt,
      transport: { send: (id, run) => this.send(peers, id, run) },
      read: (offset) => store.readHeld(topic, segment, offset),
      onFenced: () => this.askToFinish(topic, segment),
      // An open segment only: a sealed one's other copies may hold more (an old leader's tail).
      ...(metadata.sealedCount(topic, segment) === undefined
        ? {
            onBehind: (follower: NodeId, held: number, local: number) => {
              this.options.log.warn(
                { topic, segment, follower, held, local },
                "a follower holds more of a segment than its leader (the leader lost entries it had, e.g. to a power cut under fsync 'interval'): the leader stops taking PUTs for it and asks for a failover",
              );
              void store.closeEarly(topic, segment).catch(() => undefined);
              this.askToFinish(topic, segment);
            },
          }
        : {}),
      onCommit: (commit) => {
        if (metadata.sealedCount(topic, segment) === undefined) store.limitReads(key, commit);
      },
      waitMs: this.options.commitTimeoutMs,
      timedOut: (count) =>
        walrusError(
          'NOT_COMMITTED',
          `the PUT was written on this node but a majority of ${key}'s replicas did not confirm it within ${this.options.commitTimeoutMs} ms; whether it is kept is unknown`,
          { details: { topic, segment, offset: count - 1 } },
        ),
    });
    this.replicators.set(key, replicator);
    // A sealed segment's copy here may hold entries past its seal (an old leader's): never sent.
    const held = local ?? store.count(topic, segment);
    if (held > startAt) replicator.appended(held);
    else replicator.appended(startAt);
    return replicator;
  }

  /**
   * Starts a replicator for each replicated open segment led here. One whose segment was sealed
   * since goes on until its followers hold every entry and GET's position, then goes; one whose
   * segment another node leads now stops.
   */
  private follow(): void {
    if (this.closed) return;
    const { metadata, nodeId, store } = this.options;
    for (const { topic, segment } of metadata.ownedOpenSegments(nodeId)) {
      const key = segmentKey(topic, segment);
      if (this.replicators.has(key)) continue;
      if (this.start(topic, segment, 0) !== undefined) store.limitReads(key, this.replicators.get(key)?.commit ?? 0);
    }
    for (const [key, replicator] of this.replicators) {
      const { topic, segment } = replicator.segmentOf;
      const sealed = metadata.sealedCount(topic, segment);
      if (sealed === undefined && metadata.segmentLeader(topic, segment) === nodeId) continue;
      // Sealed: its rollover waited for the commit of every entry, so readers see it whole.
      store.limitReads(key, undefined);
      if (sealed !== undefined && metadata.segmentLeader(topic, segment) === nodeId && !replicator.caughtUp()) continue;
      replicator.stop(notLeaderFor(key));
      this.replicators.delete(key);
    }
  }

  /**
   * A follower says a failover fenced a segment this node still leads (per its metadata): the
   * failover may have stopped before the seal (the Raft leader changed), and until the seal the
   * topic takes no writes, so ask the Raft leader to finish it, until the metadata shows it sealed.
   */
  private askToFinish(topic: string, segment: number): void {
    const key = segmentKey(topic, segment);
    const { peers, raftLeader, metadata, nodeId } = this.options;
    if (this.asking.has(key) || peers === undefined || raftLeader === undefined) return;
    this.asking.add(key);
    const stillOpen = (): boolean =>
      metadata.sealedCount(topic, segment) === undefined && metadata.segmentLeader(topic, segment) === nodeId;
    const attempt = async (): Promise<void> => {
      for (let tries = 0; !this.closed && stillOpen() && tries < FINISH_TRIES_MAX; tries++) {
        const leader = raftLeader();
        if (leader !== undefined && leader !== nodeId) {
          try {
            await peers.client(leader).request(PEER_OPS.finish, { topic, segment });
          } catch (error) {
            this.options.log.debug(
              { topic, segment, leader, error: (error as Error).message },
              'asking the Raft leader to finish a failover failed',
            );
          }
        } else if (leader === nodeId && this.finisher !== undefined) {
          await this.finisher(topic, segment).catch(() => undefined);
        }
        if (!stillOpen()) break;
        await new Promise((resolve) => setTimeout(resolve, FINISH_RETRY_MS).unref());
      }
    };
    this.options.log.warn(
      { topic, segment },
      'a follower is fenced: a failover is sealing a segment this node led; asking the Raft leader to finish it',
    );
    void attempt().finally(() => this.asking.delete(key));
  }

  private async send(peers: PeerRequests, follower: NodeId, run: ReplicaRun): Promise<ReplicaAnswer> {
    const head: Record<string, unknown> = {
      from: this.options.nodeId,
      topic: run.topic,
      segment: run.segment,
      epoch: run.epoch,
      offset: run.offset,
      commit: run.commit,
      consumed: run.consumed,
    };
    // A run that only moves the GET position has no entries (and no sizes).
    if (run.payloads.length > 0) head.sizes = run.payloads.map((payload) => payload.length);
    const reply = await peers.client(follower).request(PEER_OPS.replicate, head, Buffer.concat(run.payloads));
    if (reply.head.fenced === true) return { fenced: true };
    const held = reply.head.held;
    if (typeof held !== 'number' || !Number.isSafeInteger(held) || held < 0) {
      throw walrusError('PEER_PROTOCOL', `node ${follower} answered replicate with ${JSON.stringify(reply.head)}`);
    }
    return { held };
  }
}

const COMMITTED: Promise<void> = Promise.resolve();
/** Pause between requests to finish a failover, and how many are made. */
const FINISH_RETRY_MS = 500;
const FINISH_TRIES_MAX = 120;
/** How often a repair's progress is logged. */
const REPAIR_REPORT_MS = 1_000;
