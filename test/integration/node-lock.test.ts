// What `walrus start` refuses before it touches anything, in real child processes: a node
// directory another node holds (DIRECTORY_LOCKED, the running node's Raft term and files left
// as they were; with the native addon's flock and with the PID-file fallback), a restart right
// after kill -9, a data directory that cannot be created (/proc/walrus), a SIGTERM while a start
// hangs.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { loadAddon } from '../../src/engine/native-addon.js';
import { withTempDir } from '../helpers/kernel.js';
import { type Running, startWalrus } from '../helpers/process.js';

/** Generous liveness bound for "fails fast" (a node boots in well under a second here). */
const PROMPT_MS = 5_000;

const addon = loadAddon();
const hasFlock = 'addon' in addon && typeof (addon.addon.flock as { tryExclusive?: unknown } | undefined)?.tryExclusive === 'function';

/** Both lock kinds: flock through the addon, and the PID-file fallback (WALRUS_DISABLE_NATIVE). */
const MODES = [
  { name: 'flock', env: {} as Record<string, string>, skip: hasFlock ? undefined : 'the native addon with flock is not built here' },
  { name: 'pid-file fallback', env: { WALRUS_DISABLE_NATIVE: '1' } as Record<string, string>, skip: undefined },
];

const nodeArgs = (dataDir: string) => ['start', '--data-dir', dataDir, '--client-port', '0', '--raft-port', '0'];

async function startReady(dir: string, dataDir: string, env: Record<string, string>): Promise<{ node: Running; port: number }> {
  const node = startWalrus(nodeArgs(dataDir), { cwd: dir, env, lifetimeMs: 60_000 });
  const listening = JSON.parse(await node.waitForLine(/"msg":"client protocol listening"/)) as { port: number };
  await node.waitForLine(/"msg":"ready"/);
  return { node, port: listening.port };
}

async function stop(node: Running): Promise<void> {
  if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
  await node.exited;
}

/** Every file under `dir` with its bytes, to show that nothing changed. */
function snapshot(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, name);
    try {
      files.set(name, readFileSync(path).toString('base64'));
    } catch {
      // A directory.
    }
  }
  return files;
}

async function currentTerm(port: number): Promise<unknown> {
  const client = new WalrusClient({ host: '127.0.0.1', port, timeoutMs: 5_000 });
  try {
    return (await client.metrics()).current_term;
  } finally {
    await client.close();
  }
}

for (const mode of MODES) {
  const title = `a second walrus start on a running node's directory exits 1 with DIRECTORY_LOCKED at once and leaves the running node's Raft term and files unchanged (${mode.name})`;
  (mode.skip === undefined ? test.serial : test.skip)(mode.skip === undefined ? title : `${title} — skipped: ${mode.skip}`, async (t) => {
    await withTempDir(async (dir) => {
      const dataDir = join(dir, 'data');
      const { node, port } = await startReady(dir, dataDir, mode.env);
      try {
        const termBefore = await currentTerm(port);
        t.is(typeof termBefore, 'number');
        const raftDir = join(dataDir, 'node_1', 'raft');
        const raftBefore = snapshot(raftDir);
        t.true(raftBefore.size > 0, 'the running node has Raft files');
        const began = Date.now();
        const second = await startWalrus(nodeArgs(dataDir), { cwd: dir, env: mode.env, lifetimeMs: 20_000 }).exited;
        t.true(Date.now() - began < PROMPT_MS, `took ${Date.now() - began} ms`);
        t.is(second.code, 1, second.stderr);
        t.regex(second.stderr, /DIRECTORY_LOCKED: node directory .*data\/node_1 is in use by process (\d+)/);
        t.is(second.stderr.match(/in use by process (\d+)/)?.[1], String(node.child.pid));
        // It gave up before any plugin started: no Raft member, no data plane.
        t.notRegex(second.stdout, /raft member|data plane open/);
        t.is(node.child.exitCode, null, 'the running node is still up');
        t.is(await currentTerm(port), termBefore);
        t.deepEqual(snapshot(raftDir), raftBefore);
      } finally {
        await stop(node);
      }
    });
  });

  const restartTitle = `a node killed with -9 restarts at once on the same directory (${mode.name})`;
  (mode.skip === undefined ? test.serial : test.skip)(
    mode.skip === undefined ? restartTitle : `${restartTitle} — skipped: ${mode.skip}`,
    async (t) => {
      await withTempDir(async (dir) => {
        const dataDir = join(dir, 'data');
        const first = await startReady(dir, dataDir, mode.env);
        // No wait for the exit (and so for the reaping) before the restart.
        first.node.child.kill('SIGKILL');
        const again = startWalrus(nodeArgs(dataDir), { cwd: dir, env: mode.env, lifetimeMs: 60_000 });
        try {
          await again.waitForLine(/"msg":"ready"/);
          t.is(again.child.exitCode, null);
          t.regex(again.stdout(), /"msg":"node directory locked"/);
          t.is(typeof (await currentTerm(JSON.parse(await again.waitForLine(/"msg":"client protocol listening"/)).port)), 'number');
        } finally {
          await first.node.exited;
          await stop(again);
        }
      });
    },
  );
}

const procTitle = 'walrus start --data-dir /proc/walrus exits 1 at once with an error naming the directory';
(existsSync('/proc/self/stat') ? test.serial : test.skip)(
  existsSync('/proc/self/stat') ? procTitle : `${procTitle} — skipped: no /proc here`,
  async (t) => {
    await withTempDir(async (dir) => {
      const began = Date.now();
      const finished = await startWalrus(nodeArgs('/proc/walrus'), { cwd: dir, lifetimeMs: 20_000 }).exited;
      t.true(Date.now() - began < PROMPT_MS, `took ${Date.now() - began} ms`);
      t.is(finished.signal, null);
      t.is(finished.code, 1, finished.stderr);
      t.regex(finished.stderr, /IO: cannot create the node directory \/proc\/walrus\/node_1: .*mkdir '\/proc\/walrus'/);
    });
  },
);

test.serial('SIGTERM while a plugin start hangs stops the node within kernel.stopTimeoutMs and exits 0', async (t) => {
  await withTempDir(async (dir) => {
    // A custom plugin whose start never finishes; the start timeout is far away (the default 30 s).
    await writeFile(
      join(dir, 'hang.mjs'),
      [
        'export default {',
        "  manifest: { name: 'hang', description: 'a start that never ends', provides: [], requires: [] },",
        '  register() {},',
        '  start() { return new Promise(() => {}); },',
        '};',
        '',
      ].join('\n'),
    );
    const config = join(dir, 'node.yaml');
    await writeFile(config, `plugins: [./hang.mjs]\nnode:\n  dataDir: ${join(dir, 'data')}\nkernel:\n  stopTimeoutMs: 1000\n`);
    const node = startWalrus(['start', '--config', config], { cwd: dir, lifetimeMs: 40_000 });
    await node.waitForLine(/"msg":"node directory locked"/);
    await new Promise((done) => setTimeout(done, 300));
    t.is(node.child.exitCode, null, 'still starting');
    const sent = Date.now();
    node.child.kill('SIGTERM');
    const finished = await node.exited;
    t.true(Date.now() - sent < PROMPT_MS, `took ${Date.now() - sent} ms`);
    t.is(finished.code, 0, finished.stderr);
    t.regex(finished.stdout, /"msg":"signal received: stopping"/);
    t.regex(finished.stdout, /"msg":"stopped"/);
  });
});
