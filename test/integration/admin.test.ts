// The admin endpoint of a real `walrus start` process (docs/operations.md, "The admin endpoint"):
// /metrics as a Prometheus scraper parses it, with counters that follow the requests a client
// makes; /healthz, /readyz and /api/cluster; and requests that break the rules (unknown paths,
// other methods, oversized headers, a slowloris) answered or cut off without touching the client
// port.

import { connect, type Socket } from 'node:net';
import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { main as runCli } from '../../src/commands/walrus-cli.js';
import { withTempDir } from '../helpers/kernel.js';
import { writeNodeConfig } from '../helpers/node-config.js';
import { type Running, startWalrus } from '../helpers/process.js';
import { adminGet, parsePrometheus, sampleValue } from '../helpers/prometheus.js';

interface AdminNode {
  readonly node: Running;
  readonly client: WalrusClient;
  readonly clientPort: number;
  readonly adminPort: number;
}

/** A node with its admin endpoint on a free port, given by `--admin-port 0` or WALRUS_ADMIN_PORT=0. */
async function startNode(dir: string, how: 'flag' | 'env'): Promise<AdminNode> {
  const args = ['start', '--config', await writeNodeConfig(dir), ...(how === 'flag' ? ['--admin-port', '0'] : [])];
  const node = startWalrus(args, { cwd: dir, lifetimeMs: 90_000, ...(how === 'env' ? { env: { WALRUS_ADMIN_PORT: '0' } } : {}) });
  const listening = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
  const admin = JSON.parse(await node.waitForLine(/"msg":"admin endpoint listening"/)) as { port: number };
  await node.waitForLine(/"msg":"ready"/);
  const client = new WalrusClient({ host: '127.0.0.1', port: listening.port, timeoutMs: 10_000 });
  return { node, client, clientPort: listening.port, adminPort: admin.port };
}

async function stop({ node, client }: AdminNode): Promise<void> {
  await client.close().catch(() => undefined);
  if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
  await node.exited;
}

async function scrape(port: number) {
  const reply = await adminGet(port, '/metrics');
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}: ${reply.body}`);
  return { families: parsePrometheus(reply.body), type: reply.type };
}

test.serial('/metrics parses as Prometheus text, and its counters move as PUT, MPUT, GET and FETCH run', async (t) => {
  await withTempDir(async (dir) => {
    const running = await startNode(dir, 'flag');
    const { client, adminPort } = running;
    try {
      await client.register('orders');
      const before = await scrape(adminPort);
      t.regex(before.type, /^text\/plain; version=0\.0\.4/);
      const count = (name: string, labels: Record<string, string> = {}) => sampleValue(before.families, name, labels);
      for (let index = 0; index < 5; index++) await client.put('orders', `entry-${index}`); // 7 bytes each
      t.is(await client.mput('orders', ['a', 'bb', 'ccc']), 3);
      t.is(await client.get('orders'), 'entry-0');
      t.is(await client.get('orders'), 'entry-1');
      t.deepEqual(await client.mget('orders', 2), ['entry-2', 'entry-3']);
      t.truthy(await client.fetch('orders', 1, 0));
      await t.throwsAsync(client.state('no-such-topic'));
      const after = await scrape(adminPort);
      const delta = (name: string, labels: Record<string, string> = {}) => sampleValue(after.families, name, labels) - count(name, labels);

      t.is(delta('walrus_requests_total', { command: 'PUT', result: 'ok' }), 5);
      t.is(delta('walrus_requests_total', { command: 'MPUT', result: 'ok' }), 1);
      t.is(delta('walrus_requests_total', { command: 'GET', result: 'ok' }), 2);
      t.is(delta('walrus_requests_total', { command: 'MGET', result: 'ok' }), 1);
      t.is(delta('walrus_requests_total', { command: 'FETCH', result: 'ok' }), 1);
      t.is(delta('walrus_requests_total', { command: 'STATE', result: 'UNKNOWN_TOPIC' }), 1);
      t.is(delta('walrus_request_duration_seconds', { command: 'PUT' }), 5, 'one latency observation per PUT');
      t.is(delta('walrus_appended_entries_total'), 8);
      t.is(delta('walrus_appended_bytes_total'), 5 * 7 + 6);
      t.is(delta('walrus_read_entries_total'), 5);
      t.is(delta('walrus_read_bytes_total'), 5 * 7);
      // fsync: each syncs every acknowledged write.
      t.true(delta('walrus_sync_duration_seconds') >= 1);

      t.is(sampleValue(after.families, 'walrus_consensus_role', { role: 'leader' }), 1);
      t.is(sampleValue(after.families, 'walrus_consensus_role', { role: 'follower' }), 0);
      t.true(sampleValue(after.families, 'walrus_consensus_applied_index') >= 2);
      t.is(sampleValue(after.families, 'walrus_topics'), 1);
      t.is(sampleValue(after.families, 'walrus_segments', { state: 'open' }), 1);
      t.true(sampleValue(after.families, 'walrus_client_connections') >= 1, 'the test client is connected');
      t.true(sampleValue(after.families, 'walrus_disk_bytes') > 0);
      t.is(after.families.get('walrus_requests_total')?.type, 'counter');
      t.is(after.families.get('walrus_request_duration_seconds')?.type, 'histogram');
      t.is(after.families.get('walrus_build_info')?.samples[0]?.labels.node, '1');
      t.true(after.families.has('process_cpu_seconds_total') && after.families.has('nodejs_eventloop_lag_seconds'));
    } finally {
      await stop(running);
    }
  });
});

test.serial('/healthz, /readyz and /api/cluster describe the node; a topic past two rollovers shows its three segments', async (t) => {
  await withTempDir(async (dir) => {
    const running = await startNode(dir, 'env');
    const { client, adminPort, clientPort } = running;
    try {
      t.deepEqual(await adminGet(adminPort, '/healthz'), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
      const ready = await adminGet(adminPort, '/readyz');
      t.is(ready.status, 200);
      t.is(ready.body, 'ready\n');
      await client.register('events');
      for (let index = 0; index < 25; index++) await client.put('events', `e${index}`);
      // Segments of 10: the monitor seals two (it looks every 200 ms), and the 25th PUT lands in the third.
      let view: {
        node: { id: number; clientAddress: string; adminAddress: string };
        consensus: { role: string; leader: number };
        nodes: { id: number; up: boolean; role: string; self: boolean }[];
        topics: {
          name: string;
          currentSegment: number;
          entries: number;
          entriesExact: boolean;
          segments: { segment: number; sealed: boolean; entries: number; leader: number }[];
        }[];
        counts: { topics: number; segments: number; sealedSegments: number };
      };
      const deadline = Date.now() + 10_000;
      for (;;) {
        const reply = await adminGet(adminPort, '/api/cluster');
        t.is(reply.status, 200);
        t.is(reply.type, 'application/json; charset=utf-8');
        view = JSON.parse(reply.body);
        if (view.topics[0]?.currentSegment === 3 || Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      t.is(view.node.id, 1);
      t.is(view.node.clientAddress, `127.0.0.1:${clientPort}`);
      t.is(view.node.adminAddress, `127.0.0.1:${adminPort}`);
      t.like(view.consensus, { role: 'leader', leader: 1 });
      t.deepEqual(
        view.nodes.map(({ id, up, role, self }) => ({ id, up, role, self })),
        [{ id: 1, up: true, role: 'leader', self: true }],
      );
      t.like(view.counts, { topics: 1, segments: 3, sealedSegments: 2 });
      const topic = view.topics[0];
      t.like(topic, { name: 'events', currentSegment: 3, entries: 25, entriesExact: true });
      t.deepEqual(
        topic?.segments.map(({ segment, sealed, entries, leader }) => ({ segment, sealed, entries, leader })),
        [
          { segment: 3, sealed: false, entries: 5, leader: 1 },
          { segment: 2, sealed: true, entries: 10, leader: 1 },
          { segment: 1, sealed: true, entries: 10, leader: 1 },
        ],
      );
      // walrus-cli top reads the same endpoint.
      const out: string[] = [];
      const top = await runCli(['top', '--admin', `127.0.0.1:${adminPort}`, '--count', '1'], {
        out: (text) => out.push(text),
        err: (text) => out.push(text),
        env: {},
        exit: () => undefined,
      });
      t.is(top, 0, out.join('\n'));
      t.regex(out[0] ?? '', /^Walrus \S+ · node 1 \(leader, term \d+\) · 1 of 1 nodes up/);
      t.regex(out[0] ?? '', /\nevents +3 +1 +1 +25 +-$/m);
      const page = await adminGet(adminPort, '/');
      t.is(page.status, 200);
      t.regex(page.type, /^text\/html/);
      t.regex(page.body, /<script src="\/status\.js">/);
      t.regex((await adminGet(adminPort, '/status.js')).type, /^text\/javascript/);
    } finally {
      await stop(running);
    }
  });
});

/** Sends `text` on a new connection to `port` and resolves with everything the server sent before it closed. */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      got += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
    socket.write(text);
  });
}

test.serial('bad admin requests get 404, 405, 431 or are cut off (slowloris) while the client port keeps serving', async (t) => {
  await withTempDir(async (dir) => {
    const running = await startNode(dir, 'flag');
    const { client, adminPort } = running;
    const slow: Socket[] = [];
    try {
      const missing = await adminGet(adminPort, '/nope');
      t.is(missing.status, 404);
      t.regex(missing.body, /no such page: \/nope/);
      const post = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { method: 'POST', body: 'x' });
      t.is(post.status, 405);
      t.is(post.headers.get('allow'), 'GET, HEAD');
      const huge = await rawExchange(adminPort, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`);
      t.regex(huge, /^HTTP\/1\.1 431 /);
      const garbage = await rawExchange(adminPort, 'NOT HTTP AT ALL\r\n\r\n');
      t.regex(garbage, /^HTTP\/1\.1 400 /);

      // A slowloris: 20 connections that each trickle a header line every 300 ms and never finish.
      const closedAt: number[] = [];
      const startedAt = Date.now();
      for (let index = 0; index < 20; index++) {
        const socket = connect(adminPort, '127.0.0.1');
        socket.on('error', () => undefined);
        socket.on('close', () => closedAt.push(Date.now() - startedAt));
        socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
        slow.push(socket);
      }
      const trickle = setInterval(() => {
        for (const socket of slow) if (!socket.destroyed) socket.write('X-Slow: 1\r\n');
      }, 300);
      // Meanwhile the client port serves as usual.
      await client.register('busy');
      let answered = 0;
      for (let index = 0; index < 200; index++) {
        await client.put('busy', `p${index}`);
        t.is(await client.get('busy'), `p${index}`);
        answered += 1;
      }
      t.is(answered, 200);
      // The admin server cuts each one off once its headers are overdue (5 s, checked every second).
      const deadline = Date.now() + 15_000;
      while (closedAt.length < slow.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      clearInterval(trickle);
      t.is(closedAt.length, slow.length, 'every slowloris connection was closed by the server');
      t.true(Math.max(...closedAt) < 15_000);
      // And the endpoint still answers afterwards.
      t.is((await adminGet(adminPort, '/healthz')).status, 200);
      t.is((await adminGet(adminPort, '/metrics')).status, 200);
    } finally {
      for (const socket of slow) socket.destroy();
      await stop(running);
    }
  });
});
