// The raft plugin inside real kernels: three kernels in one process form a group from one
// cluster config on loopback and serve the Consensus contract (METRICS in OpenRaft's shape, the
// live members); a state machine registered after start still receives every command; bad timing
// settings are refused before anything starts.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import test from 'ava';
import type { Consensus, RaftMetrics } from '../../src/contracts/consensus.js';
import { CONSENSUS } from '../../src/contracts/tokens.js';
import { Kernel } from '../../src/kernel/kernel.js';
import { walrusCatalog } from '../../src/plugins/catalog.js';
import { silent, withTempDir } from '../helpers/kernel.js';
import { freePorts, Journal, until } from '../helpers/net.js';

const FAST = 'raft:\n  tickMs: 10\n  electionTimeoutMinMs: 150\n  electionTimeoutMaxMs: 300\n  heartbeatMs: 30\n';

test('three kernels form a group from one cluster config and agree on every command', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(3);
    const entries = ports.map((port, index) => `    - { id: ${index + 1}, clientPort: ${9100 + index}, raftPort: ${port} }`).join('\n');
    const configFile = join(dir, 'cluster.yaml');
    await writeFile(configFile, `plugins: [raft]\nnode:\n  dataDir: ${dir}\ncluster:\n  nodes:\n${entries}\n${FAST}`);
    const kernels: Kernel[] = [];
    const journals: Journal[] = [];
    try {
      for (const id of [1, 2, 3]) {
        const kernel = await Kernel.create({
          catalog: walrusCatalog,
          configFile,
          env: {},
          flags: [{ path: 'node.id', text: String(id), source: 'test' }],
          logger: silent(),
        });
        await kernel.start();
        const journal = new Journal();
        kernel.resolve(CONSENSUS).register(journal);
        kernels.push(kernel);
        journals.push(journal);
      }
      const consensus = kernels.map((kernel) => kernel.resolve(CONSENSUS));
      const leader = await until('a leader', () => consensus.find((member) => member.status().role === 'leader'));
      t.deepEqual([...leader.status().voters], [1, 2, 3]);
      for (let index = 0; index < 20; index++) t.is(await leader.propose(Buffer.from(`c${index}`)), index + 1);
      await until('every member to apply 20 commands', () => (journals.every((journal) => journal.items.length === 20) ? true : undefined));
      for (const journal of journals)
        t.deepEqual(
          journal.items,
          Array.from({ length: 20 }, (_, index) => `c${index}`),
        );
      await checkMetrics(t, consensus, leader, ports);
      const follower = consensus.find((member) => member !== leader) as Consensus;
      // Every member knows the three are up (a follower from the leader's reports).
      await until('every member to name 1, 2 and 3 as live', () =>
        consensus.every((member) => member.liveMembers().join() === '1,2,3') ? true : undefined,
      );
      // Proposed on a follower: forwarded to the leader, resolved once applied on that follower.
      t.is(await follower.propose(Buffer.from('from-a-follower')), 21);
      await until('every member to apply it', () => (journals.every((journal) => journal.items.length === 21) ? true : undefined));
      for (const journal of journals) t.is(journal.items[20], 'from-a-follower');
      // Membership through the contract: remove a follower, then add it back as a learner.
      const removed = follower.status().id;
      await leader.remove(removed);
      t.deepEqual(
        [...leader.status().voters],
        [1, 2, 3].filter((id) => id !== removed),
      );
      const address = { host: '127.0.0.1', port: ports[removed - 1] ?? 0 };
      await leader.addLearner(removed, address);
      t.deepEqual([...leader.status().learners], [removed]);
      await leader.promote(removed);
      t.deepEqual([...leader.status().voters], [1, 2, 3]);
    } finally {
      for (const kernel of kernels) await kernel.stop();
    }
  });
});

test('a state machine registered after start receives the commands applied before it', async (t) => {
  await withTempDir(async (dir) => {
    const [port = 0] = await freePorts(1);
    const configFile = join(dir, 'walrus.yaml');
    await writeFile(configFile, `plugins: [raft]\nnode:\n  dataDir: ${dir}\n  raftPort: ${port}\n${FAST}`);
    const first = await Kernel.create({ catalog: walrusCatalog, configFile, env: {}, logger: silent() });
    await first.start();
    const consensus = first.resolve(CONSENSUS);
    await consensus.propose(Buffer.from('early'));
    const journal = new Journal();
    consensus.register(journal);
    await consensus.propose(Buffer.from('late'));
    t.deepEqual(journal.items, ['early', 'late']);
    await first.stop();
    // After a restart the log replays into whichever machine registers, whenever it does.
    const second = await Kernel.create({ catalog: walrusCatalog, configFile, env: {}, logger: silent() });
    await second.start();
    try {
      const again = new Journal();
      second.resolve(CONSENSUS).register(again);
      await second.resolve(CONSENSUS).readBarrier();
      t.deepEqual(again.items, ['early', 'late']);
    } finally {
      await second.stop();
    }
  });
});

test('raft timing settings that contradict each other are refused before anything starts', async (t) => {
  await withTempDir(async (dir) => {
    const configFile = join(dir, 'walrus.yaml');
    await writeFile(
      configFile,
      `plugins: [raft]\nnode:\n  dataDir: ${dir}\nraft:\n  electionTimeoutMinMs: 500\n  electionTimeoutMaxMs: 400\n  heartbeatMs: 600\n`,
    );
    const error = await t.throwsAsync(async () => {
      const kernel = await Kernel.create({ catalog: walrusCatalog, configFile, env: {}, logger: silent() });
      await kernel.start();
    });
    t.regex(error?.message ?? '', /raft\.electionTimeoutMaxMs: must be greater than raft\.electionTimeoutMinMs/);
    t.regex(error?.message ?? '', /raft\.heartbeatMs: must be less than raft\.electionTimeoutMinMs/);
  });
});

/** The fields of METRICS, in the order the original's OpenRaft writes them (cluster.md §1.7). */
const METRICS_FIELDS = [
  'running_state',
  'id',
  'current_term',
  'vote',
  'last_log_index',
  'last_applied',
  'snapshot',
  'purged',
  'state',
  'current_leader',
  'millis_since_quorum_ack',
  'membership_config',
  'replication',
];

/** METRICS on the leader and on a follower of a settled group of three: names, types, nesting. */
async function checkMetrics(t: ExecutionContext, consensus: readonly Consensus[], leader: Consensus, ports: readonly number[]) {
  const leaderId = leader.status().id;
  const nodes = Object.fromEntries(ports.map((port, index) => [String(index + 1), { addr: `127.0.0.1:${port}` }]));
  // Followers apply the last entry with the next heartbeat, and the leader hears of their match.
  const settled = await until('every member to have applied the last entry', () => {
    const last = leader.metrics().last_log_index;
    const all = consensus.map((member) => member.metrics());
    return all.every((metrics) => metrics.last_applied?.index === last) &&
      Object.values(leader.metrics().replication ?? {}).every((id) => id?.index === last)
      ? all
      : undefined;
  });
  for (const metrics of settled) {
    t.deepEqual(JSON.parse(JSON.stringify(metrics)), metrics, 'plain JSON: no undefined, no Infinity');
    t.deepEqual(Object.keys(metrics), METRICS_FIELDS);
    const term = metrics.current_term;
    const entry = { leader_id: { term, node_id: leaderId }, index: metrics.last_log_index };
    t.deepEqual(metrics.running_state, { Ok: null });
    t.deepEqual(metrics.vote, { leader_id: { term, node_id: leaderId }, committed: true });
    t.true(Number.isInteger(metrics.last_log_index));
    t.deepEqual(metrics.last_applied, entry, 'the last entry, of this term and leader');
    t.is(metrics.current_leader, leaderId, 'the plain integer id');
    t.deepEqual(metrics.membership_config.membership, { configs: [[1, 2, 3]], nodes });
    t.is(metrics.membership_config.log_id, null, 'the membership is the one the group started with');
  }
  const ofLeader = settled.find((metrics) => metrics.id === leaderId) as RaftMetrics;
  const ofFollower = settled.find((metrics) => metrics.id !== leaderId) as RaftMetrics;
  t.is(ofLeader.state, 'Leader');
  t.true(Number.isInteger(ofLeader.millis_since_quorum_ack));
  const entry = { leader_id: { term: ofLeader.current_term, node_id: leaderId }, index: ofLeader.last_log_index };
  t.deepEqual(ofLeader.replication, { '1': entry, '2': entry, '3': entry }, 'every member, the leader included');
  t.is(ofFollower.state, 'Follower');
  t.is(ofFollower.replication, null);
  t.is(ofFollower.millis_since_quorum_ack, null);
}
