// protocol-tcp: the client TCP protocol on node.clientHost:node.clientPort. Frames are a u32
// little-endian length and a UTF-8 body (codec/); the server (server.ts) answers pipelined
// requests in order, one write per reply, within named limits; the node controller
// (src/node/controller.ts) does what each command means. docs/protocol.md has every command.

import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES, token } from '../../kernel/tokens.js';
import { NodeController } from '../../node/controller.js';
import { LEASE_FENCING } from '../lease-fencing/index.js';
import { CONSENSUS } from '../raft/consensus.js';
import { ProtocolServer } from './server.js';

interface NodeSection {
  readonly clientHost: string;
  readonly clientPort: number;
}

export const CLIENT_PROTOCOL = token<{ server: ProtocolServer | undefined }>(CAPABILITIES.clientProtocol);

export const protocolTcpPlugin: Plugin = {
  manifest: {
    name: 'protocol-tcp',
    description: 'length-prefixed client TCP protocol on node.clientHost:node.clientPort',
    provides: [CAPABILITIES.clientProtocol],
    requires: [CAPABILITIES.consensus, CAPABILITIES.storageBackend, CAPABILITIES.leaseFencing],
  },
  register(scope) {
    scope.provide(CLIENT_PROTOCOL, () => ({ server: undefined }));
  },
  async start(scope) {
    const node = scope.config.node as NodeSection;
    const plane = scope.resolve(LEASE_FENCING).get();
    const controller = new NodeController({
      nodeId: plane.nodeId,
      metadata: plane.metadata,
      consensus: scope.resolve(CONSENSUS),
      store: plane.store,
      reader: plane.reader,
    });
    const server = new ProtocolServer({ host: node.clientHost, port: node.clientPort, handler: controller, log: scope.log });
    // The server logs "client protocol listening" with the bound host and port (port 0: the one picked).
    await server.listen();
    scope.resolve(CLIENT_PROTOCOL).server = server;
  },
  async stop(scope) {
    const holder = scope.resolve(CLIENT_PROTOCOL);
    await holder.server?.close();
    holder.server = undefined;
  },
};
