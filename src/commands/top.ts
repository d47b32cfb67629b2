// `walrus-cli top`: the status page's figures in a terminal. Every --interval it reads a node's
// admin endpoint (/api/cluster and /metrics, docs/operations.md) and draws the cluster: this
// node's rates, every node with its state and role, every topic with its segments, leader,
// entries and followers' lag. On a terminal each frame replaces the last; otherwise (a pipe, a
// file) frames follow one another, each under a time stamp.

import type { ClusterView } from '../node/cluster-view.js';

/** The counters the rates come from (summed over their labels). */
const RATE_COUNTERS = {
  requests: 'walrus_requests_total',
  appended: 'walrus_appended_entries_total',
  read: 'walrus_read_entries_total',
  appendedBytes: 'walrus_appended_bytes_total',
} as const;

export type Rates = Readonly<Record<keyof typeof RATE_COUNTERS, number>>;

/** One sample of the counters, and when it was taken. */
export interface CounterSample {
  readonly at: number;
  readonly sums: ReadonlyMap<string, number>;
}

/** Sums every sample of each metric name in a Prometheus text exposition (comments skipped). */
export function counterSums(text: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const nameEnd = line.search(/[{ ]/);
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (nameEnd <= 0 || !Number.isFinite(value)) continue;
    const name = line.slice(0, nameEnd);
    sums.set(name, (sums.get(name) ?? 0) + value);
  }
  return sums;
}

/** Per-second rates between two samples; undefined before there are two, or when a counter went back (a restart). */
export function ratesBetween(before: CounterSample | undefined, after: CounterSample): Rates | undefined {
  if (before === undefined) return undefined;
  const seconds = (after.at - before.at) / 1000;
  if (seconds <= 0) return undefined;
  const rates: Record<string, number> = {};
  for (const [key, name] of Object.entries(RATE_COUNTERS)) {
    const delta = (after.sums.get(name) ?? 0) - (before.sums.get(name) ?? 0);
    if (delta < 0) return undefined;
    rates[key] = delta / seconds;
  }
  return rates as Rates;
}

const count = (value: number): string => Math.round(value).toLocaleString('en-US');

/** Left-aligned columns, two spaces apart. */
function columns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [index, cell] of row.entries()) widths[index] = Math.max(widths[index] ?? 0, cell.length);
  }
  return rows.map((row) =>
    row
      .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

/** One frame of `top`: the lines to draw for `view`, with the rates since the last frame. */
export function renderTop(view: ClusterView, rates: Rates | undefined, connections: number | undefined): string[] {
  const { consensus, counts } = view;
  const leader = consensus.leader === null ? 'no leader known' : `leader ${consensus.leader}`;
  const lines = [
    `Walrus ${view.version} · node ${view.node.id} (${consensus.role}, term ${consensus.term}) · ${counts.nodesUp} of ${counts.nodes} nodes up · ${leader} · ` +
      `${counts.topics} topic(s), ${counts.segments} segment(s) · ${view.time}`,
  ];
  const rateText =
    rates === undefined
      ? 'rates: after the next refresh'
      : `${count(rates.requests)} req/s · ${count(rates.appended)} appended/s · ${count(rates.read)} read/s · ${(rates.appendedBytes / 1e6).toFixed(2)} MB/s in`;
  lines.push(`this node: ${rateText}${connections === undefined ? '' : ` · ${connections} client connection(s)`}`);
  if (view.node.storageOutage !== null) lines.push(`STORAGE OUTAGE on this node: ${view.node.storageOutage}`);
  lines.push('');
  lines.push(
    ...columns([
      ['NODE', 'STATE', 'ROLE', 'CLIENT', 'INTERNAL'],
      ...view.nodes.map((node) => [
        `${node.id}${node.self ? '*' : ''}`,
        node.up ? 'up' : 'DOWN',
        node.role,
        node.clientAddress ?? '-',
        node.raftAddress ?? '-',
      ]),
    ]),
  );
  lines.push('');
  if (view.topics.length === 0) {
    lines.push('no topics yet');
    return lines;
  }
  lines.push(
    ...columns([
      ['TOPIC', 'SEGMENTS', 'LEADER', 'REPLICAS', 'ENTRIES', 'FOLLOWER LAG'],
      ...view.topics.map((topic) => {
        const open = topic.segments.find((segment) => !segment.sealed);
        const lag = open?.followers?.map((follower) => `${follower.node}:${follower.lag}`).join(' ') ?? '-';
        return [
          topic.name,
          String(topic.currentSegment),
          String(topic.leader),
          open?.replicas.join(',') ?? '-',
          `${count(topic.entries)}${topic.entriesExact ? '' : '+'}`,
          lag,
        ];
      }),
    ]),
  );
  return lines;
}

export interface TopOptions {
  /** `http://host:port` of the admin endpoint. */
  readonly base: string;
  readonly label: string;
  readonly intervalMs: number;
  /** Frames to draw before exiting; undefined: until interrupted. */
  readonly count: number | undefined;
  readonly timeoutMs: number;
  /** Replace each frame (a terminal) rather than append it. */
  readonly redraw: boolean;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Resolves when the user interrupts (Ctrl-C); undefined: never. */
  readonly interrupted?: Promise<void>;
}

/** Runs `top`; resolves with the exit code: 0, or 1 when no frame could be drawn at all. */
export async function runTop(options: TopOptions): Promise<number> {
  let previous: CounterSample | undefined;
  let drawn = 0;
  let stop = false;
  void options.interrupted?.then(() => {
    stop = true;
  });
  for (let frame = 0; options.count === undefined || frame < options.count; frame++) {
    if (frame > 0) {
      await Promise.race([
        new Promise((resolve) => setTimeout(resolve, options.intervalMs)),
        options.interrupted ?? new Promise(() => undefined),
      ]);
    }
    if (stop) break;
    try {
      const signal = AbortSignal.timeout(options.timeoutMs);
      const [clusterReply, metricsReply] = await Promise.all([
        fetch(`${options.base}/api/cluster`, { signal }),
        fetch(`${options.base}/metrics`, { signal }),
      ]);
      if (!clusterReply.ok) throw new Error(`/api/cluster answered HTTP ${clusterReply.status}`);
      const view = (await clusterReply.json()) as ClusterView;
      const sums = metricsReply.ok ? counterSums(await metricsReply.text()) : new Map<string, number>();
      const sample = { at: Date.now(), sums };
      const rates = ratesBetween(previous, sample);
      previous = sample;
      const lines = renderTop(view, rates, sums.get('walrus_client_connections'));
      if (options.redraw) options.out(`\x1b[H\x1b[2J${lines.join('\n')}`);
      else options.out(`${drawn > 0 ? '\n' : ''}${lines.join('\n')}`);
      drawn += 1;
    } catch (error) {
      const reason = error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error);
      options.err(
        `walrus-cli: cannot read the admin endpoint at ${options.label}: ${reason} (is the node started with --admin-port? pass its address with --admin)`,
      );
    }
  }
  return drawn > 0 ? 0 : 1;
}
