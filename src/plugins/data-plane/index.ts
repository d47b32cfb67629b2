// data-plane: opens the node's data plane (src/node/data-plane.ts) at start — the engine that
// holds this node's segments on the storage backend the selector chose, the metadata replica
// registered with consensus, the segment store and GET's reader — with the write fencing that
// lease-fencing provides, and the other nodes as reached through the internal port. It follows
// `storage.*`, `segments.maxEntries`, `replication.*` and `cluster.nodes` (shared sections).

import type { ReplicationConfig, SegmentsConfig, StorageConfig } from '../../contracts/config.js';
import { CONSENSUS, INTERNAL_PORT, STORAGE_BACKEND, WRITE_FENCING } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { DATA_PLANE, DataPlaneHolder, type NodeFsync, openDataPlane } from '../../node/data-plane.js';
import type { Acks } from '../../node/replication.js';

interface NodeSection {
  readonly id: number;
  readonly dataDir: string;
}

interface ClusterSection {
  readonly nodes: readonly { readonly id: number; readonly raftHost: string; readonly raftPort: number }[];
}

export const dataPlanePlugin: Plugin = {
  manifest: {
    name: 'data-plane',
    description: "the node's segments, metadata replica, segment store and GET positions",
    provides: [CAPABILITIES.dataPlane],
    requires: [CAPABILITIES.consensus, CAPABILITIES.internalPort, CAPABILITIES.storageBackend, CAPABILITIES.leaseFencing],
  },
  register(scope) {
    scope.provide(DATA_PLANE, () => new DataPlaneHolder());
  },
  async start(scope) {
    const node = scope.config.node as NodeSection;
    const storage = scope.config.storage as StorageConfig;
    const segments = scope.config.segments as SegmentsConfig;
    const cluster = scope.config.cluster as ClusterSection;
    const replication = scope.config.replication as ReplicationConfig;
    scope.resolve(DATA_PLANE).plane = await openDataPlane({
      nodeId: node.id,
      dataDir: node.dataDir,
      backend: scope.resolve(STORAGE_BACKEND),
      fsync: storage.fsync as NodeFsync,
      fsyncIntervalMs: storage.fsyncIntervalMs,
      writeReadAhead: storage.writeReadAhead,
      maxEntries: segments.maxEntries,
      consensus: scope.resolve(CONSENSUS),
      fencing: scope.resolve(WRITE_FENCING),
      log: scope.log,
      internalPort: scope.resolve(INTERNAL_PORT),
      configuredPeers: new Map(cluster.nodes.map((entry) => [entry.id, { host: entry.raftHost, port: entry.raftPort }])),
      replication: { ...replication, acks: replication.acks as Acks },
    });
  },
  async stop(scope) {
    const holder = scope.resolve(DATA_PLANE);
    await holder.plane?.close();
    holder.plane = undefined;
  },
};
