// The fd backend: positional pread/pwrite/pwritev through Node's synchronous fs calls, and
// fdatasync through the libuv thread pool so the event loop never waits on the disk.
// Always available; pure TypeScript, apart from the optional page-cache hint (prefetch), which
// needs the native addon.

import { closeSync, fdatasync, fstatSync, ftruncateSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import type { StorageBackend, StorageFile } from '../../contracts/storage.js';
import { prefetcher } from './page-cache.js';

class FdFile implements StorageFile {
  readonly path: string;
  private fd: number;
  /** With the native addon: the range read on a worker thread, into the page cache (page-cache.ts). */
  readonly prefetch = prefetcher(() => this.fd);

  constructor(path: string, create: boolean) {
    this.path = path;
    this.fd = openSync(path, create ? 'a+' : 'r+');
    if (create) {
      // 'a+' creates without truncating; reopen read-write so positional writes are honoured.
      closeSync(this.fd);
      this.fd = openSync(path, 'r+');
    }
  }

  write(buffer: Uint8Array, position: number, offset = 0, length = buffer.length - offset): void {
    let done = 0;
    while (done < length) {
      done += writeSync(this.fd, buffer, offset + done, length - done, position + done);
    }
  }

  writev(buffers: readonly Uint8Array[], position: number): void {
    if (buffers.length === 1) {
      this.write(buffers[0] as Uint8Array, position);
      return;
    }
    let total = 0;
    for (const buffer of buffers) total += buffer.length;
    const written = writevSync(this.fd, buffers as Uint8Array[], position);
    if (written === total) return;
    // A short vectored write (signals, IOV_MAX): finish the rest buffer by buffer.
    let at = position;
    for (const buffer of buffers) {
      const end = at + buffer.length;
      if (written < end - position) {
        const skip = Math.max(0, written - (at - position));
        this.write(buffer.subarray(skip), at + skip);
      }
      at = end;
    }
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): number {
    let done = 0;
    while (done < length) {
      const count = readSync(this.fd, buffer, offset + done, length - done, position + done);
      if (count === 0) break;
      done += count;
    }
    return done;
  }

  size(): number {
    return fstatSync(this.fd).size;
  }

  truncate(bytes: number): void {
    ftruncateSync(this.fd, bytes);
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      fdatasync(this.fd, (error) => (error === null ? resolve() : reject(error)));
    });
  }

  async close(): Promise<void> {
    closeSync(this.fd);
    this.fd = -1;
  }
}

export class FdBackend implements StorageBackend {
  readonly name = 'fd';

  open(path: string, options: { readonly create: boolean }): StorageFile {
    return new FdFile(path, options.create);
  }
}
