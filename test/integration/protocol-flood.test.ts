// A real `walrus start` under a write flood: 200 connections start writing 60 KB PUTs as fast as
// the node takes them while a new client connects, again and again, and must get its first reply
// within 2 s each time. A liveness bound, not a speed figure: bench/server.bench.ts reports the
// latency itself.
//
// Why it failed before (issue 12): Node accepts one queued connection per turn of its event loop
// (libuv >= 1.45), and a flood made every turn ~100 ms long, so the 200 flooding connections
// queued in the listen backlog took ~16 s to be accepted and the first probe, queued behind them,
// waited 12-17 s. The node-wide bound on request bytes per turn (serverFrameBytesPerTurnTotal)
// keeps turns short, and the probe's small first request is started even when the turn's bytes
// are used.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { firstReply, startFlood } from '../helpers/flood.js';
import { withTempDir } from '../helpers/kernel.js';
import { startWalrus } from '../helpers/process.js';

const FLOOD_CONNECTIONS = 200;
const PAYLOAD_BYTES = 60 * 1024;
const PROBES = 8;
/** PUTs each flooding connection keeps in flight. */
const FLOOD_DEPTH = 'unbounded';
const SERVED_WITHIN_MS = 2000;
/** Between probes, so that they sample a flood that has run for a while. */
const PROBE_PAUSE_MS = 500;

test.serial('a new client is served within 2 s while 200 connections flood 60 KB PUTs', async (t) => {
  await withTempDir(async (dir) => {
    const config = join(dir, 'node.yaml');
    await writeFile(config, [`node: { dataDir: ${JSON.stringify(join(dir, 'data'))}, clientPort: 0, raftPort: 0 }`, ''].join('\n'));
    const node = startWalrus(['start', '--config', config], { cwd: dir, lifetimeMs: 120_000 });
    try {
      const listening = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
      await node.waitForLine(/"msg":"ready"/);
      const port = listening.port;
      const client = new WalrusClient({ host: '127.0.0.1', port, timeoutMs: 10_000 });
      await client.register('flood');
      await client.close();
      const flood = await startFlood({
        port,
        topic: 'flood',
        connections: FLOOD_CONNECTIONS,
        payloadBytes: PAYLOAD_BYTES,
        depth: FLOOD_DEPTH,
      });
      try {
        // Let the flood build up before the first probe.
        const before = flood.acknowledged();
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const latencies: number[] = [];
        for (let probe = 0; probe < PROBES; probe += 1) {
          // A generous timeout so that a slow reply is measured (and fails below) rather than thrown.
          const { ms, reply } = await firstReply(port, 'STATE flood', 60_000);
          t.true(reply.startsWith('{'), `probe ${probe} got ${reply.slice(0, 100)}`);
          latencies.push(ms);
          await new Promise((resolve) => setTimeout(resolve, PROBE_PAUSE_MS));
        }
        t.log(`first replies: ${latencies.map((ms) => Math.round(ms)).join(', ')} ms; ${flood.acknowledged()} PUTs acknowledged`);
        t.true(flood.acknowledged() > before, 'the flood was not being served during the probes');
        t.deepEqual(flood.failures(), []);
        t.true(
          latencies.every((ms) => ms <= SERVED_WITHIN_MS),
          `first replies took ${latencies.map((ms) => Math.round(ms)).join(', ')} ms`,
        );
      } finally {
        flood.stop();
      }
    } finally {
      node.child.kill('SIGTERM');
      const exited = await node.exited;
      t.is(exited.code, 0, exited.stderr);
    }
  });
});
