// storage-fd: positional read/write storage backend (pure TypeScript).
// Placeholder until its implementation lands; `storage.backend` selection already knows it.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const storageFdPlugin = notImplementedYet(
  {
    name: 'storage-fd',
    description: 'positional read/write storage backend (pure TypeScript)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  'issue 3: the WAL engine and the fd backend',
);
