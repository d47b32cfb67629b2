// Walrus's own catalog: every built-in plugin, the default `plugins:` list, the config sections
// several plugins share (`node`, `cluster`, `storage`), the storage-backend selector of
// docs/ARCHITECTURE.md, and the rule that fills `node.*` from the `cluster.nodes` entry that
// `node.id` picks (so one cluster.yaml serves every node).

import type { Catalog, Selection, Selector } from '../kernel/catalog.js';
import type { Assignment } from '../kernel/config.js';
import { type Infer, isPlainObject, type Problem, s } from '../kernel/schema.js';
import { CAPABILITIES } from '../kernel/tokens.js';
import { cliPlugin } from './cli/index.js';
import { leaseFencingPlugin } from './lease-fencing/index.js';
import { protocolTcpPlugin } from './protocol-tcp/index.js';
import { raftPlugin } from './raft/index.js';
import { rolloverMonitorPlugin } from './rollover-monitor/index.js';
import { storageFdPlugin } from './storage-fd/index.js';
import { storageMmapPlugin } from './storage-mmap/index.js';
import { storageUringPlugin } from './storage-uring/index.js';

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
      'Raft address (`host:port`) of an existing member to join; null starts or restarts on its own.',
    ),
  },
  'This node.',
);

const clusterNodeSchema = s.object(
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
  },
  'Storage backend selection.',
);

export type StorageConfig = Infer<typeof storageSchema>;

/** `auto`: uring (unless disabled), else mmap, else fd — the first whose probe passes. */
export const storageSelector: Selector = {
  capability: CAPABILITIES.storageBackend,
  select(candidates, config): Selection {
    const storage = config.storage as StorageConfig;
    const byBackend = (backend: string) => candidates.find((candidate) => candidate.plugin.manifest.name === `storage-${backend}`);
    if (storage.backend !== 'auto') {
      const wanted = `storage-${storage.backend}`;
      const candidate = byBackend(storage.backend);
      if (candidate === undefined)
        return { chosen: null, fatal: true, why: `storage.backend is "${storage.backend}" but ${wanted} is not in the plugins list` };
      if (!candidate.probe.ok) {
        return {
          chosen: null,
          fatal: true,
          why: `storage.backend is "${storage.backend}" but ${wanted} cannot run here: ${candidate.probe.reason ?? 'its probe failed'}`,
        };
      }
      if (storage.backend === 'uring' && storage.disableIoUring) {
        return { chosen: null, fatal: true, why: 'storage.backend is "uring" but storage.disableIoUring (WALRUS_DISABLE_IO_URING) is set' };
      }
      return { chosen: wanted, why: `storage.backend is "${storage.backend}"` };
    }
    // Built-in backends in order of preference, then any custom backend in list order.
    const builtin = ['uring', 'mmap', 'fd'].map(byBackend).filter((candidate) => candidate !== undefined);
    const custom = candidates.filter((candidate) => !builtin.includes(candidate));
    const skipped: string[] = [];
    for (const candidate of [...builtin, ...custom]) {
      const name = candidate.plugin.manifest.name;
      if (name === 'storage-uring' && storage.disableIoUring) skipped.push(`${name}: disabled by storage.disableIoUring`);
      else if (!candidate.probe.ok) skipped.push(`${name}: ${candidate.probe.reason ?? 'its probe failed'}`);
      else return { chosen: name, why: `auto picked ${name}${skipped.length === 0 ? '' : ` (skipped ${skipped.join('; ')})`}` };
    }
    if (skipped.length === 0) return { chosen: null, fatal: false, why: 'no storage backend is in the plugins list' };
    return { chosen: null, fatal: false, why: `auto found no storage backend that can run here (${skipped.join('; ')})` };
  },
};

const NODE_ADDRESS_KEYS = ['clientHost', 'clientPort', 'raftHost', 'raftPort'] as const;

/** Fills node.* from the cluster.nodes entry whose id is node.id. */
export function deriveNodeFromCluster(merged: Readonly<Record<string, unknown>>): { assignments: Assignment[]; problems: Problem[] } {
  const cluster = merged.cluster;
  const node = merged.node;
  const nodes = isPlainObject(cluster) ? cluster.nodes : undefined;
  const id = isPlainObject(node) ? node.id : undefined;
  if (!Array.isArray(nodes) || nodes.length === 0 || typeof id !== 'number') return { assignments: [], problems: [] };
  const ids = nodes.map((entry) => (isPlainObject(entry) ? entry.id : undefined));
  const problems: Problem[] = [];
  const duplicate = ids.find((value, index) => value !== undefined && ids.indexOf(value) !== index);
  if (duplicate !== undefined) problems.push({ path: 'cluster.nodes', message: `node id ${String(duplicate)} appears more than once` });
  const entry = nodes.find((candidate) => isPlainObject(candidate) && candidate.id === id) as Record<string, unknown> | undefined;
  if (entry === undefined) {
    problems.push({ path: 'node.id', message: `${id} matches no entry of cluster.nodes (ids: ${ids.map(String).join(', ')})` });
    return { assignments: [], problems };
  }
  // Every address comes from the entry, defaults included, so the entry alone says where this node is.
  const source = `cluster.nodes entry ${id}`;
  const assignments = NODE_ADDRESS_KEYS.map((key) => ({
    path: `node.${key}`,
    value: Object.hasOwn(entry, key) ? entry[key] : clusterNodeSchema.fields[key].defaultValue,
    source,
  }));
  return { assignments, problems };
}

export const builtinPlugins = [
  storageFdPlugin,
  storageMmapPlugin,
  storageUringPlugin,
  raftPlugin,
  leaseFencingPlugin,
  rolloverMonitorPlugin,
  protocolTcpPlugin,
  cliPlugin,
] as const;

/** What a node loads when the config does not say: every node plugin (the CLI is the front end). */
export const DEFAULT_PLUGINS = ['storage-fd', 'storage-mmap', 'storage-uring', 'raft', 'lease-fencing', 'rollover-monitor', 'protocol-tcp'];

export const walrusCatalog: Catalog = {
  builtins: builtinPlugins,
  defaultPlugins: DEFAULT_PLUGINS,
  sections: { node: nodeSchema, cluster: clusterSchema, storage: storageSchema },
  selectors: [storageSelector],
  derive: deriveNodeFromCluster,
};
