// The simulated network between Raft nodes: messages are queued with a delivery tick, and may be
// lost, duplicated, delayed or overtaken on the way. Partitions are sets of blocked directed
// links, so one-way faults (A hears B but B does not hear A) are as easy as symmetric ones.

import type { Rng } from '../../../kernel/rng.js';
import type { Message, MessageType, NodeId } from '../core/types.js';

export interface NetworkOptions {
  /** Probability that a message is dropped. */
  readonly loss: number;
  /** Probability that a message is delivered twice (the copy with its own delay). */
  readonly duplicate: number;
  /** Probability that a message is held back by up to `reorderTicks` extra ticks, so later ones overtake it. */
  readonly reorder: number;
  readonly reorderTicks: number;
  /** Every message takes between `delayMin` and `delayMax` ticks (0: delivered within the tick it was sent). */
  readonly delayMin: number;
  readonly delayMax: number;
}

export const RELIABLE: NetworkOptions = { loss: 0, duplicate: 0, reorder: 0, reorderTicks: 0, delayMin: 0, delayMax: 0 };

interface InFlight {
  readonly message: Message;
  readonly deliverAt: number;
  /** Send order, to keep delivery FIFO among messages due at the same tick. */
  readonly seq: number;
}

const MESSAGE_TYPES: readonly MessageType[] = [
  'preVote',
  'preVoteReply',
  'vote',
  'voteReply',
  'append',
  'appendReply',
  'installSnapshot',
  'installSnapshotReply',
  'timeoutNow',
];

/** Counts of messages handed to the network, by type and by (type, destination). */
export class MessageCounters {
  private readonly byType = new Map<MessageType, number>();
  private readonly byTypeTo = new Map<string, number>();

  record(message: Message): void {
    this.byType.set(message.type, (this.byType.get(message.type) ?? 0) + 1);
    const key = `${message.type}>${message.to}`;
    this.byTypeTo.set(key, (this.byTypeTo.get(key) ?? 0) + 1);
  }

  /** Messages of `type` sent so far (to `to` only, when given). */
  sent(type: MessageType, to?: NodeId): number {
    if (to === undefined) return this.byType.get(type) ?? 0;
    return this.byTypeTo.get(`${type}>${to}`) ?? 0;
  }

  total(): number {
    let sum = 0;
    for (const type of MESSAGE_TYPES) sum += this.sent(type);
    return sum;
  }

  reset(): void {
    this.byType.clear();
    this.byTypeTo.clear();
  }
}

export class Network {
  options: NetworkOptions;
  readonly counters = new MessageCounters();
  private queue: InFlight[] = [];
  private seq = 0;
  /** Blocked directed links, as `from>to`. */
  private readonly blocked = new Set<string>();

  constructor(
    private readonly rng: Rng,
    options: Partial<NetworkOptions> = {},
  ) {
    this.options = { ...RELIABLE, ...options };
  }

  canReach(from: NodeId, to: NodeId): boolean {
    return !this.blocked.has(`${from}>${to}`);
  }

  /** Stops messages from `from` to `to` (one direction only). */
  blockLink(from: NodeId, to: NodeId): void {
    if (from !== to) this.blocked.add(`${from}>${to}`);
  }

  unblockLink(from: NodeId, to: NodeId): void {
    this.blocked.delete(`${from}>${to}`);
  }

  /** Splits `all` into the given groups; a node named in no group is cut off on its own. */
  partition(all: readonly NodeId[], groups: readonly (readonly NodeId[])[]): void {
    const groupOf = new Map<NodeId, number>();
    groups.forEach((group, index) => {
      for (const id of group) groupOf.set(id, index);
    });
    for (const a of all) {
      for (const b of all) {
        const same = a === b || (groupOf.has(a) && groupOf.get(a) === groupOf.get(b));
        if (!same) this.blockLink(a, b);
      }
    }
  }

  /** Removes every partition and one-way block (messages already in flight stay in flight). */
  heal(): void {
    this.blocked.clear();
  }

  hasBlockedLinks(): boolean {
    return this.blocked.size > 0;
  }

  /** Hands a message to the network at tick `now`; faults are decided here. */
  send(message: Message, now: number): void {
    this.counters.record(message);
    // A partition in place at send time loses the message; one that appears later loses it at delivery.
    if (!this.canReach(message.from, message.to)) return;
    if (this.rng.chance(this.options.loss)) return;
    this.enqueue(message, now);
    if (this.rng.chance(this.options.duplicate)) this.enqueue(message, now);
  }

  private enqueue(message: Message, now: number): void {
    const { delayMin, delayMax, reorder, reorderTicks } = this.options;
    let delay = delayMax > delayMin ? this.rng.between(delayMin, delayMax) : delayMin;
    if (reorderTicks > 0 && this.rng.chance(reorder)) delay += this.rng.between(1, reorderTicks);
    this.queue.push({ message, deliverAt: now + delay, seq: this.seq++ });
  }

  /**
   * Takes the messages due by tick `now`, in delivery order, dropping those whose link is now
   * blocked. Messages sent while these are handled (with no delay) are picked up by the next call.
   */
  takeDue(now: number): Message[] {
    const due: InFlight[] = [];
    const rest: InFlight[] = [];
    for (const item of this.queue) (item.deliverAt <= now ? due : rest).push(item);
    if (due.length === 0) return [];
    this.queue = rest;
    due.sort((a, b) => a.deliverAt - b.deliverAt || a.seq - b.seq);
    return due.filter((item) => this.canReach(item.message.from, item.message.to)).map((item) => item.message);
  }

  inFlight(): number {
    return this.queue.length;
  }

  /** Forgets everything in flight (used when a run wants a clean slate before a liveness check). */
  clear(): void {
    this.queue = [];
  }
}
