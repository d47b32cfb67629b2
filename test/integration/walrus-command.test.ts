// The `walrus` command as an operator uses it, in real child processes: start on the embedded
// default and stop on SIGTERM / SIGINT, config errors with their exit code, `walrus plugins`,
// `walrus config print` with sources, --help and --version.

import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { withTempDir } from '../helpers/kernel.js';
import { runWalrusCommand, startWalrus } from '../helpers/process.js';

const VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const BUILTINS = [
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
  'cli',
];

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test.serial(`walrus start with no arguments stays up, logs its plugins and exits 0 on ${signal} within 2 s`, async (t) => {
    await withTempDir(async (dir) => {
      // Port 0 for Raft, so the test never collides with something on the default port 6000.
      const node = startWalrus(['start'], { cwd: dir, env: { WALRUS_RAFT_PORT: '0', WALRUS_CLIENT_PORT: '0' } });
      const selected = JSON.parse(await node.waitForLine(/"msg":"plugins selected"/)) as Record<string, unknown>;
      t.is(selected.config, 'embedded default');
      // One storage backend (whichever auto found best here), named with the reason it was chosen.
      const loaded = selected.loaded as string[];
      t.regex(loaded[0] ?? '', /^storage-(uring|mmap|fd)$/);
      t.deepEqual(loaded.slice(1), ['raft', 'lease-fencing', 'data-plane', 'rollover-monitor', 'protocol-tcp']);
      const choices = selected.selected as Record<string, string>;
      t.true(choices['storage-backend']?.startsWith(`${loaded[0]} (auto picked ${loaded[0]}`), choices['storage-backend']);
      t.true((selected.available as string[]).includes('cli (front end: runs as the walrus command, not inside a node)'));
      // consensus-etcd is listed by default but has no etcd to talk to, and admin has no port: they say so.
      t.deepEqual(
        (selected.unavailable as string[]).filter((entry) => !entry.startsWith('storage-')),
        [
          'consensus-etcd (no etcd endpoint is configured (etcd.endpoints, WALRUS_ETCD_ENDPOINTS))',
          'admin (admin.port is null: no admin endpoint (set admin.port, WALRUS_ADMIN_PORT or --admin-port))',
        ],
      );
      // The client port (node.clientPort 0 here: any free one) is open once the node is ready.
      t.regex(await node.waitForLine(/"msg":"client protocol listening"/), /"port":\d+/);
      // A group of one: this node leads as soon as Raft starts, with its files under the data folder.
      const raft = JSON.parse(await node.waitForLine(/"msg":"raft member 1 started"/)) as Record<string, unknown>;
      t.is(raft.role, 'leader');
      t.deepEqual(raft.voters, [1]);
      t.regex(String(raft.dir), /data\/node_1\/raft$/);
      await node.waitForLine(/"msg":"ready"/);
      // Still up a moment later: nothing made it exit on its own.
      await new Promise((done) => setTimeout(done, 300));
      t.is(node.child.exitCode, null);
      const sent = Date.now();
      node.child.kill(signal);
      const finished = await node.exited;
      t.is(finished.code, 0, finished.stderr);
      t.true(Date.now() - sent < 2000, `took ${Date.now() - sent} ms`);
      t.regex(finished.stdout, new RegExp(`"signal":"${signal}","msg":"signal received: stopping"`));
      t.regex(finished.stdout, /"msg":"stopped"/);
    });
  });
}

test.serial('walrus start --config with an unknown key exits 2 and names the key path', async (t) => {
  await withTempDir(async (dir) => {
    const config = join(dir, 'bad.yaml');
    await writeFile(config, 'node:\n  clientPort: 9000\n  replicas: 3\n');
    const finished = await runWalrusCommand(['start', '--config', config], { cwd: dir });
    t.is(finished.code, 2);
    t.regex(finished.stderr, /node\.replicas: unknown key \(from file .*bad\.yaml\)/);
    t.is(finished.stdout, '');
  });
});

test.serial('walrus start with a forced backend that cannot run exits 2 with the reason', async (t) => {
  await withTempDir(async (dir) => {
    // WALRUS_DISABLE_NATIVE makes the addon unloadable, as a failed build would.
    const finished = await runWalrusCommand(['start', '--storage', 'mmap'], { cwd: dir, env: { WALRUS_DISABLE_NATIVE: '1' } });
    t.is(finished.stdout, '');
    t.is(finished.code, 2);
    t.regex(
      finished.stderr,
      /PLUGIN_UNAVAILABLE: storage.backend is "mmap" but storage-mmap cannot run here: WALRUS_DISABLE_NATIVE is set/,
    );
  });
});

test.serial('without the native addon, auto falls back to fd and walrus plugins says why', async (t) => {
  await withTempDir(async (dir) => {
    const finished = await runWalrusCommand(['plugins'], { cwd: dir, env: { WALRUS_DISABLE_NATIVE: '1' } });
    t.is(finished.code, 0, finished.stderr);
    const line = (name: string) => finished.stdout.split('\n').find((candidate) => candidate.startsWith(`${name} `)) ?? '';
    t.regex(
      line('storage-fd'),
      /^storage-fd\s+loaded\s+built-in\s+auto picked storage-fd \(skipped storage-uring: WALRUS_DISABLE_NATIVE is set; storage-mmap: WALRUS_DISABLE_NATIVE is set\)$/,
    );
    t.regex(line('storage-mmap'), /^storage-mmap\s+unavailable\s+built-in\s+WALRUS_DISABLE_NATIVE is set$/);
    t.regex(line('storage-uring'), /^storage-uring\s+unavailable\s+built-in\s+WALRUS_DISABLE_NATIVE is set$/);
  });
});

test.serial('WALRUS_DISABLE_IO_URING makes auto pass over uring', async (t) => {
  await withTempDir(async (dir) => {
    const finished = await runWalrusCommand(['plugins', '--json'], { cwd: dir, env: { WALRUS_DISABLE_IO_URING: '1' } });
    t.is(finished.code, 0, finished.stderr);
    const plugins = (JSON.parse(finished.stdout) as { plugins: { name: string; state: string; reason: string }[] }).plugins;
    const uring = plugins.find((plugin) => plugin.name === 'storage-uring');
    const loaded = plugins.find((plugin) => plugin.state === 'loaded' && plugin.name.startsWith('storage-'));
    t.not(loaded?.name, 'storage-uring');
    t.regex(loaded?.reason ?? '', /storage-uring: disabled by storage.disableIoUring/);
    t.not(uring?.state, 'loaded');
  });
});

test.serial('walrus plugins lists every built-in plugin with a status', async (t) => {
  await withTempDir(async (dir) => {
    const finished = await runWalrusCommand(['plugins'], { cwd: dir });
    t.is(finished.code, 0, finished.stderr);
    const lines = finished.stdout.trim().split('\n');
    t.regex(lines[0] ?? '', /^PLUGIN\s+STATUS\s+ORIGIN\s+WHY$/);
    for (const name of BUILTINS) {
      const line = lines.find((candidate) => candidate.startsWith(`${name} `));
      t.truthy(line, name);
      t.regex(line ?? '', / (loaded|available|unavailable) /);
    }
    const json = await runWalrusCommand(['plugins', '--json'], { cwd: dir });
    const parsed = JSON.parse(json.stdout) as { plugins: { name: string; state: string; reason: string }[] };
    t.deepEqual(
      parsed.plugins.map((plugin) => plugin.name),
      BUILTINS,
    );
    t.deepEqual(parsed.plugins.find((plugin) => plugin.name === 'cli')?.state, 'available');
    const etcd = parsed.plugins.find((plugin) => plugin.name === 'consensus-etcd');
    t.is(etcd?.state, 'unavailable');
    t.is(etcd?.reason, 'no etcd endpoint is configured (etcd.endpoints, WALRUS_ETCD_ENDPOINTS)');
    t.is(parsed.plugins.find((plugin) => plugin.name === 'raft')?.reason, 'consensus is "raft"');
  });
});

test.serial('walrus config print shows each value with where it came from', async (t) => {
  await withTempDir(async (dir) => {
    const config = join(dir, 'walrus.yaml');
    await writeFile(config, 'node:\n  raftPort: 6100\n');
    const finished = await runWalrusCommand(['config', 'print', '-c', config, '--client-port', '9100'], {
      cwd: dir,
      env: { WALRUS_DATA_DIR: '/srv/walrus' },
    });
    t.is(finished.code, 0, finished.stderr);
    const lines = finished.stdout.split('\n');
    t.true(lines.includes(`# config file: ${config}`));
    t.true(lines.includes('node.clientPort = 9100  # flag --client-port'));
    t.true(lines.includes('node.dataDir = "/srv/walrus"  # env WALRUS_DATA_DIR'));
    t.true(lines.includes(`node.raftPort = 6100  # file ${config}`));
    t.true(lines.includes('node.raftHost = "127.0.0.1"  # default'));
  });
});

test.serial('walrus reads its config file from WALRUS_CONFIG when --config is absent', async (t) => {
  await withTempDir(async (dir) => {
    const config = join(dir, 'from-env.yaml');
    await writeFile(config, 'log:\n  level: warn\n');
    const finished = await runWalrusCommand(['config', 'print'], { cwd: dir, env: { WALRUS_CONFIG: config } });
    t.true(finished.stdout.split('\n').includes(`log.level = "warn"  # file ${config}`));
  });
});

test.serial('walrus --version, --help, and usage errors', async (t) => {
  await withTempDir(async (dir) => {
    const version = await runWalrusCommand(['--version'], { cwd: dir });
    t.is(version.code, 0);
    t.is(version.stdout.trim(), VERSION);
    const help = await runWalrusCommand(['--help'], { cwd: dir });
    t.is(help.code, 0);
    for (const command of ['start', 'plugins', 'config']) t.regex(help.stdout, new RegExp(`\\n  ${command} `));
    // What `npx walrus -- --help` hands over: the same help.
    const afterDashes = await runWalrusCommand(['--', '--help'], { cwd: dir });
    t.is(afterDashes.code, 0);
    t.is(afterDashes.stdout, help.stdout);
    const unknown = await runWalrusCommand(['frobnicate'], { cwd: dir });
    t.is(unknown.code, 2);
    t.regex(unknown.stderr, /unknown command 'frobnicate'/);
    const badFlag = await runWalrusCommand(['start', '--storage', 'ssd'], { cwd: dir });
    t.is(badFlag.code, 2);
    t.regex(badFlag.stderr, /argument 'ssd' is invalid\. Allowed choices are auto, fd, mmap, uring/);
  });
});
