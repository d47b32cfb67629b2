// The raft plugin inside real kernels: three kernels in one process form a group from one
// cluster config on loopback and serve the Consensus contract; a state machine registered after
// start still receives every command; bad timing settings are refused before anything starts.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import type { Consensus } from '../../src/contracts/consensus.js';
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
      const metrics = leader.metrics();
      t.is(metrics.state, 'Leader');
      t.is(metrics.current_leader, metrics.id);
      t.deepEqual(metrics.membership_config, { voters: [1, 2, 3], learners: [] });
      t.is(Object.keys(metrics.replication ?? {}).length, 2);
      const follower = consensus.find((member) => member !== leader) as Consensus;
      t.is(follower.metrics().state, 'Follower');
      t.is(follower.metrics().replication, null);
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
