// The configuration sections that belong to no single plugin: `node` (this node's id, data
// directory and addresses), `cluster` (static membership), `storage` (backend choice and fsync
// schedule) and `segments` (the data plane's segment size, which the write path and the rollover
// monitor both follow). The catalog adds them to the kernel's schema; any plugin may read them.

import { type Infer, s } from '../kernel/schema.js';

const HOST_PORT = /^[^\s:]+:\d{1,5}$/;
export const STORAGE_BACKENDS = ['auto', 'fd', 'mmap', 'uring'] as const;

const host = (what: string) => s.string({ default: '127.0.0.1', minLength: 1, description: what });
const port = (fallback: number, what: string) => s.int({ default: fallback, min: 0, max: 65_535, description: what });
const nodeId = (description: string) => s.int({ default: 1, min: 1, max: 2 ** 31 - 1, description });

export const nodeSchema = s.object(
  {
    id: nodeId("This node's id. With `cluster.nodes`, it picks the entry that supplies the addresses below."),
    dataDir: s.string({
      default: './data',
      minLength: 1,
      description: "Root folder for this node's data (each node uses `<dataDir>/node_<id>/`).",
    }),
    clientHost: host('Address the client TCP listener binds.'),
    clientPort: port(8080, 'Client TCP port (0 picks a free port).'),
    raftHost: host('Address the Raft and node-to-node listener binds.'),
    raftPort: port(6000, 'Raft and node-to-node port (0 picks a free port).'),
    join: s.nullable(
      s.string({ default: '', pattern: HOST_PORT, patternHint: 'host:port', description: 'Raft address of a cluster member.' }),
      'Internal address (`host:port`) of a member of a running cluster to join through; ignored once this node is a member by its own files.',
    ),
  },
  'This node.',
);

export const clusterNodeSchema = s.object(
  {
    id: nodeId('Node id of this entry.'),
    clientHost: host('Client address of this node.'),
    clientPort: port(8080, 'Client port of this node.'),
    raftHost: host('Raft address of this node.'),
    raftPort: port(6000, 'Raft port of this node.'),
  },
  'One cluster member.',
  { required: ['id', 'clientPort', 'raftPort'] },
);

export const clusterSchema = s.object(
  {
    nodes: s.array(clusterNodeSchema, {
      default: [],
      description: "Members of a static cluster; `node.id` picks this node's entry, whose addresses fill `node.*`.",
    }),
  },
  'Cluster membership.',
);

export const storageSchema = s.object(
  {
    backend: s.enum(STORAGE_BACKENDS, {
      default: 'auto',
      description: 'Storage backend: `auto` picks uring, else mmap, else fd, by what can run here; a named one must be able to run.',
    }),
    disableIoUring: s.bool({ default: false, description: 'Never pick the io_uring backend under `auto`.' }),
    fsync: s.enum(['each', 'interval', 'none'] as const, {
      default: 'interval',
      description:
        'When acknowledged entries are made durable against power loss: `each` (before the reply), `interval` (every `fsyncIntervalMs`), `none` (on close).',
    }),
    fsyncIntervalMs: s.int({ default: 200, min: 1, max: 60_000, description: 'Sync period under `fsync: interval`, in milliseconds.' }),
    writeReadAhead: s.bool({
      default: true,
      description:
        'Keep the next 16 MiB of the data file in the page cache ahead of the writes (fd and uring with the native addon): faster produce where fresh memory is slow (VMs), a little more CPU where it is not.',
    }),
  },
  'Storage backend selection.',
);

export type StorageConfig = Infer<typeof storageSchema>;

export const segmentsSchema = s.object(
  {
    maxEntries: s.int({
      default: 1_000_000,
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      description: 'Entries after which an open segment takes no more appends and is rolled over (sealed, and the next one opened).',
    }),
  },
  "The data plane's segments.",
);

export type SegmentsConfig = Infer<typeof segmentsSchema>;

export const replicationSchema = s.object(
  {
    factor: s.int({
      default: 3,
      min: 1,
      max: 7,
      description:
        'Nodes that keep each new segment: its leader and the next live voters after it (capped at the voters that are up: a single node keeps its segments alone). 1 keeps each segment on its leader alone, with no failover.',
    }),
    acks: s.enum(['quorum', 'leader'] as const, {
      default: 'quorum',
      description: "When a PUT is acknowledged: `quorum` once a majority of the segment's replicas hold it, `leader` once its leader does.",
    }),
    commitTimeoutMs: s.int({
      default: 5_000,
      min: 100,
      max: 600_000,
      description: 'How long a PUT waits for a majority of the replicas before it fails with NOT_COMMITTED, in milliseconds.',
    }),
  },
  'Segment replication across nodes.',
);

export type ReplicationConfig = Infer<typeof replicationSchema>;

export const failoverSchema = s.object(
  {
    timeoutMs: s.int({
      default: 1_500,
      min: 100,
      max: 600_000,
      description:
        "How long the Raft leader must not hear from a node before that node's replicated segments fail over (open ones sealed at what a majority of their replicas holds and moved on to a live replica; sealed ones served by another replica), in milliseconds. A node whose port refuses connections (its process is gone) counts as down after a fifth of this (at least 200 ms).",
    }),
  },
  'Failover of replicated segments whose node is gone.',
);

export type FailoverConfig = Infer<typeof failoverSchema>;

export interface NodeConfig {
  readonly id: number;
  readonly dataDir: string;
  readonly clientHost: string;
  readonly clientPort: number;
  readonly raftHost: string;
  readonly raftPort: number;
  readonly join: string | null;
}
