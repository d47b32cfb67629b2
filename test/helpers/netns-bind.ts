// Gives the outgoing TCP connections of this process one source address on loopback, for the
// network-namespace cluster tests (test/helpers/netns.ts), whose nftables rules tell the nodes
// apart by address. A connection made without a local address to 127.0.0.x leaves from the
// address of the loopback route, 127.0.0.1, whichever process makes it, so without this every
// node's unbound connections (Raft's transport, src/plugins/raft/adapters/transport.ts, connects
// without one; the node-to-node client binds node.raftHost already) and the test driver's
// WalrusClient (which has no local-address option) would all look like node 1.
//
// Only connections to an IPv4 loopback literal that name no local address (and no Unix path)
// are changed; anything that binds a local address itself keeps it.
//
// Two ways in: a node is started with `node --import <this file's URL>` and NETNS_LOCAL_ADDRESS
// set (netns.ts does this); the test driver calls bindOutgoingTcp() itself.

import { Socket } from 'node:net';

const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

let boundTo: string | undefined;

interface ConnectOptions {
  host?: unknown;
  path?: unknown;
  localAddress?: unknown;
}

/** From now on, connections of this process to 127.0.0.0/8 that name no local address leave from `address`. */
export function bindOutgoingTcp(address: string): void {
  if (!LOOPBACK_V4.test(address)) throw new Error(`bindOutgoingTcp: ${address} is not an IPv4 loopback address`);
  if (boundTo === address) return;
  if (boundTo !== undefined) throw new Error(`bindOutgoingTcp: this process already binds to ${boundTo}`);
  boundTo = address;
  const prototype = Socket.prototype as unknown as { connect: (...args: unknown[]) => Socket };
  const original = prototype.connect;
  prototype.connect = function connect(this: Socket, ...args: unknown[]): Socket {
    // net.connect() hands Socket#connect its normalized arguments, an array whose first item is the options.
    const first = args[0];
    const options = (Array.isArray(first) ? first[0] : first) as ConnectOptions | undefined;
    if (
      options !== null &&
      typeof options === 'object' &&
      options.path === undefined &&
      options.localAddress === undefined &&
      typeof options.host === 'string' &&
      LOOPBACK_V4.test(options.host)
    ) {
      options.localAddress = address;
    }
    return original.apply(this, args);
  };
}

/** The address bindOutgoingTcp() was given in this process, if any. */
export function outgoingTcpAddress(): string | undefined {
  return boundTo;
}

const fromEnv = process.env.NETNS_LOCAL_ADDRESS;
if (fromEnv !== undefined && fromEnv !== '') bindOutgoingTcp(fromEnv);
