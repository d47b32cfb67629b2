// storage-uring: io_uring storage backend (native addon, raw syscalls).
// Placeholder until its implementation lands; `storage.backend` selection already knows it.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const storageUringPlugin = notImplementedYet(
  {
    name: 'storage-uring',
    description: 'io_uring storage backend (native addon, raw syscalls)',
    provides: [CAPABILITIES.storageBackend],
    requires: [],
  },
  'issue 4: the mmap and io_uring backends',
);
