// The plan behind `walrus cluster start`, without processes: ids and ports counted from the
// bases, hosts shared or one per node, clashes and impossible plans refused with the reason, and
// the generated config (base sections kept, placement left to the entries, plugin paths rebased)
// and environment the nodes get.

import { join } from 'node:path';
import test from 'ava';
import { adminPorts, ClusterUsageError, childEnvironment, clusterConfig, type Member, planMembers } from '../../src/commands/cluster.js';

const plan = (overrides: Partial<Parameters<typeof planMembers>[0]> = {}) =>
  planMembers({ nodes: 3, clientPortBase: 9091, raftPortBase: 6001, hosts: ['127.0.0.1'], ...overrides });

test('node i gets id i and ports base+i-1 on the shared host', (t) => {
  t.deepEqual(plan(), [
    { id: 1, clientHost: '127.0.0.1', clientPort: 9091, raftHost: '127.0.0.1', raftPort: 6001 },
    { id: 2, clientHost: '127.0.0.1', clientPort: 9092, raftHost: '127.0.0.1', raftPort: 6002 },
    { id: 3, clientHost: '127.0.0.1', clientPort: 9093, raftHost: '127.0.0.1', raftPort: 6003 },
  ]);
  t.is(plan({ nodes: 1 }).length, 1);
  t.is(plan({ nodes: 9 }).length, 9);
});

test('with one host per node, each node listens on its own address, so ranges may overlap across nodes', (t) => {
  const members = plan({ hosts: ['127.0.0.1', '127.0.0.2', '127.0.0.3'], raftPortBase: 9092 });
  t.deepEqual(
    members.map((member) => [member.clientHost, member.clientPort, member.raftHost, member.raftPort]),
    [
      ['127.0.0.1', 9091, '127.0.0.1', 9092],
      ['127.0.0.2', 9092, '127.0.0.2', 9093],
      ['127.0.0.3', 9093, '127.0.0.3', 9094],
    ],
  );
  // The same port for client and Raft on one address cannot work.
  t.throws(() => plan({ hosts: ['127.0.0.1', '127.0.0.2', '127.0.0.3'], raftPortBase: 9091 }), {
    instanceOf: ClusterUsageError,
    message: /^127\.0\.0\.1:9091 would be both node 1's client port and node 1's raft port/,
  });
});

test('impossible plans are refused with the reason', (t) => {
  const refused = (overrides: Partial<Parameters<typeof planMembers>[0]>, message: RegExp) =>
    t.throws(() => plan(overrides), { instanceOf: ClusterUsageError, message });
  refused({ nodes: 0 }, /^--nodes must be 1\.\.9, got 0$/);
  refused({ nodes: 10 }, /^--nodes must be 1\.\.9, got 10$/);
  refused({ hosts: ['127.0.0.1', '127.0.0.2'] }, /^--hosts lists 2 addresses for 3 nodes/);
  refused({ raftPortBase: 65_534 }, /^--raft-port-base 65534 with 3 nodes needs ports up to 65536, past 65535$/);
  refused({ raftPortBase: 9093 }, /^127\.0\.0\.1:9093 would be both node 1's raft port and node 3's client port/);
});

const members: readonly Member[] = plan({ nodes: 2 });

test('the generated config keeps the base sections, sets the data folder and the entries, and drops node placement', (t) => {
  const base = {
    node: { id: 7, dataDir: './elsewhere', clientPort: 1234, raftHost: '10.0.0.1', join: null },
    cluster: { nodes: [{ id: 7, clientPort: 1, raftPort: 2 }] },
    segments: { maxEntries: 10 },
    rollover: { monitorCheckMs: 100 },
  };
  t.deepEqual(clusterConfig(base, '/base', '/data', members), {
    node: { join: null, dataDir: '/data' },
    cluster: { nodes: members.map((member) => ({ ...member })) },
    segments: { maxEntries: 10 },
    rollover: { monitorCheckMs: 100 },
  });
  t.deepEqual(clusterConfig({}, '/base', '/data', members), {
    node: { dataDir: '/data' },
    cluster: { nodes: members.map((member) => ({ ...member })) },
  });
});

test('relative plugin paths are made absolute against the base config folder; names and absolute paths stay', (t) => {
  const tree = clusterConfig({ plugins: ['raft', './x.js', '../y/z.js', '/abs/w.js'] }, '/base/conf', '/data', members);
  t.deepEqual(tree.plugins, ['raft', join('/base/conf', 'x.js'), join('/base', 'y/z.js'), '/abs/w.js']);
  const env = childEnvironment(
    { WALRUS_PLUGINS: 'raft, ./x.js', WALRUS_MAX_SEGMENT_ENTRIES: '5', UNSET: undefined, PATH: '/bin' },
    '/base',
  );
  t.deepEqual(env, { WALRUS_PLUGINS: 'raft,/base/x.js', WALRUS_MAX_SEGMENT_ENTRIES: '5', PATH: '/bin' });
});

test('--admin-port-base gives node i admin port base+i-1; a range that overlaps another or runs past 65535 is refused', (t) => {
  t.deepEqual(
    [...adminPorts({ nodes: 3, adminPortBase: 9191 })],
    [
      [1, 9191],
      [2, 9192],
      [3, 9193],
    ],
  );
  t.is(adminPorts({ nodes: 3 }).size, 0);
  t.is(plan({ adminPortBase: 9191 }).length, 3);
  t.throws(() => plan({ adminPortBase: 9093 }), {
    instanceOf: ClusterUsageError,
    message: /^127\.0\.0\.1:9093 would be both node 1's admin port and node 3's client port/,
  });
  t.throws(() => plan({ adminPortBase: 65_534 }), {
    instanceOf: ClusterUsageError,
    message: /--admin-port-base 65534 with 3 nodes needs ports up to 65536/,
  });
});
