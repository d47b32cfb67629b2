// The io_uring part of Walrus's native addon (src/engine/storage/native/uring.c), narrowed
// from the one addon loader. `loadUring()` says why it cannot be used when it cannot: no addon, an
// addon built without <linux/io_uring.h>, or a kernel that refuses io_uring_setup (seccomp in
// containers, sysctl kernel.io_uring_disabled), found by creating and closing one small ring.

import { loadAddon } from '../native-addon.js';

declare const ringBrand: unique symbol;

/** A ring made by `create()`: an opaque handle, torn down by `close()` or when collected. */
export type UringRing = { readonly [ringBrand]: true };

/** Called once from the event loop when an async fdatasync completes. */
export type UringCallback = (error: NodeJS.ErrnoException | null) => void;

export interface UringNative {
  /** io_uring_setup with `entries` SQEs, plus the eventfd and uv_poll that deliver async completions. */
  create(entries: number): UringRing;
  /** pread through the ring (one READ, waited for in the call): the count, short only at EOF or past 2 GiB. */
  read(ring: UringRing, fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  /**
   * pwritev through the ring, waited for in the call: bytesWritten * 2 + 1 when every WRITEV had
   * completed by the time its submitting io_uring_enter returned (inline), else bytesWritten * 2.
   * Short only when the kernel wrote less (the caller finishes the rest).
   */
  writev(ring: UringRing, fd: number, buffers: readonly Uint8Array[], position: number): number;
  /** Submits an fdatasync and returns; `callback` runs later. Throws EAGAIN when the ring has too many in flight. */
  fsync(ring: UringRing, fd: number, callback: UringCallback): void;
  /**
   * `writev` followed by an fdatasync linked to it (IOSQE_IO_LINK), both in one submission; returns
   * as `writev` once the write is done, and `callback` runs when the fdatasync completes. After a
   * short write the kernel cancels the fdatasync: the callback gets ECANCELED. When this throws,
   * the callback is never called.
   */
  writevSync(ring: UringRing, fd: number, buffers: readonly Uint8Array[], position: number, callback: UringCallback): number;
  /** Releases the ring; idempotent. Throws EBUSY while callbacks are still due (see `pending`). */
  close(ring: UringRing): void;
  /** Async operations whose callbacks have not run yet. */
  pending(ring: UringRing): number;
}

export type UringLoad = { readonly native: UringNative } | { readonly unavailable: string };

let loaded: UringLoad | undefined;

export function loadUring(): UringLoad {
  loaded ??= narrow();
  return loaded;
}

/** Splits the number `writev` and `writevSync` return. */
export function decodeWrite(result: number): { readonly written: number; readonly inline: boolean } {
  return { written: Math.floor(result / 2), inline: result % 2 === 1 };
}

function narrow(): UringLoad {
  if (process.platform !== 'linux') return { unavailable: `io_uring is Linux only (this is ${process.platform})` };
  const addon = loadAddon();
  if ('unavailable' in addon) return addon;
  const part = addon.addon.uring as (Partial<UringNative> & { unavailable?: string }) | undefined;
  if (part === undefined) return { unavailable: 'the native addon has no uring part (rebuild it: npm run build:native)' };
  if (typeof part.unavailable === 'string') return { unavailable: part.unavailable };
  if (typeof part.create !== 'function') return { unavailable: 'the native addon has no uring part (rebuild it: npm run build:native)' };
  const native = part as UringNative;
  try {
    native.close(native.create(2));
  } catch (error) {
    return { unavailable: `io_uring_setup failed: ${(error as Error).message}` };
  }
  return { native };
}
