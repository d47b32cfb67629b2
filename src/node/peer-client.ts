// The asking side of node-to-node requests: one connection to one peer's internal port, opened
// on first use from this node's internal host (so that each node's traffic leaves from its own
// address), the hello first, then request frames (peer-codec.ts) answered by id in any order.
//
// Failures are typed so that callers know whether the request may have taken effect:
// - PEER_UNAVAILABLE: the request was never written to a connection (the peer refused or did not
//   accept one within peerConnectTimeoutMs, or a recent attempt failed and the retry delay has
//   not passed): nothing happened there.
// - PEER_TIMEOUT: the request was written but no answer came within its timeout, or the
//   connection broke before the answer: it may or may not have taken effect. Nothing here
//   repeats a request.
// - the peer's own failure, with its code (peer-codec.ts failureError).

import { connect, type Socket } from 'node:net';
import { walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { NODE_HELLO } from './internal-port.js';
import { encodePeerFrame, failureError, PEER_KIND, type PeerFrame, PeerFrameDecoder } from './peer-codec.js';

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/** `host:port`, with an IPv6 host in brackets (`[::1]:6000`), as logs and METRICS show an address. */
export function hostPort(address: { readonly host: string; readonly port: number }): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

export interface PeerClientOptions {
  /** The peer's node id, for details (0 when not known, as for a join target). */
  readonly peer: number;
  /** How messages name the peer (default `node <peer>`). */
  readonly label?: string;
  /** Where the peer's internal port is; read at each connection attempt (undefined: not known yet). */
  readonly address: () => PeerAddress | undefined;
  /** The local address outgoing connections start from (this node's internal host); wildcards are not bound. */
  readonly localHost?: string;
  readonly connectTimeoutMs?: number;
  /** Default for each request's timeout (peerRequestTimeoutMsDefault). */
  readonly requestTimeoutMs?: number;
  /** Requests unanswered on the connection at once; later ones wait in call order (peerClientInFlightMax). */
  readonly inFlightMax?: number;
  /** Told of each request as it is sent (its op), for the node's counts of node-to-node requests. */
  readonly onRequest?: (op: string) => void;
}

export interface PeerRequestOptions {
  readonly timeoutMs?: number;
}

interface Request {
  readonly id: number;
  readonly frame: Buffer;
  readonly resolve: (frame: PeerFrame) => void;
  readonly reject: (error: Error) => void;
  timer: NodeJS.Timeout | undefined;
  sent: boolean;
}

export class PeerClient {
  readonly peer: number;
  private readonly label: string;
  private readonly options: PeerClientOptions;
  private socket: Socket | undefined;
  private connected = false;
  private decoder = new PeerFrameDecoder();
  /** Written, waiting for their answers, by id. */
  private readonly inFlight = new Map<number, Request>();
  /** Not written yet (no connection yet, or inFlightMax reached), in call order. */
  private readonly queue: Request[] = [];
  private lastId = 0;
  private retryDelayMs: number = limits.peerRetryDelayMsMin;
  /** Until then, requests fail at once with `lastFailure` instead of trying to connect. */
  private retryAt = 0;
  private lastFailure = '';
  private closed = false;
  private flushScheduled = false;
  private readonly scheduledFlush = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  constructor(options: PeerClientOptions) {
    this.options = options;
    this.peer = options.peer;
    this.label = options.label ?? `node ${options.peer}`;
  }

  /** Requests written or queued and not answered yet. */
  get pendingRequests(): number {
    return this.inFlight.size + this.queue.length;
  }

  /** Sends `op` with its arguments and optional bytes; resolves with the reply frame. */
  request(op: string, head: Readonly<Record<string, unknown>>, data?: Uint8Array, options: PeerRequestOptions = {}): Promise<PeerFrame> {
    if (this.closed) return Promise.reject(this.unavailable('this node is stopping'));
    if (!this.connected && Date.now() < this.retryAt) return Promise.reject(this.unavailable(this.lastFailure));
    this.options.onRequest?.(op);
    let frame: Buffer;
    const id = this.nextId();
    try {
      frame = encodePeerFrame(PEER_KIND.request, id, { ...head, op }, data);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<PeerFrame>((resolve, reject) => {
      const request: Request = { id, frame, resolve, reject, timer: undefined, sent: false };
      const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? limits.peerRequestTimeoutMsDefault;
      request.timer = setTimeout(() => this.expire(request, timeoutMs), timeoutMs);
      this.queue.push(request);
      // Written at the end of this turn of the event loop, with whatever else was asked meanwhile:
      // one corked write for a burst of requests instead of one system call each.
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        queueMicrotask(this.scheduledFlush);
      }
    });
  }

  /** Fails what is pending (PEER_UNAVAILABLE, or PEER_TIMEOUT for what was written) and closes the connection. */
  close(): void {
    this.closed = true;
    this.drop('this node is stopping');
  }

  private nextId(): number {
    this.lastId = this.lastId >= 0xffff_ffff ? 1 : this.lastId + 1;
    return this.lastId;
  }

  /** Writes what the in-flight bound allows, connecting first if needed. */
  private flush(): void {
    if (this.queue.length === 0) return;
    if (this.socket === undefined) {
      this.open();
      return;
    }
    if (!this.connected) return;
    const max = this.options.inFlightMax ?? limits.peerClientInFlightMax;
    const socket = this.socket;
    if (this.queue.length > 1) socket.cork();
    while (this.queue.length > 0 && this.inFlight.size < max) {
      const request = this.queue.shift() as Request;
      request.sent = true;
      this.inFlight.set(request.id, request);
      socket.write(request.frame);
    }
    if (socket.writableCorked > 0) socket.uncork();
  }

  private open(): void {
    const address = this.options.address();
    if (address === undefined) {
      this.failQueued(`no internal address is known for ${this.label}`);
      return;
    }
    const socket = connectFrom(address, this.options.localHost);
    this.socket = socket;
    this.decoder = new PeerFrameDecoder();
    socket.setNoDelay(true);
    const connectTimer = setTimeout(() => {
      this.fail(socket, `${this.label} (${address.host}:${address.port}) did not accept a connection within ${this.connectTimeoutMs()} ms`);
    }, this.connectTimeoutMs());
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.connected = true;
      this.retryDelayMs = limits.peerRetryDelayMsMin;
      this.retryAt = 0;
      socket.write(NODE_HELLO);
      this.flush();
    });
    socket.on('data', (chunk: Buffer) => this.read(socket, chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      this.fail(socket, `${this.label} (${address.host}:${address.port}) is not reachable (${error.code ?? error.message})`);
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      this.fail(socket, `the connection to ${this.label} (${address.host}:${address.port}) closed`);
    });
  }

  private connectTimeoutMs(): number {
    return this.options.connectTimeoutMs ?? limits.peerConnectTimeoutMs;
  }

  private read(socket: Socket, chunk: Buffer): void {
    if (this.socket !== socket) return;
    let frames: PeerFrame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.fail(socket, `${this.label} sent a frame that breaks the protocol: ${(error as Error).message}`);
      return;
    }
    for (const frame of frames) {
      const request = this.inFlight.get(frame.id);
      // An answer after its request timed out: nobody waits for it any more.
      if (request === undefined) continue;
      this.inFlight.delete(frame.id);
      clearTimeout(request.timer);
      if (frame.kind === PEER_KIND.reply) request.resolve(frame);
      else if (frame.kind === PEER_KIND.failure) request.reject(failureError(frame.head, String(this.peer)));
      else request.reject(walrusError('PEER_PROTOCOL', `${this.label} answered with a request frame`));
    }
    this.flush();
  }

  /** The connection `socket` is done with: what was written may have taken effect, what was not did not. */
  private fail(socket: Socket, why: string): void {
    if (this.socket !== socket) return;
    const wasConnected = this.connected;
    this.socket = undefined;
    this.connected = false;
    socket.destroy();
    if (!wasConnected) {
      // Could not connect: later requests fail at once for a while, a little longer each time.
      this.lastFailure = why;
      this.retryAt = Date.now() + this.retryDelayMs;
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, limits.peerRetryDelayMsMax);
    }
    for (const request of this.inFlight.values()) {
      clearTimeout(request.timer);
      request.reject(this.unknown(`${why} before ${this.label} answered`));
    }
    this.inFlight.clear();
    // Requests never written fail as not sent; the next request opens a new connection.
    this.failQueued(why);
  }

  private failQueued(why: string): void {
    for (const request of this.queue.splice(0)) {
      clearTimeout(request.timer);
      request.reject(this.unavailable(why));
    }
  }

  private drop(why: string): void {
    const socket = this.socket;
    if (socket !== undefined) this.fail(socket, why);
    this.failQueued(why);
  }

  private expire(request: Request, timeoutMs: number): void {
    if (request.sent) {
      if (!this.inFlight.delete(request.id)) return;
      request.reject(this.unknown(`no answer from ${this.label} within ${timeoutMs} ms`));
      this.flush();
      return;
    }
    const at = this.queue.indexOf(request);
    if (at < 0) return;
    this.queue.splice(at, 1);
    request.reject(this.unavailable(`${this.label} could not be reached within ${timeoutMs} ms`));
  }

  private unavailable(why: string): Error {
    return walrusError('PEER_UNAVAILABLE', `${why}; the request was not sent`, { details: { peer: this.peer, sent: false } });
  }

  private unknown(why: string): Error {
    return walrusError('PEER_TIMEOUT', `${why}; whether it took effect there is unknown`, { details: { peer: this.peer, sent: true } });
  }
}

/**
 * Whether a connection to `address` is refused now (nothing listens there: on a node's internal
 * port, its process is gone). False when one is accepted (it is closed at once), and when no
 * answer comes within `timeoutMs` or the attempt fails otherwise: only a refusal is evidence.
 */
export function connectionRefused(address: PeerAddress, localHost: string | undefined, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectFrom(address, localHost);
    const done = (refused: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(refused);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(false));
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED'));
  });
}

/** A connection to `address` from `localHost` (this node's internal host; a wildcard or none is not bound). */
function connectFrom(address: PeerAddress, localHost: string | undefined): Socket {
  const bindLocal = localHost !== undefined && localHost !== '0.0.0.0' && localHost !== '::' && localHost !== '';
  return connect({ host: address.host, port: address.port, ...(bindLocal ? { localAddress: localHost } : {}) });
}
