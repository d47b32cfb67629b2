// The mmap backend: each data file is mapped shared read/write in fixed windows, mapped as they
// are first touched; an append is a copy into the mapping (no system call), and a read is a
// pread from the same page cache (see read()). Writes of MMAP_COPY_BYTES_MAX or more are
// pwrites instead: a copy into the mapping takes a page fault per fresh (or just synced) 4 KiB
// page, which caps it near 2.5 GB/s here, while pwrite of 64 KiB and more runs at 4–5 GB/s. Durability comes from msync(MS_SYNC) of the range written since the last sync, run
// on a libuv worker thread; when the file size changed as well, from fdatasync, which also
// covers the size. The file grows sparse (ftruncate, as with fd), and the blocks that writes are
// about to use are reserved with fallocate a few MiB at a time, so a full disk is an error from
// write() rather than a SIGBUS on a store into a page the file system cannot back, and a small
// log does not hold a whole extent of disk. Windows are unmapped (and their ArrayBuffers
// detached, so nothing in JS can reach them) when the file closes.
//
// Every copy stays below the size this object knows, and only this object changes that size, so
// no access lands past the end of the file (which would raise SIGBUS). Another process
// shrinking a file that is open here would break that promise: Walrus's directory lock keeps
// other Walrus instances out; nothing can stop an outside program.

import { closeSync, fdatasync, fstatSync, ftruncateSync, openSync, readSync, writeSync, writevSync } from 'node:fs';
import type { StorageBackend, StorageFile } from '../../contracts/storage.js';
import type { MmapNative } from './mmap-native.js';

/** Bytes each mapping covers (virtual address space, not memory: pages come and go with the page cache). */
export const MMAP_WINDOW_BYTES = 64 * 1024 * 1024;

/**
 * Writes below this size are copies into the mapping; larger ones are pwrites. Measured on this
 * machine (ext4, fresh pages, 256 MiB per size): 16 KiB writes 2.3–3.0 GB/s copied against
 * 1.7–2.5 GB/s with pwrite; 32 KiB 2.0–2.8 against 3.4–3.5; 256 KiB 2.7–2.9 against 5.0.
 */
export const MMAP_COPY_BYTES_MAX = 32 * 1024;

/** Disk blocks are reserved (fallocate) at least this far past a write. */
export const RESERVE_AHEAD_BYTES = 8 * 1024 * 1024;

/** Error codes after which reserving blocks is given up: the file system has no fallocate. */
const NO_FALLOCATE = new Set(['EOPNOTSUPP', 'ENOSYS']);

function closedError(path: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`EBADF: file is closed: ${path}`);
  error.code = 'EBADF';
  return error;
}

class MmapFile implements StorageFile {
  readonly path: string;
  private readonly native: MmapNative;
  private fd: number;
  /** The file's size; every copy stays below it. */
  private length: number;
  private readonly mappings: (ArrayBuffer | undefined)[] = [];
  private readonly windows: (Buffer | undefined)[] = [];
  /** Byte range written since the last sync started. */
  private dirtyFrom = Number.POSITIVE_INFINITY;
  private dirtyTo = 0;
  /** The size changed since the last sync started (msync alone would not make that durable). */
  private sizeChanged = false;
  private fallocateWorks = true;
  /** Where the range of the last sync ended, rounded up to a page: stores below it may hit a page that sync cleaned. */
  private cleanedTo = 0;
  /** Blocks of [reservedFrom, reservedTo) are allocated on disk (fallocate). */
  private reservedFrom = 0;
  private reservedTo = 0;
  private readonly syncing = new Set<Promise<void>>();
  private lastView: Uint8Array | undefined;
  private lastSource: Uint8Array | undefined;
  private lastOffset = -1;
  private lastLength = -1;

  constructor(native: MmapNative, path: string, create: boolean) {
    this.native = native;
    this.path = path;
    this.fd = openSync(path, create ? 'a+' : 'r+');
    if (create) {
      // 'a+' creates without truncating; reopen read-write (appends would ignore positions).
      closeSync(this.fd);
      this.fd = openSync(path, 'r+');
    }
    this.length = fstatSync(this.fd).size;
  }

  write(buffer: Uint8Array, position: number, offset = 0, length = buffer.length - offset): void {
    if (length <= 0) {
      this.checkOpen();
      return;
    }
    const end = position + length;
    this.prepare(position, end);
    const index = Math.floor(position / MMAP_WINDOW_BYTES);
    const within = position - index * MMAP_WINDOW_BYTES;
    if (length >= MMAP_COPY_BYTES_MAX || position < this.cleanedTo) {
      // A large write, or one into the page a sync has just written back: that page is
      // write-protected again, and a store into it takes a fault (and may wait for the
      // write-back); pwrite does not. Under fsync 'each' every append comes here.
      let done = 0;
      while (done < length) done += writeSync(this.fd, buffer, offset + done, length - done, position + done);
    } else if (within + length <= MMAP_WINDOW_BYTES) {
      this.window(index).set(this.source(buffer, offset, length), within);
    } else {
      let at = position;
      let from = offset;
      while (at < end) {
        const part = Math.floor(at / MMAP_WINDOW_BYTES);
        const inside = at - part * MMAP_WINDOW_BYTES;
        const count = Math.min(end - at, MMAP_WINDOW_BYTES - inside);
        this.window(part).set(buffer.subarray(from, from + count), inside);
        at += count;
        from += count;
      }
    }
    this.noteDirty(position, end);
  }

  writev(buffers: readonly Uint8Array[], position: number): void {
    let total = 0;
    for (const buffer of buffers) total += buffer.length;
    if (total < MMAP_COPY_BYTES_MAX || buffers.length === 1) {
      let at = position;
      for (const buffer of buffers) {
        this.write(buffer, at);
        at += buffer.length;
      }
      return;
    }
    // Large: one pwritev (see MMAP_COPY_BYTES_MAX), finished buffer by buffer if it comes up short.
    const end = position + total;
    this.prepare(position, end);
    const written = writevSync(this.fd, buffers as Uint8Array[], position);
    let at = position;
    for (const buffer of buffers) {
      const skip = Math.max(0, written - (at - position));
      for (let done = skip; done < buffer.length; ) done += writeSync(this.fd, buffer, done, buffer.length - done, at + done);
      at += buffer.length;
    }
    this.noteDirty(position, end);
  }

  read(buffer: Uint8Array, offset: number, length: number, position: number): number {
    this.checkOpen();
    if (position >= this.length || length <= 0) return 0;
    // pread, not a copy out of the mapping: the page cache is the same one, so what was stored
    // through the mapping is there, and a read never faults a page in on the event loop (one
    // fault per 4 KiB on first touch) nor, on tmpfs, allocates memory for a hole (a SIGBUS when
    // the tmpfs is full), nor touches pages past an end someone else truncated.
    const wanted = Math.min(length, this.length - position);
    let done = 0;
    while (done < wanted) {
      const count = readSync(this.fd, buffer, offset + done, wanted - done, position + done);
      if (count === 0) break;
      done += count;
    }
    return done;
  }

  size(): number {
    this.checkOpen();
    // The file system's word, in case the file changed behind this object (then copies stay inside it).
    this.length = fstatSync(this.fd).size;
    return this.length;
  }

  truncate(bytes: number): void {
    this.checkOpen();
    // Shrinking: pages past the new end leave the mappings, and nothing copies there (copies stay
    // below length). Their blocks are freed, so what was reserved past the end is no longer.
    this.resize(bytes);
    if (this.reservedTo > bytes) this.reservedTo = Math.max(this.reservedFrom, bytes);
  }

  sync(): Promise<void> {
    if (this.fd < 0) return Promise.reject(closedError(this.path));
    const from = this.dirtyFrom;
    const to = Math.min(this.dirtyTo, this.length);
    const sizeChanged = this.sizeChanged;
    if (to > from) this.cleanedTo = Math.ceil(to / this.native.pageSize) * this.native.pageSize;
    this.dirtyFrom = Number.POSITIVE_INFINITY;
    this.dirtyTo = 0;
    this.sizeChanged = false;
    let done: Promise<void>;
    if (sizeChanged) {
      // fdatasync writes the mapped pages back too, and the new size with them.
      const fd = this.fd;
      done = new Promise((resolve, reject) => fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
    } else if (to > from) {
      const parts: Promise<void>[] = [];
      for (let index = Math.floor(from / MMAP_WINDOW_BYTES); index * MMAP_WINDOW_BYTES < to; index++) {
        const start = Math.max(from, index * MMAP_WINDOW_BYTES) - index * MMAP_WINDOW_BYTES;
        const end = Math.min(to, (index + 1) * MMAP_WINDOW_BYTES) - index * MMAP_WINDOW_BYTES;
        parts.push(this.native.msync(this.mapping(index), start, end - start));
      }
      done = parts.length === 1 ? (parts[0] as Promise<void>) : Promise.all(parts).then(() => undefined);
    } else {
      return Promise.resolve();
    }
    const tracked = done.finally(() => this.syncing.delete(tracked));
    this.syncing.add(tracked);
    return tracked;
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    // A sync in flight still uses its mapping: let it finish (its outcome is its caller's business).
    while (this.syncing.size > 0) await Promise.allSettled([...this.syncing]);
    for (const mapping of this.mappings) if (mapping !== undefined) this.native.unmap(mapping);
    this.mappings.length = 0;
    this.windows.length = 0;
    closeSync(this.fd);
    this.fd = -1;
  }

  /**
   * `buffer[offset, offset + length)` as a view to copy from. Making a view costs more than
   * copying a small record, and the engine writes the same range of its staging buffer again and
   * again (one record per awaited append), so the last view is kept and reused when it matches.
   */
  private source(buffer: Uint8Array, offset: number, length: number): Uint8Array {
    if (offset === 0 && length === buffer.length) return buffer;
    // Compared by the source object, not its .buffer (a getter call): the engine passes the same
    // staging buffer every time.
    if (buffer === this.lastSource && offset === this.lastOffset && length === this.lastLength) return this.lastView as Uint8Array;
    const view = buffer.subarray(offset, offset + length);
    this.lastSource = buffer;
    this.lastOffset = offset;
    this.lastLength = length;
    this.lastView = view;
    return view;
  }

  /** Before bytes land in [position, end): open, big enough, and (where it can be) backed by reserved blocks. */
  private prepare(position: number, end: number): void {
    this.checkOpen();
    if (end > this.length) this.resize(end);
    if ((end > this.reservedTo || position < this.reservedFrom) && this.fallocateWorks) this.reserve(position, end);
  }

  private noteDirty(position: number, end: number): void {
    if (position < this.dirtyFrom) this.dirtyFrom = position;
    if (end > this.dirtyTo) this.dirtyTo = end;
  }

  private checkOpen(): void {
    if (this.fd < 0) throw closedError(this.path);
  }

  /** Sets the size (growing is sparse: blocks are reserved as writes approach them). */
  private resize(end: number): void {
    ftruncateSync(this.fd, end);
    this.length = end;
    this.sizeChanged = true;
  }

  /**
   * Allocates the blocks of [position, end) and of RESERVE_AHEAD_BYTES after it, within the file.
   * A full disk throws ENOSPC here, before any byte is stored. A file system without fallocate
   * stays sparse (a full disk would then be a SIGBUS: docs/operations.md).
   */
  private reserve(position: number, end: number): void {
    const contiguous = position >= this.reservedFrom && position <= this.reservedTo;
    const from = contiguous ? this.reservedTo : position;
    const to = Math.min(Math.max(end, from + RESERVE_AHEAD_BYTES), this.length);
    try {
      this.native.fallocate(this.fd, from, to - from);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (NO_FALLOCATE.has(code)) {
        this.fallocateWorks = false;
        return;
      }
      if (code !== 'ENOSPC' || to === end) throw error;
      // No room for the reserve ahead: the write itself may still fit (or throws ENOSPC here).
      this.native.fallocate(this.fd, from, end - from);
      if (!contiguous) this.reservedFrom = position;
      this.reservedTo = end;
      return;
    }
    if (!contiguous) this.reservedFrom = position;
    this.reservedTo = to;
  }

  private mapping(index: number): ArrayBuffer {
    let mapping = this.mappings[index];
    if (mapping === undefined) {
      mapping = this.native.map(this.fd, index * MMAP_WINDOW_BYTES, MMAP_WINDOW_BYTES);
      this.mappings[index] = mapping;
      this.windows[index] = Buffer.from(mapping);
    }
    return mapping;
  }

  private window(index: number): Buffer {
    const window = this.windows[index];
    if (window !== undefined) return window;
    this.mapping(index);
    return this.windows[index] as Buffer;
  }
}

export class MmapBackend implements StorageBackend {
  readonly name = 'mmap';
  private readonly native: MmapNative;

  constructor(native: MmapNative) {
    this.native = native;
  }

  open(path: string, options: { readonly create: boolean }): StorageFile {
    return new MmapFile(this.native, path, options.create);
  }
}
