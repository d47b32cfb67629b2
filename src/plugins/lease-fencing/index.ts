// lease-fencing: the node's data plane and its write fences. At start it opens the engine that
// holds this node's segments (on the storage backend the selector chose), registers the
// metadata state machine with consensus, and derives write leases from the metadata applied
// here (every apply and every 100 ms); the segment store refuses a write without a current
// lease (`NotLeaderForPartition: t_<topic>_s_<n>`) or past the rollover threshold.

import { StateError } from '../../kernel/errors.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES, token } from '../../kernel/tokens.js';
import { type DataPlane, type NodeFsync, openDataPlane } from '../../node/data-plane.js';
import type { StorageConfig } from '../catalog.js';
import { CONSENSUS } from '../raft/consensus.js';
import { STORAGE_BACKEND } from '../storage-fd/index.js';

/** The data plane, once the plugin has started (the capability resolves to this holder). */
export class DataPlaneHolder {
  plane: DataPlane | undefined;

  get(): DataPlane {
    if (this.plane === undefined) throw new StateError('KERNEL_STATE', 'the node data plane is not started yet');
    return this.plane;
  }
}

export const LEASE_FENCING = token<DataPlaneHolder>(CAPABILITIES.leaseFencing);

interface NodeSection {
  readonly id: number;
  readonly dataDir: string;
}

export const leaseFencingPlugin: Plugin = {
  manifest: {
    name: 'lease-fencing',
    description: 'segment write leases derived from metadata; fences writes without one',
    provides: [CAPABILITIES.leaseFencing],
    requires: [CAPABILITIES.consensus, CAPABILITIES.storageBackend],
  },
  register(scope) {
    scope.provide(LEASE_FENCING, () => new DataPlaneHolder());
  },
  async start(scope) {
    const node = scope.config.node as NodeSection;
    const storage = scope.config.storage as StorageConfig;
    const rollover = scope.config.rollover as { readonly maxSegmentEntries: number } | undefined;
    const holder = scope.resolve(LEASE_FENCING);
    holder.plane = await openDataPlane({
      nodeId: node.id,
      dataDir: node.dataDir,
      backend: scope.resolve(STORAGE_BACKEND),
      fsync: storage.fsync as NodeFsync,
      fsyncIntervalMs: storage.fsyncIntervalMs,
      maxEntries: rollover?.maxSegmentEntries ?? Number.MAX_SAFE_INTEGER,
      consensus: scope.resolve(CONSENSUS),
      log: scope.log,
    });
  },
  async stop(scope) {
    const holder = scope.resolve(LEASE_FENCING);
    await holder.plane?.close();
    holder.plane = undefined;
  },
};
