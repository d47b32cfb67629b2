// Whether this machine can give a test process user and mount namespaces of its own
// (`unshare -rm`) with a tmpfs mounted inside: the disk-full and storage-outage tests run their
// children that way. And whether it can give one user and network namespaces (`unshare -rn`)
// with nftables inside: the network-namespace cluster tests (test/helpers/netns.ts) need that.
// Each answer is the reason it cannot, for a skipped test's title.

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_FLAGS } from './process.js';

/**
 * undefined when `unshare -rm` can mount a tmpfs here, else why not. With `procRoot`, also that
 * this process can reach a namespaced process's files through /proc/<pid>/root (root only).
 */
export function tmpfsNamespaceProblem(options: { readonly procRoot?: boolean } = {}): string | undefined {
  if (options.procRoot === true && process.getuid?.() !== 0) return 'not root: /proc/<pid>/root of a namespaced process is out of reach';
  const script =
    options.procRoot === true
      ? 'mount -t tmpfs -o size=1m tmpfs /mnt && sleep 0.3 & sleep 0.1; ls /proc/$!/root/ >/dev/null'
      : 'mount -t tmpfs -o size=1m tmpfs /mnt 2>&1 || mount -t tmpfs -o size=1m tmpfs /tmp';
  const probe = spawnSync('unshare', ['-rm', 'sh', '-c', script], { encoding: 'utf8', timeout: 10_000 });
  if (probe.error !== undefined) return `unshare cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -rm cannot mount a tmpfs here: ${(probe.stderr || probe.stdout).trim()}`;
  return undefined;
}

/** Where system tools live, searched after PATH (a non-root user's PATH may lack the sbin folders). */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];
const found = new Map<string, string | undefined>();

/**
 * The absolute path of system tool `name` whose `versionArgs` output matches `signature`, or
 * undefined. PATH folders inside node_modules are passed over: under npm and npx, PATH starts
 * with node_modules/.bin, and there `nft` is @vercel/nft's file tracer (an ava dependency),
 * which exits 0 on `nft add table ...` having done nothing.
 */
function systemTool(name: string, versionArgs: readonly string[], signature: RegExp): string | undefined {
  if (found.has(name)) return found.get(name);
  const fromPath = (process.env.PATH ?? '').split(':').filter((dir) => dir.startsWith('/') && !dir.split('/').includes('node_modules'));
  let result: string | undefined;
  for (const dir of new Set([...fromPath, ...SYSTEM_DIRS])) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
    } catch {
      continue;
    }
    const version = spawnSync(file, versionArgs, { encoding: 'utf8', timeout: 5_000 });
    if (version.status === 0 && signature.test(`${version.stdout}${version.stderr}`)) {
      result = file;
      break;
    }
  }
  found.set(name, result);
  return result;
}

/** netfilter's `nft` (Debian package nftables), by absolute path; undefined when it is not installed. */
export function nftTool(): string | undefined {
  return systemTool('nft', ['--version'], /^nftables v/m);
}

/** iproute2's `ip`, by absolute path; undefined when it is not installed. */
export function ipTool(): string | undefined {
  return systemTool('ip', ['-V'], /iproute2|ip utility/);
}

/**
 * undefined when `unshare -rn` can make a user and network namespace here in which `lo` comes up
 * and nftables takes a table (`unshare -rn sh -c 'ip link set lo up && nft add table inet
 * probe'`, with ip and nft by their absolute paths, see systemTool): what the
 * network-namespace cluster tests need. Else why not. The probe's table dies with its namespace.
 */
export function netNamespaceProblem(): string | undefined {
  const nft = nftTool();
  if (nft === undefined) return 'nft (nftables) is not installed';
  const ip = ipTool();
  if (ip === undefined) return 'ip (iproute2) is not installed';
  const probe = spawnSync('unshare', ['-rn', 'sh', '-c', '"$1" link set lo up && "$2" add table inet probe', 'sh', ip, nft], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (probe.error !== undefined) return `unshare cannot run: ${probe.error.message}`;
  if (probe.status !== 0) {
    const why = (probe.stderr || probe.stdout).trim().split('\n')[0] ?? '';
    return `unshare -rn with ip and nft does not work here: ${why || `exit ${probe.status ?? probe.signal}`}`;
  }
  return undefined;
}

/** What a scenario run in a network namespace of its own ended with. */
export interface NetnsOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs the built script `child` with `args` in `unshare -rn` (a network namespace of its own),
 * stopped with SIGTERM, then SIGKILL, a little after `deadlineMs`; afterwards stops by PID any
 * node it announced on stderr (`netns-node <id> <pid>`) that is still running from `dir`.
 */
export function runInNetNamespace(child: string, args: readonly string[], dir: string, deadlineMs: number): Promise<NetnsOutcome> {
  return new Promise((done) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('WALRUS_')) env[key] = value;
    // The one WALRUS_ variable a scenario reads: where its cluster keeps the metadata (netns.ts).
    if (process.env.WALRUS_TEST_CONSENSUS !== undefined) env.WALRUS_TEST_CONSENSUS = process.env.WALRUS_TEST_CONSENSUS;
    const running = spawn('unshare', ['-rn', process.execPath, ...NODE_FLAGS, child, ...args], {
      cwd: process.cwd(),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    running.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    running.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const term = setTimeout(() => running.kill('SIGTERM'), deadlineMs + 5_000);
    const kill = setTimeout(() => running.kill('SIGKILL'), deadlineMs + 10_000);
    running.on('close', (code, signal) => {
      clearTimeout(term);
      clearTimeout(kill);
      // `unshare` execs node, so the child's PID was the scenario's; its nodes are its children.
      // Normally it has stopped them; if it died first, stop each one still running from this dir
      // (etcd's data directory is under it too: it is announced as node 0).
      for (const [, pid] of stderr.matchAll(/^netns-node \d+ (\d+)$/gm)) {
        try {
          if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Gone already.
        }
      }
      done({ code, signal, stdout, stderr });
    });
  });
}
