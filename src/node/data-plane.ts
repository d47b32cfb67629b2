// A node's data plane, built when the lease-fencing plugin starts: the metadata replica (the
// state machine registered with consensus), the write leases derived from it, the engine that
// holds this node's segments (`<dataDir>/node_<id>/data`), the segment store and GET's reader.

import { join } from 'node:path';
import type { Logger } from 'pino';
import type { StorageBackend } from '../contracts/storage.js';
import { Walrus } from '../engine/walrus.js';
import type { Consensus } from '../plugins/raft/consensus.js';
import { LeaseTable } from './leases.js';
import { MetadataStateMachine } from './metadata.js';
import { TopicReader } from './reader.js';
import { SegmentStore } from './segment-store.js';

export type NodeFsync = 'each' | 'interval' | 'none';

export interface DataPlaneOptions {
  readonly nodeId: number;
  /** The node's data root (`node.dataDir`); segments go under `node_<id>/data`. */
  readonly dataDir: string;
  readonly backend: StorageBackend;
  readonly fsync: NodeFsync;
  readonly fsyncIntervalMs: number;
  /** Entries after which an open segment takes no more appends (rollover.maxSegmentEntries). */
  readonly maxEntries: number;
  readonly consensus: Pick<Consensus, 'register'>;
  readonly log: Logger;
}

export interface DataPlane {
  readonly nodeId: number;
  readonly metadata: MetadataStateMachine;
  readonly leases: LeaseTable;
  readonly wal: Walrus;
  readonly store: SegmentStore;
  readonly reader: TopicReader;
  /** Calls `listener` when a segment becomes full (the rollover monitor proposes at once). */
  onSegmentFull(listener: (topic: string, segment: number, count: number) => void): () => void;
  close(): Promise<void>;
}

export async function openDataPlane(options: DataPlaneOptions): Promise<DataPlane> {
  const metadata = new MetadataStateMachine({
    onListenerError: (error) => options.log.error({ error: (error as Error).message }, 'metadata listener failed'),
  });
  const dir = join(options.dataDir, `node_${options.nodeId}`, 'data');
  const wal = await Walrus.open({
    dataDir: dir,
    storage: options.backend,
    // GET's position lives in the engine's cursors: strict persists every advance.
    consistency: 'strict',
    fsync: options.fsync === 'interval' ? { everyMs: options.fsyncIntervalMs } : options.fsync,
    logger: options.log,
  });
  // Registered after the engine is open: applies replayed by Raft so far were kept for it.
  options.consensus.register(metadata);
  const leases = new LeaseTable({ nodeId: options.nodeId, source: metadata });
  leases.start();
  const fullListeners = new Set<(topic: string, segment: number, count: number) => void>();
  const store = new SegmentStore({
    wal,
    leases,
    maxEntries: options.maxEntries,
    onFull: (topic, segment, count) => {
      for (const listener of fullListeners) listener(topic, segment, count);
    },
  });
  const reader = new TopicReader(store, {
    openSegment: (topic) => metadata.topic(topic)?.currentSegment,
    sealedCount: (topic, segment) => metadata.sealedCount(topic, segment),
  });
  options.log.info({ dir, backend: wal.backendName, fsync: options.fsync }, 'data plane open');
  return {
    nodeId: options.nodeId,
    metadata,
    leases,
    wal,
    store,
    reader,
    onSegmentFull(listener) {
      fullListeners.add(listener);
      return () => fullListeners.delete(listener);
    },
    async close() {
      leases.stop();
      await wal.close();
    },
  };
}
