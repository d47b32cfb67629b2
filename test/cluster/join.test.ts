// Joining a running cluster with `walrus start --node-id N --join HOST:PORT`, against three real
// nodes: the join goes through a follower (passed on to the Raft leader), the new node becomes a
// learner, then a voter once caught up, is listed with its addresses, and serves requests; a
// restart rejoins from its own files; an id that is a member at another address is refused; a
// join target that is not there ends the start with the reason.

import test from 'ava';
import { TestCluster, withCluster } from '../helpers/cluster.js';
import { withTempDir } from '../helpers/kernel.js';
import { runWalrusCommand } from '../helpers/process.js';

interface Metrics {
  readonly current_leader: number | null;
  readonly membership_config: {
    readonly membership: { readonly configs: readonly (readonly number[])[]; readonly nodes: Readonly<Record<string, { addr: string }>> };
  };
}

async function votersSeenBy(cluster: TestCluster, id: number, want: readonly number[], timeoutMs = 20_000): Promise<Metrics> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const metrics = (await cluster
      .client(id)
      .metrics()
      .catch(() => undefined)) as Metrics | undefined;
    const configs = metrics?.membership_config.membership.configs;
    if (metrics !== undefined && configs?.length === 1 && [...(configs[0] ?? [])].sort().join() === [...want].sort().join()) return metrics;
    if (Date.now() > deadline)
      throw new Error(
        `node ${id} did not see voters ${want.join(', ')} within ${timeoutMs} ms: ${JSON.stringify(metrics?.membership_config)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test.serial(
  'a 4th node joins through a follower, becomes a voter, serves requests, and rejoins from its files after kill -9',
  async (t) => {
    t.timeout(120_000);
    await withCluster({}, async (cluster) => {
      const leader = await cluster.leader();
      const follower = cluster.ids.find((id) => id !== leader) as number;
      await cluster.startJoiner(4, follower);
      await cluster.ready(4, 30_000);
      // Promoted once caught up: every member (the new one too) lists four voters.
      for (const id of [1, 2, 3, 4]) await votersSeenBy(cluster, id, [1, 2, 3, 4]);
      const metrics = await votersSeenBy(cluster, leader, [1, 2, 3, 4]);
      t.is(metrics.membership_config.membership.nodes['4']?.addr, `127.0.0.1:${cluster.raftPorts.get(4)}`);
      // Its addresses are in the metadata: the leader's log says so, and the node serves requests.
      await cluster.client(4).register('joined');
      for (let index = 0; index < 25; index++) await cluster.client(4).put('joined', `j-${index}`);
      const read: string[] = [];
      for (let index = 0; index < 25; index++) read.push((await cluster.client(1).get('joined')) ?? 'EMPTY');
      t.deepEqual(
        read,
        Array.from({ length: 25 }, (_, index) => `j-${index}`),
      );
      // Rollovers rotate over the four voters.
      const state = await cluster.client(4).state('joined');
      t.true(state.current_segment >= 3, JSON.stringify(state));
      // kill -9 and a start with the same flags: a member by its own files, no second join.
      await cluster.kill(4);
      cluster.launch(4);
      await cluster.ready(4, 30_000);
      await votersSeenBy(cluster, 4, [1, 2, 3, 4]);
      t.false(cluster.node(4).stdout().includes('joined the cluster as a learner'), 'a restart does not join again');
      t.is(await cluster.client(4).get('joined'), null);
      await cluster.client(2).put('joined', 'after-restart');
      t.is(await cluster.client(4).get('joined'), 'after-restart');
    });
  },
);

test.serial(
  'joining with the id of a member at another address is refused, and a join target that is not there ends the start',
  async (t) => {
    t.timeout(120_000);
    await withCluster({}, async (cluster, dir) => {
      // Node id 2 exists at its own address: a second "node 2" elsewhere is refused, exit 1.
      const impostor = await cluster.startJoiner(2, 1, ['--data-dir', `${dir}/impostor`], true);
      const finished = await impostor.exited;
      t.is(finished.code, 1, finished.stdout);
      t.regex(finished.stdout + finished.stderr, /node 2 is already a member of this cluster, at 127\.0\.0\.1:\d+, not 127\.0\.0\.1:\d+/);
      // The cluster is untouched: three voters.
      await votersSeenBy(cluster, 1, [1, 2, 3]);
    });
    // Nothing at the join target: the start gives up after its attempts and says why.
    await withTempDir(async (dir) => {
      const lonely = await TestCluster.start(dir, { nodes: 1 });
      try {
        await lonely.kill(1);
        const joiner = await lonely.startJoiner(5, 1);
        const finished = await joiner.exited;
        t.is(finished.code, 1);
        t.regex(
          finished.stdout + finished.stderr,
          /could not join the cluster through 127\.0\.0\.1:\d+: the join target 127\.0\.0\.1:\d+ .*not reachable/,
        );
      } finally {
        await lonely.close();
      }
    });
  },
);

test.serial(
  'removal with replication.factor 1: refused while the node holds unread entries only it keeps, then its topics move to the others and the cluster of three goes on',
  async (t) => {
    t.timeout(120_000);
    await withCluster({ extraConfig: 'replication:\n  factor: 1\n' }, async (cluster, dir) => {
      await cluster.startJoiner(4, 1);
      await cluster.ready(4, 30_000);
      await votersSeenBy(cluster, 1, [1, 2, 3, 4]);
      // A topic placed on node 4 (placement hashes the name over the live nodes).
      let topic = '';
      for (let index = 0; index < 40 && topic === ''; index++) {
        await cluster.client(1).register(`moving_${index}`);
        if ((await cluster.client(1).state(`moving_${index}`)).leader_node === 4) topic = `moving_${index}`;
      }
      t.not(topic, '', 'no topic landed on node 4');
      for (const entry of ['a', 'b', 'c']) await cluster.client(2).put(topic, entry);
      const via = `127.0.0.1:${cluster.raftPorts.get(2)}`;
      const refused = await runWalrusCommand(['cluster', 'remove', '4', '--via', via], { cwd: dir });
      t.is(refused.code, 1, refused.stdout);
      t.regex(refused.stderr, new RegExp(`node 4 still holds entries no GET has read: ${topic} segment 1 \\(3\\)`));
      // Its open segment was sealed and handed over meanwhile: new PUTs go to another node.
      const moved = await cluster.client(3).state(topic);
      t.not(moved.leader_node, 4);
      t.deepEqual(moved.sealed_segments, { 1: 3 });
      await cluster.client(1).put(topic, 'd');
      for (const entry of ['a', 'b', 'c', 'd']) t.is(await cluster.client(3).get(topic), entry);
      const removed = await runWalrusCommand(['cluster', 'remove', '4', '--via', via], { cwd: dir });
      t.is(removed.code, 0, removed.stderr);
      t.regex(removed.stdout, /node 4 removed from the cluster/);
      for (const id of [1, 2, 3]) await votersSeenBy(cluster, id, [1, 2, 3]);
      // The removed node was told: it refuses what it could only answer from a stale view.
      // (The leader tells it right after the removal; it may take a moment to arrive.)
      let gone = 'answered';
      for (const deadline = Date.now() + 5_000; gone === 'answered' && Date.now() < deadline; ) {
        gone = await cluster
          .client(4)
          .state(topic)
          .then(
            () => 'answered',
            (error: unknown) => `${(error as { serverCode?: string }).serverCode}: ${(error as Error).message}`,
          );
        if (gone === 'answered') await new Promise((resolve) => setTimeout(resolve, 50));
      }
      t.regex(gone, /^NODE_REMOVED: node 4 was removed from the cluster \(by node \d\) and serves no more requests/);
      t.true('current_leader' in (await cluster.client(4).metrics()), 'METRICS still answers there');
      await cluster.kill(4);
      // Three nodes go on: REGISTER, PUT and GET through each, across rollovers.
      await cluster.client(2).register('after_removal');
      for (let index = 0; index < 15; index++) await cluster.client(cluster.ids[index % 3] as number).put('after_removal', `r-${index}`);
      for (let index = 0; index < 15; index++)
        t.is(await cluster.client(cluster.ids[(index + 1) % 3] as number).get('after_removal'), `r-${index}`);
      const state = await cluster.client(1).state('after_removal');
      t.false(Object.values(state.segment_leaders).includes(4), JSON.stringify(state));
      // Removing a node that is not a member says so.
      const again = await runWalrusCommand(['cluster', 'remove', '4', '--via', via], { cwd: dir });
      t.is(again.code, 1);
      t.regex(again.stderr, /node 4 is not a member of this cluster/);
    });
  },
);

test.serial(
  "removal with replication.factor 3: the removed node's sealed segments are served by other replicas and copied onto the node that was outside their sets (repair, logged), nothing lost",
  async (t) => {
    t.timeout(150_000);
    await withCluster({ nodes: 4, extraConfig: 'replication:\n  factor: 3\n' }, async (cluster, dir) => {
      await votersSeenBy(cluster, 1, [1, 2, 3, 4]);
      await cluster.client(1).register('repaired');
      const sent = Array.from({ length: 40 }, (_, index) => `r-${index}`);
      for (const [index, entry] of sent.entries()) await cluster.client(cluster.ids[index % 4] as number).put('repaired', entry);
      // The 40th PUT filled segment 4: its rollover applies a moment later.
      let before = await cluster.client(1).state('repaired');
      for (let tries = 0; tries < 100 && before.current_segment < 5; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        before = await cluster.client(1).state('repaired');
      }
      t.deepEqual(before.sealed_segments, { 1: 10, 2: 10, 3: 10, 4: 10 });
      // Node 4 dies for good and is removed (with force: it cannot be asked to hand over).
      await cluster.kill(4);
      // (If node 4 led the Raft group, the others elect another leader first.)
      for (let tries = 0; tries < 100 && (await cluster.leader(1)) === 4; tries++) await new Promise((resolve) => setTimeout(resolve, 100));
      const via = `127.0.0.1:${cluster.raftPorts.get(1)}`;
      const removed = await runWalrusCommand(['cluster', 'remove', '4', '--via', via, '--force'], { cwd: dir });
      t.is(removed.code, 0, removed.stderr);
      for (const id of [1, 2, 3]) await votersSeenBy(cluster, id, [1, 2, 3]);
      // Each sealed segment that node 4 kept gets a copy on the node outside its set, and the
      // repair says when that copy is whole.
      const logs = () => [1, 2, 3].map((id) => cluster.node(id).stdout()).join('\n');
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && (logs().match(/repair: done/g) ?? []).length < 3)
        await new Promise((resolve) => setTimeout(resolve, 200));
      const done = (logs().match(/repair: done/g) ?? []).length;
      t.true(
        done >= 3,
        `repairs done: ${done}; ${logs()
          .split('\n')
          .filter((line) => line.includes('repair'))
          .join('\n')}`,
      );
      const repairedSegments = logs()
        .split('\n')
        .filter((line) => line.includes('repair: done'))
        .map((line) => JSON.parse(line) as { segment: number; to: number })
        .map(({ segment, to }) => `segment ${segment} to node ${to}`);
      t.log(`repairs done: ${repairedSegments.join(', ')}`);
      // Everything is read back, in order, through each remaining node, with node 4 gone.
      const got: string[] = [];
      for (let index = 0; index < 45; index++) {
        const entry = await cluster.client(cluster.ids[index % 3] as number).get('repaired');
        if (entry === null) break;
        got.push(entry);
      }
      t.deepEqual(got, sent);
      const after = await cluster.client(2).state('repaired');
      t.false(Object.values(after.segment_leaders).includes(4), JSON.stringify(after.segment_leaders));
    });
  },
);
