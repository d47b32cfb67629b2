// A client for the Walrus client TCP protocol (cluster.md §1): one TCP connection to one node,
// carrying many requests at once. The server answers a connection's requests strictly in order,
// so replies are matched to requests first in, first out; at most `inFlightMax` requests are on
// the wire at a time and the rest wait in a queue (they are never refused for being too many).
//
// Connecting is lazy: `new WalrusClient('host:port')` connects on the first request.
// `WalrusClient.connect(options)` builds one and connects at once, so an unreachable node shows
// up there rather than on the first request.
//
// Failures, all as ClientError with a code:
// - SERVER_ERROR: the node replied `ERR <message>`; the connection stays usable. `serverCode` is
//   the node's error code when the reply is one of the wire table's (src/protocol/wire-errors.ts).
// - TIMEOUT: a request had no reply within `timeoutMs` of the call (connecting included). Replies
//   still on their way would now be matched to the wrong requests, so the connection is dropped
//   and every outstanding request (sent or queued) fails with TIMEOUT.
// - CONNECTION: connecting failed or the connection closed; every outstanding request fails.
//   Nothing is resent: whether an unanswered PUT was applied is unknown, so that is the caller's
//   call. The next request connects again, after a doubling delay when the previous attempts
//   failed (limits.clientReconnectDelayMs*). With `reconnect: false` the client stays down.
// - PROTOCOL: the request cannot be expressed in the protocol (checked before anything is sent),
//   or the reply makes no sense for the request.

import { connect, type Socket } from 'node:net';
import { ClientError, type ClientErrorCode } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { isTrimmedCode } from '../protocol/commands.js';
import { encodeSizedFrame, FrameDecoder } from '../protocol/frames.js';
import { type FetchedEntry, parseFetchReply, parseReply, preview, type Reply } from '../protocol/replies.js';
import { wireCode } from '../protocol/wire-errors.js';
import { Consumer, type ConsumerOptions, Producer, type ProducerOptions } from './batching.js';

// ClientError is a WalrusError (kind `client`) defined in the kernel's error module, so that its
// codes sit in the one error table; it is re-exported here, where callers have always found it.
export { ClientError, type ClientErrorCode };

/** STATE <topic>: the node's local view of the topic's metadata (cluster.md §1.6). */
export interface TopicStateJson {
  current_segment: number;
  leader_node: number;
  last_sealed_entry_offset: number;
  /** Segment id (decimal string) → number of entries it was sealed with. */
  sealed_segments: Record<string, number>;
  /** Segment id (decimal string) → node that leads it; includes the open segment. */
  segment_leaders: Record<string, number>;
}

export type { FetchedEntry };

export interface WalrusClientOptions {
  readonly host: string;
  readonly port: number;
  /** Time from a call to its reply, connecting included (default limits.clientTimeoutMsDefault). */
  readonly timeoutMs?: number;
  /** Connect again on the next request after the connection was lost (default true). */
  readonly reconnect?: boolean;
  /** Requests on the wire at once; more wait in a queue (default limits.clientInFlightMax). */
  readonly inFlightMax?: number;
}

interface Pending {
  readonly frame: Buffer;
  readonly resolve: (reply: string) => void;
  /**
   * Given, the reply's body is handed over as bytes (not decoded), in the pieces it arrived in
   * (FrameDecoder.nextBodyParts): batch replies, whose sizes count bytes.
   */
  readonly resolveBody?: (parts: readonly Buffer[]) => void;
  readonly reject: (error: ClientError) => void;
  /** performance.now() by which the reply must have come. */
  readonly deadline: number;
}

/** A first-in first-out queue with O(1) removal at the front. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, left in place. */
  peek(): T | undefined {
    return this.head === this.items.length ? undefined : this.items[this.head];
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head] as T;
    this.head += 1;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }
}

/** A UTF-16 surrogate without its partner: UTF-8 cannot carry it (it would arrive as U+FFFD). */
const LONE_SURROGATE = /\p{Cs}/u;
/** A settled promise: a reaction on it is a plain microtask (queueMicrotask also makes an async resource). */
const SETTLED: Promise<void> = Promise.resolve();

export class WalrusClient {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly reconnect: boolean;
  readonly inFlightMax: number;

  private socket: Socket | undefined;
  private connected = false;
  private decoder = new FrameDecoder({ maxFrameBytes: limits.clientReplyBytesMax });
  /** Strict, as the decoder's own: a reply that is not UTF-8 is an error, not U+FFFD; a leading BOM is kept. */
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  /** Sent, awaiting their replies, in sending order. */
  private readonly inFlight = new Fifo<Pending>();
  /** Not sent yet: waiting for the connection or for room under inFlightMax. */
  private readonly waiting = new Fifo<Pending>();
  /** Callers of connect() waiting for the connection to open. */
  private openWaiters: Array<{ resolve: () => void; reject: (error: ClientError) => void }> = [];
  /** Connection failures since the last reply received; drives the reconnect delay. */
  private failures = 0;
  private nextAttemptAt = 0;
  private delayTimer: NodeJS.Timeout | undefined;
  /**
   * One timer for every request's timeout (a timer per request cost a measurable share of a
   * sequential request). Requests share timeoutMs and are answered in order, so the oldest
   * outstanding one always has the earliest deadline: the timer is armed for it and, on firing,
   * either times everything out or re-arms for the new oldest. It is unref'd while nothing is
   * outstanding, so an idle client never keeps the process alive.
   */
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineArmedFor = Number.POSITIVE_INFINITY;
  /** A connection was lost and reconnect is off: every request fails. */
  private down = false;
  private closed = false;
  /** A pump is due at the end of this run of code (schedulePump). */
  private pumpScheduled = false;

  /** A client for `host:port` (`[v6]:port` for IPv6) or options; connects on the first request. */
  constructor(target: string | WalrusClientOptions) {
    const options = typeof target === 'string' ? parseAddress(target) : target;
    if (typeof options.host !== 'string' || options.host.length === 0) throw new TypeError('host must be a non-empty string');
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535) {
      throw new TypeError(`port must be an integer from 1 to 65535, got ${options.port}`);
    }
    const timeoutMs = options.timeoutMs ?? limits.clientTimeoutMsDefault;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 2 ** 31 - 1) {
      throw new TypeError(`timeoutMs must be a positive integer (milliseconds), got ${timeoutMs}`);
    }
    const inFlightMax = options.inFlightMax ?? limits.clientInFlightMax;
    if (!Number.isInteger(inFlightMax) || inFlightMax < 1)
      throw new TypeError(`inFlightMax must be a positive integer, got ${inFlightMax}`);
    this.host = options.host;
    this.port = options.port;
    this.timeoutMs = timeoutMs;
    this.reconnect = options.reconnect ?? true;
    this.inFlightMax = inFlightMax;
  }

  /** Builds a client and waits until its connection is open (CONNECTION or TIMEOUT otherwise). */
  static async connect(options: WalrusClientOptions): Promise<WalrusClient> {
    const client = new WalrusClient(options);
    await client.open();
    return client;
  }

  /** Requests sent or queued and not answered yet. */
  get pendingRequests(): number {
    return this.inFlight.size + this.waiting.size;
  }

  /** `REGISTER <topic>`: creates the topic if it does not exist (idempotent). */
  async register(topic: string): Promise<void> {
    checkTopic(topic);
    expectOk('REGISTER', await this.send(`REGISTER ${topic}`));
  }

  /**
   * `PUT <topic> <payload>`: appends one entry. The payload is text: not empty, not ending with
   * a space, tab, CR or LF (the server trims those), and the request must fit limits.frameBytesMax.
   */
  async put(topic: string, payload: string): Promise<void> {
    checkTopic(topic);
    if (typeof payload !== 'string') throw new ClientError('PROTOCOL', 'a PUT payload must be a string');
    if (payload.length === 0) throw new ClientError('PROTOCOL', 'a PUT payload cannot be empty: the protocol has no way to send one');
    // The server trims these from the end of every request (cluster.md §1.3.1).
    if (isTrimmedCode(payload.charCodeAt(payload.length - 1))) {
      throw new ClientError(
        'PROTOCOL',
        'a PUT payload cannot end with a space, tab, CR or LF: the server trims trailing whitespace from every request, so it would store a different payload',
      );
    }
    expectOk('PUT', await this.send(`PUT ${topic} ${payload}`));
  }

  /** `GET <topic>`: consumes the node's next entry of the topic; null when there is none. */
  async get(topic: string): Promise<string | null> {
    checkTopic(topic);
    const reply = parseReply(await this.send(`GET ${topic}`));
    if (reply.kind === 'value') return reply.value;
    if (reply.kind === 'empty') return null;
    throw unexpected('GET', reply);
  }

  /**
   * `FETCH <topic> <segment> <offset>`: reads entry `offset` (0-based) of segment `segment`
   * (1-based) without consuming it; null past the segment's end.
   */
  async fetch(topic: string, segment: number, offset: number): Promise<FetchedEntry | null> {
    checkTopic(topic);
    if (!Number.isSafeInteger(segment) || segment < 1) {
      throw new ClientError('PROTOCOL', `a FETCH segment must be a positive integer, got ${segment}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ClientError('PROTOCOL', `a FETCH offset must be a non-negative integer, got ${offset}`);
    }
    const text = await this.send(`FETCH ${topic} ${segment} ${offset}`);
    const reply = parseReply(text);
    if (reply.kind === 'error') throw serverError(reply.message);
    try {
      return parseFetchReply(text);
    } catch (error) {
      throw new ClientError('PROTOCOL', (error as Error).message, { cause: error });
    }
  }

  /**
   * `MPUT <topic> <size> ...` LF payloads: appends `payloads` as one unit, in this order, at
   * consecutive positions of one segment (all of them or none); resolves with how many. Each is
   * text, not empty; together, with the request's first line, at most limits.frameBytesMax bytes
   * and limits.batchEntriesMax payloads. Unlike PUT's, a payload may end with spaces or LFs.
   */
  async mput(topic: string, payloads: readonly string[]): Promise<number> {
    checkTopic(topic);
    const frame = batchPutFrame(topic, payloads);
    const reply = parseReply(await this.sendFrame(frame));
    const count = reply.kind === 'value' ? Number(reply.value) : Number.NaN;
    if (count !== payloads.length) throw unexpected('MPUT', reply);
    return count;
  }

  /**
   * `MGET <topic> <max>`: consumes up to `max` (1 to limits.batchEntriesMax) next entries of the
   * topic, in order, from one segment (at most limits.batchReadBytesMax of payload, at least one
   * entry); an empty array when there is none. They are consumed once the reply has been written.
   */
  async mget(topic: string, max: number): Promise<string[]> {
    checkTopic(topic);
    checkBatchMax('MGET', max);
    return parseEntries('MGET', await this.sendBody(`MGET ${topic} ${max}`));
  }

  /**
   * `MFETCH <topic> <segment> <offset> <max>`: up to `max` entries of segment `segment` from
   * `offset` on, without consuming them (as many FETCHes, in one reply); an empty array past the
   * segment's end.
   */
  async mfetch(topic: string, segment: number, offset: number, max: number): Promise<string[]> {
    checkTopic(topic);
    if (!Number.isSafeInteger(segment) || segment < 1) {
      throw new ClientError('PROTOCOL', `an MFETCH segment must be a positive integer, got ${segment}`);
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new ClientError('PROTOCOL', `an MFETCH offset must be a non-negative integer, got ${offset}`);
    }
    checkBatchMax('MFETCH', max);
    return parseEntries('MFETCH', await this.sendBody(`MFETCH ${topic} ${segment} ${offset} ${max}`));
  }

  /**
   * A producer of `topic`: payloads given to its send() within `lingerMs` go out together in one
   * MPUT (see Producer). It uses this client's connection; closing the client ends it.
   */
  producer(options: ProducerOptions): Producer {
    return new Producer(this, options);
  }

  /** A consumer of `topic`: an async iterable of its entries, read with MGET (see Consumer). */
  consumer(options: ConsumerOptions): Consumer {
    return new Consumer(this, options);
  }

  /** `STATE <topic>`: the node's view of the topic's segments. */
  async state(topic: string): Promise<TopicStateJson> {
    checkTopic(topic);
    const value = jsonObject('STATE', parseReply(await this.send(`STATE ${topic}`)));
    if (typeof value.current_segment !== 'number' || typeof value.leader_node !== 'number') {
      throw new ClientError('PROTOCOL', 'the STATE reply lacks current_segment or leader_node');
    }
    return value as unknown as TopicStateJson;
  }

  /** `METRICS`: the node's Raft metrics (cluster.md §1.7). */
  async metrics(): Promise<Record<string, unknown>> {
    return jsonObject('METRICS', parseReply(await this.send('METRICS')));
  }

  /**
   * Sends any request text and returns the reply text as it came, `ERR …` included. The text
   * must be 1 to limits.frameBytesMax UTF-8 bytes and well-formed Unicode.
   */
  async raw(text: string): Promise<string> {
    if (typeof text !== 'string') throw new ClientError('PROTOCOL', 'a request must be a string');
    return this.send(text);
  }

  /**
   * Closes the connection. Requests still outstanding fail with CONNECTION, later ones too.
   * Resolves once the socket is closed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const socket = this.socket;
    this.failAll('CONNECTION', 'the client was closed');
    if (socket !== undefined && !socket.closed) await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  }

  // --- requests ------------------------------------------------------------------------------

  private send(text: string): Promise<string> {
    const bytes = this.checked(text);
    if (typeof bytes !== 'number') return Promise.reject(bytes);
    return this.sendFrame(encodeSizedFrame(text, bytes));
  }

  /** send(), with the reply's body as bytes. */
  private sendBody(text: string): Promise<readonly Buffer[]> {
    const bytes = this.checked(text);
    if (typeof bytes !== 'number') return Promise.reject(bytes);
    return this.sendFrame(encodeSizedFrame(text, bytes), true);
  }

  /** Queues a whole request frame (checked already); resolves with the reply as text, or with `body` its bytes. */
  private sendFrame(frame: Buffer): Promise<string>;
  private sendFrame(frame: Buffer, body: true): Promise<readonly Buffer[]>;
  private sendFrame(frame: Buffer, body = false): Promise<string | readonly Buffer[]> {
    if (this.closed) return Promise.reject(new ClientError('CONNECTION', 'the client was closed'));
    if (this.down) return Promise.reject(new ClientError('CONNECTION', `the connection to ${this.address} was lost and reconnect is off`));
    return new Promise<string | readonly Buffer[]>((resolve, reject) => {
      const deadline = performance.now() + this.timeoutMs;
      this.waiting.push({ frame, resolve, reject, deadline, ...(body ? { resolveBody: resolve } : {}) });
      this.armDeadline(deadline);
      this.schedulePump();
    });
  }

  /** A request text's size in UTF-8 bytes, or why it cannot be sent (empty, too long, a lone surrogate). */
  private checked(text: string): number | ClientError {
    if (this.closed) return new ClientError('CONNECTION', 'the client was closed');
    if (this.down) return new ClientError('CONNECTION', `the connection to ${this.address} was lost and reconnect is off`);
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes === 0) return new ClientError('PROTOCOL', 'a request cannot be empty: the server refuses frames of 0 bytes');
    if (bytes > limits.frameBytesMax) {
      return new ClientError('PROTOCOL', `the request is ${bytes} bytes of UTF-8; the server accepts at most ${limits.frameBytesMax}`);
    }
    // Pure ASCII (as many bytes as UTF-16 units) cannot hold a surrogate: the scan is skipped.
    if (bytes !== text.length && LONE_SURROGATE.test(text)) {
      return new ClientError('PROTOCOL', 'the request contains a lone UTF-16 surrogate, which UTF-8 cannot carry');
    }
    return bytes;
  }

  /**
   * Requests made in one run of code (the callers a batch of replies woke, each sending its next
   * request) are written together once it ends: one system call for the burst, not one each,
   * and so fewer, fuller reads on the server. A lone request still goes out before any I/O.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    void SETTLED.then(this.scheduledPump);
  }

  private readonly scheduledPump = (): void => {
    this.pumpScheduled = false;
    this.pump();
  };

  /** Makes sure the deadline timer fires by `deadline` (a request was just queued). */
  private armDeadline(deadline: number): void {
    const timer = this.deadlineTimer;
    if (timer !== undefined && this.deadlineArmedFor <= deadline) {
      timer.ref();
      return;
    }
    if (timer !== undefined) clearTimeout(timer);
    this.deadlineArmedFor = deadline;
    this.deadlineTimer = setTimeout(this.onDeadline, Math.max(1, Math.ceil(deadline - performance.now())));
  }

  private readonly onDeadline = (): void => {
    this.deadlineTimer = undefined;
    this.deadlineArmedFor = Number.POSITIVE_INFINITY;
    const oldest = this.inFlight.peek() ?? this.waiting.peek();
    if (oldest === undefined) return;
    if (oldest.deadline <= performance.now()) {
      this.failAll('TIMEOUT', `no reply from ${this.address} within ${this.timeoutMs} ms`);
      return;
    }
    this.armDeadline(oldest.deadline);
  };

  /** Nothing outstanding: the deadline timer must not keep the process alive. */
  private idleDeadline(): void {
    if (this.inFlight.size === 0 && this.waiting.size === 0) this.deadlineTimer?.unref();
  }

  /** Moves waiting requests onto the wire while there is room; connects when needed. */
  private pump(): void {
    if (this.socket === undefined) {
      if (this.waiting.size > 0 || this.openWaiters.length > 0) this.startConnect();
      return;
    }
    if (!this.connected || this.inFlight.size >= this.inFlightMax || this.waiting.size === 0) return;
    const socket = this.socket;
    // Several frames go out in one system call; a lone one is written as is (corking costs more).
    const cork = this.waiting.size > 1 && this.inFlight.size + 1 < this.inFlightMax;
    if (cork) socket.cork();
    while (this.inFlight.size < this.inFlightMax) {
      const pending = this.waiting.shift();
      if (pending === undefined) break;
      this.inFlight.push(pending);
      socket.write(pending.frame);
    }
    if (cork) socket.uncork();
  }

  private open(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => this.failAll('TIMEOUT', `could not connect to ${this.address} within ${this.timeoutMs} ms`),
        this.timeoutMs,
      );
      this.openWaiters.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.pump();
    });
  }

  // --- the connection ------------------------------------------------------------------------

  private startConnect(): void {
    if (this.socket !== undefined || this.delayTimer !== undefined || this.closed) return;
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      this.delayTimer = setTimeout(() => {
        this.delayTimer = undefined;
        this.pump();
      }, wait);
      return;
    }
    const socket = connect({ host: this.host, port: this.port });
    socket.setNoDelay(true);
    this.socket = socket;
    this.decoder = new FrameDecoder({ maxFrameBytes: limits.clientReplyBytesMax });
    socket.on('connect', () => {
      if (this.socket !== socket) return;
      this.connected = true;
      const waiters = this.openWaiters;
      this.openWaiters = [];
      for (const waiter of waiters) waiter.resolve();
      this.pump();
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.socket === socket) this.receive(chunk);
    });
    socket.on('error', (error) => {
      if (this.socket !== socket) return;
      const what = this.connected ? `the connection to ${this.address} failed` : `could not connect to ${this.address}`;
      this.failAll('CONNECTION', `${what}: ${error.message}`, error);
    });
    socket.on('close', () => {
      if (this.socket === socket) this.failAll('CONNECTION', `the connection to ${this.address} was closed by the server`);
    });
  }

  private receive(chunk: Buffer): void {
    this.decoder.push(chunk);
    for (;;) {
      const frame = this.decoder.nextBodyParts();
      if (frame === undefined) break;
      if (frame.kind === 'invalid-length') {
        this.failAll(
          'PROTOCOL',
          `the server sent a reply frame of ${frame.length} bytes (accepted: 1 to ${limits.clientReplyBytesMax}); the connection was dropped`,
        );
        return;
      }
      const pending = this.inFlight.shift();
      if (pending === undefined) {
        this.failAll('PROTOCOL', 'the server sent a reply to no request; the connection was dropped');
        return;
      }
      this.failures = 0;
      this.nextAttemptAt = 0;
      // A reply that is not UTF-8 fails only its own request: framing is intact, the next reply is in step.
      if (pending.resolveBody !== undefined) pending.resolveBody(frame.parts);
      else {
        let text: string;
        try {
          text = this.utf8.decode(frame.parts.length === 1 ? (frame.parts[0] as Buffer) : Buffer.concat(frame.parts, frame.length));
        } catch {
          pending.reject(new ClientError('PROTOCOL', 'the reply is not valid UTF-8'));
          continue;
        }
        pending.resolve(text);
      }
    }
    this.pump();
    this.idleDeadline();
  }

  /** Drops the connection and fails everything outstanding. */
  private failAll(code: ClientErrorCode, message: string, cause?: unknown): void {
    const socket = this.socket;
    const wasConnected = this.connected;
    this.socket = undefined;
    this.connected = false;
    if (this.delayTimer !== undefined) {
      clearTimeout(this.delayTimer);
      this.delayTimer = undefined;
    }
    if (socket !== undefined) {
      socket.destroy();
      if (!this.closed) {
        this.failures += 1;
        const delay = Math.min(limits.clientReconnectDelayMsMin * 2 ** (this.failures - 1), limits.clientReconnectDelayMsMax);
        this.nextAttemptAt = Date.now() + delay;
        if (wasConnected && !this.reconnect) this.down = true;
      }
    }
    if (this.deadlineTimer !== undefined) {
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = undefined;
      this.deadlineArmedFor = Number.POSITIVE_INFINITY;
    }
    for (const pending of [...this.inFlight.drain(), ...this.waiting.drain()]) pending.reject(new ClientError(code, message, { cause }));
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const waiter of waiters) waiter.reject(new ClientError(code, message, { cause }));
  }

  private get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }
}

// --- helpers ---------------------------------------------------------------------------------

/** `host:port` or `[ipv6]:port`. */
function parseAddress(address: string): WalrusClientOptions {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(address);
  if (match === null) throw new TypeError(`expected 'host:port' or '[ipv6]:port', got ${JSON.stringify(address)}`);
  return { host: (match[1] ?? match[2]) as string, port: Number(match[3]) };
}

/** An MPUT's frame: `MPUT <topic> <size> ...` LF, then the payloads' UTF-8 bytes, checked as the server would. */
function batchPutFrame(topic: string, payloads: readonly string[]): Buffer {
  if (!Array.isArray(payloads) || payloads.length === 0) throw new ClientError('PROTOCOL', 'an MPUT needs at least one payload');
  if (payloads.length > limits.batchEntriesMax) {
    throw new ClientError('PROTOCOL', `an MPUT takes at most ${limits.batchEntriesMax} payloads, got ${payloads.length}`);
  }
  // Sizes first, then one buffer for the whole frame, each payload encoded straight into it.
  const sizes: number[] = new Array(payloads.length);
  let bytes = 0;
  for (const [index, payload] of payloads.entries()) {
    if (typeof payload !== 'string' || payload.length === 0) {
      throw new ClientError('PROTOCOL', `MPUT payload ${index} must be a non-empty string`);
    }
    const size = Buffer.byteLength(payload, 'utf8');
    // Pure ASCII (as many bytes as UTF-16 units) cannot hold a surrogate: the scan is skipped.
    if (size !== payload.length && LONE_SURROGATE.test(payload)) {
      throw new ClientError('PROTOCOL', `MPUT payload ${index} contains a lone UTF-16 surrogate, which UTF-8 cannot carry`);
    }
    sizes[index] = size;
    bytes += size;
  }
  const header = `MPUT ${topic} ${sizes.join(' ')}\n`;
  const headBytes = Buffer.byteLength(header, 'utf8');
  const total = headBytes + bytes;
  if (total > limits.frameBytesMax) {
    throw new ClientError(
      'PROTOCOL',
      `the MPUT is ${total} bytes (its first line ${headBytes}, payloads ${bytes}); the server accepts at most ${limits.frameBytesMax}: send fewer payloads at once`,
    );
  }
  const frame = Buffer.allocUnsafe(4 + total);
  frame.writeUInt32LE(total, 0);
  let at = 4 + frame.write(header, 4, 'utf8');
  for (const payload of payloads) at += frame.write(payload, at, 'utf8');
  return frame;
}

function checkBatchMax(op: string, max: number): void {
  if (!Number.isSafeInteger(max) || max < 1 || max > limits.batchEntriesMax) {
    throw new ClientError('PROTOCOL', `an ${op} max must be an integer from 1 to ${limits.batchEntriesMax}, got ${max}`);
  }
}

/**
 * A batch read's reply: `OK <n> <size> ...` LF payloads, `EMPTY` (none), or `ERR ...`; its body in
 * the pieces it arrived in. Each entry is decoded from the piece it lies in (one that spans two is
 * joined first), so a reply costs no copy of its own.
 */
export function parseEntries(op: string, parts: readonly Buffer[]): string[] {
  let body = parts[0] as Buffer;
  const newline = body.indexOf(0x0a);
  if (newline < 0 && parts.length > 1) {
    // The first line goes on in the next piece (a rare cut): read the reply joined.
    return parseEntries(op, [Buffer.concat(parts)]);
  }
  const head = body.toString('utf8', 0, newline < 0 ? body.length : newline);
  if (newline < 0) {
    if (head === EMPTY_TEXT) return [];
    throw unexpected(op, parseReply(head));
  }
  const tokens = head.split(' ');
  const count = Number(tokens[1]);
  if (tokens[0] !== 'OK' || !Number.isSafeInteger(count) || count < 1 || tokens.length !== count + 2) {
    throw new ClientError('PROTOCOL', `unexpected reply to ${op}: ${preview(head)}`);
  }
  const mismatch = (): ClientError =>
    new ClientError('PROTOCOL', `the ${op} reply's sizes do not add up to its payloads: ${preview(head)}`);
  let left = -newline - 1;
  for (const part of parts) left += part.length;
  const entries: string[] = new Array(count);
  // The read position: byte `at` of parts[part].
  let part = 0;
  let at = newline + 1;
  for (let index = 0; index < count; index++) {
    const size = Number(tokens[index + 2]);
    if (!Number.isSafeInteger(size) || size < 0 || size > left) throw mismatch();
    left -= size;
    if (at === body.length && size > 0) {
      part += 1;
      body = parts[part] as Buffer;
      at = 0;
    }
    if (at + size <= body.length) {
      entries[index] = body.toString('utf8', at, at + size);
      at += size;
      continue;
    }
    const pieces: Buffer[] = [];
    let wanted = size;
    while (wanted > 0) {
      if (at === body.length) {
        part += 1;
        body = parts[part] as Buffer;
        at = 0;
      }
      const step = Math.min(wanted, body.length - at);
      pieces.push(body.subarray(at, at + step));
      at += step;
      wanted -= step;
    }
    entries[index] = Buffer.concat(pieces, size).toString('utf8');
  }
  if (left !== 0) throw mismatch();
  return entries;
}

const EMPTY_TEXT = 'EMPTY';

function checkTopic(topic: string): void {
  if (typeof topic !== 'string' || topic.length === 0) throw new ClientError('PROTOCOL', 'a topic must be a non-empty string');
  if (/[ \t\r\n]/.test(topic)) {
    throw new ClientError(
      'PROTOCOL',
      `the topic ${JSON.stringify(topic)} contains a space, tab, CR or LF: spaces separate the request's parts and the server trims the others from the end of a request`,
    );
  }
}

function serverError(message: string): ClientError {
  // The wire table read backwards gives the node's code (undefined for the `ERR <reason>` form).
  return new ClientError('SERVER_ERROR', message, { serverMessage: message, serverCode: wireCode(message) });
}

function unexpected(op: string, reply: Reply): ClientError {
  if (reply.kind === 'error') return serverError(reply.message);
  let text: string;
  if (reply.kind === 'raw') text = reply.text;
  else if (reply.kind === 'value') text = `OK ${reply.value}`;
  else if (reply.kind === 'json') text = JSON.stringify(reply.value);
  else text = reply.kind === 'ok' ? 'OK' : 'EMPTY';
  return new ClientError('PROTOCOL', `unexpected reply to ${op}: ${preview(text)}`);
}

function expectOk(op: string, text: string): void {
  const reply = parseReply(text);
  if (reply.kind !== 'ok') throw unexpected(op, reply);
}

/** The JSON object of a STATE or METRICS reply (an `OK ` prefix is tolerated, as walrus-cli does). */
function jsonObject(op: string, reply: Reply): Record<string, unknown> {
  let value: unknown;
  if (reply.kind === 'json') value = reply.value;
  else if (reply.kind === 'value' && reply.value.startsWith('{')) {
    try {
      value = JSON.parse(reply.value);
    } catch {
      throw unexpected(op, reply);
    }
  } else throw unexpected(op, reply);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw unexpected(op, reply);
  return value as Record<string, unknown>;
}
