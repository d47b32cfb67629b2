// `walrus cluster remove <id> --via HOST:PORT`: takes a member out of a running cluster. The
// request goes to the internal port of any member (`--via`), which passes it on to the Raft
// leader (src/node/membership.ts): the node hands its topics over to the other nodes, and is
// refused removal while it holds entries no GET has read (segments are not replicated yet),
// unless `--force` says to lose them.

import { PEER_OPS } from '../node/forwarding.js';
import { REMOVE_TIMEOUT_MS } from '../node/membership.js';
import { PeerClient } from '../node/peer-client.js';
import { parseAddress } from '../node/peers.js';
import type { Io } from './io.js';

export interface ClusterRemoveOptions {
  readonly nodeId: number;
  /** `host:port` of any member's internal port (node.raftHost:node.raftPort). */
  readonly via: string;
  readonly force: boolean;
}

/** Exit code: 0 removed, 1 refused or failed, 2 bad input. */
export async function clusterRemove(options: ClusterRemoveOptions, io: Io): Promise<number> {
  const target = parseAddress(options.via);
  if (target === undefined) {
    io.err(
      `walrus cluster remove: --via takes a member's internal address as host:port (its node.raftHost:node.raftPort); got ${JSON.stringify(options.via)}`,
    );
    return 2;
  }
  const client = new PeerClient({
    peer: 0,
    label: `the member at ${options.via}`,
    address: () => target,
    requestTimeoutMs: REMOVE_TIMEOUT_MS + 5_000,
  });
  try {
    const reply = await client.request(PEER_OPS.remove, { nodeId: options.nodeId, force: options.force, hops: 0 });
    const moved = Array.isArray(reply.head.moved) ? (reply.head.moved as string[]) : [];
    const lost = Array.isArray(reply.head.lost) ? reply.head.lost.length : 0;
    io.out(
      `node ${options.nodeId} removed from the cluster${moved.length > 0 ? `; topics moved to other nodes: ${moved.join(', ')}` : ''}${
        lost > 0 ? `; unread entries of ${lost} segments were lost with it` : ''
      }. Stop its process when you like: the others go on without it.`,
    );
    return 0;
  } catch (error) {
    io.err(`walrus cluster remove: ${(error as Error).message}`);
    return 1;
  } finally {
    client.close();
  }
}
