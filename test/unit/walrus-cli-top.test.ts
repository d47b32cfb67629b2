// `walrus-cli top` against a fake admin endpoint: what a frame shows (nodes up and DOWN, the
// answering node marked, topics with their segments, leader, replicas, entries and lag), rates
// from the counters between two refreshes, and the failures (nothing listening: exit 1 with the
// reason; a bad WALRUS_ADMIN_ADDR: exit 2).

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { counterSums, ratesBetween, renderTop } from '../../src/commands/top.js';
import { type CliIo, main } from '../../src/commands/walrus-cli.js';
import type { ClusterView } from '../../src/node/cluster-view.js';

const VIEW: ClusterView = {
  version: '9.9.9',
  time: '2026-12-06T12:00:00.000Z',
  node: { id: 2, clientAddress: '127.0.0.1:9092', adminAddress: '127.0.0.1:9192', uptimeSeconds: 5, storageOutage: null },
  consensus: { role: 'follower', term: 4, leader: 1, commitIndex: 9, appliedIndex: 9, voters: [1, 2, 3], learners: [] },
  nodes: [
    { id: 1, clientAddress: '127.0.0.1:9091', raftAddress: '127.0.0.1:6001', role: 'leader', up: true, self: false },
    { id: 2, clientAddress: '127.0.0.1:9092', raftAddress: '127.0.0.1:6002', role: 'follower', up: true, self: true },
    { id: 3, clientAddress: '127.0.0.1:9093', raftAddress: '127.0.0.1:6003', role: 'follower', up: false, self: false },
  ],
  topics: [
    {
      name: 'orders',
      currentSegment: 3,
      leader: 2,
      entries: 25,
      entriesExact: true,
      segmentsListed: 3,
      segments: [
        {
          segment: 3,
          sealed: false,
          leader: 2,
          replicas: [2, 3, 1],
          entries: 5,
          followers: [
            { node: 3, held: 1, lag: 4 },
            { node: 1, held: 5, lag: 0 },
          ],
        },
        { segment: 2, sealed: true, leader: 1, replicas: [1, 2, 3], entries: 10 },
        { segment: 1, sealed: true, leader: 3, replicas: [3, 1, 2], entries: 10 },
      ],
    },
  ],
  counts: { nodes: 3, nodesUp: 2, topics: 1, segments: 3, openSegments: 1, sealedSegments: 2, ledHere: 1 },
};

function metricsText(requests: number): string {
  return [
    '# HELP walrus_requests_total x',
    '# TYPE walrus_requests_total counter',
    `walrus_requests_total{command="PUT",result="ok",node="2"} ${requests}`,
    `walrus_requests_total{command="GET",result="empty",node="2"} ${requests}`,
    '# TYPE walrus_appended_entries_total counter',
    `walrus_appended_entries_total{node="2"} ${requests * 10}`,
    '# TYPE walrus_client_connections gauge',
    'walrus_client_connections{node="2"} 7',
    '',
  ].join('\n');
}

async function fakeAdmin(t: { teardown(fn: () => void): void }): Promise<{ addr: string; scrapes: () => number }> {
  let scrapes = 0;
  const server: Server = createServer((request, response) => {
    if (request.url === '/api/cluster') {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(VIEW));
    } else if (request.url === '/metrics') {
      scrapes += 1;
      response.end(metricsText(scrapes * 1000));
    } else {
      response.statusCode = 404;
      response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  return { addr: `127.0.0.1:${(server.address() as AddressInfo).port}`, scrapes: () => scrapes };
}

async function run(argv: readonly string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (text) => out.push(text), err: (text) => err.push(text), env, exit: () => undefined };
  const code = await main(argv, io);
  return { code, out, err: err.join('\n') };
}

test('a frame shows every node (DOWN ones too, the answering one starred) and each topic with its open segment', (t) => {
  const lines = renderTop(VIEW, undefined, 7);
  t.is(
    lines[0],
    'Walrus 9.9.9 · node 2 (follower, term 4) · 2 of 3 nodes up · leader 1 · 1 topic(s), 3 segment(s) · 2026-12-06T12:00:00.000Z',
  );
  t.is(lines[1], 'this node: rates: after the next refresh · 7 client connection(s)');
  t.true(lines.includes('NODE  STATE  ROLE      CLIENT          INTERNAL'));
  t.true(lines.includes('2*    up     follower  127.0.0.1:9092  127.0.0.1:6002'));
  t.true(lines.includes('3     DOWN   follower  127.0.0.1:9093  127.0.0.1:6003'));
  t.true(lines.includes('TOPIC   SEGMENTS  LEADER  REPLICAS  ENTRIES  FOLLOWER LAG'));
  t.true(lines.includes('orders  3         2       2,3,1     25       3:4 1:0'));
  t.deepEqual(renderTop({ ...VIEW, topics: [] }, undefined, undefined).slice(-1), ['no topics yet']);
});

test('rates are the counters summed over their labels, per second between two samples; none after a counter went back', (t) => {
  const first = { at: 1_000, sums: counterSums(metricsText(1000)) };
  const second = { at: 3_000, sums: counterSums(metricsText(3000)) };
  t.is(first.sums.get('walrus_requests_total'), 2000);
  t.deepEqual(ratesBetween(first, second), { requests: 2000, appended: 10_000, read: 0, appendedBytes: 0 });
  t.is(ratesBetween(undefined, second), undefined);
  t.is(ratesBetween(second, { at: 4_000, sums: counterSums(metricsText(10)) }), undefined, 'a restarted node');
  t.regex(
    renderTop(VIEW, { requests: 2000, appended: 10_000, read: 0, appendedBytes: 2_500_000 }, 7)[1] ?? '',
    /^this node: 2,000 req\/s · 10,000 appended\/s · 0 read\/s · 2\.50 MB\/s in/,
  );
});

test('top --count 2 reads the admin endpoint twice and prints two frames, the second with rates', async (t) => {
  const admin = await fakeAdmin(t);
  const result = await run(['top', '--admin', admin.addr, '--count', '2', '--interval', '50']);
  t.is(result.code, 0, result.err);
  t.is(admin.scrapes(), 2);
  t.is(result.out.length, 2, 'one write per frame (not a terminal: frames follow one another)');
  t.regex(result.out[0] ?? '', /rates: after the next refresh/);
  t.regex(result.out[1] ?? '', /this node: [\d,]+ req\/s · [\d,]+ appended\/s/);
  t.false(result.out.join('').includes('\u001b['), 'no screen control codes outside a terminal');
});

test('top with nothing at the address exits 1 with the reason; a bad WALRUS_ADMIN_ADDR is bad usage', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const refused = await run(['top', '--count', '1'], { WALRUS_ADMIN_ADDR: `127.0.0.1:${port}` });
  t.is(refused.code, 1);
  t.regex(refused.err, new RegExp(`cannot read the admin endpoint at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*--admin-port`));
  const bad = await run(['top', '--count', '1'], { WALRUS_ADMIN_ADDR: 'nowhere' });
  t.is(bad.code, 2);
  t.regex(bad.err, /WALRUS_ADMIN_ADDR is not an address/);
});
