// protocol-tcp: the client TCP protocol on node.clientHost:node.clientPort. Frames are a u32
// little-endian length and a UTF-8 body (codec/); the server (server.ts) answers pipelined
// requests in order, one write per reply, within named limits; the node controller
// (src/node/controller.ts) does what each command means. docs/protocol.md has every command.

import type { StorageConfig } from '../../contracts/config.js';
import { CLIENT_PROTOCOL, CONSENSUS, INTERNAL_PORT } from '../../contracts/tokens.js';
import { isWalrusError, walrusError } from '../../kernel/errors.js';
import { limits } from '../../kernel/limits.js';
import type { Plugin } from '../../kernel/plugin.js';
import { s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { NodeController } from '../../node/controller.js';
import { DATA_PLANE } from '../../node/data-plane.js';
import { catchUp, Membership } from '../../node/membership.js';
import { parseAddress } from '../../node/peers.js';
import { ProtocolServer } from './server.js';

interface NodeSection {
  readonly clientHost: string;
  readonly clientPort: number;
  readonly join: string | null;
}

export const bootstrapSchema = s.object(
  {
    topics: s.array(s.string({ default: '', minLength: 1, description: 'A topic name.' }), {
      default: [],
      description: 'Topics created at start when they do not exist yet (never rolled over or changed when they do).',
    }),
  },
  'Topics every node start makes sure exist.',
);

export interface BootstrapConfig {
  readonly topics: readonly string[];
}

const timeout = (fallback: number, description: string) =>
  s.int({ default: fallback, min: 0, max: limits.protocolTimeoutMsMax, description });

/** The plugin's own section: how long the server waits for clients. */
export const protocolSchema = s.object(
  {
    idleTimeoutMs: timeout(
      limits.protocolIdleTimeoutMsDefault,
      'A client connection with no request in flight and no input for this long is closed, in milliseconds; 0 never closes one.',
    ),
    frameTimeoutMs: timeout(
      limits.protocolFrameTimeoutMsDefault,
      'A request frame that began to arrive and is not complete this long after gets `ERR frame timeout` and the connection is closed, in milliseconds; 0 waits forever.',
    ),
  },
  'The client protocol server.',
);

export interface ProtocolConfig {
  readonly idleTimeoutMs: number;
  readonly frameTimeoutMs: number;
}

/** How long a start waits for this node to catch up with the metadata before it serves anyway. */
const CATCH_UP_MS = 5_000;
/** How long a start waits between attempts to create the bootstrap topics (no Raft leader yet). */
const BOOTSTRAP_RETRY_MS = 100;

export const protocolTcpPlugin: Plugin<ProtocolConfig> = {
  manifest: {
    name: 'protocol-tcp',
    description: 'length-prefixed client TCP protocol on node.clientHost:node.clientPort',
    provides: [CAPABILITIES.clientProtocol],
    // rollover-monitor: without it a segment that fills is never rolled over and every PUT to its
    // topic would fail from then on, so a node without one is refused at start instead.
    requires: [CAPABILITIES.consensus, CAPABILITIES.internalPort, CAPABILITIES.dataPlane, CAPABILITIES.rolloverMonitor],
  },
  // `bootstrap` (read at start, below) is a shared section of the catalog: a plugin owns one section.
  config: { key: 'protocol', schema: protocolSchema },
  register(scope) {
    scope.provide(CLIENT_PROTOCOL, () => ({ current: undefined }));
  },
  async start(scope) {
    const node = scope.config.node as NodeSection;
    const plane = scope.resolve(DATA_PLANE).get();
    const consensus = scope.resolve(CONSENSUS);
    const controller = new NodeController({
      nodeId: plane.nodeId,
      metadata: plane.metadata,
      consensus,
      store: plane.store,
      reader: plane.reader,
      ...(plane.peers === undefined ? {} : { peers: plane.peers }),
      ...(plane.remoteReads === undefined ? {} : { remoteReads: plane.remoteReads }),
      liveNodes: () => consensus.liveMembers(),
      replication: plane.replication,
      replicationFactor: plane.replicationFactor,
      stats: plane.stats,
    });
    let bound: { readonly host: string; readonly port: number } | undefined;
    const internal = scope.resolve(INTERNAL_PORT);
    const membership =
      plane.peers === undefined
        ? undefined
        : new Membership({
            nodeId: plane.nodeId,
            self: () => ({
              clientAddress: `${bound?.host ?? node.clientHost}:${bound?.port ?? node.clientPort}`,
              raftAddress: `${internal.host}:${internal.port}`,
            }),
            consensus,
            metadata: plane.metadata,
            peers: plane.peers,
            log: scope.log,
            handOff: () => controller.handOff(),
            onRemoved: (by) => controller.markRemoved(by),
          });
    // Other nodes' forwarded PUTs, reads and joins are answered from here on.
    plane.peers?.serve({ ...controller.peerHandlers(), ...plane.replication.handlers(), ...(membership?.handlers() ?? {}) });
    const unfollow = membership?.followAddresses();
    if (node.join !== null && membership !== undefined && !membership.isMember()) {
      const target = parseAddress(node.join);
      if (target === undefined) throw walrusError('CONFIG_INVALID', `node.join: ${JSON.stringify(node.join)} is not host:port`);
      try {
        await membership.join(target);
      } catch (error) {
        membership.close();
        unfollow?.();
        throw walrusError('PLUGIN_START_FAILED', `could not join the cluster through ${node.join}: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    // In a cluster, "ready" waits (a bounded while) until this node has caught up with the
    // metadata: a node just restarted would otherwise answer from the view it had before.
    if (membership !== undefined && !(await catchUp(consensus, CATCH_UP_MS))) {
      scope.log.warn({ waitedMs: CATCH_UP_MS }, 'no Raft leader heard from yet: serving with the metadata this node has');
    }
    // Bootstrap topics exist before the port opens: a client that sees the node ready can use them.
    const bootstrap = scope.config.bootstrap as BootstrapConfig;
    for (const topic of bootstrap.topics) {
      for (;;) {
        const reply = await Promise.resolve(controller.handle({ op: 'REGISTER', topic })).catch((error: Error) => ({ error }));
        if (reply.error === undefined) break;
        // Invalid names are refused for good; anything else (no Raft leader yet) is retried until the start timeout.
        const { error } = reply;
        if (isWalrusError(error) && error.code === 'INVALID_TOPIC_NAME') {
          throw walrusError('CONFIG_INVALID', `bootstrap.topics: ${JSON.stringify(topic)}: ${error.message}`, { cause: error });
        }
        scope.log.debug({ topic, err: error }, 'bootstrap topic not created yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, BOOTSTRAP_RETRY_MS));
      }
    }
    if (bootstrap.topics.length > 0) scope.log.info({ topics: bootstrap.topics }, 'bootstrap topics present');
    const protocol = scope.config.protocol as ProtocolConfig;
    const server = new ProtocolServer({
      host: node.clientHost,
      port: node.clientPort,
      handler: controller,
      log: scope.log,
      timeouts: { idleTimeoutMs: protocol.idleTimeoutMs, frameTimeoutMs: protocol.frameTimeoutMs },
      consumingRepliesUncorked: (scope.config.storage as StorageConfig).fsync === 'each',
      observer: plane.stats,
    });
    // The server logs "client protocol listening" with the bound host and port (port 0: the one picked).
    const listening = await server.listen();
    bound = listening;
    // This node's addresses go into the metadata (in the background: there may be no leader yet).
    membership?.announceSelf();
    scope.resolve(CLIENT_PROTOCOL).current = {
      bound: listening,
      connections: () => server.stats().connections,
      removed: () => controller.removed,
      close: () => {
        // PUTs waiting for a rollover are answered now, so the server's close can flush them.
        membership?.close();
        unfollow?.();
        controller.close();
        return server.close();
      },
    };
  },
  async stop(scope) {
    const holder = scope.resolve(CLIENT_PROTOCOL);
    await holder.current?.close();
    holder.current = undefined;
  },
};
