// `walrus cluster start` as a user runs it: three real nodes from one command agree on one Raft
// leader and three voters, serve REGISTER / PUT / GET on the topic's leader, print every line
// whole behind its node's id, and all stop (their PIDs gone) on SIGINT with exit 0. A node that
// dies on its own is reported while the other keeps running. Bad input (a second cluster on the
// same data folder included) exits 2 before anything starts, naming the problem.

import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { WalrusClient } from '../../src/client/index.js';
import { withTempDir } from '../helpers/kernel.js';
import { freePortRun } from '../helpers/net.js';
import { type Running, runWalrusCommand, startWalrus } from '../helpers/process.js';

interface Announced {
  readonly id: number;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
}

const NODE_LINE = /^\[cluster\] {3}node (\d+) {2}client (\S+):(\d+) {2}raft \S+ {2}pid (\d+)$/;

/** The nodes listed in the ready summary. */
function announced(stdout: string): Announced[] {
  return stdout
    .split('\n')
    .map((line) => NODE_LINE.exec(line))
    .filter((match) => match !== null)
    .map((match) => ({ id: Number(match[1]), host: String(match[2]), port: Number(match[3]), pid: Number(match[4]) }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Polls `probe` (errors count as "not yet") every 100 ms until it returns a value; throws after `ms`. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = `: last error ${(error as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last}`);
    await sleep(100);
  }
}

/** Starts the command with free ports; resolves once its ready summary is out. */
async function startCluster(
  dir: string,
  nodes: number,
  env: Record<string, string> = {},
): Promise<{ cluster: Running; members: Announced[] }> {
  const base = await freePortRun(2 * nodes);
  const cluster = startWalrus(
    [
      'cluster',
      'start',
      '--nodes',
      String(nodes),
      '--client-port-base',
      String(base),
      '--raft-port-base',
      String(base + nodes),
      '--data-dir',
      join(dir, 'data'),
    ],
    { cwd: dir, env, lifetimeMs: 110_000 },
  );
  await cluster.waitForLine(new RegExp(`^\\[cluster\\] ${nodes} nodes ready`), 60_000);
  // The summary's last line: every node line is out by then.
  await cluster.waitForLine(/^\[cluster\] Ctrl-C stops every node$/, 5_000);
  const members = announced(cluster.stdout());
  return { cluster, members };
}

/** Whatever happened, no node outlives its test. */
async function killLeftovers(cluster: Running, members: readonly Announced[]): Promise<void> {
  for (const member of members) if (alive(member.pid)) process.kill(member.pid, 'SIGKILL');
  // The command too (it stops any node the test did not learn of), by its own PID.
  if (cluster.child.exitCode === null && cluster.child.signalCode === null) {
    cluster.child.kill('SIGINT');
    await Promise.race([cluster.exited, sleep(10_000)]);
  }
}

test.serial(
  'cluster start --nodes 3: one leader and three voters everywhere, REGISTER/PUT/GET on the topic leader, lines prefixed by node, SIGINT stops all three with exit 0',
  async (t) => {
    await withTempDir(async (dir) => {
      const { cluster, members } = await startCluster(dir, 3);
      const clients = new Map<number, WalrusClient>();
      try {
        t.deepEqual(
          members.map((member) => member.id),
          [1, 2, 3],
        );
        t.regex(cluster.stdout(), /^\[cluster\] try: walrus-cli --addr 127\.0\.0\.1:\d+ metrics/m);
        for (const member of members) {
          t.true(alive(member.pid), `node ${member.id} (pid ${member.pid}) runs`);
          clients.set(member.id, new WalrusClient({ host: member.host, port: member.port, timeoutMs: 10_000 }));
        }
        const client = (id: number) => clients.get(id) as WalrusClient;

        // One Raft group: every node names the same leader and the three voters.
        const leader = await eventually(
          'every node to report the same leader',
          async () => {
            const metrics = await Promise.all(members.map((member) => client(member.id).metrics()));
            const leaders = new Set(metrics.map((each) => each.current_leader));
            const [only] = leaders;
            return leaders.size === 1 && typeof only === 'number' ? { id: only, metrics } : undefined;
          },
          30_000,
        );
        t.true([1, 2, 3].includes(leader.id));
        for (const metrics of leader.metrics) {
          const configs = (metrics.membership_config as { membership: { configs: number[][] } }).membership.configs;
          t.deepEqual(
            configs.map((voters) => [...voters].sort()),
            [[1, 2, 3]],
          );
        }

        // A topic registered on the leader is known to all three, with one segment leader.
        await client(leader.id).register('orders');
        const topicLeader = (await client(leader.id).state('orders')).leader_node;
        await eventually(
          'every node to know the topic',
          async () => {
            const states = await Promise.all(members.map((member) => client(member.id).state('orders')));
            return states.every((state) => state.leader_node === topicLeader) ? true : undefined;
          },
          20_000,
        );
        await client(topicLeader).put('orders', 'order #1');
        await client(topicLeader).put('orders', 'order #2');
        t.is(await client(topicLeader).get('orders'), 'order #1');
        t.is(await client(topicLeader).get('orders'), 'order #2');
        t.is(await client(topicLeader).get('orders'), null);
      } finally {
        for (const each of clients.values()) await each.close();
      }

      cluster.child.kill('SIGINT');
      const finished = await cluster.exited;
      try {
        t.is(finished.code, 0, finished.stderr);
        for (const member of members) t.false(alive(member.pid), `node ${member.id} (pid ${member.pid}) is gone`);
        t.regex(finished.stdout, /^\[cluster\] SIGINT: stopping 3 nodes$/m);
        t.regex(finished.stdout, /^\[cluster\] all nodes stopped cleanly$/m);

        // Every line is whole and behind the id of the node that wrote it (pino puts its pid in each).
        const pidOf = new Map(members.map((member) => [member.id, member.pid]));
        const lines = finished.stdout.split('\n').filter((line) => line !== '');
        for (const line of lines) {
          const match = /^\[node (\d)\] (.*)$/.exec(line);
          if (match === null) {
            t.regex(line, /^\[cluster\] /);
            continue;
          }
          const entry = JSON.parse(match[2] as string) as { pid: number };
          t.is(entry.pid, pidOf.get(Number(match[1])) ?? -1, line);
        }
        for (const id of [1, 2, 3]) t.regex(finished.stdout, new RegExp(`^\\[node ${id}\\] \\{.*"msg":"stopped"\\}$`, 'm'));
        for (const line of finished.stderr.split('\n').filter((each) => each !== '')) t.regex(line, /^\[node \d\] /);
      } finally {
        await killLeftovers(cluster, members);
      }
    });
  },
);

test.serial(
  'a second cluster on the same data folder exits 2; a node that exits by itself is reported and the other keeps running; SIGINT then exits 1',
  async (t) => {
    await withTempDir(async (dir) => {
      // The environment reaches the nodes: at WALRUS_LOG_LEVEL=warn they log no info lines, and the
      // command, without their "ready" lines, sees them ready by their open client ports.
      const { cluster, members } = await startCluster(dir, 2, { WALRUS_LOG_LEVEL: 'warn' });
      try {
        const [first, second] = members as [Announced, Announced];
        // A second cluster on the same data folder (other ports) is refused: the nodes hold their directories.
        const base = await freePortRun(4);
        const again = await runWalrusCommand(
          [
            'cluster',
            'start',
            '--nodes',
            '2',
            '--client-port-base',
            String(base),
            '--raft-port-base',
            String(base + 2),
            '--data-dir',
            join(dir, 'data'),
          ],
          { cwd: dir },
        );
        t.is(again.code, 2, again.stderr);
        t.regex(again.stderr, new RegExp(`node directory \\S+/node_1 is in use by process ${first.pid}\\b`));
        t.regex(again.stderr, new RegExp(`node directory \\S+/node_2 is in use by process ${second.pid}\\b`));
        process.kill(first.pid, 'SIGKILL');
        await cluster.waitForLine(/^\[cluster\] node 1 exited by itself \(killed by SIGKILL\); 1 other node keeps running$/, 20_000);
        await sleep(500);
        t.true(alive(second.pid), 'node 2 still runs');
        t.is(cluster.child.exitCode, null, 'the command still runs');
        cluster.child.kill('SIGINT');
        const finished = await cluster.exited;
        t.is(finished.code, 1, 'not every node stopped cleanly');
        t.false(alive(second.pid), 'node 2 is gone');
        t.regex(finished.stdout, /^\[cluster\] node 2 stopped \(exit code 0\)$/m);
        t.regex(finished.stdout, /^\[cluster\] the log level hides the nodes' "ready" lines/m);
        t.notRegex(finished.stdout, /^\[node \d\] \{"level":30,/m);
      } finally {
        await killLeftovers(cluster, members);
      }
    });
  },
);

/** Holds 127.0.0.1:`port` until closed. */
async function hold(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(port, '127.0.0.1', done));
  return server;
}

test.serial('bad input exits 2 with a message naming the problem, and starts no node', async (t) => {
  await withTempDir(async (dir) => {
    const data = join(dir, 'data');
    const base = await freePortRun(6);
    const run = (args: readonly string[]) =>
      runWalrusCommand(
        ['cluster', 'start', '--data-dir', data, '--client-port-base', String(base), '--raft-port-base', String(base + 3), ...args],
        {
          cwd: dir,
        },
      );
    const refused = async (args: readonly string[], message: RegExp) => {
      const finished = await run(args);
      t.is(finished.code, 2, `${args.join(' ')}: ${finished.stderr}`);
      t.regex(finished.stderr, message);
      t.notRegex(finished.stdout, /\[node \d\]/);
    };

    await refused(['--nodes', '0'], /--nodes <n>' argument '0' is invalid\. expected a node count: an integer in 1\.\.9/);
    await refused(['--nodes', '10'], /argument '10' is invalid/);
    await refused(['--nodes', 'three'], /argument 'three' is invalid/);
    await refused(
      ['--raft-port-base', String(base + 1)],
      new RegExp(`127\\.0\\.0\\.1:${base + 1} would be both node 1's raft port and node 2's client port`),
    );
    await refused(['--client-port-base', '65534'], /--client-port-base 65534 with 3 nodes needs ports up to 65536, past 65535/);
    await refused(['--hosts', '127.0.0.1,127.0.0.2'], /--hosts lists 2 addresses for 3 nodes/);
    await refused(['--host', '127.0.0.1', '--hosts', '127.0.0.1,127.0.0.2,127.0.0.3'], /give --host or --hosts, not both/);

    const busy = await hold(base + 1);
    try {
      await refused([], new RegExp(`127\\.0\\.0\\.1:${base + 1} \\(node 2's client port\\) is already in use`));
    } finally {
      await new Promise((done) => busy.close(done));
    }
    // Nothing was written for any of these: every check comes before the data folder.
    t.false(existsSync(data));

    // A base config the nodes would refuse is refused once, by the command, before any node starts.
    const config = join(dir, 'bad.yaml');
    await writeFile(config, 'segments:\n  maxEntrys: 10\n');
    await refused(['--config', config], /CONFIG_INVALID.*\n.*segments\.maxEntrys: unknown key/);
  });
});

test.serial('walrus --help lists cluster, and walrus cluster --help lists start', async (t) => {
  await withTempDir(async (dir) => {
    const help = await runWalrusCommand(['--help'], { cwd: dir });
    t.is(help.code, 0);
    t.regex(help.stdout, /\n {2}cluster /);
    const cluster = await runWalrusCommand(['cluster', '--help'], { cwd: dir });
    t.is(cluster.code, 0);
    t.regex(cluster.stdout, /\n {2}start \[options\] +run N nodes on this machine as one cluster/);
    const start = await runWalrusCommand(['cluster', 'start', '--help'], { cwd: dir });
    t.is(start.code, 0);
    for (const option of [
      '--nodes <n>',
      '--client-port-base <port>',
      '--raft-port-base <port>',
      '--host <host>',
      '--hosts <list>',
      '--data-dir <dir>',
      '--config <file>',
    ]) {
      t.true(start.stdout.includes(option), option);
    }
  });
});
