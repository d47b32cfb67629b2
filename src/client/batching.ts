// A producer and a consumer on top of WalrusClient's batch commands (docs/protocol.md, "Batches"):
// the producer gathers the payloads sent within `lingerMs` (or until a batch is full) into one
// MPUT, the consumer reads with MGET. Both keep the order: batches leave one connection in the
// order they were made and the node answers them in that order, so send() promises settle in
// send order, and the consumer yields entries in the topic's order.

import { ClientError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';

/** What the producer and the consumer need of a client (WalrusClient has both). */
export interface BatchClient {
  mput(topic: string, payloads: readonly string[]): Promise<number>;
  mget(topic: string, max: number): Promise<string[]>;
}

export interface ProducerOptions {
  readonly topic: string;
  /** How long a payload waits for others to share its batch, in milliseconds (default 1; 0: until the current turn of the event loop ends). */
  readonly lingerMs?: number;
  /** A batch is sent once its payloads reach this many UTF-8 bytes (default, and at most, what one request frame holds). */
  readonly batchBytesMax?: number;
  /** A batch is sent once it holds this many payloads (default and at most limits.batchEntriesMax). */
  readonly batchEntriesMax?: number;
  /** Payloads sent and not acknowledged yet above which send() waits for room (default 100,000). */
  readonly pendingMax?: number;
}

/** The first line's bytes an MPUT spends on one payload at most: a space and up to five digits. */
const SIZE_FIELD_BYTES = 6;
/** The first line's fixed part: `MPUT `, the topic's bytes and the LF are counted per batch. */
const HEADER_FIXED_BYTES = 6;

/** A send() that waits for room (back-pressure): it joins a batch once there is some. */
interface Blocked {
  readonly payload: string;
  readonly bytes: number;
  readonly resolve: (joined: Promise<void>) => void;
}

/** The batch being filled: its payloads and the one promise all their send() calls return. */
interface OpenBatch {
  readonly payloads: string[];
  bytes: number;
  readonly done: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Sends payloads of one topic in batches. `send()` resolves once the batch holding the payload
 * is acknowledged (all its payloads are in the log, in order) and rejects with that batch's error
 * otherwise (then none of them, or for an unsure error perhaps all, were written: as for PUT).
 * The sends of one batch share its promise, so a send costs no allocation of its own.
 */
export class Producer {
  readonly topic: string;
  private readonly client: BatchClient;
  private readonly lingerMs: number;
  private readonly batchBytesMax: number;
  private readonly batchEntriesMax: number;
  private readonly pendingMax: number;
  private readonly topicBytes: number;
  private batch: OpenBatch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  /** Payloads handed to send() and not settled yet (blocked ones included). */
  private pending = 0;
  /** Batches sent and not answered, for flush(). */
  private readonly inFlight = new Set<Promise<void>>();
  /** send() calls waiting for room, oldest first, from `blockedHead` on (shift() of a long array costs its length). */
  private blocked: Blocked[] = [];
  private blockedHead = 0;
  private closed = false;

  constructor(client: BatchClient, options: ProducerOptions) {
    const { topic } = options;
    if (typeof topic !== 'string' || topic.length === 0 || /[ \t\r\n]/.test(topic)) {
      throw new ClientError('PROTOCOL', `a producer needs a topic without spaces, tabs, CRs or LFs, got ${JSON.stringify(topic)}`);
    }
    this.client = client;
    this.topic = topic;
    this.topicBytes = Buffer.byteLength(topic, 'utf8');
    this.lingerMs = checkedOption('lingerMs', options.lingerMs, 1, 0, 60_000);
    const roomBytes = limits.frameBytesMax - HEADER_FIXED_BYTES - this.topicBytes;
    this.batchBytesMax = checkedOption('batchBytesMax', options.batchBytesMax, roomBytes, 1, roomBytes);
    this.batchEntriesMax = checkedOption('batchEntriesMax', options.batchEntriesMax, limits.batchEntriesMax, 1, limits.batchEntriesMax);
    this.pendingMax = checkedOption('pendingMax', options.pendingMax, 100_000, 1, Number.MAX_SAFE_INTEGER);
  }

  /** Queues `payload` (text, not empty) for the next batch; resolves once that batch is acknowledged. */
  send(payload: string): Promise<void> {
    if (this.closed) return Promise.reject(new ClientError('CONNECTION', `the producer of ${this.topic} was closed`));
    if (typeof payload !== 'string' || payload.length === 0) {
      return Promise.reject(new ClientError('PROTOCOL', 'a payload must be a non-empty string'));
    }
    const bytes = Buffer.byteLength(payload, 'utf8');
    if (bytes + SIZE_FIELD_BYTES > this.batchBytesMax) {
      return Promise.reject(
        new ClientError(
          'PROTOCOL',
          `a payload of ${bytes} bytes does not fit a batch of at most ${this.batchBytesMax} bytes: send it with put()`,
        ),
      );
    }
    this.pending += 1;
    if (this.blocked.length > this.blockedHead || this.pending > this.pendingMax) {
      return new Promise<Promise<void>>((resolve) => this.blocked.push({ payload, bytes, resolve })).then((joined) => joined);
    }
    return this.enqueue(payload, bytes);
  }

  /** Sends what is queued now and resolves once every batch sent so far has been answered (rejected ones included). */
  async flush(): Promise<void> {
    this.sendBatch();
    while (this.inFlight.size > 0 || this.blocked.length > this.blockedHead || this.batch !== undefined) {
      this.sendBatch();
      await Promise.allSettled([...this.inFlight]);
    }
  }

  /** flush(), then refuses further sends. The client stays open (it is the caller's). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  /** Adds a payload to the open batch (sending the batch when it is full); returns the batch's promise. */
  private enqueue(payload: string, bytes: number): Promise<void> {
    const cost = bytes + SIZE_FIELD_BYTES;
    let batch = this.batch;
    if (batch !== undefined && (batch.bytes + cost > this.batchBytesMax || batch.payloads.length >= this.batchEntriesMax)) {
      this.sendBatch();
      batch = undefined;
    }
    if (batch === undefined) batch = this.openBatch();
    batch.payloads.push(payload);
    batch.bytes += cost;
    if (batch.payloads.length >= this.batchEntriesMax || batch.bytes >= this.batchBytesMax) this.sendBatch();
    return batch.done;
  }

  private openBatch(): OpenBatch {
    let resolve: () => void = () => undefined;
    let reject: (error: unknown) => void = () => undefined;
    const done = new Promise<void>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    const batch: OpenBatch = { payloads: [], bytes: 0, done, resolve, reject };
    this.batch = batch;
    if (this.lingerMs === 0) {
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.sendBatch();
        });
      }
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.sendBatch();
      }, this.lingerMs);
    }
    return batch;
  }

  private sendBatch(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.batch;
    if (batch === undefined) return;
    this.batch = undefined;
    const count = batch.payloads.length;
    const settled = this.client.mput(this.topic, batch.payloads).then(
      () => {
        this.pending -= count;
        batch.resolve();
        this.unblock();
      },
      (error: unknown) => {
        this.pending -= count;
        batch.reject(error);
        this.unblock();
      },
    );
    this.inFlight.add(settled);
    void settled.finally(() => this.inFlight.delete(settled));
  }

  /** Lets blocked send() calls in, oldest first, while there is room. */
  private unblock(): void {
    // `pending` counts the blocked calls too: one is let in for each that settles.
    while (this.blockedHead < this.blocked.length && this.pending - (this.blocked.length - this.blockedHead) < this.pendingMax) {
      const item = this.blocked[this.blockedHead] as Blocked;
      this.blockedHead += 1;
      item.resolve(this.enqueue(item.payload, item.bytes));
    }
    if (this.blockedHead === this.blocked.length) {
      this.blocked = [];
      this.blockedHead = 0;
    }
  }
}

export interface ConsumerOptions {
  readonly topic: string;
  /** Entries one MGET asks for (default 1000, at most limits.batchEntriesMax). */
  readonly maxEntries?: number;
  /** How long to wait before asking again when the topic had nothing (default 50 ms). */
  readonly pollMs?: number;
}

/**
 * The entries of one topic, in order, from its shared consumption position (each entry goes to
 * one consumer or GET in the cluster). `for await (const entry of consumer)` waits for new
 * entries when there are none; `break` (or stop()) ends it. An entry counts as consumed once its
 * batch's reply was written by the node: entries a stopped loop had received and not handled
 * yet are not given to anyone else.
 */
export class Consumer implements AsyncIterable<string> {
  readonly topic: string;
  private readonly client: BatchClient;
  private readonly maxEntries: number;
  private readonly pollMs: number;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(client: BatchClient, options: ConsumerOptions) {
    if (typeof options.topic !== 'string' || options.topic.length === 0) throw new ClientError('PROTOCOL', 'a consumer needs a topic');
    this.client = client;
    this.topic = options.topic;
    this.maxEntries = checkedOption('maxEntries', options.maxEntries, 1000, 1, limits.batchEntriesMax);
    this.pollMs = checkedOption('pollMs', options.pollMs, 50, 1, 60_000);
  }

  /** Ends the iteration: a wait for new entries ends at once; a batch being read is still handed out. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for await (const entries of this.batches()) for (const entry of entries) yield entry;
  }

  /**
   * The same entries a batch (one MGET's reply) at a time: `for await (const entries of
   * consumer.batches())`. Cheaper than one entry at a time when entries are small (an async
   * iteration step per entry costs about as much as reading it).
   */
  async *batches(): AsyncGenerator<string[]> {
    try {
      while (!this.stopped) {
        const entries = await this.client.mget(this.topic, this.maxEntries);
        if (entries.length === 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, this.pollMs);
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wake = undefined;
          continue;
        }
        yield entries;
      }
    } finally {
      this.stopped = true;
    }
  }
}

function checkedOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ClientError('PROTOCOL', `${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}
