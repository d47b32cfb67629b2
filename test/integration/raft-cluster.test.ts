// Three `walrus start` processes form a Raft group from one cluster config on loopback, with the
// default timing (election timeout 1–2 s). Killing the leader with SIGKILL gets a new leader
// within 3 s; the old leader, restarted from its files, rejoins as a follower of the new one.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
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

test.serial('kill -9 of the leader: a new leader within 3 s, and the old one rejoins as its follower', async (t) => {
  await withTempDir(async (dir) => {
    const ports = await freePorts(6);
    const entries = [1, 2, 3].map((id) => `    - { id: ${id}, clientPort: ${ports[id + 2]}, raftPort: ${ports[id - 1]} }`).join('\n');
    const config = join(dir, 'cluster.yaml');
    await writeFile(config, `node:\n  dataDir: ${join(dir, 'data')}\ncluster:\n  nodes:\n${entries}\n`);
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
      nodes.get(firstId)?.child.kill('SIGKILL');
      await nodes.get(firstId)?.exited;
      const killedAt = Date.now();
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
      const failoverMs = Date.now() - killedAt;
      t.true(failoverMs < 3000, `new leader after ${failoverMs} ms`);
      t.not(secondId, firstId);

      // The old leader comes back from its own files and follows the new leader.
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
    } finally {
      for (const node of nodes.values()) {
        if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
        await node.exited;
      }
    }
  });
});
