// The mmap part of Walrus's native addon (src/engine/storage/native/mmap.c), narrowed from
// the one addon loader. `loadMmap()` says why it cannot be used when it cannot.

import { loadAddon } from '../native-addon.js';

export interface MmapNative {
  /** A MAP_SHARED read/write mapping of file bytes [offset, offset + length); offset page-aligned. */
  map(fd: number, offset: number, length: number): ArrayBuffer;
  /** Detaches the ArrayBuffer (its views become empty) and unmaps it. */
  unmap(mapping: ArrayBuffer): void;
  /** msync(MS_SYNC) of [offset, offset + length) of the mapping, on a libuv worker thread. */
  msync(mapping: ArrayBuffer, offset: number, length: number): Promise<void>;
  /** Reserves blocks for [offset, offset + length), extending the file size when it ends past it. */
  fallocate(fd: number, offset: number, length: number): void;
  readonly pageSize: number;
}

let loaded: { readonly native: MmapNative } | { readonly unavailable: string } | undefined;

export function loadMmap(): { readonly native: MmapNative } | { readonly unavailable: string } {
  loaded ??= narrow();
  return loaded;
}

function narrow(): { readonly native: MmapNative } | { readonly unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: `the mmap backend is built for Linux only (this is ${process.platform})` };
  const addon = loadAddon();
  if ('unavailable' in addon) return addon;
  const part = addon.addon.mmap as Partial<MmapNative> | undefined;
  if (part === undefined || typeof part.map !== 'function')
    return { unavailable: 'the native addon has no mmap part (rebuild it: npm run build:native)' };
  return { native: part as MmapNative };
}
