// The io_uring backend: one ring per backend (made on the first open), driven by the uring part
// of the native addon. fdatasync is an IORING_OP_FSYNC whose completion comes back through an
// eventfd polled by the event loop, so a sync needs neither a libuv worker thread nor a wake-up
// across threads; large reads go through the ring; writes go through it only while the kernel
// completes them inline (see UringFile). Positions, loops and errors follow the fd backend.

import { closeSync, fstatSync, ftruncateSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import type { StorageBackend, StorageFile } from '../../contracts/storage.js';
import { prefetcher } from './page-cache.js';
import { decodeWrite, loadUring, type UringNative, type UringRing } from './uring-native.js';

/** Submission queue entries of each backend's ring (the completion queue gets twice as many). */
export const RING_ENTRIES = 64;

/**
 * Reads of at least this many bytes go through the ring; smaller ones use readSync. Measured here
 * (kernel 6.18, ext4, page cache): 256 B reads 2.0 M/s through the ring against 3.4 M/s with
 * pread; 64 KiB 3.19 µs against 3.12 µs; 256 KiB (the engine's read-ahead) 16.3 µs against 15.2;
 * 1 MiB 51.9 µs against 56.6; 4 MiB (recovery's chunks) level. So only reads of 1 MiB and more.
 */
export const RING_READ_MIN_BYTES = 1024 * 1024;

function closedError(path: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`EBADF: file is closed: ${path}`);
  error.code = 'EBADF';
  return error;
}

class UringFile implements StorageFile {
  readonly path: string;
  private readonly backend: UringBackend;
  private readonly native: UringNative;
  private readonly ring: UringRing;
  private fd: number;
  private closed = false;
  /** The range read on a worker thread, into the page cache (page-cache.ts), as the fd backend. */
  readonly prefetch = prefetcher(() => (this.closed ? -1 : this.fd));
  private closing: Promise<void> | undefined;
  private mode: 'ring' | 'pwritev' = 'ring';
  /** This file's fdatasyncs in flight: close() waits for them before the fd number can be reused. */
  private readonly syncing = new Set<Promise<void>>();

  constructor(backend: UringBackend, native: UringNative, ring: UringRing, path: string, create: boolean) {
    this.backend = backend;
    this.native = native;
    this.ring = ring;
    this.path = path;
    this.fd = openSync(path, create ? 'a+' : 'r+');
    if (create) {
      // 'a+' creates without truncating; reopen read-write so positional writes are honoured.
      closeSync(this.fd);
      this.fd = openSync(path, 'r+');
    }
  }

  /**
   * How writes reach the file: `ring` (WRITEV through io_uring) until a write is not completed
   * inline, then `pwritev` (fs.writeSync / fs.writevSync) for good. A buffered write that the
   * kernel does not finish during io_uring_enter is punted to io-wq worker threads, and waiting
   * for it costs far more than a pwrite: on ext4 here (kernel 6.18) submit-and-wait ran 256 B
   * writes at 64 k/s against 2.0 M/s for pwrite, and 28.8 KB writes at 34 k/s against 103 k/s.
   * The first write normally tells which kind of file system this is. (A punted write that is
   * done before io_uring_enter returns looks inline, so on a busy machine the switch can come a
   * few writes later; the data is the same either way.)
   */
  get writePath(): 'ring' | 'pwritev' {
    return this.mode;
  }

  write(buffer: Uint8Array, position: number, offset = 0, length = buffer.length - offset): void {
    const fd = this.open();
    if (this.mode === 'ring' && length > 0) {
      this.ringWrite(fd, [offset === 0 && length === buffer.length ? buffer : buffer.subarray(offset, offset + length)], position);
      return;
    }
    let done = 0;
    while (done < length) {
      done += writeSync(fd, buffer, offset + done, length - done, position + done);
    }
  }

  writev(buffers: readonly Uint8Array[], position: number): void {
    const fd = this.open();
    if (this.mode === 'ring') {
      this.ringWrite(fd, buffers, position);
      return;
    }
    if (buffers.length === 1) {
      this.write(buffers[0] as Uint8Array, position);
      return;
    }
    const written = writevSync(fd, buffers as Uint8Array[], position);
    this.finish(buffers, position, written);
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): number {
    const fd = this.open();
    let done = 0;
    while (done < length) {
      const left = length - done;
      const count =
        left >= RING_READ_MIN_BYTES
          ? this.native.read(this.ring, fd, buffer, offset + done, left, position + done)
          : readSync(fd, buffer, offset + done, left, position + done);
      if (count === 0) break;
      done += count;
    }
    return done;
  }

  size(): number {
    return fstatSync(this.open()).size;
  }

  truncate(bytes: number): void {
    ftruncateSync(this.open(), bytes);
  }

  sync(): Promise<void> {
    if (this.closed) return Promise.reject(closedError(this.path));
    return this.track(this.backend.fdatasync(this.ring, this.fd));
  }

  /**
   * Writes the buffers from `position` and makes them durable. The write is done when this returns
   * (it throws if the write fails, like writev); the promise settles when the fdatasync has
   * completed. On the ring write path the WRITEV and an fdatasync linked to it (IOSQE_IO_LINK) go
   * to the kernel in one submission. On the pwritev path it is writev() and then sync(): a linked
   * WRITEV is punted to io-wq like any other there, and waiting for it kept the event loop 120 to
   * 190 µs per call here, against about 50 µs for pwritev plus submitting the fdatasync.
   */
  writevAndSync(buffers: readonly Uint8Array[], position: number): Promise<void> {
    const fd = this.open();
    if (this.mode === 'pwritev') {
      this.writev(buffers, position);
      return this.sync();
    }
    let total = 0;
    for (const buffer of buffers) total += buffer.length;
    let callback: ((error: Error | null) => void) | undefined;
    const synced = new Promise<void>((resolve, reject) => {
      callback = (error) => (error === null ? resolve() : reject(error));
    });
    let result: number;
    try {
      result = this.native.writevSync(this.ring, fd, buffers, position, callback as (error: Error | null) => void);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      // The ring has as many fdatasyncs in flight as it can take: write, then queue a plain sync.
      this.writev(buffers, position);
      return this.sync();
    }
    const { written, inline } = decodeWrite(result);
    if (!inline) this.mode = 'pwritev';
    const counted = this.backend.counted(synced);
    if (written === total) return this.track(counted);
    // A short write: the kernel cancelled the linked fdatasync (its callback gets ECANCELED).
    // Write the rest here, then sync on its own.
    this.track(counted).catch(() => {});
    this.finish(buffers, position, written);
    return this.sync();
  }

  async close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      // The kernel still holds this fd for a sync in flight: closing it now could let the number be
      // reused and the sync land on another file. A sync's outcome is its caller's business.
      while (this.syncing.size > 0) await Promise.allSettled([...this.syncing]);
      closeSync(this.fd);
      this.fd = -1;
    })();
    return this.closing;
  }

  private open(): number {
    if (this.closed) throw closedError(this.path);
    return this.fd;
  }

  private track(done: Promise<void>): Promise<void> {
    const tracked = done.finally(() => this.syncing.delete(tracked));
    this.syncing.add(tracked);
    return tracked;
  }

  private ringWrite(fd: number, buffers: readonly Uint8Array[], position: number): void {
    const { written, inline } = decodeWrite(this.native.writev(this.ring, fd, buffers, position));
    if (!inline) this.mode = 'pwritev';
    this.finish(buffers, position, written);
  }

  /** After a vectored write of `written` bytes: writes what is left, buffer by buffer (as FdFile does). */
  private finish(buffers: readonly Uint8Array[], position: number, written: number): void {
    let at = position;
    for (const buffer of buffers) {
      const end = at + buffer.length;
      if (written < end - position) {
        const skip = Math.max(0, written - (at - position));
        let done = skip;
        while (done < buffer.length) {
          done += writeSync(this.fd, buffer, done, buffer.length - done, at + done);
        }
      }
      at = end;
    }
  }
}

export class UringBackend implements StorageBackend {
  readonly name = 'uring';
  private readonly native: UringNative;
  private ring: UringRing | undefined;
  /** fdatasyncs submitted and not yet called back. */
  private inFlight = 0;
  /** Callers waiting for room on the ring, woken one per completed fdatasync. */
  private readonly waiting: (() => void)[] = [];

  constructor(native: UringNative) {
    this.native = native;
  }

  open(path: string, options: { readonly create: boolean }): StorageFile {
    this.ring ??= this.native.create(RING_ENTRIES);
    return new UringFile(this, this.native, this.ring, path, options.create);
  }

  /**
   * Releases the ring now rather than when the backend is collected (an idle ring keeps no event
   * loop alive either way). Throws EBUSY while an fdatasync is in flight; a later open() makes a new ring.
   */
  close(): void {
    if (this.ring === undefined) return;
    this.native.close(this.ring);
    this.ring = undefined;
  }

  /**
   * An fdatasync of `fd` through the ring. Each call submits its own; when the ring already has as
   * many in flight as its completion queue allows (the native side says EAGAIN), it queues until
   * one of them completes and submits then.
   */
  async fdatasync(ring: UringRing, fd: number): Promise<void> {
    for (;;) {
      const submitted = this.submit(ring, fd);
      if (submitted !== undefined) return submitted;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private submit(ring: UringRing, fd: number): Promise<void> | undefined {
    let callback: ((error: Error | null) => void) | undefined;
    const done = new Promise<void>((resolve, reject) => {
      callback = (error) => (error === null ? resolve() : reject(error));
    });
    try {
      this.native.fsync(ring, fd, callback as (error: Error | null) => void);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN' && this.inFlight > 0) return undefined;
      throw error;
    }
    return this.counted(done);
  }

  /** Counts an fdatasync submitted to the ring until it calls back (then wakes one waiting caller). */
  counted(done: Promise<void>): Promise<void> {
    this.inFlight++;
    return done.finally(() => {
      this.inFlight--;
      this.waiting.shift()?.();
    });
  }
}

/** A uring backend when io_uring can run here, else why not. */
export function createUringBackend(): UringBackend | { readonly unavailable: string } {
  const loaded = loadUring();
  return 'unavailable' in loaded ? loaded : new UringBackend(loaded.native);
}
