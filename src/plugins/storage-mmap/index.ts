// storage-mmap: the memory-mapped storage backend (the mmap part of Walrus's native addon). Its
// probe fails, with the reason, when the addon did not build or load; `auto` then moves on.

import { STORAGE_BACKEND } from '../../contracts/tokens.js';
import { MmapBackend } from '../../engine/storage/mmap.js';
import { loadMmap } from '../../engine/storage/mmap-native.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES } from '../../kernel/tokens.js';

export const storageMmapPlugin: Plugin = {
  manifest: {
    name: 'storage-mmap',
    description: 'memory-mapped storage backend (native addon)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  probe: () => {
    const loaded = loadMmap();
    return 'unavailable' in loaded
      ? { ok: false, reason: loaded.unavailable }
      : { ok: true, reason: 'shared file mappings through the native addon; msync for durability' };
  },
  register(scope) {
    scope.provide(STORAGE_BACKEND, () => {
      const loaded = loadMmap();
      if ('unavailable' in loaded) throw new Error(`storage-mmap cannot run here: ${loaded.unavailable}`);
      return new MmapBackend(loaded.native);
    });
  },
};
