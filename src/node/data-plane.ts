// A node's data plane, built when the data-plane plugin starts: the metadata replica (the state
// machine registered with consensus), the write fencing built over it, the engine that holds this
// node's segments (`<dataDir>/node_<id>/data`), the segment store and GET's reader. DATA_PLANE is
// the capability under which the plugin offers it; its token lives here, with the types it carries.

import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Consensus, NodeId } from '../contracts/consensus.js';
import type { WriteFencing, WriteFencingFactory } from '../contracts/fencing.js';
import type { InternalPort } from '../contracts/internal-port.js';
import type { StorageBackend } from '../contracts/storage.js';
import { Walrus } from '../engine/walrus.js';
import { StateError } from '../kernel/errors.js';
import { CAPABILITIES, token } from '../kernel/tokens.js';
import { PeerReads } from './forwarding.js';
import { MetadataStateMachine } from './metadata.js';
import { NodeStats } from './node-stats.js';
import type { PeerAddress } from './peer-client.js';
import { Peers } from './peers.js';
import { TopicReader } from './reader.js';
import { type Acks, Replication } from './replication.js';
import { errnoOf, SegmentStore } from './segment-store.js';

export type NodeFsync = 'each' | 'interval' | 'none';

export interface DataPlaneOptions {
  readonly nodeId: number;
  /** The node's data root (`node.dataDir`); segments go under `node_<id>/data`. */
  readonly dataDir: string;
  readonly backend: StorageBackend;
  readonly fsync: NodeFsync;
  readonly fsyncIntervalMs: number;
  /** storage.writeReadAhead: the engine's writeReadAhead. */
  readonly writeReadAhead?: boolean;
  /** Entries after which an open segment takes no more appends (segments.maxEntries). */
  readonly maxEntries: number;
  readonly consensus: Pick<Consensus, 'register' | 'status'>;
  /** Builds the write fencing over the metadata replica (the lease-fencing plugin's factory). */
  readonly fencing: WriteFencingFactory;
  readonly log: Logger;
  /** The internal port (node-to-node requests arrive there); without it the node talks to no other node. */
  readonly internalPort?: InternalPort;
  /** Internal addresses of the configured members (`cluster.nodes`), for nodes the metadata does not list yet. */
  readonly configuredPeers?: ReadonlyMap<NodeId, PeerAddress>;
  /** replication.* (default: each segment kept by its leader alone). */
  readonly replication?: { readonly factor: number; readonly acks: Acks; readonly commitTimeoutMs: number };
}

export interface DataPlane {
  readonly nodeId: number;
  readonly metadata: MetadataStateMachine;
  readonly leases: WriteFencing;
  /**
   * The engine in use: the store replaces it when it reopens the directory after a storage
   * failure, and it is undefined while a node that started on a failing disk has none yet.
   */
  readonly wal: Walrus | undefined;
  readonly store: SegmentStore;
  readonly reader: TopicReader;
  /** The other nodes (undefined without an internal port). */
  readonly peers: Peers | undefined;
  /** Replicated segments: the leader's side and the followers' (replication.ts). */
  readonly replication: Replication;
  /** replication.factor: how many nodes a new segment's replica set names. */
  readonly replicationFactor: number;
  /** Reads of segments other nodes hold (with peers). */
  readonly remoteReads: PeerReads | undefined;
  /** What the node counts as it serves (requests, entries, syncs), for the admin endpoint. */
  readonly stats: NodeStats;
  /** The engine's files in this node's data directory and the bytes the file system has allocated to them. */
  diskUsage(): Promise<DiskUsage>;
  /** Calls `listener` when a segment becomes full (the rollover monitor proposes at once). */
  onSegmentFull(listener: (topic: string, segment: number, count: number) => void): () => void;
  close(): Promise<void>;
}

/** The files of a data directory and the space they take (sparse extents count only where written). */
export interface DiskUsage {
  readonly files: number;
  /** Bytes allocated on disk (st_blocks × 512). */
  readonly bytes: number;
  /** The files' sizes added up (a data file grows in sparse extents, so this is more than `bytes`). */
  readonly apparentBytes: number;
}

export async function openDataPlane(options: DataPlaneOptions): Promise<DataPlane> {
  const stats = new NodeStats();
  const metadata = new MetadataStateMachine({
    onListenerError: (error) => options.log.error({ error: (error as Error).message }, 'metadata listener failed'),
  });
  const dir = join(options.dataDir, `node_${options.nodeId}`, 'data');
  const openEngine = (): Promise<Walrus> =>
    Walrus.open({
      dataDir: dir,
      storage: options.backend,
      // GET's position lives in the engine's cursors: strict persists every advance.
      consistency: 'strict',
      fsync: options.fsync === 'interval' ? { everyMs: options.fsyncIntervalMs } : options.fsync,
      writeReadAhead: options.writeReadAhead ?? true,
      logger: options.log,
      onSync: (seconds) => stats.synced(seconds),
    });
  // A disk that refuses writes at start (full, failing, read-only) does not stop the node: it
  // starts in a storage outage and opens the engine once the disk takes writes again, instead of
  // exiting and being restarted into the same failure over and over.
  let wal: Walrus | undefined;
  let openFailure: Error | undefined;
  try {
    wal = await openEngine();
  } catch (error) {
    if (!diskRefused(error)) throw error;
    openFailure = error as Error;
  }
  // Registered after the engine is open: applies replayed by Raft so far were kept for it.
  options.consensus.register(metadata);
  const leases = options.fencing.create({ nodeId: options.nodeId, source: metadata });
  leases.start();
  const fullListeners = new Set<(topic: string, segment: number, count: number) => void>();
  const store = new SegmentStore({
    wal,
    dir,
    openFailure,
    leases,
    maxEntries: options.maxEntries,
    fencesFile: join(options.dataDir, `node_${options.nodeId}`, 'fences.json'),
    // After a storage failure the store reopens the directory once the disk takes writes again.
    reopen: openEngine,
    log: options.log,
    onFull: (topic, segment, count) => {
      for (const listener of fullListeners) listener(topic, segment, count);
    },
  });
  const peers =
    options.internalPort === undefined
      ? undefined
      : new Peers({
          nodeId: options.nodeId,
          port: options.internalPort,
          knownAddress: (id) => metadata.nodes().get(id)?.raftAddress,
          configured: options.configuredPeers ?? new Map(),
          log: options.log,
          onRequest: (op) => stats.peerRequest(op),
        });
  const remoteReads = peers === undefined ? undefined : new PeerReads(peers);
  // GET hands an entry of a replicated segment out once a majority has recorded its position.
  let replicationOf: Replication | undefined;
  const confirm = (topic: string, segment: number, position: number, waitMs: number) =>
    replicationOf?.positionConfirmed(topic, segment, position, waitMs);
  const reader = new TopicReader(
    store,
    {
      openSegment: (topic) => metadata.topic(topic)?.currentSegment,
      sealedCount: (topic, segment) => metadata.sealedCount(topic, segment),
      ledElsewhere: (topic, segment) => {
        const leader = metadata.segmentLeader(topic, segment);
        return leader !== undefined && leader !== options.nodeId;
      },
      owner: (topic, segment) => metadata.segmentLeader(topic, segment),
    },
    remoteReads === undefined ? { confirm } : { remote: remoteReads, confirm },
  );
  const replication = new Replication({
    nodeId: options.nodeId,
    metadata,
    store,
    peers,
    acks: options.replication?.acks ?? 'quorum',
    commitTimeoutMs: options.replication?.commitTimeoutMs ?? 5_000,
    inContact: () => leases.inContact(),
    raftLeader: () => {
      try {
        const leader = options.consensus.status().leader;
        return leader === 0 ? undefined : leader;
      } catch {
        return undefined; // consensus not started, or stopping
      }
    },
    log: options.log,
  });
  replicationOf = replication;
  if (wal !== undefined) options.log.info({ dir, backend: wal.backendName, fsync: options.fsync }, 'data plane open');
  else options.log.warn({ dir, fsync: options.fsync }, 'data plane open without its engine: the disk refuses writes');
  return {
    nodeId: options.nodeId,
    metadata,
    leases,
    get wal() {
      return store.engine;
    },
    store,
    reader,
    peers,
    remoteReads,
    replication,
    replicationFactor: options.replication?.factor ?? 1,
    stats,
    diskUsage: () => diskUsage(dir),
    onSegmentFull(listener) {
      fullListeners.add(listener);
      return () => fullListeners.delete(listener);
    },
    async close() {
      replication.close();
      peers?.close();
      leases.stop();
      await store.close();
    },
  };
}

/** The data plane, once the plugin has started (the capability resolves to this holder). */
export class DataPlaneHolder {
  plane: DataPlane | undefined;

  get(): DataPlane {
    if (this.plane === undefined) throw new StateError('KERNEL_STATE', 'the node data plane is not started yet');
    return this.plane;
  }
}

export const DATA_PLANE = token<DataPlaneHolder>(CAPABILITIES.dataPlane);

/** What diskUsage() says of `dir` (nothing there yet: zeros). Files deleted while it looks are skipped. */
async function diskUsage(dir: string): Promise<DiskUsage> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { files: 0, bytes: 0, apparentBytes: 0 };
  }
  let files = 0;
  let bytes = 0;
  let apparentBytes = 0;
  for (const name of names) {
    try {
      const info = await stat(join(dir, name));
      if (!info.isFile()) continue;
      files += 1;
      bytes += info.blocks * 512;
      apparentBytes += info.size;
    } catch {
      // reclaimed meanwhile
    }
  }
  return { files, bytes, apparentBytes };
}

/** Errnos of a disk that may take writes again later (freed space, a repaired or remounted disk). */
const DISK_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS']);

/** Whether `error` is the disk refusing to write (its errno, anywhere in the cause chain). */
function diskRefused(error: unknown): boolean {
  return DISK_ERRNOS.has(errnoOf(error) ?? '');
}
