// The internal port's listener (src/contracts/internal-port.ts): one TCP listener on
// `node.raftHost:node.raftPort` shared by two kinds of connection, told apart by their first
// bytes. A node-to-node connection opens with NODE_HELLO; anything else is consensus traffic,
// whose frames begin with a u32 little-endian length no larger than its frame limit, which
// NODE_HELLO's first four bytes (read as such a length, about 1.4 GB) can never be. So the
// consensus wire format is the same whether or not node-to-node requests share its port.

import { createServer, type Server, type Socket } from 'node:net';
import type { InternalPort } from '../contracts/internal-port.js';
import { limits } from '../kernel/limits.js';

/** What a node-to-node connection sends first: `WLRS`, the protocol version (1), the channel (1: node requests), two zero bytes. */
export const NODE_HELLO = Buffer.from([0x57, 0x4c, 0x52, 0x53, 0x01, 0x01, 0x00, 0x00]);
const MAGIC_BYTES = 4;

export type ConnectionTaker = (socket: Socket, rest: Buffer) => void;

export interface InternalListenerOptions {
  readonly host: string;
  /** 0 picks a free port (see `port` once listening). */
  readonly port: number;
  /** Connections that do not open with NODE_HELLO (consensus traffic), with the bytes read so far. */
  readonly onOther: ConnectionTaker;
  /** Called for trouble worth a log line: a connection closed for a bad or missing hello. */
  readonly onProblem?: (problem: string) => void;
  /** A connection that has not sent its first bytes within this long is closed. */
  readonly helloTimeoutMs?: number;
}

export class InternalListener implements InternalPort {
  readonly host: string;
  port = 0;
  private readonly options: InternalListenerOptions;
  private readonly server: Server;
  private nodeTaker: ConnectionTaker | undefined;
  /** Connections not handed to a taker yet. */
  private readonly undecided = new Set<Socket>();
  private closed = false;

  private constructor(options: InternalListenerOptions) {
    this.options = options;
    this.host = options.host;
    this.server = createServer((socket) => this.sort(socket));
  }

  /** Binds the port; rejects with the bind error (EADDRINUSE, EADDRNOTAVAIL, ...). */
  static async listen(options: InternalListenerOptions): Promise<InternalListener> {
    const listener = new InternalListener(options);
    await new Promise<void>((resolve, reject) => {
      listener.server.once('error', reject);
      listener.server.listen(options.port, options.host, () => {
        listener.server.off('error', reject);
        resolve();
      });
    });
    const address = listener.server.address();
    listener.port = typeof address === 'object' && address !== null ? address.port : options.port;
    return listener;
  }

  takeNodeConnections(accept: ConnectionTaker): void {
    if (this.nodeTaker !== undefined) throw new Error('node-to-node connections already have a taker');
    this.nodeTaker = accept;
  }

  /** Stops listening and closes the connections not handed over yet (takers close their own). */
  async close(): Promise<void> {
    this.closed = true;
    for (const socket of this.undecided) socket.destroy();
    this.undecided.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Reads the first bytes of a new connection and hands it to whoever takes its kind. */
  private sort(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.undecided.add(socket);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      this.drop(socket, 'sent nothing that names a channel in time');
    }, this.options.helloTimeoutMs ?? limits.peerHelloTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      if (head.length < MAGIC_BYTES) return;
      const node = head.subarray(0, MAGIC_BYTES).equals(NODE_HELLO.subarray(0, MAGIC_BYTES));
      if (node && head.length < NODE_HELLO.length) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', ignore);
      this.undecided.delete(socket);
      if (!node) {
        this.options.onOther(socket, head);
        return;
      }
      if (!head.subarray(0, NODE_HELLO.length).equals(NODE_HELLO)) {
        this.drop(socket, `opened with an unknown node hello ${head.subarray(0, NODE_HELLO.length).toString('hex')}`);
        return;
      }
      if (this.nodeTaker === undefined) {
        // Not serving node requests yet (still starting): the peer sees the connection end and retries.
        socket.destroy();
        return;
      }
      this.nodeTaker(socket, head.subarray(NODE_HELLO.length));
    };
    socket.on('data', onData);
    socket.on('error', ignore);
    socket.once('close', () => {
      clearTimeout(timer);
      this.undecided.delete(socket);
    });
  }

  private drop(socket: Socket, why: string): void {
    this.undecided.delete(socket);
    this.options.onProblem?.(`internal port: closed a connection from ${socket.remoteAddress}:${socket.remotePort} that ${why}`);
    socket.destroy();
  }
}

function ignore(): void {
  // A connection reset before it was sorted: nothing to do.
}

/**
 * The internal port a plugin provides before its listener exists (it opens when the plugin
 * starts): each use asks `current()`, which throws until then.
 */
export function lateInternalPort(current: () => InternalPort): InternalPort {
  return {
    get host() {
      return current().host;
    },
    get port() {
      return current().port;
    },
    takeNodeConnections: (accept) => current().takeNodeConnections(accept),
  };
}
