// storage-uring: the io_uring storage backend (the uring part of Walrus's native addon, raw
// system calls, no liburing). Its probe fails, with the reason, when the addon did not build or
// load or the kernel refuses io_uring_setup (old kernel, seccomp, kernel.io_uring_disabled);
// `auto` then moves on to mmap. WALRUS_DISABLE_IO_URING keeps `auto` from picking it.

import { STORAGE_BACKEND } from '../../contracts/tokens.js';
import { UringBackend } from '../../engine/storage/uring.js';
import { loadUring } from '../../engine/storage/uring-native.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES } from '../../kernel/tokens.js';

export const storageUringPlugin: Plugin = {
  manifest: {
    name: 'storage-uring',
    description: 'io_uring storage backend (native addon, raw syscalls)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  probe: () => {
    const loaded = loadUring();
    return 'unavailable' in loaded
      ? { ok: false, reason: loaded.unavailable }
      : { ok: true, reason: 'io_uring through the native addon: ring fdatasync and large reads' };
  },
  register(scope) {
    scope.provide(STORAGE_BACKEND, () => {
      const loaded = loadUring();
      if ('unavailable' in loaded) throw new Error(`storage-uring cannot run here: ${loaded.unavailable}`);
      return new UringBackend(loaded.native);
    });
  },
};
