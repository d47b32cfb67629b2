// A real etcd for tests (Debian's etcd-server): one member on 127.0.0.1 with its own temp data
// directory and two free loopback ports, stopped by its own PID. `etcdMissing` says why the tests
// that need one must skip (no `etcd` on the PATH).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestFn } from 'ava';
import { Etcd3 } from 'etcd3';
import { etcdClient } from '../../src/plugins/consensus-etcd/client.js';
import { freePorts } from './net.js';

/** Why etcd cannot run here, or undefined when it can. */
export const etcdMissing: string | undefined = (() => {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'etcd is not installed (Debian package etcd-server; .ci/run installs it)';
  }
})();

export interface TestEtcd {
  /** host:port of its client URL. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** A new client of it, set up as the plugin sets its own (close it yourself). */
  client(): Etcd3;
  /** SIGKILLs it (by PID) and waits for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same directory and ports; resolves once it answers. */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

export async function startEtcd(): Promise<TestEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), 'walrus-etcd-'));
  const [clientPort, peerPort] = await freePorts(2);
  const endpoint = `127.0.0.1:${clientPort}`;
  let child: ChildProcess | undefined;
  let log = '';
  const launch = async (): Promise<void> => {
    log = '';
    const started = spawn(
      'etcd',
      [
        '--name',
        'walrus-test',
        '--data-dir',
        dataDir,
        '--listen-client-urls',
        `http://${endpoint}`,
        '--advertise-client-urls',
        `http://${endpoint}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${peerPort}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${peerPort}`,
        '--initial-cluster',
        `walrus-test=http://127.0.0.1:${peerPort}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    started.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      log = (log + chunk).slice(-20_000);
    });
    child = started;
    const probe = new Etcd3({ hosts: endpoint, dialTimeout: 1000 });
    try {
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (started.exitCode !== null) throw new Error(`etcd exited with ${started.exitCode}:\n${log}`);
        try {
          await probe.get('walrus-test-probe').string();
          return;
        } catch (error) {
          if (Date.now() > deadline)
            throw new Error(`etcd did not answer on ${endpoint} within 15 s (${(error as Error).message}):\n${log}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    } finally {
      probe.close();
    }
  };
  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.pid === undefined) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    process.kill(running.pid, 'SIGKILL');
    await exited;
  };
  await launch();
  return {
    endpoint,
    dataDir,
    client: () => etcdClient({ endpoints: [endpoint], requestTimeoutMs: 2000 }),
    kill,
    restart: launch,
    stop: async () => {
      await kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * For a test file whose tests need an etcd: one is started before them and stopped after;
 * `run` declares a serial test, or a skipped one where etcd is missing, whose `title` then says
 * why; `etcd()` is the running one.
 */
export function withEtcd(test: TestFn): { run: typeof test.serial; title: (text: string) => string; etcd: () => TestEtcd } {
  let etcd: TestEtcd | undefined;
  test.before(async () => {
    if (etcdMissing === undefined) etcd = await startEtcd();
  });
  test.after.always(async () => {
    await etcd?.stop();
  });
  return {
    run: etcdMissing === undefined ? test.serial : (test.skip as unknown as typeof test.serial),
    title: (text) => (etcdMissing === undefined ? text : `${text} (skipped: ${etcdMissing})`),
    etcd: () => {
      if (etcd === undefined) throw new Error('etcd is not running');
      return etcd;
    },
  };
}
