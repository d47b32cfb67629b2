// The client TCP protocol server: accepts connections, decodes request frames, hands parsed
// commands to a CommandHandler and writes the replies back (cluster.md §1.1–1.5).
//
// Differences from the original, on purpose:
// - Pipelining: requests of one connection are handled concurrently (the original ran them one at
//   a time), but replies are still written strictly in request order, each as one write of
//   prefix + body.
// - A frame length of 0 or above limits.frameBytesMax gets `ERR invalid frame length`, after the
//   replies of earlier requests, and then the connection is closed: the stream cannot be
//   resynchronised (§10.18).
// - Every connection is bounded: at most serverInFlightPerConnection requests pending, and past
//   serverBufferedBytesPerConnection bytes held (unparsed input plus replies not yet taken by the
//   kernel) no new request is started and reading stops until replies drain. A client that never
//   reads its replies thus ends up paused by TCP flow control, holding at most the byte budget +
//   one read chunk + the replies of the requests already in flight. At most serverConnectionsMax
//   connections are served at once.
// - Replies are budgeted. A connection's reply bytes are its ready replies not yet taken by the
//   kernel (queued here or in the socket's buffer) plus a reservation for each reply still being
//   computed (a GET or FETCH reserves one entry's worth, anything else 1 KiB): a request is only
//   started while that stays within serverBufferedBytesPerConnection, and, node-wide, while the
//   sum over all connections stays within serverReplyBytesTotal. A connection holding no reply
//   bytes is always served (its replies go straight to the kernel), so clients that do not read
//   cannot lock out one that does.
// - Work per turn is bounded: one connection starts at most serverFramesPerTurn requests (or
//   serverFrameBytesPerTurn bytes) per turn of the event loop, and all of them together at most
//   serverFrameBytesPerTurnTotal bytes; past that, connections wait for the next turns in the
//   order they began waiting. The node-wide bound is what keeps new clients getting in: Node
//   (libuv >= 1.45) accepts one queued connection per turn of the event loop, so turns of 100 ms
//   under a flood let a queue of 200 connections in over 16 s, the newest client last. A small
//   request of a connection with nothing in flight (serverSmallFrameBytes: a new client's first,
//   an interactive client's next) starts even past the node-wide bound.
// - Timeouts (0 = off): idleTimeoutMs closes a connection with no request in flight and no input
//   for that long; frameTimeoutMs answers `ERR frame timeout` to a frame that started to arrive and
//   is not complete that long after, and closes the connection.
// - A client's EOF means it is gone: nothing more is written to it, requests not started are
//   dropped and replies not written yet get written(false), so a GET whose client closed does
//   not consume its entry (§10.5). TCP cannot tell a half-close from a close, and the original's
//   clients never half-close; without this, every reply to a departed client would count as
//   written.

import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { isWalrusError, walrusError } from '../../kernel/errors.js';
import { limits } from '../../kernel/limits.js';
import { type Command, isCommandError, parseRequestParts } from '../../protocol/commands.js';
import { encodeFrame, FrameDecoder, isUtf8Parts } from '../../protocol/frames.js';
import { EMPTY, OK } from '../../protocol/replies.js';
import { commandErrorCode, commandErrorText, wireText } from '../../protocol/wire-errors.js';

export interface HandledReply {
  /** The reply body. Exactly one of `text`, `frame` and `error` is given. */
  readonly text?: string;
  /** A failure: the reply is its wire text (src/protocol/wire-errors.ts). */
  readonly error?: Error;
  /** The reply already encoded as a frame (length prefix and UTF-8 body), written as it is. */
  readonly frame?: Buffer;
  /**
   * Called once after the reply was handed to the socket (true) or could not be (false: the
   * connection died first). GET uses it to consume its entry only once the reply is written.
   */
  readonly written?: (ok: boolean) => void;
}

export interface CommandHandler {
  /** The reply, or a promise of it: a reply known at once is written without waiting a microtask. */
  handle(command: Command): HandledReply | Promise<HandledReply>;
}

export interface ServerLimits {
  /** Connections served at once; one more gets `ERR too many connections` and is closed. */
  readonly connectionsMax: number;
  /** Requests of one connection whose reply is not written yet; reading pauses at this many. */
  readonly inFlightPerConnection: number;
  /** Unparsed input plus unwritten replies of one connection; reading pauses above it. */
  readonly bufferedBytesPerConnection: number;
  /** Reply bytes held for all connections together; above it, connections holding replies are not read. */
  readonly replyBytesTotal: number;
  /** Reservation of a GET or FETCH reply being computed. */
  readonly readReplyReserveBytes: number;
  /** Reservation of any other reply being computed. */
  readonly otherReplyReserveBytes: number;
  /** Requests one connection may start per turn of the event loop. */
  readonly framesPerTurn: number;
  /** Request bytes one connection may start per turn (one request always may). */
  readonly frameBytesPerTurn: number;
  /** Request bytes all connections together may start per turn; the rest wait for the next turns, oldest first. */
  readonly frameBytesPerTurnTotal: number;
  /** A request this small, from a connection with nothing in flight, starts even past frameBytesPerTurnTotal. */
  readonly smallFrameBytes: number;
}

export interface ServerTimeouts {
  /** A connection with no request in flight and no input for this long is closed; 0: never. */
  readonly idleTimeoutMs: number;
  /** A frame begun and not complete this long after gets `ERR frame timeout` and a close; 0: never. */
  readonly frameTimeoutMs: number;
}

export interface ProtocolServerOptions {
  readonly host: string;
  /** 0 picks a free port (listen() returns the bound one). */
  readonly port: number;
  readonly handler: CommandHandler;
  readonly log: Logger;
  readonly limits?: Partial<ServerLimits>;
  readonly timeouts?: Partial<ServerTimeouts>;
  /**
   * Write replies that consume what they carry (GET, MGET) uncorked, so that they are offered to
   * the kernel before they count as written. For a store that makes each consumption durable at
   * once (storage.fsync: each): a reply held under the cork until the turn ends could otherwise
   * be lost with the process after its consumption was synced. Under a sync interval the
   * consumption is not durable at once either, and pipelined replies keep sharing a write.
   */
  readonly consumingRepliesUncorked?: boolean;
  /** Told of every request once its reply is known (NodeStats counts them for /metrics). */
  readonly observer?: RequestObserver;
}

/** What the server reports of each request it answers. */
export interface RequestObserver {
  /**
   * `command` is the request's op (`INVALID` for one that does not parse), `result` is `ok`,
   * `empty` or the error's code, `seconds` the time from the parsed request to its reply.
   */
  request(command: string, result: string, seconds: number): void;
}

/** A snapshot for tests and metrics. */
export interface ProtocolServerStats {
  /** Connections being served (rejected ones excluded). */
  readonly connections: number;
  /** Served connections the server currently does not read from (backpressure). */
  readonly pausedConnections: number;
  /** Unparsed input plus unwritten reply bytes, summed over served connections. */
  readonly bufferedBytes: number;
  /** Reply bytes held (ready and unsent, or reserved for replies being computed), summed over served connections. */
  readonly replyBytes: number;
  /** Connections closed by the idle timeout, and frames that timed out, since the server started. */
  readonly idleClosed: number;
  readonly frameTimeouts: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  connectionsMax: limits.serverConnectionsMax,
  inFlightPerConnection: limits.serverInFlightPerConnection,
  bufferedBytesPerConnection: limits.serverBufferedBytesPerConnection,
  replyBytesTotal: limits.serverReplyBytesTotal,
  readReplyReserveBytes: limits.serverReadReplyReserveBytes,
  otherReplyReserveBytes: limits.serverOtherReplyReserveBytes,
  framesPerTurn: limits.serverFramesPerTurn,
  frameBytesPerTurn: limits.serverFrameBytesPerTurn,
  frameBytesPerTurnTotal: limits.serverFrameBytesPerTurnTotal,
  smallFrameBytes: limits.serverSmallFrameBytes,
};

export const DEFAULT_SERVER_TIMEOUTS: ServerTimeouts = {
  idleTimeoutMs: limits.protocolIdleTimeoutMsDefault,
  frameTimeoutMs: limits.protocolFrameTimeoutMsDefault,
};

// The server's own failures, as the wire table spells them (built once).
const TOO_MANY_CONNECTIONS = encodeFrame(wireText(walrusError('TOO_MANY_CONNECTIONS', 'too many connections')));
/** The most common replies, encoded once (a frame handed to socket.write is never changed). */
const OK_FRAME = encodeFrame(OK);
const EMPTY_FRAME = encodeFrame(EMPTY);
const INVALID_UTF8 = wireText(walrusError('INVALID_UTF8', 'invalid utf-8'));
const INVALID_LENGTH = wireText(walrusError('FRAME_LENGTH', 'invalid frame length'));
const FRAME_TIMEOUT = wireText(walrusError('FRAME_TIMEOUT', 'frame timeout'));

/** What a connection needs from its server. */
interface ConnectionContext {
  readonly handler: CommandHandler;
  readonly limits: ServerLimits;
  /** ProtocolServerOptions.consumingRepliesUncorked. */
  readonly consumingRepliesUncorked: boolean;
  readonly observer: RequestObserver | undefined;
  readonly log: Logger;
  readonly closed: (connection: Connection) => void;
  /** Shared with the server: the node-wide reply byte count and the turn clock. */
  readonly shared: SharedState;
  /** Asks for `connection.nextTurn()` in the next turn of the event loop. */
  readonly defer: (connection: Connection) => void;
  /** The node-wide reply count went above the budget while this connection held replies. */
  readonly starve: (connection: Connection) => void;
  /** The node-wide reply count went down: connections waiting for it may go on. */
  readonly relieved: () => void;
}

/** State the server and its connections share. */
interface SharedState {
  /** Reply bytes held by all connections (each adds the change of its own count). */
  replyBytes: number;
  /** Incremented at each turn of the event loop that serves waiting connections (the per-turn counts start again). */
  turn: number;
  /**
   * Request bytes started over all connections since the last turn that served waiting ones
   * (frameBytesPerTurnTotal). Reset only then, so it may span several turns: a connection may
   * wait one turn early, but no turn starts more than the bound, and a turn without waiting
   * connections costs no setImmediate.
   */
  turnBytes: number;
  /** A coarse clock (performance.now(), refreshed by the timeout check): no clock read per chunk. */
  now: number;
  /** Counters for stats(). */
  idleClosed: number;
  frameTimeouts: number;
}

/** One request's place in its connection's reply order. */
interface Slot {
  /** The encoded reply, once known. */
  frame: Buffer | undefined;
  /** Bytes reserved for the reply while it is being computed (0 once it is known). */
  reserve: number;
  /** The handler's callback, already wrapped to run at most once and never throw. */
  written: ((ok: boolean) => void) | undefined;
  /** The request's op and when it was parsed (performance.now()), for the observer; undefined without one, or for a reply known at parse. */
  readonly op: string | undefined;
  readonly startedAt: number;
}

/** One served client connection. */
class Connection {
  private readonly decoder = new FrameDecoder({ maxFrameBytes: limits.frameBytesMax });
  /** Requests whose reply is not written yet, oldest first: the head is always written first. */
  private queue: Slot[] = [];
  /** Bytes of the replies in `queue` that are ready but not written yet. */
  private readyBytes = 0;
  /** Reservations of the replies in `queue` still being computed. */
  private reservedBytes = 0;
  /** This connection's share of shared.replyBytes, as last reported. */
  private accounted = 0;
  /** The turn the per-turn counters below belong to. */
  private turn = -1;
  private framesThisTurn = 0;
  private bytesThisTurn = 0;
  /** Out of work for this turn: reading pauses until nextTurn(). */
  private deferred = false;
  /** Not started more work because the node-wide reply budget is used up. */
  starved = false;
  /** When input or a reply was last seen (shared.now), for the idle timeout. */
  lastActivity: number;
  /** When the incomplete frame the decoder holds began to arrive (shared.now), or undefined. */
  partialSince: number | undefined;
  /** socket.write() returned false: nothing more is written until 'drain'. */
  private writeBlocked = false;
  /** The client sent EOF: it is treated as gone. */
  private inputEnded = false;
  /** No further requests are taken; the socket is ended once the queue is empty. */
  private ending = false;
  private endCalled = false;
  private closed = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Once the kernel took a write, the output budget may allow more work (even without 'drain'). */
  private readonly afterWrite = (): void => this.pump();
  /**
   * Replies that became ready in the same turn of the event loop go out in one system call: while
   * requests are pipelined, the socket is corked at the first reply and uncorked at the end of
   * the turn (setImmediate). A reply's `written(true)` comes as socket.write() accepts it
   * (waiting for the uncork would hold GET's per-topic turn for a whole loop turn, one GET per
   * turn); with consumingRepliesUncorked a reply that consumes is written uncorked instead.
   */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  };
  /** pump() is running: a reply settled meanwhile is written by its loop, not by a nested pump. */
  private pumping = false;
  paused = false;

  constructor(
    private readonly socket: Socket,
    private readonly context: ConnectionContext,
  ) {
    this.lastActivity = context.shared.now;
    socket.on('data', (chunk: Buffer) => {
      // Input after the server stopped taking requests is read only to notice EOF, then dropped.
      if (this.ending) return;
      this.lastActivity = this.context.shared.now;
      this.decoder.push(chunk);
      this.pump();
    });
    socket.on('end', () => {
      // Our side is ended explicitly (allowHalfOpen) so that no reply goes out after this point.
      this.inputEnded = true;
      this.ending = true;
      this.finish();
    });
    socket.on('drain', () => {
      this.writeBlocked = false;
      this.pump();
    });
    socket.on('error', (error) => {
      context.log.debug({ err: error, remote: remoteOf(socket) }, 'client connection error');
    });
    socket.on('close', () => this.onClose());
  }

  /** Unparsed input plus replies not yet taken by the kernel. */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes + this.outputBytes;
  }

  /** Stops taking requests; the socket ends once the replies of those in progress are written. */
  shutdown(): void {
    this.ending = true;
    this.pump();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Reply bytes held: ready and not taken by the kernel, or reserved for replies being computed. */
  get replyBytes(): number {
    return this.outputBytes + this.reservedBytes;
  }

  /** A new turn of the event loop: the per-turn budget is fresh (also ends a node-wide starve). */
  nextTurn(): void {
    this.deferred = false;
    this.starved = false;
    this.pump();
  }

  /**
   * The timeout check (now: shared.now). A connection working on requests, or paused by the
   * server, is not idle; its frame clock only runs while it is read.
   */
  checkTimeouts(now: number, timeouts: ServerTimeouts): void {
    if (this.closed || this.ending) return;
    if (this.queue.length > 0 || this.paused) {
      this.lastActivity = now;
      if (this.paused) this.partialSince = undefined;
      return;
    }
    if (timeouts.frameTimeoutMs > 0 && this.partialSince !== undefined && now - this.partialSince >= timeouts.frameTimeoutMs) {
      this.context.shared.frameTimeouts += 1;
      this.context.log.debug({ remote: remoteOf(this.socket) }, 'client frame timed out; closing');
      this.enqueueReady(FRAME_TIMEOUT);
      this.ending = true;
      this.pump();
      return;
    }
    if (timeouts.idleTimeoutMs > 0 && this.decoder.bufferedBytes === 0 && now - this.lastActivity >= timeouts.idleTimeoutMs) {
      this.context.shared.idleClosed += 1;
      this.context.log.debug({ remote: remoteOf(this.socket) }, 'client connection idle; closing');
      this.ending = true;
      this.finish();
    }
  }

  /** Replies not yet taken by the kernel: ready in the queue, or in the socket's own buffer. */
  private get outputBytes(): number {
    return this.readyBytes + this.socket.writableLength;
  }

  /** Takes requests and writes replies until neither can progress, then adjusts reading. */
  private pump(): void {
    if (this.closed || this.pumping) return;
    this.pumping = true;
    try {
      let progressed = true;
      while (progressed) {
        const dispatched = this.dispatch();
        const flushed = this.flush();
        progressed = dispatched || flushed;
      }
    } finally {
      this.pumping = false;
    }
    if (this.closed) return;
    if (this.ending && this.queue.length === 0) this.finish();
    this.account();
    this.updateReading();
  }

  /** Reports the change of this connection's reply bytes to the node-wide count. */
  private account(): void {
    const now = this.closed ? 0 : this.replyBytes;
    const delta = now - this.accounted;
    if (delta === 0) return;
    this.accounted = now;
    this.context.shared.replyBytes += delta;
    if (delta < 0) this.context.relieved();
  }

  /** Starts handling the whole frames received, as far as the limits allow. */
  private dispatch(): boolean {
    const {
      inFlightPerConnection,
      bufferedBytesPerConnection,
      replyBytesTotal,
      framesPerTurn,
      frameBytesPerTurn,
      frameBytesPerTurnTotal,
      smallFrameBytes,
    } = this.context.limits;
    const shared = this.context.shared;
    let progressed = false;
    if (this.turn !== shared.turn) {
      this.turn = shared.turn;
      this.framesThisTurn = 0;
      this.bytesThisTurn = 0;
    }
    // A connection starved while it held replies of its own goes on once they are all taken by
    // the kernel: only those wait for the node-wide total to drop (it stays in the starved set,
    // and relief then only brings a turn it does not need).
    if (this.starved && this.replyBytes === 0) this.starved = false;
    // Replies held back by a slow reader count against the budget: no new work while over it.
    while (!this.ending && !this.deferred && this.queue.length < inFlightPerConnection) {
      const held = this.replyBytes;
      if (held > bufferedBytesPerConnection) break;
      // Node-wide: only a connection that holds replies of its own waits for the total to drop.
      if (held > 0 && shared.replyBytes > replyBytesTotal) {
        if (!this.starved) {
          this.starved = true;
          this.context.starve(this);
        }
        break;
      }
      // Node-wide: once this turn's request bytes are used, only a small request of a connection
      // with nothing in flight (a new client's first, an interactive one's next) still starts.
      const nodeTurnUsed =
        shared.turnBytes >= frameBytesPerTurnTotal &&
        !(this.queue.length === 0 && this.framesThisTurn === 0 && (this.decoder.nextBodyBytes() ?? 0) <= smallFrameBytes);
      if (this.framesThisTurn >= framesPerTurn || this.bytesThisTurn >= frameBytesPerTurn || nodeTurnUsed) {
        // This turn's share is used: go on in the next one (reading pauses meanwhile).
        if (this.decoder.bufferedBytes > 0) {
          this.deferred = true;
          this.context.defer(this);
        }
        break;
      }
      const frame = this.decoder.nextBodyParts();
      if (frame === undefined) {
        // Part of a frame is buffered: its clock starts now (unless it already runs).
        if (this.decoder.bufferedBytes === 0) this.partialSince = undefined;
        else this.partialSince ??= shared.now;
        break;
      }
      this.partialSince = undefined;
      progressed = true;
      this.framesThisTurn += 1;
      if (frame.kind === 'parts') {
        this.bytesThisTurn += frame.length;
        shared.turnBytes += frame.length;
        if (isUtf8Parts(frame.parts)) this.request(frame.parts, frame.length);
        else this.enqueueReady(INVALID_UTF8);
      } else {
        // The decoder is broken for good: answer after the earlier replies, then close.
        this.enqueueReady(INVALID_LENGTH);
        this.ending = true;
      }
    }
    return progressed;
  }

  /** One request, its body in the pieces it arrived in (FrameDecoder.nextBodyParts). */
  private request(parts: readonly Buffer[], length: number): void {
    const command = parseRequestParts(parts, length);
    if (isCommandError(command)) {
      this.context.observer?.request('INVALID', commandErrorCode(command), 0);
      this.enqueueReady(commandErrorText(command));
      return;
    }
    const reserve =
      command.op === 'GET' || command.op === 'FETCH'
        ? this.context.limits.readReplyReserveBytes
        : command.op === 'MGET' || command.op === 'MFETCH'
          ? limits.serverBatchReadReplyReserveBytes
          : this.context.limits.otherReplyReserveBytes;
    // One shape for every slot, observed or not.
    const observed = this.context.observer !== undefined;
    const slot: Slot = {
      frame: undefined,
      written: undefined,
      reserve,
      op: observed ? command.op : undefined,
      startedAt: observed ? performance.now() : 0,
    };
    this.queue.push(slot);
    this.reservedBytes += reserve;
    let reply: HandledReply | Promise<HandledReply>;
    try {
      reply = this.context.handler.handle(command);
    } catch (error) {
      reply = { error: error as Error };
    }
    if (isThenable(reply)) {
      reply.then(
        (handled) => this.settle(slot, handled),
        (error: unknown) => this.settle(slot, { error: error as Error }),
      );
    } else {
      this.settle(slot, reply);
    }
  }

  private enqueueReady(text: string): void {
    const frame = encodeFrame(text);
    this.queue.push({ frame, written: undefined, reserve: 0, op: undefined, startedAt: 0 });
    this.readyBytes += frame.length;
  }

  /** Records a handler's reply and writes whatever is now at the head of the queue. */
  private settle(slot: Slot, handled: HandledReply): void {
    // Defensive about the shape: a broken handler must cost one error reply, not the process.
    const callback = handled?.written;
    const written = typeof callback === 'function' ? guardWritten(callback, this.context.log) : undefined;
    const observer = this.context.observer;
    if (observer !== undefined && slot.op !== undefined) {
      const error = handled?.error;
      const result = error !== undefined ? (isWalrusError(error) ? error.code : 'ERROR') : handled?.text === EMPTY ? 'empty' : 'ok';
      observer.request(slot.op, result, (performance.now() - slot.startedAt) / 1000);
    }
    if (this.closed) {
      // The connection died while the request was handled: its slot is already gone.
      written?.(false);
      return;
    }
    let frame: Buffer;
    try {
      const text = handled?.text;
      if (handled?.frame instanceof Buffer && text === undefined) frame = handled.frame;
      else if (text === undefined && handled?.error !== undefined) frame = encodeFrame(wireText(handled.error));
      else frame = text === OK ? OK_FRAME : text === EMPTY ? EMPTY_FRAME : encodeFrame(text as string);
      slot.written = written;
    } catch (error) {
      // Not a string, or beyond a u32 length: the client gets an error instead of the reply.
      this.context.log.warn({ err: error }, 'client reply could not be encoded');
      frame = encodeFrame(wireText(walrusError('REPLY_UNENCODABLE', `reply could not be encoded: ${messageOf(error)}`, { cause: error })));
      written?.(false);
    }
    slot.frame = frame;
    this.readyBytes += frame.length;
    this.reservedBytes -= slot.reserve;
    slot.reserve = 0;
    this.pump();
  }

  /** Writes the ready replies at the head of the queue, in order, one write each. */
  private flush(): boolean {
    let progressed = false;
    while (!this.closed && !this.inputEnded && !this.writeBlocked && this.queue.length > 0) {
      const head = this.queue[0] as Slot;
      if (head.frame === undefined) break;
      if (this.socket.destroyed || !this.socket.writable) break; // 'close' settles the rest
      this.queue.shift();
      this.readyBytes -= head.frame.length;
      progressed = true;
      // With consumingRepliesUncorked, a reply that consumes what it carries (GET, MGET: it has
      // `written`) goes to the kernel before it counts as written, with the corked replies before
      // it: held under the cork until the turn ends, it could be lost with the process (killed,
      // or stuck on a dead disk) after its consumption was made durable.
      if (head.written !== undefined && this.context.consumingRepliesUncorked) {
        if (this.corked) {
          this.corked = false;
          this.socket.uncork();
        }
        if (!this.socket.write(head.frame, this.afterWrite)) this.writeBlocked = true;
        head.written(true);
        continue;
      }
      // Cork only when more requests of this connection are pending (pipelining): a lone reply
      // goes out at once, without waiting for the end of the loop turn.
      if (!this.corked && this.queue.length > 0) {
        this.corked = true;
        this.socket.cork();
        setImmediate(this.uncork);
      }
      // A write that does not fit the socket's buffer is still queued by it; we stop after it.
      if (!this.socket.write(head.frame, this.afterWrite)) this.writeBlocked = true;
      head.written?.(true);
    }
    return progressed;
  }

  /** Pauses reading while over a limit, resumes once back under. */
  private updateReading(): void {
    const { inFlightPerConnection, bufferedBytesPerConnection } = this.context.limits;
    // Over the byte budget, reading pauses only if something will bring the count down later (a
    // pending reply or unsent output); otherwise the decoder holds part of one frame and needs
    // more bytes to finish it. After `ending`, input is read and dropped to notice EOF.
    const overBytes =
      this.bufferedBytes + this.reservedBytes > bufferedBytesPerConnection && (this.queue.length > 0 || this.outputBytes > 0);
    const pause = !this.ending && (this.queue.length >= inFlightPerConnection || overBytes || this.deferred || this.starved);
    if (pause === this.paused) return;
    this.paused = pause;
    if (pause) this.socket.pause();
    else this.socket.resume();
  }

  /**
   * Ends the socket (after what it already holds is sent). The client may keep its side open or
   * stop reading, so it gets a bounded time to go away before the socket is destroyed.
   */
  private finish(): void {
    if (this.endCalled) return;
    this.endCalled = true;
    this.socket.end();
    this.lingerTimer = setTimeout(() => this.socket.destroy(), limits.serverCloseGraceMs);
    this.lingerTimer.unref();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
    const unwritten = this.queue;
    this.queue = [];
    this.readyBytes = 0;
    this.reservedBytes = 0;
    this.paused = false;
    this.deferred = false;
    this.starved = false;
    this.account();
    // Replies still being handled learn it in settle(); ready ones learn it here.
    for (const slot of unwritten) slot.written?.(false);
    this.context.closed(this);
  }
}

export class ProtocolServer {
  private readonly options: ProtocolServerOptions;
  private readonly limits: ServerLimits;
  private readonly timeouts: ServerTimeouts;
  private readonly server: Server;
  private readonly shared: SharedState = { replyBytes: 0, turn: 0, turnBytes: 0, now: performance.now(), idleClosed: 0, frameTimeouts: 0 };
  /** Connections waiting for the next turn (per-turn work used up, or the node-wide budget), oldest first. */
  private readonly waiting = new Set<Connection>();
  private turnScheduled = false;
  private readonly starvedSet = new Set<Connection>();
  private timeoutTimer: NodeJS.Timeout | undefined;
  private readonly served = new Set<Connection>();
  /** Sockets turned away (too many connections) until they are gone. */
  private readonly rejected = new Set<Socket>();
  private listening = false;
  private closing: Promise<void> | undefined;
  /** Resolved when the last served connection closes during close(). */
  private allClosed: (() => void) | undefined;

  constructor(options: ProtocolServerOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    for (const [name, value] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`server limit ${name} must be a positive integer, got ${value}`);
    }
    this.timeouts = { ...DEFAULT_SERVER_TIMEOUTS, ...options.timeouts };
    for (const [name, value] of Object.entries(this.timeouts)) {
      if (!Number.isSafeInteger(value) || value < 0 || value > limits.protocolTimeoutMsMax)
        throw new RangeError(`server timeout ${name} must be an integer from 0 to ${limits.protocolTimeoutMsMax}, got ${value}`);
    }
    // Half-open sockets, so that Node does not end our side by itself on EOF: Connection does.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server.on('error', (error) => {
      // Bind errors reach listen()'s caller; later ones (e.g. EMFILE on accept) are only logged.
      if (this.listening) options.log.warn({ err: error }, 'client protocol listener error');
    });
  }

  /** Binds and starts accepting; rejects with the bind error (e.g. EADDRINUSE). */
  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
    this.startTimeoutCheck();
    const address = this.server.address();
    const bound =
      typeof address === 'object' && address !== null
        ? { host: address.address, port: address.port }
        : { host: this.options.host, port: this.options.port };
    this.options.log.info(bound, 'client protocol listening');
    return bound;
  }

  /**
   * Stops accepting, lets requests in progress write their reply (up to serverCloseGraceMs), then
   * destroys whatever is left. Requests received but not started yet are dropped. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  get connections(): number {
    return this.served.size;
  }

  /** A read-only snapshot of the connections' state (tests, metrics). */
  stats(): ProtocolServerStats {
    let pausedConnections = 0;
    let bufferedBytes = 0;
    let replyBytes = 0;
    for (const connection of this.served) {
      if (connection.paused) pausedConnections += 1;
      bufferedBytes += connection.bufferedBytes;
      replyBytes += connection.replyBytes;
    }
    return {
      connections: this.served.size,
      pausedConnections,
      bufferedBytes,
      replyBytes,
      idleClosed: this.shared.idleClosed,
      frameTimeouts: this.shared.frameTimeouts,
    };
  }

  /** The timeout check runs a few times per shortest timeout; none when both are off. */
  private startTimeoutCheck(): void {
    const active = [this.timeouts.idleTimeoutMs, this.timeouts.frameTimeoutMs].filter((ms) => ms > 0);
    if (active.length === 0) return;
    const every = Math.max(limits.protocolTimeoutCheckMsMin, Math.floor(Math.min(...active) / 4));
    this.timeoutTimer = setInterval(() => {
      const now = performance.now();
      this.shared.now = now;
      for (const connection of this.served) connection.checkTimeouts(now, this.timeouts);
    }, every);
    this.timeoutTimer.unref();
  }

  /** Runs `connection.nextTurn()` in the next turn; one setImmediate serves every waiting connection. */
  private defer(connection: Connection): void {
    // Re-added at the end: a connection that worked this turn goes behind those still waiting.
    this.waiting.delete(connection);
    this.waiting.add(connection);
    this.scheduleTurn();
  }

  /**
   * The next turn: the per-turn counts start again, and waiting connections go on, oldest first,
   * until the node's request bytes for the new turn are used; the others stay paused and go first
   * in the turn after. One setImmediate per turn at most, and only while connections wait.
   */
  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(() => {
      this.turnScheduled = false;
      this.shared.turn += 1;
      this.shared.turnBytes = 0;
      const ready = [...this.waiting];
      this.waiting.clear();
      let next = 0;
      while (next < ready.length && this.shared.turnBytes < this.limits.frameBytesPerTurnTotal) {
        (ready[next] as Connection).nextTurn();
        next += 1;
      }
      if (next === ready.length) return;
      // Not reached this turn: ahead of the connections that worked in it and wait again.
      const again = [...this.waiting];
      this.waiting.clear();
      for (const connection of ready.slice(next)) if (this.served.has(connection)) this.waiting.add(connection);
      for (const connection of again) this.waiting.add(connection);
      if (this.waiting.size > 0) this.scheduleTurn();
    });
  }

  /** The node-wide budget fell back under its limit: starved connections are served again. */
  private relieved(): void {
    if (this.starvedSet.size === 0 || this.shared.replyBytes > this.limits.replyBytesTotal) return;
    for (const connection of this.starvedSet) this.defer(connection);
    this.starvedSet.clear();
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    if (this.closing !== undefined) {
      socket.destroy();
      return;
    }
    if (this.served.size >= this.limits.connectionsMax) {
      this.reject(socket);
      return;
    }
    const connection = new Connection(socket, {
      handler: this.options.handler,
      limits: this.limits,
      consumingRepliesUncorked: this.options.consumingRepliesUncorked === true,
      observer: this.options.observer,
      log: this.options.log,
      closed: (closed) => {
        this.served.delete(closed);
        this.waiting.delete(closed);
        this.starvedSet.delete(closed);
        if (this.served.size === 0) this.allClosed?.();
      },
      shared: this.shared,
      defer: (waiting) => this.defer(waiting),
      starve: (starved) => this.starvedSet.add(starved),
      relieved: () => this.relieved(),
    });
    this.served.add(connection);
  }

  /** Answers `ERR too many connections` and closes. */
  private reject(socket: Socket): void {
    this.options.log.debug({ remote: remoteOf(socket) }, 'client connection rejected: too many connections');
    socket.on('error', () => undefined);
    // A flood of rejected connections must not pile up either: past as many again, no reply.
    if (this.rejected.size >= this.limits.connectionsMax) {
      socket.destroy();
      return;
    }
    this.rejected.add(socket);
    const timer = setTimeout(() => socket.destroy(), limits.serverCloseGraceMs);
    timer.unref();
    socket.on('close', () => {
      clearTimeout(timer);
      this.rejected.delete(socket);
    });
    socket.end(TOO_MANY_CONNECTIONS);
    socket.resume(); // drop whatever the client sends, so its EOF is seen and the socket closes
  }

  private async shutdown(): Promise<void> {
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.timeoutTimer !== undefined) clearInterval(this.timeoutTimer);
    for (const socket of this.rejected) socket.destroy();
    if (this.served.size > 0) {
      const drained = new Promise<void>((resolve) => {
        this.allClosed = resolve;
      });
      for (const connection of this.served) connection.shutdown();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, limits.serverCloseGraceMs);
      });
      await Promise.race([drained, grace]);
      clearTimeout(timer);
      for (const connection of this.served) connection.destroy();
    }
    await listenerClosed;
    this.listening = false;
  }
}

/** Wraps a handler's `written` callback: runs at most once and never throws into the server. */
function guardWritten(callback: (ok: boolean) => void, log: Logger): (ok: boolean) => void {
  let called = false;
  return (ok) => {
    if (called) return;
    called = true;
    try {
      callback(ok);
    } catch (error) {
      log.warn({ err: error }, 'a reply written callback threw');
    }
  };
}

/** A promise, or any object with a then method (a handler may use another promise library). */
function isThenable(value: unknown): value is PromiseLike<HandledReply> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function remoteOf(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}
