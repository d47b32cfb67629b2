// A throw-away XFS file system on a loop device, for tests that emulate a power cut: a sparse
// image file, attached with `losetup -f --show`, formatted and mounted in a temp folder.
// `cut()` runs `xfs_io -x -c shutdown` (without -f: the journal is not flushed first), so
// whatever was not made durable by an fsync is gone, as after a power loss; `remount()` then
// mounts it again, which replays the journal. Needs root, losetup, mkfs.xfs, xfs_io and loop
// devices; `loopXfsUnavailable()` says what is missing. `dispose()` unmounts and detaches only
// the device this object attached, whatever state it is left in.

import { execFile, spawnSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** mkfs.xfs refuses file systems below 300 MiB; the image is sparse, so this costs no disk. */
const IMAGE_BYTES = 512 * 1024 * 1024;
const COMMAND_TIMEOUT_MS = 30_000;
/** How long the old file system may stay held after umount (a dead process's files being released). */
const RELEASE_WAIT_MS = 20_000;

const TOOLS: readonly { readonly name: string; readonly versionFlag: string }[] = [
  { name: 'losetup', versionFlag: '--version' },
  { name: 'mkfs.xfs', versionFlag: '-V' },
  { name: 'xfs_io', versionFlag: '-V' },
  { name: 'mount', versionFlag: '--version' },
  { name: 'umount', versionFlag: '--version' },
];

/** Runs a command; rejects with its stderr when it fails. */
function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout.trim());
      else reject(new Error(`${command} ${args.join(' ')} failed: ${(stderr || error.message).trim()}`));
    });
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class LoopXfs {
  /** The mount point: everything written under it lives on the loop device. */
  readonly mountPoint: string;
  private device: string | undefined;
  private mounted = false;

  private constructor(
    private readonly folder: string,
    private readonly image: string,
  ) {
    this.mountPoint = join(folder, 'mnt');
  }

  /** Creates, formats and mounts a fresh file system. Call dispose() in a finally, even if this throws. */
  static async create(): Promise<LoopXfs> {
    const folder = await mkdtemp(join(tmpdir(), 'walrus-power-cut-'));
    const disk = new LoopXfs(folder, join(folder, 'disk.img'));
    try {
      await disk.setUp();
    } catch (error) {
      await disk.dispose();
      throw error;
    }
    return disk;
  }

  private async setUp(): Promise<void> {
    const file = await open(this.image, 'w');
    try {
      await file.truncate(IMAGE_BYTES);
    } finally {
      await file.close();
    }
    // The device is remembered the moment losetup names it, so dispose() detaches it and no other.
    this.device = await run('losetup', ['-f', '--show', this.image]);
    if (!/^\/dev\/loop\d+$/.test(this.device)) throw new Error(`losetup named an unexpected device: ${this.device}`);
    await run('mkfs.xfs', ['-q', '-f', this.device]);
    await mkdir(this.mountPoint);
    await this.mount();
  }

  /** The loop device, for messages. */
  get deviceName(): string {
    return this.device ?? '(none)';
  }

  private async mount(): Promise<void> {
    if (this.device === undefined) throw new Error('no loop device attached');
    await run('mount', ['-t', 'xfs', this.device, this.mountPoint]);
    this.mounted = true;
  }

  /** Emulates a power cut: the file system stops at once and keeps only what was made durable. */
  async cut(): Promise<void> {
    await run('xfs_io', ['-x', '-c', 'shutdown', this.mountPoint]);
  }

  /** Unmounts and mounts again (XFS replays its journal). Every process using the mount must be gone. */
  async remount(): Promise<void> {
    await this.unmount();
    await this.released();
    await this.mount();
  }

  /**
   * Waits until the kernel has let go of the old file system. umount detaches the mount at once,
   * but a dead process can still hold its files for a moment (an io_uring ring is torn down after
   * its process exits); a mount then reuses the old, shut-down file system instead of replaying
   * the journal. An exclusive open of the device succeeds only once nothing holds it.
   */
  private async released(): Promise<void> {
    if (this.device === undefined) throw new Error('no loop device attached');
    const deadline = Date.now() + RELEASE_WAIT_MS;
    for (;;) {
      try {
        const handle = await open(this.device, constants.O_RDONLY | constants.O_EXCL);
        await handle.close();
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
        if (Date.now() > deadline) throw new Error(`${this.device} is still in use ${RELEASE_WAIT_MS} ms after umount`);
        await pause(100);
      }
    }
  }

  private async unmount(): Promise<void> {
    if (!this.mounted) return;
    // A process that just died may hold the mount for a moment longer; retry briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await run('umount', [this.mountPoint]);
        this.mounted = false;
        return;
      } catch (error) {
        if (attempt >= 10) throw error;
        await pause(200);
      }
    }
  }

  /** Unmounts, detaches this object's loop device and removes the temp folder. Never throws. */
  async dispose(): Promise<string[]> {
    const problems: string[] = [];
    if (this.mounted) {
      await this.unmount().catch(async (error: Error) => {
        problems.push(error.message);
        // Still busy: detach it from the tree so the device can go; the kernel frees it when unused.
        await run('umount', ['-l', this.mountPoint]).then(
          () => {
            this.mounted = false;
          },
          (lazy: Error) => problems.push(lazy.message),
        );
      });
    }
    if (this.device !== undefined) {
      const device = this.device;
      await run('losetup', ['-d', device]).then(
        () => {
          this.device = undefined;
        },
        (error: Error) => problems.push(error.message),
      );
    }
    // Never remove a folder that may still have a file system mounted inside it.
    if (!this.mounted) await rm(this.folder, { recursive: true, force: true }).catch((error: Error) => problems.push(error.message));
    return problems;
  }
}

/**
 * Why a loop-mounted XFS cannot be made here, or undefined when it can: not root, a tool
 * missing, or the whole chain (attach, format, mount, unmount, detach) failing on a probe.
 */
export async function loopXfsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'needs root (losetup and mount)';
  const missing = TOOLS.filter(({ name, versionFlag }) => {
    const probe = spawnSync(name, [versionFlag], { stdio: 'ignore', timeout: 10_000 });
    return probe.error !== undefined;
  }).map(({ name }) => name);
  if (missing.length > 0) return `${missing.join(', ')} not installed (xfsprogs, util-linux)`;
  let disk: LoopXfs;
  try {
    disk = await LoopXfs.create();
  } catch (error) {
    return `cannot make a loop-mounted XFS here: ${(error as Error).message}`;
  }
  const problems = await disk.dispose();
  if (problems.length > 0) return `cleaning up the probe failed: ${problems.join('; ')}`;
  return undefined;
}
