// storage-fd: positional read/write storage backend in pure TypeScript (node:fs), always
// available. It binds a FdBackend under the `storage-backend` capability.

import { STORAGE_BACKEND } from '../../contracts/tokens.js';
import { FdBackend } from '../../engine/storage/fd.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES } from '../../kernel/tokens.js';

export const storageFdPlugin: Plugin = {
  manifest: {
    name: 'storage-fd',
    description: 'positional read/write storage backend (pure TypeScript)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  probe: () => ({ ok: true, reason: 'pread/pwrite through node:fs; always available' }),
  register(scope) {
    scope.provide(STORAGE_BACKEND, () => new FdBackend());
  },
};
