// The Raft transport: TCP on the raft port, one length-prefixed frame per message (u32
// little-endian body length, then the body of messages.ts). Each node listens for its peers and
// opens one outgoing connection per peer, reconnecting with doubling back-off. Raft tolerates
// lost messages, so nothing here retries a message: when a peer is unreachable or slow, what
// does not fit its bounded queue is dropped (oldest first) and counted.
// The listener is the node's internal port (src/node/internal-port.ts): connections that open
// with the node-to-node hello go to whoever takes them there; every other one carries Raft frames.

import { connect, type Socket } from 'node:net';
import type { InternalPort } from '../../../contracts/internal-port.js';
import { InternalListener } from '../../../node/internal-port.js';
import type { NodeId } from '../core/types.js';
import { decodeMessage, encodeMessage, type WireMessage } from './messages.js';

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface TransportOptions {
  readonly id: NodeId;
  readonly host: string;
  /** 0 picks a free port (see `port` after listen). */
  readonly port: number;
  readonly onMessage: (message: WireMessage) => void;
  /** Largest frame accepted (snapshots travel in one frame). */
  readonly maxFrameBytes?: number;
  /** Bytes queued per peer before the oldest queued messages are dropped. */
  readonly maxQueuedBytes?: number;
  readonly reconnectMinMs?: number;
  readonly reconnectMaxMs?: number;
  /** Called for connection trouble worth a log line (never for routine reconnect attempts). */
  readonly onProblem?: (problem: string) => void;
}

export interface TransportStats {
  sent: number;
  received: number;
  dropped: number;
  connects: number;
  rejectedFrames: number;
}

const FRAME_HEADER = 4;

class Peer {
  address: PeerAddress;
  socket: Socket | undefined;
  connected = false;
  queue: Buffer[] = [];
  queuedBytes = 0;
  backoffMs: number;
  nextAttemptAt = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(address: PeerAddress, backoffMs: number) {
    this.address = address;
    this.backoffMs = backoffMs;
  }
}

export class TcpTransport {
  private readonly options: Required<Omit<TransportOptions, 'onProblem'>> & Pick<TransportOptions, 'onProblem'>;
  private listener: InternalListener | undefined;
  private readonly peers = new Map<NodeId, Peer>();
  private readonly inbound = new Set<Socket>();
  private closed = false;
  readonly stats: TransportStats = { sent: 0, received: 0, dropped: 0, connects: 0, rejectedFrames: 0 };
  port = 0;

  private constructor(options: TransportOptions) {
    this.options = {
      maxFrameBytes: 256 * 1024 * 1024,
      maxQueuedBytes: 64 * 1024 * 1024,
      reconnectMinMs: 50,
      reconnectMaxMs: 2000,
      ...options,
    };
  }

  /** Starts listening; resolves once bound (rejects with the bind error, e.g. EADDRINUSE). */
  static async listen(options: TransportOptions): Promise<TcpTransport> {
    const transport = new TcpTransport(options);
    transport.listener = await InternalListener.listen({
      host: options.host,
      port: options.port,
      onOther: (socket, head) => transport.accept(socket, head),
      ...(options.onProblem === undefined ? {} : { onProblem: options.onProblem }),
    });
    transport.port = transport.listener.port;
    return transport;
  }

  /** The listener this transport shares with node-to-node requests. */
  get internalPort(): InternalPort {
    if (this.listener === undefined) throw new Error('the raft transport is not listening');
    return this.listener;
  }

  /** Sets (or changes) where a peer listens. */
  setPeer(id: NodeId, address: PeerAddress): void {
    const peer = this.peers.get(id);
    if (peer === undefined) {
      this.peers.set(id, new Peer(address, this.options.reconnectMinMs));
      return;
    }
    if (peer.address.host === address.host && peer.address.port === address.port) return;
    peer.address = address;
    peer.socket?.destroy();
  }

  removePeer(id: NodeId): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.peers.delete(id);
    if (peer.timer !== undefined) clearTimeout(peer.timer);
    peer.socket?.destroy();
  }

  /** Queues a message for its addressee; unknown addressees and overflow count as dropped. */
  send(message: WireMessage): void {
    const peer = this.peers.get(message.to);
    if (this.closed || peer === undefined) {
      this.stats.dropped += 1;
      return;
    }
    const body = encodeMessage(message);
    const frame = Buffer.allocUnsafe(FRAME_HEADER + body.length);
    frame.writeUInt32LE(body.length, 0);
    body.copy(frame, FRAME_HEADER);
    if (peer.connected && peer.socket !== undefined) {
      if (peer.socket.writableLength > this.options.maxQueuedBytes) {
        this.stats.dropped += 1;
        return;
      }
      peer.socket.write(frame);
      this.stats.sent += 1;
      return;
    }
    peer.queue.push(frame);
    peer.queuedBytes += frame.length;
    while (peer.queuedBytes > this.options.maxQueuedBytes && peer.queue.length > 1) {
      const oldest = peer.queue.shift() as Buffer;
      peer.queuedBytes -= oldest.length;
      this.stats.dropped += 1;
    }
    this.ensureConnecting(message.to, peer);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const peer of this.peers.values()) {
      if (peer.timer !== undefined) clearTimeout(peer.timer);
      peer.socket?.destroy();
    }
    for (const socket of this.inbound) socket.destroy();
    await this.listener?.close();
  }

  // --- outgoing --------------------------------------------------------------------------------

  private ensureConnecting(id: NodeId, peer: Peer): void {
    if (peer.socket !== undefined || peer.timer !== undefined || this.closed) return;
    const wait = Math.max(0, peer.nextAttemptAt - Date.now());
    if (wait > 0) {
      peer.timer = setTimeout(() => {
        peer.timer = undefined;
        if (this.peers.get(id) === peer && peer.queue.length > 0) this.ensureConnecting(id, peer);
      }, wait);
      peer.timer.unref();
      return;
    }
    // From this node's own internal address (node.raftHost), as node-to-node requests do: a test
    // can give each node its own loopback address and cut one off by address.
    const local = this.options.host;
    const bindLocal = local !== '0.0.0.0' && local !== '::' && local !== '';
    const socket = connect({ host: peer.address.host, port: peer.address.port, ...(bindLocal ? { localAddress: local } : {}) });
    socket.setNoDelay(true);
    peer.socket = socket;
    socket.on('connect', () => {
      peer.connected = true;
      peer.backoffMs = this.options.reconnectMinMs;
      this.stats.connects += 1;
      socket.cork();
      for (const frame of peer.queue) {
        socket.write(frame);
        this.stats.sent += 1;
      }
      socket.uncork();
      peer.queue = [];
      peer.queuedBytes = 0;
    });
    // Peers never send on this connection; anything that arrives is ignored.
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const wasConnected = peer.connected;
      peer.connected = false;
      peer.socket = undefined;
      if (this.closed || this.peers.get(id) !== peer) return;
      if (!wasConnected) {
        // Not reachable: try again later, a little later each time.
        peer.nextAttemptAt = Date.now() + peer.backoffMs;
        peer.backoffMs = Math.min(peer.backoffMs * 2, this.options.reconnectMaxMs);
      }
      if (peer.queue.length > 0) this.ensureConnecting(id, peer);
    });
  }

  // --- incoming --------------------------------------------------------------------------------

  /** A connection from a peer, with the bytes the listener read to sort it (the start of its first frame). */
  private accept(socket: Socket, head: Buffer): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.inbound.add(socket);
    let pending: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (pending.length - at >= FRAME_HEADER) {
        const length = pending.readUInt32LE(at);
        if (length === 0 || length > this.options.maxFrameBytes) {
          this.reject(socket, `a frame of ${length} bytes`);
          return;
        }
        if (pending.length - at - FRAME_HEADER < length) break;
        const body = pending.subarray(at + FRAME_HEADER, at + FRAME_HEADER + length);
        at += FRAME_HEADER + length;
        let message: WireMessage;
        try {
          message = decodeMessage(body);
        } catch (error) {
          this.reject(socket, (error as Error).message);
          return;
        }
        if (message.to !== this.options.id) {
          this.stats.dropped += 1;
          continue;
        }
        this.stats.received += 1;
        this.options.onMessage(message);
      }
      pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    socket.on('close', () => this.inbound.delete(socket));
    if (head.length > 0) onData(head);
  }

  private reject(socket: Socket, what: string): void {
    this.stats.rejectedFrames += 1;
    this.options.onProblem?.(`raft transport: closed a connection from ${socket.remoteAddress}:${socket.remotePort} after ${what}`);
    socket.destroy();
  }
}
