// The one lock of a node's directory, `<dataDir>/node_<id>/node.lock`, taken by `walrus start`
// before any plugin starts, so that a second node on the same directory fails before it touches
// the first one's Raft log or data. With the native addon it is flock(2) on a descriptor kept
// open for the process's lifetime: the kernel drops it when the holder dies, even before the
// dead process is reaped, and a recycled PID can never hold it. Without the addon the file holds
// `<pid> <starttime>` and a holder that is gone, a zombie, or a PID now owned by a process that
// started at another time does not count (best effort: two starts in the same instant can both
// win, which flock rules out). Either way the file's text names the holder for the error.

import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { loadAddon } from '../engine/native-addon.js';
import { currentProcess, formatHolder, parseHolder, stillRuns } from '../engine/process-holder.js';
import { BusyError, StorageError } from '../kernel/errors.js';

export const NODE_LOCK_FILE = 'node.lock';

export interface NodeLock {
  /** The locked node directory, absolute. */
  readonly dir: string;
  /** `flock` with the addon, `pid-file` without it. */
  readonly kind: 'flock' | 'pid-file';
  /** Gives the lock up (idempotent); dying gives it up too. */
  release(): void;
}

type TryExclusive = (fd: number) => boolean;

function nativeFlock(): TryExclusive | undefined {
  const load = loadAddon();
  if (!('addon' in load)) return undefined;
  const flock = load.addon.flock as { tryExclusive?: unknown } | undefined;
  return typeof flock?.tryExclusive === 'function' ? (flock.tryExclusive as TryExclusive) : undefined;
}

/**
 * Creates `dir` and its missing parents one level at a time. Not mkdirSync's `recursive`: on
 * Node 20 it loops forever, in C++ and deaf to signals, when mkdir answers ENOENT for a parent
 * that exists (as /proc does for `/proc/walrus`).
 */
export function ensureDirectory(dir: string): void {
  try {
    mkdirSync(dir);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (statSync(dir).isDirectory()) return;
      throw error;
    }
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw error;
  }
  ensureDirectory(dirname(dir));
  mkdirSync(dir);
}

function holderText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function locked(dir: string, path: string, pid: number | undefined): BusyError {
  const who = pid === undefined ? 'another process' : `process ${pid}`;
  return new BusyError(
    'DIRECTORY_LOCKED',
    `node directory ${dir} is in use by ${who} (lock ${path}); one node at a time may use it: stop that node or pick another --data-dir or --node-id`,
    { details: { dir, ...(pid === undefined ? {} : { pid }) } },
  );
}

/** Takes the lock of `<dataDir>/node_<nodeId>/`, creating the directory; throws DIRECTORY_LOCKED or IO. */
export function lockNodeDirectory(dataDir: string, nodeId: number): NodeLock {
  const dir = resolve(dataDir, `node_${nodeId}`);
  try {
    ensureDirectory(dir);
  } catch (error) {
    throw new StorageError('IO', `cannot create the node directory ${dir}: ${(error as Error).message}`, {
      cause: error,
      details: { dir },
    });
  }
  const path = join(dir, NODE_LOCK_FILE);
  const tryExclusive = nativeFlock();
  return tryExclusive === undefined ? pidFileLock(dir, path) : flockLock(dir, path, tryExclusive);
}

function openLockFile(dir: string, path: string): number {
  try {
    return openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    throw new StorageError('IO', `cannot open the node lock ${path}: ${(error as Error).message}`, { cause: error, details: { dir } });
  }
}

function writeHolder(fd: number): void {
  ftruncateSync(fd, 0);
  writeSync(fd, formatHolder(currentProcess()), 0);
}

function flockLock(dir: string, path: string, tryExclusive: TryExclusive): NodeLock {
  const fd = openLockFile(dir, path);
  let held: boolean;
  try {
    held = tryExclusive(fd);
  } catch (error) {
    closeSync(fd);
    throw new StorageError('IO', `cannot lock ${path}: ${(error as Error).message}`, { cause: error, details: { dir } });
  }
  if (!held) {
    closeSync(fd);
    throw locked(dir, path, parseHolder(holderText(path))?.pid);
  }
  // The text only names the holder for the message above; the flock is the lock.
  writeHolder(fd);
  let open = true;
  return {
    dir,
    kind: 'flock',
    release: () => {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

function pidFileLock(dir: string, path: string): NodeLock {
  const holder = parseHolder(holderText(path));
  if (holder !== undefined && holder.pid !== process.pid && stillRuns(holder)) throw locked(dir, path, holder.pid);
  const fd = openLockFile(dir, path);
  try {
    writeHolder(fd);
  } finally {
    closeSync(fd);
  }
  const mine = formatHolder(currentProcess());
  let held = true;
  return {
    dir,
    kind: 'pid-file',
    release: () => {
      if (!held) return;
      held = false;
      // Only our own record is removed: a file that names another process is that process's lock.
      if (holderText(path) === mine) unlinkSync(path);
    },
  };
}
