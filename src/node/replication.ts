// Replicated segments on one node (issue 14): for each open segment this node leads whose replica
// set (metadata) has other nodes, a SegmentReplicator sends the appended entries to them; a PUT's
// reply waits until a majority of the set holds its entry (`acks: quorum`), and GET and FETCH of
// that segment see only committed entries (the store's read limit). As a follower, this node
// keeps the runs its segments' leaders send (`replicate`) and ends its part when fenced.
//
// A PUT whose entry does not get committed within commitTimeoutMs (no majority reachable) fails
// with NOT_COMMITTED: it was written on the leader, so whether it is kept is unknown, and it is
// never sent again. What is not here yet: failover (sealing a segment whose leader is gone at
// what a quorum of its replicas holds) and reads from replicas.

import type { NodeId } from '../contracts/consensus.js';
import { type WalrusError, walrusError } from '../kernel/errors.js';
import { headCount, headString, PEER_OPS, type PeerRequests, splitRun } from './forwarding.js';
import { notLeaderFor } from './leases.js';
import { type MetadataStateMachine, segmentKey } from './metadata.js';
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
  readonly log: { warn(fields: object, message: string): void; debug(fields: object, message: string): void };
}

export class Replication {
  private readonly options: ReplicationOptions;
  /** By segment key: the replicators of open segments led here that have followers. */
  private readonly replicators = new Map<string, SegmentReplicator>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(options: ReplicationOptions) {
    this.options = options;
    const unfollow = options.metadata.onChange(() => this.follow());
    const unconsume = options.store.onConsume((topic, segment, consumed) => this.consumed(topic, segment, consumed));
    this.unsubscribe = () => {
      unfollow();
      unconsume();
    };
    this.follow();
  }

  /**
   * After the leader appended entry `offset` of a segment: a promise of its commit when the PUT
   * must wait for it, else undefined (a segment kept by this node alone, or `acks: leader`).
   */
  appended(topic: string, segment: number, offset: number): Promise<void> | undefined {
    const replicator = this.replicators.get(segmentKey(topic, segment));
    if (replicator === undefined) return undefined;
    replicator.appended(offset + 1);
    if (this.options.acks === 'leader') return undefined;
    // Whatever stops the wait, the entry is written here: never a "not mine" that would have it sent again.
    return this.committedWithin(replicator, offset + 1).catch((error: unknown) => {
      if ((error as WalrusError).code === 'NOT_COMMITTED') throw error;
      throw walrusError(
        'NOT_COMMITTED',
        `the PUT was written on this node but ${segmentKey(topic, segment)} stopped taking writes before a majority of its replicas confirmed it (${(error as Error).message}); whether it is kept is unknown`,
        { details: { topic, segment, offset }, cause: error },
      );
    });
  }

  /** Resolves once the first `count` entries of a segment led here are committed (at once when it is not replicated). */
  settled(topic: string, segment: number, count: number): Promise<void> {
    const replicator = this.replicators.get(segmentKey(topic, segment));
    return replicator === undefined ? Promise.resolve() : this.committedWithin(replicator, count);
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
        try {
          const consumed = head.consumed === undefined ? 0 : headCount(head, 'consumed');
          return { head: { held: await this.options.store.appendReplica(topic, segment, offset, payloads, consumed) } };
        } catch (error) {
          if ((error as WalrusError).code === 'NOT_LEADER_FOR_PARTITION') return { head: { fenced: true } };
          throw error;
        }
      },
    };
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

  private committedWithin(replicator: SegmentReplicator, count: number): Promise<void> {
    return count <= replicator.commit ? COMMITTED : replicator.committed(count);
  }

  /**
   * GET consumed entries of a segment here: its followers' cursors follow. A sealed segment led
   * here gets a replicator for that when it has none (it was sealed before this process started).
   */
  private consumed(topic: string, segment: number, consumed: number): void {
    const key = segmentKey(topic, segment);
    let replicator = this.replicators.get(key);
    if (replicator === undefined) {
      const { metadata, nodeId } = this.options;
      const sealed = metadata.sealedCount(topic, segment);
      if (sealed === undefined || metadata.segmentLeader(topic, segment) !== nodeId) return;
      replicator = this.start(topic, segment, sealed);
      if (replicator === undefined) return;
      // All of a sealed segment is committed: readers see it whole.
      this.options.store.limitReads(key, undefined);
    }
    replicator.consumedTo(consumed);
  }

  /** A replicator for a segment led here whose replica set has other nodes (undefined when it has none). */
  private start(topic: string, segment: number, startAt: number): SegmentReplicator | undefined {
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
    const held = store.count(topic, segment);
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

  private async send(peers: PeerRequests, follower: NodeId, run: ReplicaRun): Promise<ReplicaAnswer> {
    const head: Record<string, unknown> = {
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
