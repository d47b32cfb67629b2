// Joining a running cluster, and every node's addresses in the metadata (reference/cluster.md
// §2.4–2.5, with the original's bugs fixed: any member takes a join, not only the Raft leader; a
// refusal ends the join at once instead of burning its attempts; the joiner stops with the
// reason instead of running on alone).
//
// - The joiner (`node.join` set, and not a member yet by its own files) sends `join` with its id
//   and addresses to the member it was pointed at, again on retriable failures, and learns every
//   member's internal address from the reply.
// - Any member forwards a join to the Raft leader. The leader adds the node as a learner (so it
//   receives the log without voting), records its addresses (UpsertNode), answers, and promotes it
//   to voter once it has caught up. A node id that is a member already at another address is
//   refused; the same id at the same address is a restarted member and changes nothing.
// - Every node makes sure the metadata holds its own addresses (announceSelf), so members that
//   started from cluster.nodes are listed as joined ones are.
// - Addresses in the metadata reach consensus (setMemberAddress) as they apply, on every node.

import type { Logger } from 'pino';
import type { Consensus, NodeId } from '../contracts/consensus.js';
import { walrusError } from '../kernel/errors.js';
import type { HandOffReport } from './controller.js';
import { headCount, headString, PEER_OPS } from './forwarding.js';
import { encodeCommand, type MetadataResult, type MetadataStateMachine } from './metadata.js';
import { type PeerAddress, PeerClient } from './peer-client.js';
import type { PeerHandler } from './peer-server.js';
import { type Peers, parseAddress } from './peers.js';

/** Join attempts before the joiner gives up, and the pause after a retriable failure. */
export const JOIN_ATTEMPTS = 10;
export const JOIN_RETRY_MS = 1_000;
/** One join request's time: the leader adds a learner and records its address before it answers. */
export const JOIN_TIMEOUT_MS = 10_000;
/** A learner counts as caught up within this many entries of the leader's commit index. */
export const CAUGHT_UP_ENTRIES = 100;
/** The leader looks at a learner's progress this often, for at most PROMOTE_WINDOW_MS. */
const PROMOTE_CHECK_MS = 200;
const PROMOTE_WINDOW_MS = 60_000;
/** How often a node tries again to record its own addresses while it cannot (no leader yet). */
const ANNOUNCE_RETRY_MS = 500;
/** A removal's time: the leaving node seals its open segments (each a Raft proposal) first. */
export const REMOVE_TIMEOUT_MS = 30_000;
/** Hops a join may be forwarded (follower → leader, and once more if leadership moved meanwhile). */
const JOIN_HOPS_MAX = 3;

export interface SelfAddresses {
  /** `host:port` clients reach this node at. */
  readonly clientAddress: string;
  /** `host:port` of this node's internal port (Raft and node-to-node requests). */
  readonly raftAddress: string;
}

export interface MembershipOptions {
  readonly nodeId: NodeId;
  readonly self: () => SelfAddresses;
  readonly consensus: Pick<Consensus, 'status' | 'addLearner' | 'promote' | 'remove' | 'metrics' | 'propose' | 'setMemberAddress'>;
  readonly metadata: MetadataStateMachine;
  readonly peers: Peers;
  readonly log: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** This node's part in its own removal (the controller's handOff). */
  readonly handOff: () => Promise<HandOffReport>;
  /** This node was taken out of the cluster by the Raft leader `by` (the controller stops serving). */
  readonly onRemoved: (by: NodeId) => void;
}

/** How long the leader tries to tell a removed node that it was removed. */
const REMOVED_NOTICE_MS = 2_000;

export class Membership {
  private readonly options: MembershipOptions;
  private readonly promoting = new Set<NodeId>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(options: MembershipOptions) {
    this.options = options;
  }

  /** The node-to-node operations this module answers. */
  handlers(): Readonly<Record<string, PeerHandler>> {
    return {
      [PEER_OPS.join]: async (head) => ({ head: await this.answerJoin(head) }),
      [PEER_OPS.remove]: async (head) => ({ head: await this.answerRemove(head) }),
      [PEER_OPS.removed]: (head) => {
        this.removedBy(headCount(head, 'by'));
        return { head: {} };
      },
    };
  }

  /** Whether this node's own files already make it a member (a restart: nothing to join). */
  isMember(): boolean {
    const status = this.options.consensus.status();
    return status.voters.includes(this.options.nodeId) || status.learners.includes(this.options.nodeId);
  }

  /**
   * Joins through the member at `target` (its internal address). Resolves once the leader has
   * added this node as a learner and its reply said where every member is; rejects with the
   * refusal (not retriable) or, after JOIN_ATTEMPTS, with the last failure.
   */
  async join(target: PeerAddress, attempts = JOIN_ATTEMPTS): Promise<void> {
    const { nodeId, log } = this.options;
    const client = new PeerClient({
      peer: 0,
      label: `the join target ${target.host}:${target.port}`,
      address: () => target,
      localHost: this.options.peers.localHost,
      requestTimeoutMs: JOIN_TIMEOUT_MS,
    });
    try {
      let last: unknown;
      for (let attempt = 1; attempt <= attempts && !this.closed; attempt++) {
        try {
          const self = this.options.self();
          const reply = await client.request(PEER_OPS.join, { nodeId, ...self, hops: 0 });
          this.learnMembers(reply.head.members);
          log.info({ target: `${target.host}:${target.port}`, attempt }, 'joined the cluster as a learner');
          return;
        } catch (error) {
          last = error;
          const retriable = (error as { retriable?: boolean }).retriable === true;
          if (!retriable) throw error;
          log.warn({ target: `${target.host}:${target.port}`, attempt, err: (error as Error).message }, 'join failed; retrying');
          await this.pause(JOIN_RETRY_MS);
        }
      }
      throw last ?? walrusError('CLOSED', 'the node stopped while joining');
    } finally {
      client.close();
    }
  }

  /**
   * Makes sure the metadata lists this node's addresses: proposes UpsertNode until it does, in
   * the background (a node may start before any leader exists).
   */
  announceSelf(): void {
    const attempt = async (): Promise<void> => {
      if (this.closed) return;
      const self = this.options.self();
      const listed = this.options.metadata.nodes().get(this.options.nodeId);
      if (listed?.clientAddress === self.clientAddress && listed.raftAddress === self.raftAddress) return;
      try {
        await this.propose({ kind: 'UpsertNode', nodeId: this.options.nodeId, ...self });
        this.options.log.debug(self, 'addresses recorded in the metadata');
      } catch (error) {
        this.options.log.debug({ err: (error as Error).message }, 'addresses not recorded yet; retrying');
        this.later(() => void attempt(), ANNOUNCE_RETRY_MS);
      }
    };
    void attempt();
  }

  /** Hands every member address the metadata holds to consensus, now and whenever one is recorded. */
  followAddresses(): () => void {
    const apply = (): void => {
      for (const [id, addresses] of this.options.metadata.nodes()) {
        if (id === this.options.nodeId) continue;
        const address = parseAddress(addresses.raftAddress);
        if (address !== undefined) this.options.consensus.setMemberAddress(id, address);
      }
    };
    apply();
    return this.options.metadata.onChange((change) => {
      if (change.command === undefined || change.command.kind === 'UpsertNode') apply();
    });
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private async answerJoin(head: Readonly<Record<string, unknown>>): Promise<Record<string, unknown>> {
    const nodeId = headCount(head, 'nodeId');
    const raftAddress = headString(head, 'raftAddress');
    const clientAddress = headString(head, 'clientAddress');
    const address = parseAddress(raftAddress);
    if (nodeId < 1 || address === undefined) {
      throw walrusError('INVALID_ARGUMENT', `a join needs a node id ≥ 1 and a host:port internal address; got ${nodeId} at ${raftAddress}`);
    }
    const { consensus, metadata, peers } = this.options;
    const status = consensus.status();
    if (status.role !== 'leader') return this.passOn(PEER_OPS.join, 'join', head, JOIN_TIMEOUT_MS);
    const member = status.voters.includes(nodeId) || status.learners.includes(nodeId);
    if (member) {
      const known = metadata.nodes().get(nodeId)?.raftAddress ?? format(peers.addressOf(nodeId));
      if (known !== undefined && known !== raftAddress) {
        throw walrusError(
          'INVALID_ARGUMENT',
          `node ${nodeId} is already a member of this cluster, at ${known}, not ${raftAddress}: give the new node another --node-id, or remove node ${nodeId} first`,
          { details: { nodeId, known, asked: raftAddress } },
        );
      }
    } else {
      await consensus.addLearner(nodeId, address);
      this.options.log.info({ nodeId, raftAddress, clientAddress }, 'node added as a learner');
    }
    const listed = metadata.nodes().get(nodeId);
    if (listed?.raftAddress !== raftAddress || listed.clientAddress !== clientAddress) {
      await this.propose({ kind: 'UpsertNode', nodeId, clientAddress, raftAddress });
    }
    if (!status.voters.includes(nodeId)) this.promoteWhenCaughtUp(nodeId);
    return { members: this.memberAddresses() };
  }

  /**
   * Removal, on the Raft leader (any other member passes it on): the node hands its topics over
   * (it seals the open segments it leads, and the next live node takes each topic on) and says
   * which entries only it holds that no GET has read (segments it keeps alone; a replicated
   * segment is served by another replica once it has left, and repaired onto another node). Those would be lost with it, so without
   * `force` that refuses the removal, as does a node that cannot be asked. Then it leaves the
   * Raft group; the cluster goes on with the others.
   */
  private async answerRemove(head: Readonly<Record<string, unknown>>): Promise<Record<string, unknown>> {
    const nodeId = headCount(head, 'nodeId');
    const force = head.force === true;
    const { consensus, peers } = this.options;
    const status = consensus.status();
    if (status.role !== 'leader') return this.passOn(PEER_OPS.remove, 'removal', head, REMOVE_TIMEOUT_MS);
    if (!status.voters.includes(nodeId) && !status.learners.includes(nodeId)) {
      throw walrusError('INVALID_ARGUMENT', `node ${nodeId} is not a member of this cluster (voters ${status.voters.join(', ')})`);
    }
    if (status.voters.length === 1 && status.voters[0] === nodeId) {
      throw walrusError('INVALID_ARGUMENT', `node ${nodeId} is the only voter: a cluster cannot remove its last member`);
    }
    let report: HandOffReport | undefined;
    try {
      report =
        nodeId === this.options.nodeId
          ? await this.options.handOff()
          : ((await peers.client(nodeId).request(PEER_OPS.handoff, {}, undefined, { timeoutMs: REMOVE_TIMEOUT_MS }))
              .head as unknown as HandOffReport);
    } catch (error) {
      if (!force) {
        throw walrusError(
          'INVALID_ARGUMENT',
          `node ${nodeId} could not hand its topics over (${(error as Error).message}); start it again and retry, or remove it with force, losing the entries only it holds`,
          { cause: error },
        );
      }
    }
    const unread = report?.unread ?? [];
    if (unread.length > 0 && !force) {
      const listed = unread
        .slice(0, 5)
        .map((held) => `${held.topic} segment ${held.segment} (${held.entries})`)
        .join(', ');
      throw walrusError(
        'INVALID_ARGUMENT',
        `node ${nodeId} still holds entries no GET has read: ${listed}${unread.length > 5 ? `, and ${unread.length - 5} more segments` : ''}; they are kept there alone (replication.factor 1): read them first, or remove it with force and lose them`,
        { details: { nodeId, unread } },
      );
    }
    await consensus.remove(nodeId);
    this.options.log.info({ nodeId, moved: report?.moved ?? [], forced: force }, 'node removed from the cluster');
    // Told so (best effort: a node that is down is told nothing), it refuses the requests it
    // could only answer from a view of the cluster that no longer follows the metadata.
    if (nodeId === this.options.nodeId) this.removedBy(nodeId);
    else {
      peers
        .client(nodeId)
        .request(PEER_OPS.removed, { by: this.options.nodeId }, undefined, { timeoutMs: REMOVED_NOTICE_MS })
        .catch((error: unknown) => this.options.log.debug({ nodeId, err: error }, 'the removed node could not be told'));
    }
    return { removed: nodeId, moved: report?.moved ?? [], lost: force ? unread : [] };
  }

  private removedBy(by: NodeId): void {
    this.options.log.warn({ by }, 'this node was removed from the cluster: it refuses client requests from now on; stop it');
    this.options.onRemoved(by);
  }

  /** On a member that is not the Raft leader: sends `op` on to the leader it knows of, and returns its answer. */
  private async passOn(
    op: string,
    what: string,
    head: Readonly<Record<string, unknown>>,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    const hops = head.hops === undefined ? 0 : headCount(head, 'hops');
    const leader = this.options.consensus.status().leader;
    if (leader === 0) throw walrusError('RAFT_NOT_LEADER', `no Raft leader is known to take the ${what} (an election?); retry`);
    if (hops >= JOIN_HOPS_MAX)
      throw walrusError('RAFT_NOT_LEADER', `the ${what} was passed on ${hops} times without reaching the Raft leader; retry`);
    const reply = await this.options.peers.client(leader).request(op, { ...head, hops: hops + 1 }, undefined, { timeoutMs });
    return { ...reply.head };
  }

  /** Every member's internal address this node knows, for a joiner to reach them. */
  private memberAddresses(): { id: NodeId; raftAddress: string }[] {
    const status = this.options.consensus.status();
    const self = this.options.self();
    const out: { id: NodeId; raftAddress: string }[] = [];
    for (const id of new Set([...status.voters, ...status.learners])) {
      const raftAddress =
        id === this.options.nodeId
          ? self.raftAddress
          : (this.options.metadata.nodes().get(id)?.raftAddress ?? format(this.options.peers.addressOf(id)));
      if (raftAddress !== undefined) out.push({ id, raftAddress });
    }
    return out;
  }

  private learnMembers(members: unknown): void {
    if (!Array.isArray(members)) return;
    for (const member of members) {
      const { id, raftAddress } = (member ?? {}) as { id?: unknown; raftAddress?: unknown };
      if (typeof id !== 'number' || typeof raftAddress !== 'string' || id === this.options.nodeId) continue;
      const address = parseAddress(raftAddress);
      if (address !== undefined) this.options.consensus.setMemberAddress(id, address);
    }
  }

  /** On the leader: promotes learner `id` once its log is within CAUGHT_UP_ENTRIES of the commit index. */
  private promoteWhenCaughtUp(id: NodeId): void {
    if (this.promoting.has(id)) return;
    this.promoting.add(id);
    const until = Date.now() + PROMOTE_WINDOW_MS;
    const check = async (): Promise<void> => {
      if (this.closed) return;
      const { consensus, log } = this.options;
      const status = consensus.status();
      if (status.role !== 'leader' || status.voters.includes(id) || !status.learners.includes(id) || Date.now() > until) {
        // Done, or no longer ours to do: the joiner asks again if it is still a learner.
        this.promoting.delete(id);
        return;
      }
      const replication = consensus.metrics().replication as Readonly<Record<string, { readonly index?: number } | number | null>> | null;
      const progress = replication?.[String(id)];
      const matched = typeof progress === 'number' ? progress : (progress?.index ?? 0);
      if (matched + CAUGHT_UP_ENTRIES >= status.commitIndex) {
        try {
          await consensus.promote(id);
          log.info({ nodeId: id, matched, commit: status.commitIndex }, 'learner caught up: promoted to voter');
          this.promoting.delete(id);
          return;
        } catch (error) {
          log.debug({ nodeId: id, err: (error as Error).message }, 'promotion not possible yet; retrying');
        }
      }
      this.later(() => void check(), PROMOTE_CHECK_MS);
    };
    this.later(() => void check(), PROMOTE_CHECK_MS);
  }

  private async propose(command: Parameters<typeof encodeCommand>[0]): Promise<void> {
    const result = (await this.options.consensus.propose(encodeCommand(command))) as MetadataResult;
    if (!result.ok) throw walrusError('METADATA_REJECTED', result.error);
  }

  private later(work: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      work();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.later(resolve, ms));
  }
}

/**
 * Resolves once this member has heard from a Raft leader and applied what it knows to be
 * committed, with its applied index steady for one more look; at once for a group of one, and
 * after `maxMs` whatever happens (a cluster restarting as a whole may have no leader for a
 * while). A node that says "ready" then answers from a current view, not from the one it had
 * before it went down.
 */
export async function catchUp(consensus: Pick<Consensus, 'status'>, maxMs: number, lookMs = 100): Promise<boolean> {
  const deadline = Date.now() + maxMs;
  let steady = -1;
  for (;;) {
    const status = consensus.status();
    if (status.voters.length <= 1 && status.learners.length === 0) return true;
    const heard = status.role === 'leader' || status.leader !== 0;
    if (heard && status.appliedIndex >= status.commitIndex) {
      if (steady === status.appliedIndex) return true;
      steady = status.appliedIndex;
    } else steady = -1;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, lookMs));
  }
}

function format(address: PeerAddress | undefined): string | undefined {
  return address === undefined ? undefined : `${address.host}:${address.port}`;
}
