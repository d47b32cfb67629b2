// Whether this machine can give a test process user and mount namespaces of its own
// (`unshare -rm`) with a tmpfs mounted inside: the disk-full and storage-outage tests run their
// children that way. Each answer is the reason it cannot, for a skipped test's title.

import { spawnSync } from 'node:child_process';

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
