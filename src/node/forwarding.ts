// The node-to-node operations of the data plane (docs/protocol.md, "Between nodes"), and the
// asking side of the reads: what a node sends to the node that leads a topic's open segment
// (append) or holds a segment (take, settle, read). The answering side is the controller's
// peerHandlers(). Heads are small JSON objects; entry payloads travel as the frame's data.

import type { NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
import type { PeerFrame } from './peer-codec.js';
import type { HoldClose, RemoteReads, RemoteTake } from './reader.js';

export const PEER_OPS = {
  /** `{ topic, segment }` + payload: append to the open segment this node leads (a forwarded PUT). */
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

  async take(
    owner: NodeId,
    topic: string,
    segment: number,
    sealed: number | undefined,
    max: number,
    close: HoldClose | undefined,
  ): Promise<RemoteTake> {
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
      return { kind, payloads: splitRun(owner, reply, sizes), offset, hold };
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
}

/** A lent run's payloads: the data, cut at the sizes the head lists. */
function splitRun(owner: NodeId, reply: PeerFrame, sizes: unknown): Buffer[] {
  if (!Array.isArray(sizes) || sizes.length === 0) throw malformed(owner, 'take', reply);
  const payloads: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || at + size > reply.data.length) {
      throw malformed(owner, 'take', reply);
    }
    payloads.push(reply.data.subarray(at, at + size));
    at += size;
  }
  if (at !== reply.data.length) throw malformed(owner, 'take', reply);
  return payloads;
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
