// storage-mmap: memory-mapped storage backend (native addon).
// Placeholder until its implementation lands; `storage.backend` selection already knows it.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const storageMmapPlugin = notImplementedYet(
  {
    name: 'storage-mmap',
    description: 'memory-mapped storage backend (native addon)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  'issue 4: the mmap and io_uring backends',
);
