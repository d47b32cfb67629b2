// The StorageBackend contract: the only way the engine touches data files. Reads and writes are
// synchronous and positional (on the event loop they cost about a microsecond each, far less
// than an async fs call); `sync` is the one slow call and runs off the event loop. Directory
// operations (listing, creating, unlinking, syncing a folder) stay in the engine.

export interface StorageFile {
  readonly path: string;
  /**
   * Writes `buffer[offset, offset + length)` (default: all of it) at `position`; throws on
   * failure (never a silent short write).
   */
  write(buffer: Uint8Array, position: number, offset?: number, length?: number): void;
  /** Writes the buffers back to back from `position`, all or throw. */
  writev(buffers: readonly Uint8Array[], position: number): void;
  /** Reads up to `length` bytes at `position` into `buffer` from `offset`; returns the count (short at EOF). */
  read(buffer: Uint8Array, offset: number, length: number, position: number): number;
  /** Current size of the file in bytes. */
  size(): number;
  /** Sets the size: shrinking discards, growing adds zeros (sparse where the file system can). */
  truncate(bytes: number): void;
  /** Makes everything written so far durable (fdatasync or equivalent), without blocking the event loop. */
  sync(): Promise<void>;
  /**
   * Optional: writev() and then sync() handed to the kernel together (io_uring links the
   * fdatasync to the write). The bytes are written when it returns (it throws like writev); the
   * promise settles like sync(). The writer uses it under `fsync: 'each'` when no sync is in flight.
   */
  writevAndSync?(buffers: readonly Uint8Array[], position: number): Promise<void>;
  /**
   * Optional: a hint that brings `[position, position + length)` into the OS page cache in the
   * background (fd and uring: a read of it on a worker thread); the promise settles,
   * never rejects, once the hint has run. It never changes what the file holds. The writer asks
   * for the part of its file just past what it has written: there the file is a hole, whose pages
   * come in zeroed and clean, so the writes copy into pages that exist (on a virtual machine whose
   * host backs memory as it is first touched, a write into fresh page cache costs several times more).
   */
  prefetch?(position: number, length: number): Promise<void>;
  close(): Promise<void>;
}

export interface StorageBackend {
  /** `fd`, `mmap`, `uring`, or a custom backend's name. */
  readonly name: string;
  /** Opens `path` for reading and writing, creating it when `create` is set. */
  open(path: string, options: { readonly create: boolean }): StorageFile;
}
