// `walrus start` with `consensus: etcd` (issue 15), in real child processes against a real etcd:
// the node keeps its metadata under etcd.prefix, serves REGISTER, PUT and GET, and finds its
// topics there after a restart; with etcd unreachable it refuses to start and names the
// endpoints. Skipped, with the reason in the title, where etcd is not installed.

import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { withEtcd } from '../helpers/etcd.js';
import { withTempDir } from '../helpers/kernel.js';
import { freePorts } from '../helpers/net.js';
import { runWalrusCommand, startWalrus } from '../helpers/process.js';

const { run, title, etcd } = withEtcd(test);

run(
  title('a node on etcd serves REGISTER, PUT and GET, keeps the metadata under its prefix, and finds it again after a restart'),
  async (t) => {
    const server = etcd();
    await withTempDir(async (dir) => {
      const [clientPort, raftPort] = (await freePorts(2)) as [number, number];
      const env = {
        WALRUS_CONSENSUS: 'etcd',
        WALRUS_ETCD_ENDPOINTS: server.endpoint,
        WALRUS_CLIENT_PORT: String(clientPort),
        WALRUS_RAFT_PORT: String(raftPort),
      };
      const listed = await runWalrusCommand(['plugins', '--json'], { cwd: dir, env });
      const plugins = (JSON.parse(listed.stdout) as { plugins: { name: string; state: string; reason: string }[] }).plugins;
      t.deepEqual(
        plugins.filter((plugin) => plugin.name === 'raft' || plugin.name === 'consensus-etcd').map((plugin) => [plugin.name, plugin.state]),
        [
          ['raft', 'available'],
          ['consensus-etcd', 'loaded'],
        ],
      );
      const first = startWalrus(['start'], { cwd: dir, env, lifetimeMs: 60_000 });
      const started = JSON.parse(await first.waitForLine(/"msg":"consensus-etcd member 1 started"/)) as Record<string, unknown>;
      t.is(started.role, 'leader');
      t.deepEqual(started.endpoints, [server.endpoint]);
      await first.waitForLine(/"msg":"ready"/);
      const client = new WalrusClient({ host: '127.0.0.1', port: clientPort });
      try {
        await client.register('orders');
        await client.put('orders', 'one');
        await client.put('orders', 'two');
        t.is(await client.get('orders'), 'one');
        const metrics = await client.metrics();
        t.is(metrics.state, 'Leader');
        t.is(metrics.current_leader, 1);
      } finally {
        await client.close();
      }
      const etcdClient = server.client();
      try {
        const keys = await etcdClient.getAll().prefix('/walrus/').keys();
        t.true(keys.includes('/walrus/nodes/1') && keys.includes('/walrus/leader'), keys.join(', '));
        t.true(keys.filter((key) => key.startsWith('/walrus/log/')).length >= 1, 'the REGISTER is a command in the log');
      } finally {
        etcdClient.close();
      }
      first.child.kill('SIGTERM');
      t.is((await first.exited).code, 0);

      // Restarted: the topic and its entries are still there (metadata from etcd, data from disk).
      const second = startWalrus(['start'], { cwd: dir, env, lifetimeMs: 60_000 });
      await second.waitForLine(/"msg":"ready"/);
      const again = new WalrusClient({ host: '127.0.0.1', port: clientPort });
      try {
        const state = await again.state('orders');
        t.is(state.leader_node, 1);
        t.is(await again.get('orders'), 'two');
        await again.put('orders', 'three');
        t.is(await again.get('orders'), 'three');
      } finally {
        await again.close();
      }
      second.child.kill('SIGTERM');
      t.is((await second.exited).code, 0);
    });
  },
);

run(title('etcd unreachable at start: walrus start exits 1 and names the endpoints'), async (t) => {
  await withTempDir(async (dir) => {
    const [deadPort, clientPort, raftPort] = (await freePorts(3)) as [number, number, number];
    const node = startWalrus(['start'], {
      cwd: dir,
      env: {
        WALRUS_CONSENSUS: 'etcd',
        WALRUS_ETCD_ENDPOINTS: `127.0.0.1:${deadPort}`,
        WALRUS_CLIENT_PORT: String(clientPort),
        WALRUS_RAFT_PORT: String(raftPort),
      },
    });
    const finished = await node.exited;
    t.is(finished.code, 1);
    t.regex(finished.stderr, new RegExp(`CONSENSUS_UNAVAILABLE: etcd at 127\\.0\\.0\\.1:${deadPort} could not be reached`));
  });
});

test('consensus: etcd without an endpoint: walrus start refuses with the reason', async (t) => {
  await withTempDir(async (dir) => {
    const finished = await runWalrusCommand(['start'], {
      cwd: dir,
      env: { WALRUS_CONSENSUS: 'etcd', WALRUS_RAFT_PORT: '0', WALRUS_CLIENT_PORT: '0' },
    });
    t.not(finished.code, 0);
    t.regex(finished.stderr, /consensus is "etcd" but consensus-etcd cannot run here: no etcd endpoint is configured/);
  });
});
