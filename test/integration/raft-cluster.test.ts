// Three `walrus start` processes form a Raft group from one cluster config on loopback, with the
// default timing (election timeout 1–2 s). Each also loads a test plugin
// (test/helpers/raft-probe-plugin.ts) that proposes a command every 100 ms through Consensus and
// logs what it applies. Killing the leader with SIGKILL gets a new leader of a higher term (how
// long it takes is logged; the 3 s target is measured by `npm run bench -- raft`, not asserted
// here, where other tests share the cores), and the survivors' proposals keep committing; the old leader, restarted from its files, rejoins as a
// follower of the new one and catches up, applying the same commands at the same indexes.

import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import test from 'ava';
import { withTempDir } from '../helpers/kernel.js';
import { freePorts, until } from '../helpers/net.js';
import { type Running, startWalrus } from '../helpers/process.js';

interface RoleLine {
  readonly role: string;
  readonly term: number;
  readonly leader: number | null;
}

/** Every "raft role changed" line a process has logged so far, in order. */
function roles(node: Running): RoleLine[] {
  return node
    .stdout()
    .split('\n')
    .filter((line) => line.includes('"msg":"raft role changed"'))
    .map((line) => JSON.parse(line) as RoleLine);
}

function current(node: Running): RoleLine | undefined {
  return roles(node).at(-1);
}

const PROBE = resolve('build/test/helpers/raft-probe-plugin.js');

/** What a process's probe logged: commands applied (by index) and its own proposals that committed. */
function probe(node: Running): { applied: Map<number, string>; committed: string[] } {
  const applied = new Map<number, string>();
  const committed: string[] = [];
  for (const line of node.stdout().split('\n')) {
    if (line.includes('"msg":"probe applied"')) {
      const { index, command } = JSON.parse(line) as { index: number; command: string };
      applied.set(index, command);
    } else if (line.includes('"msg":"probe committed"')) {
      committed.push((JSON.parse(line) as { command: string }).command);
    }
  }
  return { applied, committed };
}

test.serial('kill -9 of the leader: a new leader of a higher term, proposals go on, and the old one rejoins and catches up', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(6);
    const entries = [1, 2, 3].map((id) => `    - { id: ${id}, clientPort: ${ports[id + 2]}, raftPort: ${ports[id - 1]} }`).join('\n');
    const config = join(dir, 'cluster.yaml');
    await writeFile(
      config,
      `plugins: [storage-fd, raft, ${JSON.stringify(PROBE)}]\nnode:\n  dataDir: ${join(dir, 'data')}\ncluster:\n  nodes:\n${entries}\n`,
    );
    const start = (id: number): Running =>
      startWalrus(['start', '--config', config, '--node-id', String(id)], { cwd: dir, lifetimeMs: 60_000 });
    const nodes = new Map<number, Running>([1, 2, 3].map((id) => [id, start(id)]));
    try {
      for (const node of nodes.values()) await node.waitForLine(/"msg":"ready"/);
      const [firstId, firstTerm] = await until(
        'a leader',
        () => {
          for (const [id, node] of nodes) {
            const line = current(node);
            if (line?.role === 'leader') return [id, line.term] as const;
          }
          return undefined;
        },
        10_000,
      );
      // Every member's proposals commit (the followers' through the leader).
      await until(
        'three commits on every member',
        () => ([...nodes.values()].every((node) => probe(node).committed.length >= 3) ? true : undefined),
        10_000,
      );
      nodes.get(firstId)?.child.kill('SIGKILL');
      await nodes.get(firstId)?.exited;
      const killedAt = Date.now();
      const survivors = [1, 2, 3].filter((id) => id !== firstId);
      const committedBefore = new Map(survivors.map((id) => [id, probe(nodes.get(id) as Running).committed.length]));
      const [secondId, secondTerm] = await until(
        'a new leader',
        () => {
          for (const [id, node] of nodes) {
            const line = current(node);
            if (id !== firstId && line?.role === 'leader' && line.term > firstTerm) return [id, line.term] as const;
          }
          return undefined;
        },
        10_000,
      );
      t.log(`new leader ${secondId} (term ${secondTerm}) after ${Date.now() - killedAt} ms`);
      t.not(secondId, firstId);

      // Proposals continue: each survivor gets five more of its own committed under the new leader.
      await until(
        'commits after the failover',
        () =>
          survivors.every((id) => probe(nodes.get(id) as Running).committed.length >= (committedBefore.get(id) ?? 0) + 5)
            ? true
            : undefined,
        10_000,
      );

      // The old leader comes back from its own files and follows the new leader.
      const committedWhileAway = probe(nodes.get(secondId) as Running).committed.at(-1) as string;
      nodes.set(firstId, start(firstId));
      await nodes.get(firstId)?.waitForLine(/"msg":"ready"/);
      const rejoined = await until(
        'the old leader to follow the new one',
        () => {
          const line = current(nodes.get(firstId) as Running);
          return line?.role === 'follower' && line.leader === secondId ? line : undefined;
        },
        10_000,
      );
      t.true(rejoined.term >= secondTerm);
      // Nobody else took over meanwhile: the restarted member did not disrupt the leader.
      t.is(current(nodes.get(secondId) as Running)?.role, 'leader');

      // It catches up: it applies what was committed while it was down...
      const restarted = nodes.get(firstId) as Running;
      await until(
        'the old leader to apply what was committed without it',
        () => ([...probe(restarted).applied.values()].includes(committedWhileAway) ? true : undefined),
        10_000,
      );
      // ...and every member applied the same command at every index (state machine safety across processes).
      const logs = [1, 2, 3].map((id) => probe(nodes.get(id) as Running).applied);
      const shared = Math.min(...logs.map((log) => Math.max(0, ...log.keys())));
      t.true(shared > 10, `only ${shared} indexes applied everywhere`);
      for (let index = 1; index <= shared; index++) {
        const commands = logs.map((log) => log.get(index));
        if (commands.some((command) => command !== undefined && command !== commands.find((other) => other !== undefined))) {
          t.fail(`index ${index}: ${JSON.stringify(commands)}`);
          break;
        }
      }
      // The restarted member replayed its own log from index 1 and filled in the rest: every command
      // the new leader applied up to there, it applied too (leaders' no-op entries carry none).
      const replay = logs[firstId - 1] as Map<number, string>;
      const leaderLog = logs[secondId - 1] as Map<number, string>;
      const missing = [...leaderLog.keys()].filter((index) => index <= shared && !replay.has(index));
      t.deepEqual(missing, [], 'indexes the restarted member never applied');
      t.true(replay.size >= 10, `the restarted member applied only ${replay.size} commands`);
    } finally {
      for (const node of nodes.values()) {
        if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
        await node.exited;
      }
    }
  });
});
