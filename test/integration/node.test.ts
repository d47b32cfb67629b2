// A node end to end, as a client sees it: a real `walrus start` process with a rollover
// threshold of 10 and a 200 ms monitor, driven through WalrusClient over loopback. PUTs seal
// segments of exactly 10, GETs return every entry once in order across them, FETCH reads any
// segment by position, and a restart (SIGTERM or kill -9) keeps STATE and the GET position.

import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { withTempDir } from '../helpers/kernel.js';
import { writeNodeConfig } from '../helpers/node-config.js';
import { NODE_FLAGS, type Running, startWalrus } from '../helpers/process.js';

/** Starts the node and connects a client once it logs `ready`. */
async function startNode(dir: string, config: string): Promise<{ node: Running; client: WalrusClient }> {
  const node = startWalrus(['start', '--config', config], { cwd: dir, lifetimeMs: 60_000 });
  const listening = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
  await node.waitForLine(/"msg":"ready"/);
  const client = new WalrusClient({ host: '127.0.0.1', port: listening.port, timeoutMs: 10_000 });
  return { node, client };
}

async function stop(node: Running, signal: NodeJS.Signals): Promise<void> {
  if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill(signal);
  await node.exited;
}

const payloads = Array.from({ length: 60 }, (_, index) => `entry-${String(index).padStart(2, '0')}`);

test.serial(
  '60 PUTs at threshold 10 seal six segments of 10; 60 GETs return them in order, then EMPTY; FETCH reads by position',
  async (t) => {
    await withTempDir(async (dir) => {
      const { node, client } = await startNode(dir, await writeNodeConfig(dir));
      try {
        await client.register('orders');
        await client.register('orders'); // idempotent
        for (const payload of payloads) await client.put('orders', payload);
        // The 60th entry fills segment 6; its rollover applies within a moment.
        let state = await client.state('orders');
        for (let tries = 0; state.current_segment < 7 && tries < 100; tries++) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          state = await client.state('orders');
        }
        t.deepEqual(state.sealed_segments, { 1: 10, 2: 10, 3: 10, 4: 10, 5: 10, 6: 10 });
        t.is(state.current_segment, 7);
        t.is(state.last_sealed_entry_offset, 60);
        t.is(state.leader_node, 1);
        const got: (string | null)[] = [];
        for (let index = 0; index < 61; index++) got.push(await client.get('orders'));
        t.deepEqual(got, [...payloads, null]);
        // FETCH is non-destructive and addresses a segment by 0-based position.
        t.deepEqual(await client.fetch('orders', 3, 4), { nextOffset: 5, payload: 'entry-24' });
        t.deepEqual(await client.fetch('orders', 1, 0), { nextOffset: 1, payload: 'entry-00' });
        t.is(await client.fetch('orders', 1, 10), null);
        t.is(await client.fetch('orders', 9, 0), null);
        // The original's error texts.
        t.is(await client.raw('PUT missing x'), 'ERR unknown topic missing');
        t.is(await client.raw('GET missing'), 'ERR unknown topic missing');
        t.is(await client.raw('put orders x'), 'ERR unknown command');
        t.is(await client.raw('PUT orders'), 'ERR PUT requires a payload');
        const metrics = await client.metrics();
        t.is(metrics.state, 'Leader');
        t.is(metrics.current_leader, 1);
      } finally {
        await client.close();
        await stop(node, 'SIGTERM');
      }
    });
  },
);

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  test.serial(`a restart after ${signal}: STATE is the same, GET goes on where it stopped, nothing lost or repeated`, async (t) => {
    await withTempDir(async (dir) => {
      const config = await writeNodeConfig(dir);
      const first = await startNode(dir, config);
      let before: unknown;
      const delivered: (string | null)[] = [];
      try {
        await first.client.register('logs');
        for (const payload of payloads.slice(0, 25)) await first.client.put('logs', payload);
        for (let index = 0; index < 13; index++) delivered.push(await first.client.get('logs'));
        // A request after the last GET: its reply comes after that GET's entry was consumed.
        before = await first.client.state('logs');
      } finally {
        await first.client.close();
        await stop(first.node, signal);
      }
      const second = await startNode(dir, config);
      try {
        t.deepEqual(await second.client.state('logs'), before);
        for (const payload of payloads.slice(25, 30)) await second.client.put('logs', payload);
        for (;;) {
          const next = await second.client.get('logs');
          if (next === null) break;
          delivered.push(next);
        }
        t.deepEqual(delivered, payloads.slice(0, 30), 'every acknowledged entry exactly once, in order');
      } finally {
        await second.client.close();
        await stop(second.node, 'SIGTERM');
      }
    });
  });
}

test.serial('bootstrap topics exist as soon as the node is ready, and a restart leaves them as they are', async (t) => {
  await withTempDir(async (dir) => {
    const config = await writeNodeConfig(dir, ['bootstrap:', '  topics: [logs, events]']);
    const first = await startNode(dir, config);
    let state: unknown;
    try {
      // No REGISTER: the first request after `ready` can write.
      await first.client.put('logs', 'first');
      for (const payload of payloads.slice(0, 12)) await first.client.put('events', payload);
      state = await first.client.state('events');
      t.like(await first.client.state('logs'), { current_segment: 1, sealed_segments: {} });
    } finally {
      await first.client.close();
      await stop(first.node, 'SIGTERM');
    }
    const second = await startNode(dir, config);
    try {
      t.deepEqual(await second.client.state('events'), state, 'not created again, not rolled over');
      t.is(await second.client.get('logs'), 'first');
    } finally {
      await second.client.close();
      await stop(second.node, 'SIGTERM');
    }
  });
});

/** Runs bin/walrus-cli with `args` (and `input` on stdin); resolves with its exit code and output. */
function walrusCli(args: readonly string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [...NODE_FLAGS, resolve('bin/walrus-cli'), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(killer);
      done({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

test.serial('walrus-cli against a real node: one-shot commands, errors, and a scripted REPL', async (t) => {
  await withTempDir(async (dir) => {
    const { node, client } = await startNode(dir, await writeNodeConfig(dir));
    await client.close();
    const port = (JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number }).port;
    const addr = ['--addr', `127.0.0.1:${port}`];
    try {
      t.like(await walrusCli([...addr, 'register', 'cli']), { code: 0, stdout: 'OK\n' });
      t.like(await walrusCli([...addr, 'put', 'cli', 'hello', 'world']), { code: 0, stdout: 'OK\n' });
      t.like(await walrusCli([...addr, 'fetch', 'cli', '1', '0']), { code: 0, stdout: '1 hello world\n' });
      t.like(await walrusCli([...addr, 'get', 'cli']), { code: 0, stdout: 'hello world\n' });
      t.like(await walrusCli([...addr, 'get', 'cli']), { code: 0, stdout: 'EMPTY\n' });
      const state = await walrusCli([...addr, 'state', 'cli']);
      t.is(state.code, 0);
      t.deepEqual(JSON.parse(state.stdout), {
        current_segment: 1,
        leader_node: 1,
        last_sealed_entry_offset: 0,
        sealed_segments: {},
        segment_leaders: { 1: 1 },
      });
      t.like(await walrusCli([...addr, 'put', 'nothing', 'x']), { code: 1, stderr: 'walrus-cli: unknown topic nothing\n' });
      const repl = await walrusCli(addr, 'PUT cli from the repl\nGET cli\nGET cli\nbogus\nquit\nGET cli\n');
      t.is(repl.code, 0, repl.stderr);
      t.deepEqual(repl.stdout.trim().split('\n'), ['OK', 'OK from the repl', 'EMPTY', 'ERR unknown command']);
    } finally {
      await stop(node, 'SIGTERM');
    }
  });
});

for (const fsync of ['interval', 'each'] as const) {
  test.serial(
    `100 PUTs pipelined on one connection across rollovers (WALRUS_MAX_SEGMENT_ENTRIES=10, fsync ${fsync}) read back in send order`,
    async (t) => {
      await withTempDir(async (dir) => {
        const config = join(dir, 'node.yaml');
        await writeFile(
          config,
          ['node:', `  dataDir: ${join(dir, 'data')}`, '  clientPort: 0', '  raftPort: 0', 'storage:', `  fsync: ${fsync}`, ''].join('\n'),
        );
        const node = startWalrus(['start', '--config', config], {
          cwd: dir,
          lifetimeMs: 60_000,
          env: { WALRUS_MAX_SEGMENT_ENTRIES: '10' },
        });
        const listening = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
        await node.waitForLine(/"msg":"ready"/);
        const client = new WalrusClient({ host: '127.0.0.1', port: listening.port, timeoutMs: 10_000 });
        try {
          await client.register('ordered');
          const sent = Array.from({ length: 100 }, (_, index) => `p${index}`);
          // All in flight at once on the one connection: each of the nine rollovers meets PUTs queued behind it.
          const replies = await Promise.allSettled(sent.map((payload) => client.put('ordered', payload)));
          t.deepEqual(
            replies.map((reply) => reply.status),
            sent.map(() => 'fulfilled'),
          );
          const got: (string | null)[] = [];
          for (let index = 0; index <= sent.length; index++) got.push(await client.get('ordered'));
          t.deepEqual(got, [...sent, null]);
          const state = await client.state('ordered');
          t.true(state.current_segment >= 10, `ten segments of ten: current ${state.current_segment}`);
          for (const count of Object.values(state.sealed_segments)) t.is(count, 10);
        } finally {
          client.close();
          await stop(node, 'SIGTERM');
        }
      });
    },
  );
}
