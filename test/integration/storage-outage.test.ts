// A real `walrus start` whose disk fills up: the node must stay up, refuse writes with a
// retriable STORAGE_UNAVAILABLE that names the errno, keep serving reads, take writes again by
// itself once space is freed, exit 0 on SIGTERM, and start (not crash-loop) on a disk that is
// still full. The nodes run inside their own user and mount namespaces (`unshare -rm`) on a
// 32 MiB tmpfs that also holds two filler files; the test frees space by deleting a filler
// through /proc/<pid>/root, the node's view of its namespace. Where unshare cannot mount a tmpfs,
// or /proc/<pid>/root is not reachable, the test is skipped and its title says why.

import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { ClientError, WalrusClient } from '../../src/client/index.js';
import { withTempDir } from '../helpers/kernel.js';
import { tmpfsNamespaceProblem } from '../helpers/namespaces.js';
import { NODE_FLAGS, type Running, startProcess, WALRUS_BIN } from '../helpers/process.js';

const FS_BYTES = 32 * 1024 * 1024;
const FILLER_MIB = 6;
const PAYLOAD = 'x'.repeat(60 * 1024);
/** The node tries the disk again every second (limits.storageRetryMs): generous room for that. */
const RESUMES_WITHIN_MS = 15_000;

const unavailable = tmpfsNamespaceProblem({ procRoot: true });
const TITLE =
  'a full disk: writes refused with STORAGE_UNAVAILABLE (ENOSPC), reads served, writes resume by themselves, SIGTERM exits 0, a restart on the still-full disk comes up';

/** Lines of the wrapper's stdout that are JSON log records, parsed. */
function records(node: Running): { readonly pid: number; readonly msg: string; readonly [key: string]: unknown }[] {
  return node
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { pid: number; msg: string });
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, node: Running): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; stdout:\n${node.stdout()}\nstderr:\n${node.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The `run`-th node the wrapper started (1-based): its PID and client port, once it is ready. */
async function nodeOf(node: Running, run: number): Promise<{ pid: number; port: number }> {
  return until(
    `node ${run} ready`,
    () => {
      const listening = records(node).filter((record) => record.msg === 'client protocol listening');
      const ready = records(node).filter((record) => record.msg === 'ready');
      const at = listening[run - 1];
      if (at === undefined || !ready.some((record) => record.pid === at.pid)) return undefined;
      return { pid: at.pid, port: at.port as number };
    },
    20_000,
    node,
  );
}

/** PUTs numbered entries until one is refused; returns the refusal. */
async function putUntilRefused(client: WalrusClient, acked: string[]): Promise<ClientError> {
  for (let attempt = 0; attempt < 2_000; attempt += 1) {
    const entry = `e${acked.length}`;
    try {
      await client.put('t', `${entry}:${PAYLOAD}`);
      acked.push(entry);
    } catch (error) {
      if (error instanceof ClientError) return error;
      throw error;
    }
  }
  throw new Error(`2,000 PUTs of 60 KiB fit on a ${FS_BYTES}-byte file system`);
}

function exitLine(node: Running, run: number): string | undefined {
  return node
    .stdout()
    .split('\n')
    .find((line) => line.startsWith(`walrus-exit ${run} `));
}

if (unavailable !== undefined) {
  test.skip(`${TITLE} (skipped: ${unavailable})`, (t) => t.pass());
} else {
  test.serial(TITLE, async (t) => {
    t.timeout(120_000);
    await withTempDir(async (dir) => {
      const data = join(dir, 'data');
      const config = join(dir, 'node.yaml');
      await writeFile(config, `node: { dataDir: ${JSON.stringify(data)}, clientPort: 0, raftPort: 0 }\n`);
      const walrus = [process.execPath, ...NODE_FLAGS, WALRUS_BIN, 'start', '--config', config].map((word) => `'${word}'`).join(' ');
      // Two node runs on one tmpfs; between them the wrapper fills whatever space is left.
      const script = [
        `mkdir -p "$1" && mount -t tmpfs -o size=${FS_BYTES} tmpfs "$1" || exit 9`,
        `dd if=/dev/zero of="$1/filler-a" bs=1M count=${FILLER_MIB} status=none || exit 9`,
        `dd if=/dev/zero of="$1/filler-b" bs=1M count=${FILLER_MIB} status=none || exit 9`,
        `${walrus}; echo "walrus-exit 1 $?"`,
        `dd if=/dev/zero of="$1/filler-c" bs=4k status=none 2>/dev/null; echo "disk-filled"`,
        `${walrus}; echo "walrus-exit 2 $?"`,
      ].join('\n');
      const node = startProcess('unshare', ['-rm', 'sh', '-c', script, 'sh', data], { cwd: dir, lifetimeMs: 110_000 });
      const pids: number[] = [];
      try {
        // --- run 1: the disk fills while the node runs
        const first = await nodeOf(node, 1);
        pids.push(first.pid);
        const client = new WalrusClient({ host: '127.0.0.1', port: first.port, timeoutMs: 10_000 });
        await client.register('t');
        const acked: string[] = [];
        const refused = await putUntilRefused(client, acked);
        t.is(refused.serverCode, 'STORAGE_UNAVAILABLE', refused.message);
        t.regex(refused.message, /^storage unavailable \(ENOSPC\): .*no space left on device/);
        t.true(acked.length * PAYLOAD.length > (FS_BYTES - 2 * FILLER_MIB * 1024 * 1024) / 2, `only ${acked.length} entries fit`);
        // Still up: STATE answers, GET and FETCH serve what it holds, writes stay refused.
        t.is((await client.state('t')).current_segment, 1);
        t.is((await client.get('t'))?.slice(0, 3), 'e0:');
        t.is((await client.get('t'))?.slice(0, 3), 'e1:');
        t.is((await client.fetch('t', 1, acked.length - 1))?.payload.split(':')[0], acked.at(-1));
        const again = await client.put('t', 'refused').catch((error: unknown) => error as ClientError);
        t.is((again as ClientError).serverCode, 'STORAGE_UNAVAILABLE');
        t.true((again as ClientError).retriable);
        // The outage is logged with its errno (stdout and the replies' TCP are separate pipes: wait).
        await until(
          'the outage is logged with its errno',
          () => records(node).find((record) => record.msg.startsWith('storage failed') && record.errno === 'ENOSPC'),
          5_000,
          node,
        );

        // Space comes back: writes resume by themselves, with no restart and no operator step.
        await rm(`/proc/${first.pid}/root${data}/filler-a`);
        await until(
          'writes resume',
          async () => {
            const entry = `e${acked.length}`;
            const ok = await client.put('t', `${entry}:${PAYLOAD}`).then(
              () => true,
              (error: unknown) => {
                if ((error as ClientError).serverCode !== 'STORAGE_UNAVAILABLE') throw error;
                return undefined;
              },
            );
            if (ok) acked.push(entry);
            return ok;
          },
          RESUMES_WITHIN_MS,
          node,
        );
        // The log line and the PUT's reply travel on different pipes (stdout, TCP): wait for the line.
        await until(
          'the resume is logged',
          () => records(node).find((record) => record.msg === 'storage accepts writes again: writes resume'),
          5_000,
          node,
        );
        t.is((await client.get('t'))?.slice(0, 3), 'e2:', 'GET goes on from where it was');
        // Full again, then stopped in the middle of that outage: SIGTERM still exits 0.
        t.is((await putUntilRefused(client, acked)).serverCode, 'STORAGE_UNAVAILABLE');
        await client.close();
        process.kill(first.pid, 'SIGTERM');
        t.is(await until('node 1 exits', () => exitLine(node, 1), 15_000, node), 'walrus-exit 1 0');

        // --- run 2: starts on a disk with no space at all
        const second = await nodeOf(node, 2);
        pids.push(second.pid);
        t.true(node.stdout().includes('disk-filled'));
        const restarted = new WalrusClient({ host: '127.0.0.1', port: second.port, timeoutMs: 10_000 });
        const onFull = await restarted.put('t', 'refused').catch((error: unknown) => error as ClientError);
        t.is((onFull as ClientError).serverCode, 'STORAGE_UNAVAILABLE', String(onFull));
        await rm(`/proc/${second.pid}/root${data}/filler-b`);
        await until(
          'writes resume after the restart',
          () =>
            restarted.put('t', 'after-restart').then(
              () => true,
              (error: unknown) => {
                if ((error as ClientError).serverCode !== 'STORAGE_UNAVAILABLE') throw error;
                return undefined;
              },
            ),
          RESUMES_WITHIN_MS,
          node,
        );
        // Every acknowledged entry is there, once, in order, followed by the new one.
        const read: string[] = [];
        for (let offset = 0; ; offset += 1) {
          const entry = await restarted.fetch('t', 1, offset);
          if (entry === null) break;
          read.push(entry.payload.split(':')[0] ?? '');
        }
        t.deepEqual(read, [...acked, 'after-restart']);
        // GET never skips: e0 and e1 were consumed during the outage and written when writes
        // resumed, so it goes on at e3, or at e2 again if the disk filled up before e2's move was
        // written (a move made during an outage and not written by the stop is delivered again).
        const next = (await restarted.get('t'))?.slice(0, 3);
        t.true(next === 'e3:' || next === 'e2:', `GET after the restart gave ${next}`);
        await restarted.close();
        process.kill(second.pid, 'SIGTERM');
        t.is(await until('node 2 exits', () => exitLine(node, 2), 15_000, node), 'walrus-exit 2 0');
        const exited = await node.exited;
        t.is(exited.code, 0, exited.stderr);
        t.false(/unhandled|uncaught/i.test(node.stderr()), node.stderr());
      } finally {
        for (const pid of pids) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
        node.child.kill('SIGKILL');
        await node.exited;
      }
    });
  });
}
