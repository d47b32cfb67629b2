// The node-to-node operations of the data plane (docs/protocol.md, "Between nodes"), and the
// asking side of the reads: what a node sends to the node that leads a topic's open segment
// (append) or holds a segment (take, settle, read). The answering side is the controller's
// peerHandlers(). Heads are small JSON objects; entry payloads travel as the frame's data.

import type { NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { failureError, type PeerFrame } from './peer-codec.js';
import type { RemoteReads, RemoteTake, TakeRequest } from './reader.js';

export const PEER_OPS = {
  /**
   * `{ topic, segment, sizes?, batch? }` + payloads: append to the open segment this node leads
   * (forwarded PUTs: one, or with `sizes` a run of them, answered `{ failures? }` entry by entry;
   * with `batch: true` too, an MPUT's payloads, appended together or refused as one).
   */
  append: 'append',
  /**
   * `{ topic, segment, sealed?, max?, closeHold?, closeConsumed? }`: lend a run of the next entries
   * of a segment held here, holding it for the asker (after ending the asker's earlier hold).
   */
  take: 'take',
  /** `{ hold, consumed, release }`: the asker delivered the run's first `consumed` entries; `release` ends the hold. */
  settle: 'settle',
  /** `{ topic, segment, offset }`: the entry at a position of a segment held here (FETCH). */
  read: 'read',
  /** `{ nodeId, clientAddress, raftAddress, hops }`: add this node to the cluster (membership.ts). */
  join: 'join',
  /** `{ nodeId, force, hops }`: take a node out of the cluster (membership.ts). */
  remove: 'remove',
  /** `{}`: this node is leaving: seal the open segments it leads and say what only it holds unread. */
  handoff: 'handoff',
  /**
   * `{ topic, segment, epoch, offset, commit, sizes }` + payloads: a run of a segment's entries for
   * a follower of its replica set (replication.ts); answered `{ held }` or `{ fenced: true }`.
   */
  replicate: 'replicate',
  /**
   * `{ topic, segment }`: a failover is sealing (or moving) this segment: take no more of its
   * leader's runs and answer `{ held }`, the entries this node's copy holds.
   */
  fence: 'fence',
  /** `{ topic, segment }`, to the Raft leader: a failover fenced this open segment of the asker: seal it. */
  finish: 'finish',
  /** `{ by }`: this node has been taken out of the cluster (by the Raft leader `by`): it refuses client requests from now on. */
  removed: 'removed',
} as const;

/** How long the holder of a segment lets a `take` wait for the segment's turn (below the request timeout). */
export const TAKE_WAIT_MS = 2_000;

/** The requests a node sends, as the reader and controller use them. */
export interface PeerRequests {
  client(id: NodeId): { request(op: string, head: Readonly<Record<string, unknown>>, data?: Uint8Array): Promise<PeerFrame> };
}

/** The reader's remote reads over node-to-node requests. */
export class PeerReads implements RemoteReads {
  private readonly peers: PeerRequests;

  constructor(peers: PeerRequests) {
    this.peers = peers;
  }

  async take(owner: NodeId, { topic, segment, sealed, max, close }: TakeRequest): Promise<RemoteTake> {
    const head: Record<string, unknown> = { topic, segment, max };
    if (sealed !== undefined) head.sealed = sealed;
    if (close !== undefined) {
      head.closeHold = close.hold;
      head.closeConsumed = close.consumed;
    }
    const reply = await this.peers.client(owner).request(PEER_OPS.take, head);
    const { kind } = reply.head;
    if (kind === 'entries') {
      const { offset, hold, sizes } = reply.head;
      if (typeof offset !== 'number' || typeof hold !== 'number') throw malformed(owner, 'take', reply);
      const payloads = splitRun(sizes, reply.data);
      if (payloads === undefined) throw malformed(owner, 'take', reply);
      return { kind, payloads, offset, hold };
    }
    if (kind === 'done' || kind === 'empty') return { kind };
    throw malformed(owner, 'take', reply);
  }

  async settle(owner: NodeId, hold: number, consumed: number, release: boolean): Promise<boolean> {
    const reply = await this.peers.client(owner).request(PEER_OPS.settle, { hold, consumed, release });
    if (typeof reply.head.settled !== 'boolean') throw malformed(owner, 'settle', reply);
    return reply.head.settled;
  }

  /** FETCH of a segment held by `owner`: the payload at `offset`, or null. */
  async read(owner: NodeId, topic: string, segment: number, offset: number): Promise<Buffer | null> {
    const reply = await this.peers.client(owner).request(PEER_OPS.read, { topic, segment, offset });
    if (reply.head.found === true) return reply.data;
    if (reply.head.found === false) return null;
    throw malformed(owner, 'read', reply);
  }

  /** Up to `max` consecutive entries from `offset` of a segment `owner` holds (at most `maxBytes`, and at least one): empty past its end. */
  async readRun(owner: NodeId, topic: string, segment: number, offset: number, max: number, maxBytes: number): Promise<Buffer[]> {
    const reply = await this.peers.client(owner).request(PEER_OPS.read, { topic, segment, offset, max, maxBytes });
    if (reply.head.found === false) return [];
    if (reply.head.found === true) {
      const payloads = reply.head.sizes === undefined ? [reply.data] : splitRun(reply.head.sizes, reply.data);
      if (payloads !== undefined) return payloads;
    }
    throw malformed(owner, 'read', reply);
  }
}

/** A run's payloads: `data` cut at the sizes a head lists; undefined when they do not add up to it. */
export function splitRun(sizes: unknown, data: Buffer): Buffer[] | undefined {
  if (!Array.isArray(sizes) || sizes.length === 0) return undefined;
  const payloads: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || at + size > data.length) return undefined;
    payloads.push(data.subarray(at, at + size));
    at += size;
  }
  return at === data.length ? payloads : undefined;
}

/** A PUT waiting in a run for its answer. */
interface RunMember {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

interface Run {
  readonly leader: NodeId;
  readonly topic: string;
  readonly segment: number;
  readonly payloads: Uint8Array[];
  readonly members: RunMember[];
  bytes: number;
}

/**
 * Forwarded PUTs (`append`), sent in runs: those for one segment of one node made in one turn of
 * the event loop (up to forwardRunEntriesMax, forwardRunBytesMax) go as one request, answered
 * entry by entry. Runs for one node leave in the order they were started, so PUTs keep the order
 * they were made in, and the node appends a run's entries in order, as it would separate requests
 * arriving one after another. A run that got no answer fails every PUT in it alike (PEER_TIMEOUT:
 * none of them is sent again).
 */
export class ForwardedAppends {
  private readonly peers: PeerRequests;
  private readonly runs = new Map<string, Run>();
  /** Per run key: the members of runs sent and not answered yet. */
  private readonly inFlight = new Map<string, Set<readonly RunMember[]>>();

  constructor(peers: PeerRequests) {
    this.peers = peers;
  }

  /** Appends `payload` to `segment` of `topic` on `leader`; resolves once it has been appended there. */
  send(leader: NodeId, topic: string, segment: number, payload: Uint8Array): Promise<void> {
    const key = runKey(leader, topic, segment);
    let run = this.runs.get(key);
    if (
      run !== undefined &&
      (run.payloads.length >= limits.forwardRunEntriesMax || run.bytes + payload.length > limits.forwardRunBytesMax)
    ) {
      this.flush(key, run);
      run = undefined;
    }
    if (run === undefined) {
      const started: Run = { leader, topic, segment, payloads: [], members: [], bytes: 0 };
      this.runs.set(key, started);
      queueMicrotask(() => {
        if (this.runs.get(key) === started) this.flush(key, started);
      });
      run = started;
    }
    const joined = run;
    return new Promise<void>((resolve, reject) => {
      joined.payloads.push(payload);
      joined.bytes += payload.length;
      joined.members.push({ resolve, reject });
    });
  }

  /**
   * Appends an MPUT's `payloads` to `segment` of `topic` on `leader` as one unit (the leader
   * appends them together, or refuses them all); resolves once they have been appended there.
   * PUTs sent before it for the same segment leave first (their run is sent now), later ones after.
   */
  sendBatch(leader: NodeId, topic: string, segment: number, payloads: readonly Buffer[]): Promise<void> {
    const key = runKey(leader, topic, segment);
    const run = this.runs.get(key);
    if (run !== undefined) this.flush(key, run);
    return new Promise<void>((resolve, reject) => {
      const members: readonly RunMember[] = [{ resolve, reject }];
      const answered = this.track(key, members);
      const sizes = payloads.map((payload) => payload.length);
      this.peers
        .client(leader)
        .request(PEER_OPS.append, { topic, segment, sizes, batch: true }, Buffer.concat(payloads))
        .then(
          () => {
            answered();
            resolve();
          },
          (error: Error) => {
            answered();
            reject(error);
          },
        );
    });
  }

  /** Notes `members` as in flight for `key` (abandon() fails them); returns the function that forgets them once answered. */
  private track(key: string, members: readonly RunMember[]): () => void {
    let sets = this.inFlight.get(key);
    if (sets === undefined) {
      sets = new Set();
      this.inFlight.set(key, sets);
    }
    sets.add(members);
    return () => {
      const current = this.inFlight.get(key);
      current?.delete(members);
      if (current?.size === 0) this.inFlight.delete(key);
    };
  }

  /**
   * A failover took `segment` of `topic` from `leader` (it is unreachable): the PUTs in flight to
   * it fail now with `error` (their outcome is unknown: they may have been appended) rather than
   * at the request timeout; a late answer changes nothing.
   */
  abandon(leader: NodeId, topic: string, segment: number, error: Error): void {
    const key = runKey(leader, topic, segment);
    const sets = this.inFlight.get(key);
    if (sets === undefined) return;
    this.inFlight.delete(key);
    for (const members of sets) for (const member of members) member.reject(error);
  }

  private flush(key: string, run: Run): void {
    this.runs.delete(key);
    const { leader, topic, segment, payloads, members } = run;
    const client = this.peers.client(leader);
    const answered = this.track(key, members);
    if (payloads.length === 1) {
      const [only] = members as [RunMember];
      client.request(PEER_OPS.append, { topic, segment }, payloads[0]).then(
        () => {
          answered();
          only.resolve();
        },
        (error: Error) => {
          answered();
          only.reject(error);
        },
      );
      return;
    }
    const sizes = payloads.map((payload) => payload.length);
    client.request(PEER_OPS.append, { topic, segment, sizes }, Buffer.concat(payloads)).then(
      (reply) => {
        answered();
        const failures = runFailures(reply.head.failures, members.length, String(leader));
        if (failures === undefined) {
          const error = malformed(leader, 'append', reply);
          for (const member of members) member.reject(error);
          return;
        }
        for (const [index, member] of members.entries()) {
          const failure = failures.get(index);
          if (failure === undefined) member.resolve();
          else member.reject(failure);
        }
      },
      (error: Error) => {
        answered();
        for (const member of members) member.reject(error);
      },
    );
  }
}

/** The key of the runs of PUTs for one segment of one topic forwarded to one node. */
function runKey(leader: NodeId, topic: string, segment: number): string {
  return `${leader}\u0000${segment}\u0000${topic}`;
}

/** The failures a run's answer lists, by index; undefined when the list is malformed. */
function runFailures(list: unknown, count: number, peer: string): Map<number, Error> | undefined {
  const failures = new Map<number, Error>();
  if (list === undefined) return failures;
  if (!Array.isArray(list)) return undefined;
  for (const item of list) {
    if (item === null || typeof item !== 'object') return undefined;
    const { index } = item as { index?: unknown };
    if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= count) return undefined;
    failures.set(index, failureError(item as Record<string, unknown>, peer));
  }
  return failures;
}

function malformed(owner: NodeId, op: string, reply: PeerFrame): Error {
  return walrusError('PEER_PROTOCOL', `node ${owner} answered ${op} with ${JSON.stringify(reply.head)}`, { details: { peer: owner } });
}

/** A head field that must be a string. */
export function headString(head: Readonly<Record<string, unknown>>, key: string): string {
  const value = head[key];
  if (typeof value !== 'string') throw walrusError('PEER_PROTOCOL', `node-to-node request without a string ${key}`);
  return value;
}

/** A head field that must be a non-negative safe integer. */
export function headCount(head: Readonly<Record<string, unknown>>, key: string): number {
  const value = head[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw walrusError('PEER_PROTOCOL', `node-to-node request without a whole number ${key}`);
  }
  return value;
}
