// Walrus's own catalog: every built-in plugin, the default `plugins:` list, the shared config
// sections (`node`, `cluster`, `storage`, `segments`: src/contracts/config.ts; and `bootstrap`, read
// by protocol-tcp, which owns `protocol`), the storage-backend selector of
// docs/ARCHITECTURE.md, and the rule that fills `node.*` from the `cluster.nodes` entry that
// `node.id` picks (so one cluster.yaml serves every node).

import {
  clusterNodeSchema,
  clusterSchema,
  nodeSchema,
  STORAGE_BACKENDS,
  type StorageConfig,
  segmentsSchema,
  storageSchema,
} from '../contracts/config.js';
import type { Catalog, Selection, Selector } from '../kernel/catalog.js';
import type { Assignment } from '../kernel/config.js';
import { isPlainObject, type Problem } from '../kernel/schema.js';

export { STORAGE_BACKENDS };

import { CAPABILITIES } from '../kernel/tokens.js';
import { cliPlugin } from './cli/index.js';
import { dataPlanePlugin } from './data-plane/index.js';
import { leaseFencingPlugin } from './lease-fencing/index.js';
import { bootstrapSchema, protocolTcpPlugin } from './protocol-tcp/index.js';
import { raftPlugin } from './raft/index.js';
import { rolloverMonitorPlugin } from './rollover-monitor/index.js';
import { storageFdPlugin } from './storage-fd/index.js';
import { storageMmapPlugin } from './storage-mmap/index.js';
import { storageUringPlugin } from './storage-uring/index.js';

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
  dataPlanePlugin,
  rolloverMonitorPlugin,
  protocolTcpPlugin,
  cliPlugin,
] as const;

/** What a node loads when the config does not say: every node plugin (the CLI is the front end). */
export const DEFAULT_PLUGINS = [
  'storage-fd',
  'storage-mmap',
  'storage-uring',
  'raft',
  'lease-fencing',
  'data-plane',
  'rollover-monitor',
  'protocol-tcp',
];

export const walrusCatalog: Catalog = {
  builtins: builtinPlugins,
  defaultPlugins: DEFAULT_PLUGINS,
  // bootstrap: read by protocol-tcp at start, which owns `protocol` (a plugin owns one section).
  sections: { node: nodeSchema, cluster: clusterSchema, bootstrap: bootstrapSchema, storage: storageSchema, segments: segmentsSchema },
  selectors: [storageSelector],
  derive: deriveNodeFromCluster,
};
