// A producer and a consumer on top of WalrusClient's batch commands (docs/protocol.md, "Batches"):
// the producer gathers the payloads sent within `lingerMs` (or until a batch is full) into one
// MPUT, the consumer reads with MGET (or, given a position to start from, with MFETCH). Both keep
// the order: batches leave one connection in the order they were made and the node answers them
// in that order, so send() promises settle in send order, and the consumer yields entries in the
// topic's order.

import { ClientError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';

/** What the producer and the consumer need of a client (WalrusClient has both). */
export interface BatchClient {
  mput(topic: string, payloads: readonly string[]): Promise<number>;
  mget(topic: string, max: number): Promise<string[]>;
  mfetch(topic: string, segment: number, offset: number, max: number): Promise<string[]>;
  state(topic: string): Promise<{ readonly sealed_segments: Readonly<Record<string, number>> }>;
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
  /** Entries one read asks for (default 1000, at most limits.batchEntriesMax). */
  readonly maxEntries?: number;
  /** How long to wait before asking again when the topic had nothing (default 50 ms). */
  readonly pollMs?: number;
  /**
   * Read by position from here (`'start'`: segment 1, offset 0) with MFETCH instead of consuming
   * the topic's shared position with MGET: nothing is consumed, other consumers and GETs are not
   * affected, and `position` says where to go on from.
   */
  readonly from?: 'start' | ConsumerPosition;
  /**
   * With `from`: reads in flight at once (default 2, at most 8), each asked for where the one
   * before it should end. Without `from` only 1 is taken: an MGET consumes what it reads, so a
   * read ahead that a stopped loop never handled would be lost to every other reader.
   */
  readonly readAhead?: number;
}

/** Where a position reader goes on from: the next entry to read. */
export interface ConsumerPosition {
  readonly segment: number;
  readonly offset: number;
}

/** One read's entries and where the first of them is (position reads). */
interface ReadBatch {
  readonly entries: string[];
  readonly segment: number;
  readonly offset: number;
}

/** A position read sent and not handled yet. */
interface Ahead {
  readonly segment: number;
  readonly offset: number;
  readonly reply: Promise<string[]>;
}

const READ_AHEAD_MAX = 8;
const ignore = (): void => undefined;

/**
 * The entries of one topic, in order. `for await (const entry of consumer)` waits for new entries
 * when there are none; `break` (or stop()) ends it.
 *
 * Without `from` it reads the topic's shared consumption position with MGET (each entry goes to
 * one consumer or GET in the cluster). An entry counts as consumed once its batch's reply was
 * written by the node: entries a stopped loop had received and not handled yet are not given to
 * anyone else.
 *
 * With `from` it reads by position with MFETCH, segment after segment (STATE says where one
 * ends), `readAhead` reads in flight, and consumes nothing; `position` is the next entry after
 * the last one handed out, to start a later consumer from.
 */
export class Consumer implements AsyncIterable<string> {
  readonly topic: string;
  private readonly client: BatchClient;
  private readonly maxEntries: number;
  private readonly pollMs: number;
  private readonly readAhead: number;
  private readonly byPosition: boolean;
  private next: ConsumerPosition;
  private stopped = false;
  private wake: (() => void) | undefined;

  constructor(client: BatchClient, options: ConsumerOptions) {
    if (typeof options.topic !== 'string' || options.topic.length === 0) throw new ClientError('PROTOCOL', 'a consumer needs a topic');
    this.client = client;
    this.topic = options.topic;
    this.maxEntries = checkedOption('maxEntries', options.maxEntries, 1000, 1, limits.batchEntriesMax);
    this.pollMs = checkedOption('pollMs', options.pollMs, 50, 1, 60_000);
    this.byPosition = options.from !== undefined;
    this.next = startPosition(options.from);
    if (!this.byPosition && options.readAhead !== undefined && options.readAhead !== 1) {
      throw new ClientError(
        'PROTOCOL',
        `readAhead ${options.readAhead} needs from: a consumer of the shared position (MGET) reads one batch at a time, since what it read ahead and did not handle would be consumed for every other reader`,
      );
    }
    this.readAhead = checkedOption('readAhead', options.readAhead, this.byPosition ? 2 : 1, 1, READ_AHEAD_MAX);
  }

  /**
   * A position reader's next entry to read: after the last entry the loop was handed (the entry
   * iterator counts each entry as it yields it; batches() a whole batch). Without `from`,
   * undefined: the node keeps the shared position.
   */
  get position(): ConsumerPosition | undefined {
    return this.byPosition ? this.next : undefined;
  }

  /** Ends the iteration: a wait for new entries ends at once; a batch being read is still handed out. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for await (const batch of this.reads()) {
      for (let index = 0; index < batch.entries.length; index++) {
        if (this.byPosition) this.next = { segment: batch.segment, offset: batch.offset + index + 1 };
        yield batch.entries[index] as string;
      }
    }
  }

  /**
   * The same entries a batch (one read's reply) at a time: `for await (const entries of
   * consumer.batches())`. Cheaper than one entry at a time when entries are small (an async
   * iteration step per entry costs about as much as reading it).
   */
  async *batches(): AsyncGenerator<string[]> {
    for await (const batch of this.reads()) {
      if (this.byPosition) this.next = { segment: batch.segment, offset: batch.offset + batch.entries.length };
      yield batch.entries;
    }
  }

  private async *reads(): AsyncGenerator<ReadBatch> {
    try {
      if (this.byPosition) yield* this.positionReads();
      else {
        while (!this.stopped) {
          const entries = await this.client.mget(this.topic, this.maxEntries);
          if (entries.length === 0) await this.pause();
          else yield { entries, segment: 0, offset: 0 };
        }
      }
    } finally {
      this.stopped = true;
    }
  }

  /**
   * MFETCHes from `next` on, up to `readAhead` of them in flight: each later one asks where the
   * one before it ends if its reply holds as many entries as the last reply did. A reply of
   * another size (the log's end, the byte bound of a reply) makes the reads ahead of it wrong:
   * they are dropped and asked again from where it ended. An empty reply asks STATE whether the
   * segment is sealed there (go on with the next one) or not written that far yet (wait pollMs).
   */
  private async *positionReads(): AsyncGenerator<ReadBatch> {
    let { segment, offset } = this.next;
    let expected = this.maxEntries;
    let ahead: Ahead[] = [];
    const ask = (at: number): void => {
      const reply = this.client.mfetch(this.topic, segment, at, this.maxEntries);
      reply.catch(ignore);
      ahead.push({ segment, offset: at, reply });
    };
    while (!this.stopped) {
      if (ahead.length === 0) ask(offset);
      while (ahead.length < this.readAhead) ask((ahead[ahead.length - 1] as Ahead).offset + expected);
      const head = ahead.shift() as Ahead;
      const entries = await head.reply;
      if (entries.length === 0) {
        ahead = [];
        const sealed = (await this.client.state(this.topic)).sealed_segments[String(segment)];
        if (sealed === undefined) {
          await this.pause();
          continue;
        }
        if (sealed <= offset) {
          segment += 1;
          offset = 0;
          continue;
        }
        throw new ClientError(
          'GONE',
          `entries ${offset} to ${sealed - 1} of segment ${segment} of ${this.topic} are no longer on the node (GET consumed them and their data file was reclaimed); read on from segment ${segment + 1}`,
        );
      }
      if (entries.length !== expected) {
        expected = entries.length;
        ahead = [];
      }
      offset += entries.length;
      yield { entries, segment: head.segment, offset: head.offset };
    }
  }

  private async pause(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.pollMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }
}

function startPosition(from: ConsumerOptions['from']): ConsumerPosition {
  if (from === undefined || from === 'start') return { segment: 1, offset: 0 };
  if (typeof from !== 'object' || from === null || !Number.isSafeInteger(from.segment) || from.segment < 1) {
    throw new ClientError(
      'PROTOCOL',
      `from must be 'start' or { segment, offset } with a segment of 1 or more, got ${JSON.stringify(from)}`,
    );
  }
  if (!Number.isSafeInteger(from.offset) || from.offset < 0) {
    throw new ClientError('PROTOCOL', `from.offset must be an integer of 0 or more, got ${from.offset}`);
  }
  return { segment: from.segment, offset: from.offset };
}

function checkedOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ClientError('PROTOCOL', `${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}
