// The page-cache hint of the native addon (src/engine/storage/native/page-cache.c), narrowed
// from the one addon loader: `willNeed(fd, position, length)` reads the range into a scratch
// buffer on a libuv worker thread, which leaves it in the page cache. The fd and io_uring
// backends offer it as StorageFile.prefetch when the addon has it; without the addon they have
// no prefetch and the writer does without.

import { loadAddon } from '../native-addon.js';

export type WillNeed = (fd: number, position: number, length: number) => Promise<void>;

let willNeed: WillNeed | null | undefined;

/** The addon's willNeed, or undefined when the addon is not there (or predates it). */
export function pageCacheWillNeed(): WillNeed | undefined {
  if (willNeed === undefined) {
    const load = loadAddon();
    const part = 'addon' in load ? (load.addon.pageCache as { willNeed?: unknown } | undefined) : undefined;
    willNeed = typeof part?.willNeed === 'function' ? (part.willNeed as WillNeed) : null;
  }
  return willNeed ?? undefined;
}

/**
 * StorageFile.prefetch for a file whose descriptor `fd()` gives (negative once closed): settles
 * when the hint has run, never rejects (a hint that fails costs nothing but the speed it was for).
 * A hint still running when the file closes may reach whatever reuses the descriptor number: it
 * only preads, which changes no file and fails on a socket or pipe (ESPIPE) without reading it.
 */
export function prefetcher(fd: () => number): ((position: number, length: number) => Promise<void>) | undefined {
  const hint = pageCacheWillNeed();
  if (hint === undefined) return undefined;
  return (position, length) => {
    const descriptor = fd();
    if (descriptor < 0 || length <= 0) return Promise.resolve();
    return hint(descriptor, position, length).catch(() => undefined);
  };
}
