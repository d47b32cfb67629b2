// The other members of the cluster as this node reaches them: one PeerClient per node id,
// addressed by the metadata's nodes map (UpsertNode) or, for a node not in it yet, by the static
// `cluster.nodes` entry; and the serving side, which takes the node-to-node connections of the
// internal port once the controller has said how to answer each operation.

import type { Logger } from 'pino';
import type { NodeId } from '../contracts/consensus.js';
import type { InternalPort } from '../contracts/internal-port.js';
import { walrusError } from '../kernel/errors.js';
import { type PeerAddress, PeerClient } from './peer-client.js';
import { type PeerHandler, PeerServer } from './peer-server.js';

export interface PeersOptions {
  readonly nodeId: NodeId;
  /** Where this node's internal port listens; outgoing connections start from its host. */
  readonly port: InternalPort;
  /** A node's internal address as the metadata knows it (`host:port`), if it does. */
  readonly knownAddress: (id: NodeId) => string | undefined;
  /** Internal addresses from the static configuration (`cluster.nodes`), by node id. */
  readonly configured: ReadonlyMap<NodeId, PeerAddress>;
  readonly log?: Pick<Logger, 'warn' | 'debug'>;
  /** Default timeout of each request (peerRequestTimeoutMsDefault when absent). */
  readonly requestTimeoutMs?: number;
  /** Told of each request sent to another node (its op). */
  readonly onRequest?: (op: string) => void;
}

export class Peers {
  readonly nodeId: NodeId;
  private readonly options: PeersOptions;
  private readonly clients = new Map<NodeId, PeerClient>();
  private server: PeerServer | undefined;
  private closed = false;

  constructor(options: PeersOptions) {
    this.options = options;
    this.nodeId = options.nodeId;
  }

  /** The host outgoing node-to-node connections start from (this node's internal host). */
  get localHost(): string {
    return this.options.port.host;
  }

  /** The internal address of node `id`, or undefined when nothing says where it is. */
  addressOf(id: NodeId): PeerAddress | undefined {
    const known = this.options.knownAddress(id);
    if (known !== undefined) {
      const parsed = parseAddress(known);
      if (parsed !== undefined) return parsed;
    }
    return this.options.configured.get(id);
  }

  /** The client for node `id` (made on first use). */
  client(id: NodeId): PeerClient {
    if (this.closed) throw walrusError('PEER_UNAVAILABLE', 'this node is stopping; the request was not sent', { details: { peer: id } });
    if (id === this.nodeId) throw new Error('a node does not send node-to-node requests to itself');
    let client = this.clients.get(id);
    if (client === undefined) {
      client = new PeerClient({
        peer: id,
        address: () => this.addressOf(id),
        localHost: this.options.port.host,
        ...(this.options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: this.options.requestTimeoutMs }),
        ...(this.options.onRequest === undefined ? {} : { onRequest: this.options.onRequest }),
      });
      this.clients.set(id, client);
    }
    return client;
  }

  /** Starts answering node-to-node requests with `handlers` (once). */
  serve(handlers: Readonly<Record<string, PeerHandler>>): void {
    if (this.server !== undefined) throw new Error('node-to-node requests are served already');
    const server = new PeerServer({ handlers, ...(this.options.log === undefined ? {} : { log: this.options.log }) });
    this.server = server;
    this.options.port.takeNodeConnections((socket, rest) => server.adopt(socket, rest));
  }

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
    this.server?.close();
  }
}

/** `host:port` (a bracketed IPv6 host too) as an address; undefined when it is not one. */
export function parseAddress(text: string): PeerAddress | undefined {
  const match = /^\[?([^\s\]]+?)\]?:(\d{1,5})$/.exec(text);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: match[1] as string, port };
}
