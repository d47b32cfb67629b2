// Three Raft members in one process on loopback, with real timers, files and sockets: a leader
// is elected, proposals are applied everywhere in one order, a stopped leader is replaced, and a
// restarted member catches up from its own files plus the new leader; each member knows which
// voters are live (a stopped one drops out of every member's list).

import { join } from 'node:path';
import test from 'ava';
import type { NodeId } from '../../src/plugins/raft/core/types.js';
import { RaftNode } from '../../src/plugins/raft/node.js';
import { withTempDir } from '../helpers/kernel.js';
import { freePorts, Journal, until } from '../helpers/net.js';

const TIMING = { tickMs: 10, electionMinMs: 150, electionMaxMs: 300, heartbeatMs: 30 };

test('three members elect a leader, replicate, fail over, and a restarted member catches up', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(3);
    const members = new Map<NodeId, { host: string; port: number }>(ports.map((port, index) => [index + 1, { host: '127.0.0.1', port }]));
    const journals = new Map<NodeId, Journal>();
    const nodes = new Map<NodeId, RaftNode>();
    const startNode = async (id: NodeId): Promise<void> => {
      const journal = new Journal();
      journals.set(id, journal);
      const address = members.get(id) ?? { host: '127.0.0.1', port: 0 };
      nodes.set(
        id,
        await RaftNode.start(
          { id, dir: join(dir, `n${id}`), host: address.host, port: address.port, members, timing: TIMING, snapshotEvery: 25 },
          journal,
        ),
      );
    };
    try {
      for (const id of members.keys()) await startNode(id);
      const leaderOf = (): RaftNode | undefined => [...nodes.values()].find((node) => node.status().role === 'leader');
      const first = await until('a leader', leaderOf);
      for (let index = 0; index < 40; index++) t.is(await first.propose(Buffer.from(`a${index}`)), index + 1);
      const expected = Array.from({ length: 40 }, (_, index) => `a${index}`);
      await until('every journal to hold 40 entries', () =>
        [...journals.values()].every((journal) => journal.items.length === 40) ? true : undefined,
      );
      for (const journal of journals.values()) t.deepEqual(journal.items, expected);
      // A follower forwards a proposal to the leader and resolves once it has applied it itself.
      const follower = [...nodes.values()].find((node) => node !== first) as RaftNode;
      t.is(await follower.propose(Buffer.from('via-follower')), 41, 'resolved with the result of its own apply');

      // Stop the leader: the other two elect a new one and go on.
      await first.stop();
      nodes.delete(first.id);
      const second = await until('a new leader', () => {
        const leader = leaderOf();
        return leader !== undefined && leader.id !== first.id ? leader : undefined;
      });
      await second.readBarrier();
      for (let index = 0; index < 10; index++) await second.propose(Buffer.from(`b${index}`));
      // Restart the old leader from its files: it rejoins as a follower and catches up.
      await startNode(first.id);
      const all = [...expected, 'via-follower', ...Array.from({ length: 10 }, (_, index) => `b${index}`)];
      // Followers learn that the last entry committed with the next heartbeat: wait for all three.
      await until('every member, the restarted one included, to hold 51 entries', () =>
        [...journals.values()].every((journal) => journal.items.length === 51) ? true : undefined,
      );
      for (const journal of journals.values()) t.deepEqual(journal.items, all);
      t.not(nodes.get(first.id)?.status().role, 'leader');
    } finally {
      for (const node of nodes.values()) await node.stop();
    }
  });
});

test('a one-member group elects itself at once and survives a restart', async (t) => {
  await withTempDir(async (dir) => {
    const [port = 0] = await freePorts(1);
    const members = new Map([[1, { host: '127.0.0.1', port }]]);
    const journal = new Journal();
    const node = await RaftNode.start({ id: 1, dir, host: '127.0.0.1', port, members, timing: TIMING }, journal);
    // Leader as soon as start() returns: no election timeout to wait for.
    t.is(node.status().role, 'leader');
    t.is(await node.propose(Buffer.from('one')), 1);
    await node.stop();
    const again = new Journal();
    const restarted = await RaftNode.start({ id: 1, dir, host: '127.0.0.1', port, members, timing: TIMING }, again);
    try {
      t.is(await restarted.propose(Buffer.from('two')), 2);
      t.deepEqual(again.items, ['one', 'two']);
    } finally {
      await restarted.stop();
    }
  });
});

test('a running group grows by one member (learner, then voter), and a stopping leader hands over', async (t) => {
  await withTempDir(async (dir) => {
    const [port1 = 0, port2 = 0] = await freePorts(2);
    const one = new Journal();
    const two = new Journal();
    const first = await RaftNode.start(
      {
        id: 1,
        dir: join(dir, 'n1'),
        host: '127.0.0.1',
        port: port1,
        members: new Map([[1, { host: '127.0.0.1', port: port1 }]]),
        timing: TIMING,
      },
      one,
    );
    const second = await RaftNode.start(
      {
        id: 2,
        dir: join(dir, 'n2'),
        host: '127.0.0.1',
        port: port2,
        members: new Map([[1, { host: '127.0.0.1', port: port1 }]]),
        joining: true,
        timing: TIMING,
      },
      two,
    );
    try {
      await first.propose(Buffer.from('before'));
      // A joining node waits to be added: it never elects itself.
      t.is(second.status().role, 'follower');
      t.deepEqual(second.status().membership, { voters: [], learners: [] });
      await first.changeMembership({ voters: [1], learners: [2] }, { id: 2, at: { host: '127.0.0.1', port: port2 } });
      await until('the learner to catch up', () => (two.items.length === 1 ? true : undefined));
      await first.changeMembership({ voters: [1, 2], learners: [] });
      t.is(await first.propose(Buffer.from('two voters')), 2);
      await until('both to apply it', () => (two.items.length === 2 ? true : undefined));
      t.deepEqual(second.status().membership, { voters: [1, 2], learners: [] });
      // One server at a time.
      await t.throwsAsync(first.changeMembership({ voters: [1, 2, 3, 4], learners: [] }), { message: /exactly one server/ });
      // The leader stops gracefully: it hands over, so node 2 leads without an election timeout.
      await first.stop();
      // The old leader has stepped down when stop() returns; node 2's win may still be on its way
      // (the vote reply), and on a loaded machine that can take a moment.
      await until('node 2 to lead', () => (second.status().role === 'leader' ? true : undefined));
      t.deepEqual(two.items, ['before', 'two voters']);
    } finally {
      await first.stop();
      await second.stop({ handOver: false });
    }
  });
});

test('live members: every member names the three; a stopped member drops out everywhere, and back when it restarts', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(3);
    const members = new Map<NodeId, { host: string; port: number }>(ports.map((port, index) => [index + 1, { host: '127.0.0.1', port }]));
    const nodes = new Map<NodeId, RaftNode>();
    const startNode = async (id: NodeId): Promise<void> => {
      const address = members.get(id) ?? { host: '127.0.0.1', port: 0 };
      nodes.set(id, await RaftNode.start({ id, dir: join(dir, `n${id}`), ...address, members, timing: TIMING }, new Journal()));
    };
    const liveEverywhere = (expected: readonly NodeId[]) => () =>
      [...nodes.values()].every((node) => node.liveMembers().join() === expected.join()) ? true : undefined;
    try {
      for (const id of members.keys()) await startNode(id);
      const leader = await until('a leader', () => [...nodes.values()].find((node) => node.status().role === 'leader'));
      // Followers learn the leader's view from its `live` reports.
      await until('every member to name 1, 2 and 3', liveEverywhere([1, 2, 3]), 10_000);
      // Stop a follower abruptly: once the leader has not heard from it for the window (the longest
      // election timeout, 300 ms here), it is left out, by the leader and by the other follower.
      const gone = [...nodes.values()].find((node) => node !== leader) as RaftNode;
      await gone.stop({ handOver: false });
      nodes.delete(gone.id);
      const rest = [1, 2, 3].filter((id) => id !== gone.id);
      await until(`the others to name only ${rest.join(' and ')}`, liveEverywhere(rest), 10_000);
      t.deepEqual([...leader.liveMembers()], rest);
      // It comes back from its files: named again once it answers the leader.
      await startNode(gone.id);
      await until('every member to name 1, 2 and 3 again', liveEverywhere([1, 2, 3]), 10_000);
      t.pass();
    } finally {
      for (const node of nodes.values()) await node.stop({ handOver: false });
    }
  });
});

test('live members: a member alone, without a leader, names only itself', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(3);
    const members = new Map<NodeId, { host: string; port: number }>(ports.map((port, index) => [index + 1, { host: '127.0.0.1', port }]));
    // Only node 1 of three runs: it can never win an election.
    const node = await RaftNode.start({ id: 1, dir, host: '127.0.0.1', port: ports[0] ?? 0, members, timing: TIMING }, new Journal());
    try {
      t.deepEqual([...node.liveMembers()], [1]);
      await new Promise((resolve) => setTimeout(resolve, 2 * TIMING.electionMaxMs));
      t.not(node.status().role, 'leader');
      t.deepEqual([...node.liveMembers()], [1]);
    } finally {
      await node.stop();
    }
  });
});
