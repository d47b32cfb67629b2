// /metrics: the node's figures in the Prometheus text format, built with prom-client at each
// scrape from what the node already counts (src/node/node-stats.ts) and knows (consensus status,
// metadata, replication, the data directory). Nothing here runs on the request path: counters
// and gauges are filled by their collect() callbacks, and the two latency histograms are read
// from NodeStats' fixed buckets (prom-client's own observe() costs ~0.5 µs a call, twenty times
// NodeStats', which would show in PUT throughput). docs/operations.md lists every metric.

import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValueWithName,
  Registry,
} from 'prom-client';
import type { Consensus, Role } from '../../contracts/consensus.js';
import type { DiskUsage } from '../../node/data-plane.js';
import type { MetadataStateMachine } from '../../node/metadata.js';
import type { FixedHistogram, NodeStats } from '../../node/node-stats.js';
import type { FollowerProgress } from '../../node/replication.js';

export interface MetricSources {
  readonly nodeId: number;
  readonly version: string;
  readonly stats: NodeStats;
  readonly consensus: Pick<Consensus, 'status' | 'liveMembers'>;
  readonly metadata: MetadataStateMachine;
  readonly followers: () => readonly FollowerProgress[];
  readonly connections: () => number;
  readonly diskUsage: () => Promise<DiskUsage>;
}

/** A scrape reuses a look at the data directory this recent. */
const DISK_LOOK_MS = 500;

const ROLES: readonly Role[] = ['leader', 'follower', 'candidate', 'preCandidate'];

/** A histogram whose buckets are NodeStats' (read at each scrape), labelled as `read` says. */
class SnapshotHistogram<T extends string> extends Histogram<T> {
  private readonly read: () => Iterable<readonly [Partial<Record<T, string>>, FixedHistogram]>;

  constructor(
    config: { name: string; help: string; labelNames: readonly T[]; registers: Registry[] },
    read: () => Iterable<readonly [Partial<Record<T, string>>, FixedHistogram]>,
  ) {
    // The buckets are each FixedHistogram's own (get() reads them), not prom-client's.
    super({ ...config, labelNames: [...config.labelNames] });
    this.read = read;
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<T>>> {
    // name, help and aggregator are set by prom-client's constructor but not in its typings.
    const { name, help, aggregator } = this as unknown as Pick<MetricObjectWithValues<never>, 'name' | 'help' | 'aggregator'>;
    const values: MetricValueWithName<T>[] = [];
    for (const [labels, histogram] of this.read()) {
      if (histogram.count === 0) continue;
      const cumulative = histogram.cumulative();
      histogram.bounds.forEach((bound, index) => {
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative[index] ?? 0 });
      });
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: histogram.count });
      values.push({ metricName: `${name}_sum`, labels, value: histogram.sum });
      values.push({ metricName: `${name}_count`, labels, value: histogram.count });
    }
    return { name, help, type: 'histogram' as never, aggregator, values, collect: () => undefined };
  }
}
// The registry formats a metric through getForPromString() when it has one (prom-client's own
// Histogram does, reading its private buckets); ours reads NodeStats through get().
Object.defineProperty(SnapshotHistogram.prototype, 'getForPromString', {
  value(this: SnapshotHistogram<string>) {
    return this.get();
  },
});

/** The registry of one node's metrics. `metrics()` renders them; `contentType` is the reply's type. */
export function nodeMetrics(sources: MetricSources): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ node: String(sources.nodeId) });
  const registers = [registry];
  const { stats } = sources;

  new Counter({
    name: 'walrus_requests_total',
    help: 'Client requests answered, by command and result (ok, empty, or the error code).',
    labelNames: ['command', 'result'],
    registers,
    collect() {
      this.reset();
      for (const [command, counted] of stats.byCommand()) {
        for (const [result, count] of counted.results) this.inc({ command, result }, count);
      }
    },
  });
  new SnapshotHistogram(
    {
      name: 'walrus_request_duration_seconds',
      help: 'Time from a parsed client request to its reply being ready, by command.',
      labelNames: ['command'],
      registers,
    },
    function* () {
      for (const [command, counted] of stats.byCommand()) yield [{ command }, counted.latency] as const;
    },
  );
  const counter = (name: string, help: string, value: () => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  };
  counter(
    'walrus_appended_entries_total',
    'Entries appended to segments this node leads, once the engine acknowledged them.',
    () => stats.appendedEntries,
  );
  counter('walrus_appended_bytes_total', 'Payload bytes of those entries.', () => stats.appendedBytes);
  counter('walrus_read_entries_total', "Entries this node's clients read (GET, MGET, FETCH, MFETCH).", () => stats.readEntries);
  counter('walrus_read_bytes_total', 'Payload bytes of those entries.', () => stats.readBytes);
  new Counter({
    name: 'walrus_peer_requests_total',
    help: 'Requests this node sent to other nodes, by op (append: forwarded PUTs; take, settle: GETs of segments held elsewhere; read: FETCHes; replicate: replication).',
    labelNames: ['op'],
    registers,
    collect() {
      this.reset();
      for (const [op, count] of stats.peerRequests) this.inc({ op }, count);
    },
  });
  new SnapshotHistogram(
    {
      name: 'walrus_sync_duration_seconds',
      help: "Duration of each sync (fdatasync) of the engine's data files.",
      labelNames: [],
      registers,
    },
    function* () {
      yield [{}, stats.syncs] as const;
    },
  );

  const gauge = (name: string, help: string, value: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  };
  gauge('walrus_client_connections', 'Client connections being served.', sources.connections);
  gauge('walrus_topics', 'Topics in the metadata.', () => sources.metadata.topics().length);
  new Gauge({
    name: 'walrus_segments',
    help: 'Segments in the metadata, by state (open: one per topic; sealed: rolled over).',
    labelNames: ['state'],
    registers,
    collect() {
      let all = 0;
      const { metadata } = sources;
      for (const topic of metadata.topics()) all += metadata.topic(topic)?.currentSegment ?? 0;
      const open = metadata.topics().length;
      this.set({ state: 'open' }, open);
      this.set({ state: 'sealed' }, all - open);
    },
  });
  gauge(
    'walrus_segments_led',
    'Open segments this node leads (takes the writes of).',
    () => sources.metadata.ownedOpenSegments(sources.nodeId).length,
  );
  // Both gauges are filled from one look at the directory per scrape (the registry collects
  // metrics concurrently, so the second must wait for the same look, not a stale one).
  let disk: { readonly at: number; readonly usage: Promise<DiskUsage> } | undefined;
  const usage = (): Promise<DiskUsage> => {
    const now = Date.now();
    if (disk === undefined || now - disk.at > DISK_LOOK_MS) disk = { at: now, usage: sources.diskUsage() };
    return disk.usage;
  };
  new Gauge({
    name: 'walrus_disk_bytes',
    help: "Bytes the file system has allocated to this node's data files.",
    registers,
    async collect() {
      this.set((await usage()).bytes);
    },
  });
  new Gauge({
    name: 'walrus_data_files',
    help: "Files in this node's data directory.",
    registers,
    async collect() {
      this.set((await usage()).files);
    },
  });

  new Gauge({
    name: 'walrus_consensus_role',
    help: "1 for this node's consensus role (leader, follower, candidate, preCandidate), 0 for the others.",
    labelNames: ['role'],
    registers,
    collect() {
      const { role } = sources.consensus.status();
      for (const each of ROLES) this.set({ role: each }, each === role ? 1 : 0);
    },
  });
  gauge('walrus_consensus_term', 'The current consensus term.', () => sources.consensus.status().term);
  gauge('walrus_consensus_leader', 'The id of the leader this node knows (0: none).', () => sources.consensus.status().leader);
  gauge('walrus_consensus_commit_index', 'The highest metadata log index known committed.', () => sources.consensus.status().commitIndex);
  gauge('walrus_consensus_applied_index', 'The highest metadata log index applied here.', () => sources.consensus.status().appliedIndex);
  gauge('walrus_nodes_up', 'Voters known to be up, this node included.', () => sources.consensus.liveMembers().length);
  gauge('walrus_nodes', 'Voters in the cluster.', () => sources.consensus.status().voters.length);

  const follower = (name: string, help: string, value: (progress: FollowerProgress) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['topic', 'segment', 'follower'],
      registers,
      collect() {
        this.reset();
        for (const progress of sources.followers()) {
          this.set({ topic: progress.topic, segment: String(progress.segment), follower: String(progress.follower) }, value(progress));
        }
      },
    });
  };
  follower(
    'walrus_replication_lag_entries',
    'On the leader of a replicated open segment: entries it holds that a follower has not confirmed.',
    (progress) => Math.max(0, progress.leader - progress.held),
  );
  follower(
    'walrus_replication_follower_entries',
    'Entries a follower of a replicated open segment has confirmed holding.',
    (progress) => progress.held,
  );

  new Gauge({
    name: 'walrus_build_info',
    help: 'Always 1; the version label is the running Walrus.',
    labelNames: ['version'],
    registers,
    collect() {
      this.set({ version: sources.version }, 1);
    },
  });
  // process_* and nodejs_* (CPU, memory, event loop delay, GC): prom-client's standard set.
  collectDefaultMetrics({ register: registry });
  return registry;
}
