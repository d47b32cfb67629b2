// What a node counts while it serves, for the admin endpoint's /metrics (src/plugins/admin/):
// client requests by command and result with their latency, entries and bytes appended and read,
// requests sent to other nodes (forwarded PUTs, remote reads, replication), and the engine's syncs. Plain numbers and fixed-bucket
// histograms, bumped on the request path at the cost of a few additions each; the admin plugin
// turns them into Prometheus metrics only when it is scraped.

/** Upper bounds of the request latency buckets, in seconds (the last bucket, +Inf, is implicit). */
export const REQUEST_SECONDS_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Upper bounds of the sync latency buckets, in seconds. */
export const SYNC_SECONDS_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

/** A histogram of fixed buckets: counts per bucket (not cumulative), their sum and count. */
export class FixedHistogram {
  readonly bounds: readonly number[];
  /** counts[i]: observations ≤ bounds[i] and > bounds[i-1]; the last one counts those above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const { bounds } = this;
    let index = 0;
    while (index < bounds.length && value > (bounds[index] as number)) index += 1;
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    this.sum += value;
    this.count += 1;
  }

  /** The cumulative count of each bucket (Prometheus's `le` buckets), +Inf last. */
  cumulative(): number[] {
    const out: number[] = [];
    let total = 0;
    for (const value of this.counts) {
      total += value;
      out.push(total);
    }
    return out;
  }
}

/** The request counts and latency of one command. */
export interface CommandStats {
  readonly latency: FixedHistogram;
  /** By result: `ok`, `empty`, or the error code (`NOT_LEADER_FOR_PARTITION`, ...). */
  readonly results: Map<string, number>;
}

/** The commands requests are counted under; a request that does not parse counts as `INVALID`. */
export const COUNTED_COMMANDS = ['REGISTER', 'PUT', 'MPUT', 'GET', 'MGET', 'FETCH', 'MFETCH', 'STATE', 'METRICS', 'INVALID'] as const;
export type CountedCommand = (typeof COUNTED_COMMANDS)[number];

export class NodeStats {
  /** When this node started counting (epoch milliseconds). */
  readonly startedAt = Date.now();
  private readonly commands = new Map<string, CommandStats>();
  /** Entries appended to segments this node leads (its own clients' and forwarded ones), once acknowledged by the engine. */
  appendedEntries = 0;
  appendedBytes = 0;
  /** Entries this node's clients read (GET and MGET once the reply is written; FETCH and MFETCH as answered). */
  readEntries = 0;
  readBytes = 0;
  /**
   * Requests this node sent to other nodes, by op (docs/operations.md): `append` carries forwarded
   * PUTs and MPUTs, `take` and `settle` GETs of segments held elsewhere, `read` FETCHes, and the
   * rest replication, joins and hand-offs.
   */
  readonly peerRequests = new Map<string, number>();
  /** Syncs of the engine's data files (fdatasync) and how long they took. */
  readonly syncs = new FixedHistogram(SYNC_SECONDS_BUCKETS);

  constructor() {
    for (const command of COUNTED_COMMANDS) {
      this.commands.set(command, { latency: new FixedHistogram(REQUEST_SECONDS_BUCKETS), results: new Map() });
    }
  }

  /** One client request answered: its command, its result (`ok`, `empty` or an error code) and how long it took. */
  request(command: string, result: string, seconds: number): void {
    const stats = this.commands.get(command) ?? (this.commands.get('INVALID') as CommandStats);
    stats.latency.observe(seconds);
    stats.results.set(result, (stats.results.get(result) ?? 0) + 1);
  }

  appended(entries: number, bytes: number): void {
    this.appendedEntries += entries;
    this.appendedBytes += bytes;
  }

  read(entries: number, bytes: number): void {
    this.readEntries += entries;
    this.readBytes += bytes;
  }

  peerRequest(op: string): void {
    this.peerRequests.set(op, (this.peerRequests.get(op) ?? 0) + 1);
  }

  synced(seconds: number): void {
    this.syncs.observe(seconds);
  }

  /** Every command's counts, in COUNTED_COMMANDS order. */
  byCommand(): ReadonlyMap<string, CommandStats> {
    return this.commands;
  }

  /** Client requests answered so far, over every command and result. */
  requestsTotal(): number {
    let total = 0;
    for (const stats of this.commands.values()) total += stats.latency.count;
    return total;
  }
}
