// Walrus's own catalog: every built-in plugin, the default `plugins:` list, the shared config
// sections (`node`, `cluster`, `storage`, `segments`: src/contracts/config.ts; and `bootstrap`, read
// by protocol-tcp, which owns `protocol`), the storage-backend selector of
// docs/ARCHITECTURE.md, and the rule that fills `node.*` from the `cluster.nodes` entry that
// `node.id` picks (so one cluster.yaml serves every node).

import {
  clusterNodeSchema,
  clusterSchema,
  failoverSchema,
  nodeSchema,
  replicationSchema,
  STORAGE_BACKENDS,
  type StorageConfig,
  segmentsSchema,
  storageSchema,
} from '../contracts/config.js';
import { BUILTIN_BACKENDS, chooseBackend, skippedText } from '../engine/storage/select.js';
import type { Catalog, Selection, Selector } from '../kernel/catalog.js';
import type { Assignment } from '../kernel/config.js';
import { isPlainObject, type Problem, s } from '../kernel/schema.js';

export { STORAGE_BACKENDS };

import { CAPABILITIES } from '../kernel/tokens.js';
import { adminPlugin } from './admin/index.js';
import { cliPlugin } from './cli/index.js';
import { consensusEtcdPlugin } from './consensus-etcd/index.js';
import { dataPlanePlugin } from './data-plane/index.js';
import { leaseFencingPlugin } from './lease-fencing/index.js';
import { bootstrapSchema, protocolTcpPlugin } from './protocol-tcp/index.js';
import { raftPlugin } from './raft/index.js';
import { rolloverMonitorPlugin } from './rollover-monitor/index.js';
import { storageFdPlugin } from './storage-fd/index.js';
import { storageMmapPlugin } from './storage-mmap/index.js';
import { storageUringPlugin } from './storage-uring/index.js';

/** The node's storage choice: the engine's one rule (chooseBackend) over the listed providers' probes. */
export const storageSelector: Selector = {
  capability: CAPABILITIES.storageBackend,
  select(candidates, config): Selection {
    const storage = config.storage as StorageConfig;
    const contenders = candidates.map((candidate) => ({
      name: candidate.plugin.manifest.name,
      builtin: BUILTIN_BACKENDS.find((backend) => candidate.plugin.manifest.name === `storage-${backend}`),
      probe: () => candidate.probe,
    }));
    const choice = chooseBackend(contenders, storage.backend, {
      disableIoUring: storage.disableIoUring,
      disabledBy: 'storage.disableIoUring',
    });
    const forced = `storage.backend is "${storage.backend}"`;
    switch (choice.outcome) {
      case 'absent':
        return { chosen: null, fatal: true, why: `${forced} but storage-${storage.backend} is not in the plugins list` };
      case 'refused':
        return choice.disabled
          ? { chosen: null, fatal: true, why: `${forced} but storage.disableIoUring (WALRUS_DISABLE_IO_URING) is set` }
          : { chosen: null, fatal: true, why: `${forced} but ${choice.contender.name} cannot run here: ${choice.reason}` };
      case 'chosen': {
        const name = choice.chosen.name;
        if (storage.backend !== 'auto') return { chosen: name, why: forced };
        return {
          chosen: name,
          why: `auto picked ${name}${choice.skipped.length === 0 ? '' : ` (skipped ${skippedText(choice.skipped)})`}`,
        };
      }
      case 'none':
        if (choice.skipped.length === 0) return { chosen: null, fatal: false, why: 'no storage backend is in the plugins list' };
        return { chosen: null, fatal: false, why: `auto found no storage backend that can run here (${skippedText(choice.skipped)})` };
    }
  },
};

/** `consensus`: which plugin keeps the metadata (WALRUS_CONSENSUS). */
export const CONSENSUS_CHOICES = { raft: 'raft', etcd: 'consensus-etcd' } as const;
export const consensusSchema = s.enum(Object.keys(CONSENSUS_CHOICES) as (keyof typeof CONSENSUS_CHOICES)[], {
  default: 'raft',
  description:
    'Where the cluster metadata is kept: `raft` (the built-in Raft group of the nodes) or `etcd` (an etcd cluster, see `etcd.*`).',
});

/**
 * The node's consensus: the plugin `consensus` names. A plugin of one's own that provides
 * `consensus` is taken when it is the only provider listed (as before there was a choice).
 */
export const consensusSelector: Selector = {
  capability: CAPABILITIES.consensus,
  select(candidates, config): Selection {
    const choice = (config.consensus ?? 'raft') as keyof typeof CONSENSUS_CHOICES;
    const wanted = CONSENSUS_CHOICES[choice];
    const why = `consensus is "${choice}"`;
    const candidate = candidates.find((entry) => entry.plugin.manifest.name === wanted);
    if (candidate === undefined) {
      const [only, ...others] = candidates;
      const builtin = Object.values(CONSENSUS_CHOICES) as string[];
      if (only !== undefined && others.length === 0 && !builtin.includes(only.plugin.manifest.name) && choice === 'raft') {
        return { chosen: only.plugin.manifest.name, why: `${only.plugin.manifest.name} is the only consensus plugin listed` };
      }
      if (candidates.length === 0 && choice === 'raft')
        return { chosen: null, fatal: false, why: 'no consensus plugin is in the plugins list' };
      return { chosen: null, fatal: true, why: `${why} but ${wanted} is not in the plugins list` };
    }
    if (!candidate.probe.ok) return { chosen: null, fatal: true, why: `${why} but ${wanted} cannot run here: ${candidate.probe.reason}` };
    return { chosen: wanted, why };
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
  // A node joining a running cluster need not be listed: its own node.* say where it is.
  const joining = isPlainObject(node) && typeof node.join === 'string' && node.join !== '';
  if (entry === undefined && joining) return { assignments: [], problems };
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
  consensusEtcdPlugin,
  leaseFencingPlugin,
  dataPlanePlugin,
  rolloverMonitorPlugin,
  protocolTcpPlugin,
  adminPlugin,
  cliPlugin,
] as const;

/** What a node loads when the config does not say: every node plugin (the CLI is the front end). */
export const DEFAULT_PLUGINS = [
  'storage-fd',
  'storage-mmap',
  'storage-uring',
  'raft',
  'consensus-etcd',
  'lease-fencing',
  'data-plane',
  'rollover-monitor',
  'protocol-tcp',
  'admin',
];

export const walrusCatalog: Catalog = {
  builtins: builtinPlugins,
  defaultPlugins: DEFAULT_PLUGINS,
  // bootstrap: read by protocol-tcp at start, which owns `protocol` (a plugin owns one section).
  sections: {
    node: nodeSchema,
    cluster: clusterSchema,
    bootstrap: bootstrapSchema,
    storage: storageSchema,
    segments: segmentsSchema,
    replication: replicationSchema,
    failover: failoverSchema,
    consensus: consensusSchema,
  },
  selectors: [storageSelector, consensusSelector],
  derive: deriveNodeFromCluster,
};
