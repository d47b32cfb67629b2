// The node controller: what each client command does on this node. It reads the local metadata
// replica, proposes metadata changes through consensus (REGISTER), appends through the segment
// store under the write lease (PUT), serves GET from the topic's shared position (consuming the
// entry only once the reply is written) and FETCH by position, and answers STATE and METRICS.
// Successes are the original's texts (reference: cluster.md §1.4–1.7); failures are WalrusErrors
// with codes, which the server turns into `ERR …` through the one wire table
// (src/protocol/wire-errors.ts).
//
// Any node serves any request (with `peers`): a PUT for a topic whose open segment another node
// leads is forwarded to that node (`append`), a GET whose position is in a segment another node
// holds reads it there (the reader's `take`), a FETCH likewise (`read`). A forward refused because
// a view was stale (NotLeaderForPartition, a full segment) is sent again once the view moves on;
// one that may have been applied (no answer) is never sent again. peerHandlers() answers those
// requests from other nodes. A new topic is placed on one of the live nodes by a hash of its name
// (placement.ts); on one node that is always this node. Without `peers` (a node alone), writes
// for a segment another node leads get `ERR NotLeaderForPartition: t_<topic>_s_<n>`.

import { isUtf8 } from 'node:buffer';
import type { Consensus, NodeId } from '../contracts/consensus.js';
import { type ErrorCode, type WalrusError, walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import type { Command } from '../protocol/commands.js';
import { FRAME_HEADER_BYTES } from '../protocol/frames.js';
import { EMPTY, fetched, OK, okPayload } from '../protocol/replies.js';
import {
  ForwardedAppends,
  headCount,
  headString,
  PEER_OPS,
  type PeerReads,
  type PeerRequests,
  splitRun,
  TAKE_WAIT_MS,
} from './forwarding.js';
import { notLeaderFor } from './leases.js';
import { encodeCommand, type MetadataResult, type MetadataStateMachine, segmentKey, topicNameProblem } from './metadata.js';
import type { NodeStats } from './node-stats.js';
import { PayloadBatch, type PutUnit } from './payload-batch.js';
import { failureHead } from './peer-codec.js';
import type { PeerAnswer, PeerHandler } from './peer-server.js';
import { placeTopic, replicaSet } from './placement.js';
import { type NextResult, readConsecutive, type TopicReader } from './reader.js';
import type { Replication } from './replication.js';
import { isRolling, RolloverWait } from './rollover-wait.js';
import type { SegmentStore } from './segment-store.js';

/**
 * A reply, and what to do once it has been written to the client (or could not be). GET replies
 * with an entry come as `frame`, encoded straight from the entry's bytes; failures as `error`
 * (the server sends its wire text); every other reply as `text`.
 */
export type ControllerReply =
  | { readonly text: string; readonly frame?: undefined; readonly error?: undefined; readonly written?: (ok: boolean) => void }
  | { readonly frame: Buffer; readonly text?: undefined; readonly error?: undefined; readonly written?: (ok: boolean) => void }
  | { readonly error: Error; readonly text?: undefined; readonly frame?: undefined; readonly written?: undefined };

export interface ControllerOptions {
  readonly nodeId: number;
  readonly metadata: MetadataStateMachine;
  readonly consensus: Pick<Consensus, 'propose' | 'metrics'> & Partial<Pick<Consensus, 'status'>>;
  readonly store: SegmentStore;
  readonly reader: TopicReader;
  /** How long a PUT waits for a full segment's rollover to apply before giving up with the retriable error. */
  readonly rolloverWaitMs?: number;
  /** The other nodes: forwarded PUTs, reads of segments held elsewhere. Absent on a node alone. */
  readonly peers?: PeerRequests;
  /** FETCH of segments other nodes hold (with `peers`). */
  readonly remoteReads?: Pick<PeerReads, 'read' | 'readRun'>;
  /**
   * The nodes known to be up (Consensus.liveMembers), among which REGISTER places a new topic.
   * Absent, or empty, places every new topic on this node.
   */
  readonly liveNodes?: () => readonly number[];
  /** Replicated segments: a PUT of a segment led here is acknowledged once committed (absent: at once). */
  readonly replication?: Pick<Replication, 'appended' | 'appendedBatch' | 'settled'>;
  /** replication.factor: nodes a new topic's first segment is kept by (default 1). */
  readonly replicationFactor?: number;
  /** Where appended and read entries are counted (the data plane's NodeStats). */
  readonly stats?: Pick<NodeStats, 'appended' | 'read'>;
}

/** A PUT that meets a full segment waits this long, at most, for the rollover to apply. */
export const ROLLOVER_WAIT_MS_DEFAULT = 2000;
/** When the metadata names the next segment but the lease has not followed yet, the retry pause. */
const RETRY_PAUSE_MS = 2;
/** How long a request for a topic this replica does not know waits for it to appear (in a cluster). */
const TOPIC_APPEAR_WAIT_MS = 1_000;
/** A GET refused because its segment is read elsewhere now is tried again this many times... */
const GET_REROUTES_MAX = 5;
/** ...each once the metadata has moved, or after this long. */
const GET_REROUTE_WAIT_MS = 100;
/** How long a REGISTER keeps trying while no Raft leader is known (below the client's default timeout). */
const PROPOSE_WAIT_MS = 8_000;
const PROPOSE_RETRY_MS = 100;
/** When another node refused a forwarded PUT for the segment this node's view names, the retry pause. */
const REMOTE_RETRY_PAUSE_MS = 20;

/** What a leaving node reports (handOff): topics moved to other nodes, and entries only it holds unread. */
export interface HandOffReport {
  readonly moved: readonly string[];
  readonly unread: readonly { readonly topic: string; readonly segment: number; readonly entries: number }[];
}

/** PUTs of one topic forwarded to one node and not answered yet (see put()). */
interface ForwardGate {
  readonly target: NodeId;
  /** The segment they were sent for: a node accepts a forwarded PUT only for the segment it names. */
  readonly segment: number;
  pending: number;
  readonly idle: Promise<void>;
  readonly open: () => void;
}

const lossy = new TextDecoder('utf-8');
/** The answer to a run of forwarded PUTs that were all appended. */
const EMPTY_ANSWER: PeerAnswer = Object.freeze({ head: Object.freeze({}) });
const byIndex = (a: Record<string, unknown>, b: Record<string, unknown>): number => (a.index as number) - (b.index as number);

export class NodeController {
  private readonly options: ControllerOptions;

  /** This node's clients' PUTs waiting for a rollover, per topic, in arrival order; sent to wherever the next segment is led. */
  private readonly rollovers: RolloverWait;
  /** PUTs other nodes forwarded here that wait for a rollover; only ever appended here, else refused back. */
  private readonly forwardedIn: RolloverWait;
  /** Per topic: forwards in flight to one node. A PUT routed elsewhere waits until they are answered. */
  private readonly gates = new Map<string, ForwardGate>();
  /** Per topic: the segment the forwarded PUTs waiting in `forwardedIn` were sent for. */
  private readonly pinned = new Map<string, number>();
  /** Per topic: forwarded PUTs for a segment this replica has not applied yet wait here, in order. */
  private readonly catchingUp = new Map<string, Promise<void>>();
  /** PUTs forwarded to the nodes leading their segments, sent in runs (with peers). */
  private readonly appends: ForwardedAppends | undefined;
  /** Once this node has been taken out of the cluster: every client request but METRICS is refused with it. */
  private removal: Error | undefined;
  private readonly unfollowFailovers: () => void;

  constructor(options: ControllerOptions) {
    this.options = options;
    this.appends = options.peers === undefined ? undefined : new ForwardedAppends(options.peers);
    // A failover sealed a segment whose leader is unreachable: PUTs forwarded to it and not
    // answered fail now (unsure), rather than at the request timeout, so writers move on.
    const appends = this.appends;
    this.unfollowFailovers = options.metadata.onChange(({ command, result }) => {
      if (appends === undefined || command?.kind !== 'RolloverTopic' || command.sealedOwner === undefined || !result.ok) return;
      // Only the old leader took forwards for that segment; its id is no longer in the metadata.
      for (const id of options.metadata.nodes().keys()) {
        appends.abandon(
          id,
          command.topic,
          command.expectedSegment,
          walrusError(
            'PEER_TIMEOUT',
            `node ${id} was unreachable and ${segmentKey(command.topic, command.expectedSegment)} failed over while this PUT was forwarded to it; whether it took effect there is unknown`,
            { details: { peer: id, topic: command.topic, segment: command.expectedSegment } },
          ),
        );
      }
    });
    const waitMs = options.rolloverWaitMs ?? ROLLOVER_WAIT_MS_DEFAULT;
    const onChange = (listener: () => void) => options.metadata.onChange(listener);
    this.rollovers = new RolloverWait({
      waitMs,
      retryPauseMs: (topic, segment) => (this.leaderOf(topic, segment) === options.nodeId ? RETRY_PAUSE_MS : REMOTE_RETRY_PAUSE_MS),
      target: {
        openSegment: (topic) => {
          const route = this.route(topic);
          return typeof route === 'number' ? route : (route.error ?? new Error('no open segment'));
        },
        append: (topic, segment, payload) => this.appendAnywhere(topic, segment, payload),
        full: (topic, segment) => this.leaderOf(topic, segment) === options.nodeId && options.store.full(topic, segment),
        onChange,
        // Forwards sent straight from put() and not answered yet: a refusal among them joins the
        // queue ahead of later PUTs, so the queue sends nothing until they are all answered.
        earlierInFlight: (topic) => this.gates.get(topic)?.idle,
      },
    });
    this.forwardedIn = new RolloverWait({
      waitMs,
      retryPauseMs: RETRY_PAUSE_MS,
      target: {
        // Only the segment the forwarded PUTs were sent for: once the topic moved on, they go back
        // to their sender, which sends them on in order (a node never appends them elsewhere).
        openSegment: (topic) => {
          const segment = this.openSegmentHere(topic);
          if (typeof segment !== 'number') return segment.error ?? new Error('no open segment');
          const pinned = this.pinned.get(topic);
          return pinned === undefined || pinned === segment ? segment : notLeaderFor(segmentKey(topic, segment));
        },
        append: async (topic, segment, payload) => this.appendLocal(topic, segment, payload),
        full: (topic, segment) => options.store.full(topic, segment),
        onChange,
      },
    });
  }

  /** This node was taken out of the cluster (by the Raft leader `by`): it serves no more client requests. */
  markRemoved(by: NodeId): void {
    const { nodeId } = this.options;
    this.removal = walrusError(
      'NODE_REMOVED',
      `node ${nodeId} was removed from the cluster${by === nodeId ? '' : ` (by node ${by})`} and serves no more requests; use another node, and stop this one`,
      { details: { nodeId, by } },
    );
  }

  /** Whether this node was taken out of the cluster (markRemoved): it serves no more client requests. */
  get removed(): boolean {
    return this.removal !== undefined;
  }

  /** Answers every PUT still waiting for a rollover (the node is stopping). */
  close(): void {
    this.unfollowFailovers();
    const stopping = walrusError('CLOSED', 'the node is stopping; the PUT was not written');
    this.rollovers.close(stopping);
    this.forwardedIn.close(stopping);
  }

  /**
   * What `command` does. PUT and GET answer synchronously when nothing has to be waited for (the
   * key is free and the engine acknowledged at once); everything else answers with a promise.
   */
  handle(command: Command): ControllerReply | Promise<ControllerReply> {
    if (this.removal !== undefined && command.op !== 'METRICS') return { error: this.removal };
    switch (command.op) {
      case 'REGISTER':
        return this.register(command.topic);
      case 'PUT':
        return this.put(command.topic, command.payload);
      case 'MPUT': {
        // One unit all the way: appended together (or not at all) in one segment.
        const reply = this.put(command.topic, new PayloadBatch(command.batch));
        const ok = { text: `${OK} ${command.batch.count}` };
        return reply instanceof Promise ? reply.then((done) => (done === OK_REPLY ? ok : done)) : reply === OK_REPLY ? ok : reply;
      }
      case 'GET':
        return this.get(command.topic);
      case 'FETCH':
        return this.fetch(command.topic, command.segment, command.offset);
      case 'MFETCH':
        return this.fetchRun(command.topic, command.segment, command.offset, command.max);
      case 'MGET':
        return this.get(command.topic, 0, command.max);
      case 'STATE':
        return this.state(command.topic);
      case 'METRICS':
        return { text: JSON.stringify(this.options.consensus.metrics(), null, 2) };
    }
  }

  /**
   * This node is leaving the cluster: seals every open segment it leads (once its entries are
   * committed) and hands its topic to the next other live node (the PUTs that meet the closed
   * segment wait for that rollover and go on there), then reports the entries no GET has read
   * yet of segments kept here alone (replication.factor 1): they would be lost with this node. A
   * replicated segment is served by another of its replicas once this node has left (failover.ts).
   */
  async handOff(): Promise<HandOffReport> {
    const { metadata, store, nodeId } = this.options;
    const moved: string[] = [];
    for (const { topic, segment } of metadata.ownedOpenSegments(nodeId)) {
      const others = (this.options.liveNodes?.() ?? []).filter((id) => id !== nodeId).sort((a, b) => a - b);
      const next = others.find((id) => id > nodeId) ?? others[0];
      if (next === undefined) {
        throw walrusError(
          'PEER_UNAVAILABLE',
          `no other node is up to take topic ${topic} over from node ${nodeId}; the request was not sent`,
        );
      }
      const count = await store.closeEarly(topic, segment);
      try {
        await this.options.replication?.settled(topic, segment, count);
        const factor = this.options.replicationFactor ?? 1;
        const result = (await this.propose({
          kind: 'RolloverTopic',
          topic,
          expectedSegment: segment,
          sealedCount: count,
          newLeader: next,
          ...(factor > 1 ? { replicas: replicaSet(next, factor, others, others) } : {}),
        })) as MetadataResult;
        if (!result.ok) throw walrusError('METADATA_REJECTED', result.error, { details: { topic } });
      } catch (error) {
        store.reopen(topic, segment);
        throw error;
      }
      moved.push(topic);
    }
    const unread: { topic: string; segment: number; entries: number }[] = [];
    for (const topic of metadata.topics()) {
      const open = metadata.topic(topic)?.currentSegment ?? 0;
      for (let segment = 1; segment <= open; segment++) {
        if (metadata.segmentLeader(topic, segment) !== nodeId) continue;
        if ((metadata.segmentReplicas(topic, segment) ?? [nodeId]).some((id) => id !== nodeId)) continue;
        const entries = store.count(topic, segment) - store.consumed(topic, segment);
        if (entries > 0) unread.push({ topic, segment, entries });
      }
    }
    return { moved, unread };
  }

  /** How this node answers node-to-node requests (Peers.serve). */
  peerHandlers(): Readonly<Record<string, PeerHandler>> {
    return {
      [PEER_OPS.handoff]: async () => ({ head: { ...(await this.handOff()) } }),
      [PEER_OPS.append]: (head, data) => {
        const topic = headString(head, 'topic');
        const segment = headCount(head, 'segment');
        if (head.sizes === undefined) return this.appendForwarded(topic, segment, data);
        const payloads = splitRun(head.sizes, data);
        if (payloads === undefined) throw walrusError('PEER_PROTOCOL', 'an append whose sizes do not add up to its data');
        if (head.batch === true) return this.appendForwarded(topic, segment, new PayloadBatch(payloads));
        return this.appendRun(topic, segment, payloads);
      },
      [PEER_OPS.take]: async (head) => {
        const { reader } = this.options;
        if (head.closeHold !== undefined) await reader.settleForPeer(headCount(head, 'closeHold'), headCount(head, 'closeConsumed'), true);
        const sealed = head.sealed === undefined ? undefined : headCount(head, 'sealed');
        const max = head.max === undefined ? 1 : headCount(head, 'max');
        const taken = await reader.takeForPeer(headString(head, 'topic'), headCount(head, 'segment'), sealed, TAKE_WAIT_MS, max);
        if (taken.kind !== 'entries') return { head: { kind: taken.kind } };
        const sizes = taken.payloads.map((payload) => payload.length);
        return { head: { kind: 'entries', offset: taken.offset, hold: taken.hold, sizes }, data: Buffer.concat(taken.payloads) };
      },
      [PEER_OPS.settle]: async (head) => {
        if (typeof head.release !== 'boolean') throw walrusError('PEER_PROTOCOL', 'settle without release');
        return {
          head: { settled: await this.options.reader.settleForPeer(headCount(head, 'hold'), headCount(head, 'consumed'), head.release) },
        };
      },
      [PEER_OPS.read]: async (head) => {
        const topic = headString(head, 'topic');
        const segment = headCount(head, 'segment');
        const offset = headCount(head, 'offset');
        if (head.max !== undefined) {
          const payloads = this.readRunHere(topic, segment, offset, headCount(head, 'max'), headCount(head, 'maxBytes'));
          if (payloads.length === 0) return { head: { found: false } };
          return { head: { found: true, sizes: payloads.map((payload) => payload.length) }, data: Buffer.concat(payloads) };
        }
        const payload = this.readSealedAware(topic, segment, offset);
        return payload === null ? { head: { found: false } } : { head: { found: true }, data: payload };
      },
    };
  }

  private async register(topic: string): Promise<ControllerReply> {
    const problem = topicNameProblem(topic);
    if (problem !== undefined) return failed('INVALID_TOPIC_NAME', problem, { topic });
    if (this.options.metadata.topic(topic) !== undefined) return OK_REPLY;
    const initialLeader = this.placement(topic);
    const factor = this.options.replicationFactor ?? 1;
    const live = this.options.liveNodes?.() ?? [];
    const replicas = factor > 1 ? { replicas: replicaSet(initialLeader, factor, live, live) } : {};
    const result = (await this.propose({ kind: 'CreateTopic', topic, initialLeader, ...replicas })) as MetadataResult;
    return result.ok ? OK_REPLY : failed('METADATA_REJECTED', result.error, { topic });
  }

  /**
   * One attempt at once, here or at the node that leads the open segment. A PUT that meets a
   * segment being rolled over, or arrives while others for its topic wait for one, waits in the
   * topic's queue (rollover-wait.ts), which keeps arrival order. A PUT whose route differs from
   * that of forwards still unanswered for its topic waits for their answers first: a forward
   * refused by the old leader is sent again before anything that arrived after it.
   */
  private put(topic: string, payload: PutUnit): ControllerReply | Promise<ControllerReply> {
    const arrival = this.rollovers.arrive();
    if (this.rollovers.has(topic)) return this.waitForRollover(this.rollovers, topic, arrival, payload, undefined);
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return this.onceKnown(topic, () => this.put(topic, payload));
    const leader = state.leaderNode;
    const gate = this.gates.get(topic);
    if (gate !== undefined && (gate.target !== leader || gate.segment !== state.currentSegment)) {
      return gate.idle.then(() => this.put(topic, payload));
    }
    if (leader === this.options.nodeId) return this.appendHere(this.rollovers, topic, state.currentSegment, payload, arrival);
    const appends = this.appends;
    if (appends === undefined) return { error: notLeaderFor(segmentKey(topic, state.currentSegment)) };
    return this.forward(appends, topic, state.currentSegment, leader, payload, arrival);
  }

  /** Appends to a segment led here; a refusal that a rollover will lift queues the PUT in `wait`. */
  private appendHere(
    wait: RolloverWait,
    topic: string,
    segment: number,
    payload: PutUnit,
    arrival: number,
  ): ControllerReply | Promise<ControllerReply> {
    try {
      const offset = this.appendLocal(topic, segment, payload);
      if (typeof offset === 'number') return OK_REPLY;
      return offset.then(
        () => OK_REPLY,
        (error: unknown) => (isRolling(error) ? this.waitForRollover(wait, topic, arrival, payload, error) : { error: error as Error }),
      );
    } catch (error) {
      return isRolling(error) ? this.waitForRollover(wait, topic, arrival, payload, error) : { error: error as Error };
    }
  }

  /** Sends a PUT to the node leading the open segment, through the topic's gate. */
  private forward(
    appends: ForwardedAppends,
    topic: string,
    segment: number,
    leader: NodeId,
    payload: PutUnit,
    arrival: number,
  ): Promise<ControllerReply> {
    const gate = this.enterGate(topic, leader, segment);
    const sent = this.sendTo(appends, leader, topic, segment, payload);
    return sent.then(
      () => {
        this.leaveGate(topic, gate);
        return OK_REPLY;
      },
      (error: unknown) => {
        // Queued (synchronously) before the gate opens, so PUTs that waited at the gate go behind it.
        const reply = isRolling(error) ? this.waitForRollover(this.rollovers, topic, arrival, payload, error) : { error: error as Error };
        this.leaveGate(topic, gate);
        return reply;
      },
    );
  }

  /**
   * Appends to a segment led here; with replication, the offset comes once the entry is committed
   * (a majority of the segment's replicas hold it). Synchronous when nothing has to be waited for.
   */
  private appendLocal(topic: string, segment: number, payload: PutUnit): number | Promise<number> {
    const stats = this.options.stats;
    if (payload instanceof PayloadBatch) {
      return this.options.store.appendBatchNow(topic, segment, payload.run).then((at) => {
        stats?.appended(payload.run.count, payload.run.bytes);
        const waiting = this.options.replication?.appendedBatch(topic, segment, at, payload);
        return waiting === undefined ? at : waiting.then(() => at);
      });
    }
    const offset = this.options.store.appendNow(topic, segment, payload);
    if (typeof offset === 'number') {
      stats?.appended(1, payloadBytes(payload));
      return this.committed(topic, segment, offset, payload);
    }
    return offset.then((at) => {
      stats?.appended(1, payloadBytes(payload));
      return this.committed(topic, segment, at, payload);
    });
  }

  private committed(topic: string, segment: number, offset: number, payload: string | Uint8Array): number | Promise<number> {
    const waiting = this.options.replication?.appended(topic, segment, offset, payload);
    return waiting === undefined ? offset : waiting.then(() => offset);
  }

  /** A rollover queue's attempt: append here, or forward to the node leading `segment`. */
  private appendAnywhere(topic: string, segment: number, payload: PutUnit): Promise<number> {
    const leader = this.leaderOf(topic, segment);
    if (leader === this.options.nodeId) {
      try {
        return Promise.resolve(this.appendLocal(topic, segment, payload));
      } catch (error) {
        // A refusal before any waiting (no lease, a full segment) is thrown: the queue takes promises.
        return Promise.reject(error);
      }
    }
    const appends = this.appends;
    if (appends === undefined || leader === undefined) return Promise.reject(notLeaderFor(segmentKey(topic, segment)));
    // Offsets are not reported across nodes; the queue only needs to know it was written.
    return this.sendTo(appends, leader, topic, segment, payload).then(() => 0);
  }

  /** Forwards one PUT, or an MPUT's batch as one unit, to the node leading `segment`. */
  private sendTo(appends: ForwardedAppends, leader: NodeId, topic: string, segment: number, payload: PutUnit): Promise<void> {
    return payload instanceof PayloadBatch
      ? appends.sendBatch(leader, topic, segment, payload.payloads)
      : appends.send(leader, topic, segment, bytesOf(payload));
  }

  /**
   * A PUT another node forwarded for `segment`: appended here to that segment only (never
   * forwarded on), else refused back as NotLeaderForPartition, so that of the PUTs one node sends
   * for one segment, those appended are always the first ones. A segment this replica has not
   * applied yet (the sender's view is ahead) is waited for, up to the rollover wait, with the
   * PUTs that follow queued behind in arrival order.
   */
  private appendForwarded(topic: string, segment: number, payload: Buffer | PayloadBatch): PeerAnswer | Promise<PeerAnswer> {
    const pending = this.catchingUp.get(topic);
    if (pending !== undefined) return pending.then(() => this.appendForwardedNow(topic, segment, payload));
    const state = this.options.metadata.topic(topic);
    if (state !== undefined && state.currentSegment >= segment) return this.appendForwardedNow(topic, segment, payload);
    const caughtUp = this.untilSegment(topic, segment, this.options.rolloverWaitMs ?? ROLLOVER_WAIT_MS_DEFAULT);
    this.catchingUp.set(topic, caughtUp);
    // Registered first, so it runs before the waiting PUTs' continuations (which run in arrival order).
    void caughtUp.then(() => {
      if (this.catchingUp.get(topic) === caughtUp) this.catchingUp.delete(topic);
    });
    return caughtUp.then(() => this.appendForwardedNow(topic, segment, payload));
  }

  /**
   * A run of forwarded PUTs: each appended as if it had come in its own request, in order; the
   * answer lists the failures by index (none: all appended).
   */
  private appendRun(topic: string, segment: number, payloads: readonly Buffer[]): PeerAnswer | Promise<PeerAnswer> {
    const waiting: Promise<unknown>[] = [];
    const failures: Record<string, unknown>[] = [];
    for (const [index, payload] of payloads.entries()) {
      try {
        const answer = this.appendForwarded(topic, segment, payload);
        if (answer instanceof Promise) {
          waiting.push(answer.catch((error: unknown) => failures.push({ index, ...failureHead(error) })));
        }
      } catch (error) {
        failures.push({ index, ...failureHead(error) });
      }
    }
    const answer = (): PeerAnswer => (failures.length === 0 ? EMPTY_ANSWER : { head: { failures: failures.sort(byIndex) } });
    return waiting.length === 0 ? answer() : Promise.all(waiting).then(answer);
  }

  private appendForwardedNow(topic: string, segment: number, payload: Buffer | PayloadBatch): PeerAnswer | Promise<PeerAnswer> {
    const arrival = this.forwardedIn.arrive();
    let reply: ControllerReply | Promise<ControllerReply>;
    if (this.forwardedIn.has(topic)) reply = this.waitForRollover(this.forwardedIn, topic, arrival, payload, undefined);
    else {
      const state = this.options.metadata.topic(topic);
      if (state === undefined || state.leaderNode !== this.options.nodeId || state.currentSegment !== segment) {
        throw notLeaderFor(segmentKey(topic, state?.currentSegment ?? segment));
      }
      this.pinned.set(topic, segment);
      reply = this.appendHere(this.forwardedIn, topic, segment, payload, arrival);
    }
    return reply instanceof Promise ? reply.then(peerAnswer) : peerAnswer(reply);
  }

  /** Resolves once this replica's open segment of `topic` is `segment` or later, or after `ms`. */
  private untilSegment(topic: string, segment: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const stop = this.options.metadata.onChange(() => {
        if ((this.options.metadata.topic(topic)?.currentSegment ?? 0) < segment) return;
        clearTimeout(timer);
        stop();
        resolve();
      });
      const timer = setTimeout(() => {
        stop();
        resolve();
      }, ms);
    });
  }

  private enterGate(topic: string, target: NodeId, segment: number): ForwardGate {
    let gate = this.gates.get(topic);
    if (gate === undefined) {
      let open = (): void => undefined;
      const idle = new Promise<void>((resolve) => {
        open = resolve;
      });
      gate = { target, segment, pending: 0, idle, open };
      this.gates.set(topic, gate);
    }
    gate.pending += 1;
    return gate;
  }

  private leaveGate(topic: string, gate: ForwardGate): void {
    gate.pending -= 1;
    if (gate.pending > 0) return;
    if (this.gates.get(topic) === gate) this.gates.delete(topic);
    gate.open();
  }

  private async waitForRollover(
    wait: RolloverWait,
    topic: string,
    arrival: number,
    payload: PutUnit,
    failure: unknown,
  ): Promise<ControllerReply> {
    const result = await wait.wait(topic, arrival, payload, failure);
    return typeof result === 'number' ? OK_REPLY : { error: result };
  }

  /** The open segment a PUT goes to (here or, with peers, wherever it is led); otherwise the error reply. */
  private route(topic: string): number | ControllerReply {
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return unknownTopic(topic);
    if (state.leaderNode !== this.options.nodeId && this.options.peers === undefined) {
      return { error: notLeaderFor(segmentKey(topic, state.currentSegment)) };
    }
    return state.currentSegment;
  }

  private leaderOf(topic: string, segment: number): NodeId | undefined {
    return this.options.metadata.segmentLeader(topic, segment);
  }

  /** The topic's open segment when this node leads it; otherwise the error reply. */
  private openSegmentHere(topic: string): number | ControllerReply {
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return unknownTopic(topic);
    if (state.leaderNode !== this.options.nodeId) return { error: notLeaderFor(segmentKey(topic, state.currentSegment)) };
    return state.currentSegment;
  }

  /**
   * GET's next entry. In a cluster, a GET that meets a segment this node's view says is not its
   * own to read (`elsewhere`), or whose replicas' confirmation ended because the segment moved
   * while it waited (NotLeaderForPartition), has handed nothing out: it is tried again once the
   * metadata has moved (or after GET_REROUTE_WAIT_MS), up to GET_REROUTES_MAX times, before that
   * retriable error reaches the client — views of nodes differ for a moment after a failover or
   * a restart.
   */
  private get(topic: string, reroutes = 0, max?: number): ControllerReply | Promise<ControllerReply> {
    let next: NextResult | Promise<NextResult>;
    try {
      next = this.options.reader.nextNow(topic, max ?? 1);
    } catch (error) {
      return this.rerouted(topic, reroutes, error, max);
    }
    const reply = (found: NextResult): ControllerReply | Promise<ControllerReply> => {
      if (found.kind === 'unknown-topic') return this.onceKnown(topic, () => this.get(topic, reroutes, max));
      if (found.kind === 'elsewhere' && this.clustered() && reroutes < GET_REROUTES_MAX)
        return this.afterMetadataMoves().then(() => this.get(topic, reroutes + 1, max));
      return getReply(topic, found, max !== undefined, this.options.stats);
    };
    return next instanceof Promise ? next.then(reply, (error: unknown) => this.rerouted(topic, reroutes, error, max)) : reply(next);
  }

  /** A failed GET: tried again (see get) when the failure was the segment moving away, else the failure. */
  private rerouted(topic: string, reroutes: number, error: unknown, max?: number): Promise<ControllerReply> {
    if ((error as WalrusError).code !== 'NOT_LEADER_FOR_PARTITION' || !this.clustered() || reroutes >= GET_REROUTES_MAX)
      return Promise.reject(error);
    return this.afterMetadataMoves().then(() => this.get(topic, reroutes + 1, max));
  }

  /** Resolves at the next metadata change applied here, or after GET_REROUTE_WAIT_MS. */
  private afterMetadataMoves(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        stop();
        resolve();
      };
      const stop = this.options.metadata.onChange(done);
      const timer = setTimeout(done, GET_REROUTE_WAIT_MS);
    });
  }

  /**
   * STATE of a topic. A topic registered through another node an instant ago may not have reached
   * this replica yet (a node just restarted is still catching up), so an unknown topic waits for
   * it as a PUT or GET does before the answer is `unknown topic`.
   */
  private state(topic: string): ControllerReply | Promise<ControllerReply> {
    const json = this.options.metadata.stateJson(topic);
    if (json !== undefined) return { text: json };
    return this.onceKnown(topic, () => {
      const known = this.options.metadata.stateJson(topic);
      return known === undefined ? unknownTopic(topic) : { text: known };
    });
  }

  /** Whether this node is one of several (requests may then need another node's view or data). */
  private clustered(): boolean {
    return this.options.peers !== undefined && (this.options.consensus.status?.().voters.length ?? 1) > 1;
  }

  /**
   * `retry` once this replica knows `topic`. In a cluster a topic registered through another node
   * an instant ago reaches this replica with the next heartbeat, so a request for a topic unknown
   * here waits up to TOPIC_APPEAR_WAIT_MS for it before answering `unknown topic`; a node alone
   * answers at once.
   */
  private onceKnown(topic: string, retry: () => ControllerReply | Promise<ControllerReply>): ControllerReply | Promise<ControllerReply> {
    if (!this.clustered()) return unknownTopic(topic);
    // A known topic's open segment is 1 or later.
    return this.untilSegment(topic, 1, TOPIC_APPEAR_WAIT_MS).then(() =>
      this.options.metadata.topic(topic) === undefined ? unknownTopic(topic) : retry(),
    );
  }

  private async fetch(topic: string, segment: number, offset: number): Promise<ControllerReply> {
    const source = await this.fetchSource(topic, segment, () => this.fetch(topic, segment, offset));
    if (!('remote' in source)) return source;
    const remote = this.options.remoteReads;
    const payload =
      source.remote !== undefined && remote !== undefined
        ? await remote.read(source.remote, topic, segment, offset)
        : this.readSealedAware(topic, segment, offset);
    if (payload === null) return EMPTY_REPLY;
    this.options.stats?.read(1, payload.length);
    return { text: fetched(offset + 1, lossy.decode(payload)) };
  }

  /**
   * MFETCH: up to `max` consecutive entries of `segment` from `offset`, as FETCH reads each (here
   * or from the node holding the segment), in one reply of at most limits.batchReadBytesMax of payload
   * (and at least one entry): `OK <n> <size> ...` LF, then the payloads; EMPTY when there is no
   * entry at `offset`.
   */
  private async fetchRun(topic: string, segment: number, offset: number, max: number): Promise<ControllerReply> {
    const source = await this.fetchSource(topic, segment, () => this.fetchRun(topic, segment, offset, max));
    if (!('remote' in source)) return source;
    const remote = this.options.remoteReads;
    const payloads =
      source.remote !== undefined && remote !== undefined
        ? await remote.readRun(source.remote, topic, segment, offset, max, limits.batchReadBytesMax)
        : this.readRunHere(topic, segment, offset, max, limits.batchReadBytesMax);
    if (payloads.length === 0) return EMPTY_REPLY;
    this.options.stats?.read(payloads.length, payloadsBytes(payloads));
    return { frame: entriesFrame(payloads) };
  }

  /**
   * Where FETCH and MFETCH read `segment`: `{ remote }`, the node holding it (undefined: here), or
   * the reply when there is nothing to read (EMPTY, an unknown topic; `retry` once it is known).
   */
  private async fetchSource(
    topic: string,
    segment: number,
    retry: () => ControllerReply | Promise<ControllerReply>,
  ): Promise<{ readonly remote: NodeId | undefined } | ControllerReply> {
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return this.onceKnown(topic, retry);
    if (segment > state.currentSegment) {
      // In a cluster this replica may not have applied that segment's opening yet (just
      // restarted, or a heartbeat behind): give it a moment before saying there is nothing.
      if (!this.clustered()) return EMPTY_REPLY;
      await this.untilSegment(topic, segment, TOPIC_APPEAR_WAIT_MS);
      if (segment > (this.options.metadata.topic(topic)?.currentSegment ?? 0)) return EMPTY_REPLY;
    }
    const owner = this.leaderOf(topic, segment);
    return { remote: owner !== undefined && owner !== this.options.nodeId && this.options.remoteReads !== undefined ? owner : undefined };
  }

  /** Up to `max` entries of a segment here from `offset`, never past its seal, at most `maxBytes` of them but at least one. */
  private readRunHere(topic: string, segment: number, offset: number, max: number, maxBytes: number): Buffer[] {
    // Never past the seal, as readSealedAware.
    const end = this.options.metadata.sealedCount(topic, segment) ?? Number.POSITIVE_INFINITY;
    return readConsecutive(this.options.store, topic, segment, offset, end, max, maxBytes);
  }

  /**
   * The entry at `offset` of a segment here, never past its seal: a copy can hold entries beyond
   * it (an old leader's, written but never committed before a failover sealed the segment), and
   * those do not exist for readers.
   */
  private readSealedAware(topic: string, segment: number, offset: number): Buffer | null {
    const sealed = this.options.metadata.sealedCount(topic, segment);
    if (sealed !== undefined && offset >= sealed) return null;
    return this.options.store.read(topic, segment, offset);
  }

  /**
   * Proposes through consensus; while no leader is known (an election, nodes still starting) or a
   * new leader dropped the proposal, tries again every PROPOSE_RETRY_MS for up to PROPOSE_WAIT_MS.
   * Only idempotent commands come here (CreateTopic of a topic that exists changes nothing).
   */
  private async propose(command: Parameters<typeof encodeCommand>[0]): Promise<unknown> {
    const deadline = Date.now() + PROPOSE_WAIT_MS;
    for (;;) {
      try {
        return await this.options.consensus.propose(encodeCommand(command));
      } catch (error) {
        const code = (error as { code?: string }).code;
        const again = code === 'RAFT_NOT_LEADER' || code === 'PROPOSAL_DROPPED';
        if (!again || Date.now() + PROPOSE_RETRY_MS > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, PROPOSE_RETRY_MS));
      }
    }
  }

  /** Where a new topic's first segment goes: a live node picked by the name's hash (placement.ts). */
  private placement(topic: string): number {
    return placeTopic(topic, this.options.liveNodes?.() ?? [], this.options.nodeId);
  }
}

/** The replies without a value, built once: the synchronous PUT path allocates no reply. */
const OK_REPLY: ControllerReply = Object.freeze({ text: OK });
const EMPTY_REPLY: ControllerReply = Object.freeze({ text: EMPTY });

function failed(code: ErrorCode, message: string, details: Readonly<Record<string, unknown>>): ControllerReply {
  return { error: walrusError(code, message, { details }) };
}

/** The GET reply for what the reader found: the entry is consumed once the reply is written. */
/** The reply to GET (`OK <payload>`), or with `batch` to MGET (`OK <n> <size> ...` LF payloads). */
function getReply(topic: string, next: NextResult, batch: boolean, stats: ControllerOptions['stats']): ControllerReply {
  if (next.kind === 'unknown-topic') return unknownTopic(topic);
  if (next.kind === 'empty') return EMPTY_REPLY;
  if (next.kind === 'elsewhere') return { error: notLeaderFor(segmentKey(topic, next.segment)) };
  const { entry } = next;
  const written = (ok: boolean): void => {
    // A failed cursor write fails the engine, and with it the next request that needs it.
    if (ok) {
      entry.delivered().catch(() => undefined);
      if (batch) stats?.read(entry.payloads.length, payloadsBytes(entry.payloads));
      else stats?.read(1, entry.payload.length);
    } else entry.abandoned();
  };
  if (batch) return { frame: entriesFrame(entry.payloads), written };
  // Payloads written through the protocol are UTF-8; anything else is sent with U+FFFD in place
  // of the invalid bytes, as a text reply.
  if (!isUtf8(entry.payload)) return { text: okPayload(lossy.decode(entry.payload)), written };
  return { frame: okPayloadFrame(entry.payload), written };
}

/** A PUT's payload size in bytes (text as UTF-8). */
function payloadBytes(payload: string | Uint8Array): number {
  return typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
}

function payloadsBytes(payloads: readonly Uint8Array[]): number {
  let bytes = 0;
  for (const payload of payloads) bytes += payload.length;
  return bytes;
}

/** The frame of `OK <payload>` for a payload that is valid UTF-8, built from its bytes. */
function okPayloadFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + OK_SPACE.length + payload.length);
  frame.writeUInt32LE(OK_SPACE.length + payload.length, 0);
  OK_SPACE.copy(frame, FRAME_HEADER_BYTES);
  frame.set(payload, FRAME_HEADER_BYTES + OK_SPACE.length);
  return frame;
}

/**
 * The frame of a batch read's reply: `OK <n> <size> ...` LF, then the payloads back to back (the
 * sizes in bytes). A payload that is not valid UTF-8 is sent with U+FFFD in place of its invalid
 * bytes, as GET does, and its size is that of what is sent.
 */
function entriesFrame(payloads: readonly Buffer[]): Buffer {
  const frame = framePayloads(payloads);
  if (frame !== undefined) return frame;
  // Some payload is not UTF-8 on its own: each is sent as its lossy decoding (as GET sends one).
  return framePayloads(payloads.map((payload) => (isUtf8(payload) ? payload : Buffer.from(lossy.decode(payload), 'utf8')))) as Buffer;
}

/**
 * The reply frame of `payloads` as they are, or undefined when one of them is not UTF-8 by
 * itself. Checked once over all of them: the payloads back to back are UTF-8, and each starts a
 * character (its first byte is not a continuation byte), exactly when each one is.
 */
function framePayloads(payloads: readonly Buffer[]): Buffer | undefined {
  let sizes = '';
  let length = 0;
  for (const payload of payloads) {
    sizes += ` ${payload.length}`;
    length += payload.length;
  }
  const head = `${OK} ${payloads.length}${sizes}\n`;
  const headBytes = head.length;
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + headBytes + length);
  frame.writeUInt32LE(headBytes + length, 0);
  frame.write(head, FRAME_HEADER_BYTES, 'latin1');
  let at = FRAME_HEADER_BYTES + headBytes;
  const start = at;
  for (const payload of payloads) {
    if (payload.length > 0 && ((payload[0] as number) & 0xc0) === 0x80) return undefined;
    frame.set(payload, at);
    at += payload.length;
  }
  return isUtf8(frame.subarray(start)) ? frame : undefined;
}

/** `OK ` before a GET reply's payload. */
const OK_SPACE = Buffer.from('OK ', 'latin1');

function unknownTopic(topic: string): ControllerReply {
  return failed('UNKNOWN_TOPIC', `unknown topic ${topic}`, { topic });
}

/** A PUT's payload as bytes for a forward (protocol payloads are text). */
function bytesOf(payload: string | Uint8Array): Uint8Array {
  return typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
}

/** A controller reply as the answer to a forwarded PUT: failures are thrown back with their code. */
function peerAnswer(reply: ControllerReply): PeerAnswer {
  if (reply.error !== undefined) throw reply.error;
  return {};
}
