// The internal port: the one listener on `node.raftHost:node.raftPort` where the other members
// of the cluster reach this node, both for consensus traffic and for node-to-node requests
// (forwarded PUTs, reads of a segment another node holds, joins). Whoever owns the listener (the
// raft plugin today) provides it under the `internal-port` capability; the data plane takes the
// connections that open with the node channel's hello (src/node/internal-port.ts).

import type { Socket } from 'node:net';

export interface InternalPort {
  /** The address the listener is bound to (outgoing node-to-node connections start from this host too). */
  readonly host: string;
  /** The bound port (the one picked, when the config said 0). */
  readonly port: number;
  /**
   * Hands every later connection that opens with the node channel's hello to `accept`, with the
   * bytes that came after the hello. One taker; connections that arrive before there is one are
   * closed (the peer sees the connection end and retries).
   */
  takeNodeConnections(accept: (socket: Socket, rest: Buffer) => void): void;
}
