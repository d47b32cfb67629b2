// What the node's counting costs, side by side in one run: NodeStats.request (what the client
// protocol server does for every request), prom-client's own labelled Histogram.observe and
// Counter.inc (what counting straight into prom-client would cost instead), and rendering
// /metrics for a node with 20 topics (what a scrape costs the node, prom-client's process
// metrics included).
//
//   npm run bench -- metrics          # this suite only

import Benchmark from 'benchmark';
import { Counter, Histogram, Registry } from 'prom-client';
import type { ConsensusStatus } from '../src/contracts/consensus.js';
import { encodeCommand, MetadataStateMachine } from '../src/node/metadata.js';
import { NodeStats, REQUEST_SECONDS_BUCKETS } from '../src/node/node-stats.js';
import { nodeMetrics } from '../src/plugins/admin/metrics.js';

const STATUS: ConsensusStatus = {
  id: 1,
  role: 'leader',
  term: 3,
  leader: 1,
  commitIndex: 40,
  appliedIndex: 40,
  voters: [1, 2, 3],
  learners: [],
};

function scrapedNode(): Registry {
  const stats = new NodeStats();
  const metadata = new MetadataStateMachine();
  for (let index = 0; index < 20; index++) {
    metadata.apply(encodeCommand({ kind: 'CreateTopic', topic: `topic-${index}`, initialLeader: 1 + (index % 3) }), index + 1);
  }
  for (const command of ['PUT', 'GET', 'MPUT', 'MGET', 'FETCH', 'STATE']) {
    for (let index = 0; index < 100; index++) stats.request(command, index % 10 === 0 ? 'empty' : 'ok', index * 1e-5);
  }
  return nodeMetrics({
    nodeId: 1,
    version: 'bench',
    stats,
    consensus: { status: () => STATUS, liveMembers: () => [1, 2, 3] },
    metadata,
    followers: () => [
      { topic: 'topic-0', segment: 1, follower: 2, held: 90, leader: 100 },
      { topic: 'topic-0', segment: 1, follower: 3, held: 100, leader: 100 },
    ],
    connections: () => 16,
    diskUsage: async () => ({ files: 3, bytes: 3 << 20, apparentBytes: 192 << 20 }),
  });
}

export function metricsSuite(): Benchmark.Suite {
  const stats = new NodeStats();
  let tick = 0;
  const registry = new Registry();
  const histogram = new Histogram({
    name: 'h',
    help: 'h',
    labelNames: ['command'],
    buckets: [...REQUEST_SECONDS_BUCKETS],
    registers: [registry],
  }).labels('PUT');
  const counter = new Counter({ name: 'c', help: 'c', labelNames: ['command', 'result'], registers: [registry] }).labels('PUT', 'ok');
  const scraped = scrapedNode();
  return new Benchmark.Suite('metrics')
    .add('NodeStats.request (counted per request)', () => {
      tick = (tick + 1) % 100;
      stats.request('PUT', 'ok', tick * 1e-5);
    })
    .add('prom-client Histogram.observe + Counter.inc, labelled', () => {
      tick = (tick + 1) % 100;
      histogram.observe(tick * 1e-5);
      counter.inc();
    })
    .add('render /metrics: 20 topics, prom-client process metrics', {
      defer: true,
      fn: (deferred: Benchmark.Deferred) => {
        scraped.metrics().then(() => deferred.resolve());
      },
    });
}
