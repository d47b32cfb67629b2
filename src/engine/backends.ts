// Backend selection for the embedded engine (Walrus.open), by the same rule as the node's
// storage selector: `auto` takes uring, else mmap, else fd — the first that can run here. A
// named backend that cannot run is an error that says why.

import { InputError, StorageError } from '../kernel/errors.js';
import { FdBackend } from '../plugins/storage-fd/backend.js';
import type { StorageBackend } from './storage.js';

export interface BackendCandidate {
  readonly name: 'fd' | 'mmap' | 'uring';
  /** Builds the backend, or says why it cannot run here. */
  readonly load: () => Promise<StorageBackend | { readonly unavailable: string }>;
}

/** In order of preference under `auto`. mmap and uring join with their own issue. */
export const BACKENDS: readonly BackendCandidate[] = [
  { name: 'uring', load: async () => ({ unavailable: 'not implemented yet (issue 4)' }) },
  { name: 'mmap', load: async () => ({ unavailable: 'not implemented yet (issue 4)' }) },
  { name: 'fd', load: async () => new FdBackend() },
];

export async function resolveBackend(name: string): Promise<StorageBackend> {
  if (name !== 'auto' && !BACKENDS.some((candidate) => candidate.name === name)) {
    throw new InputError('INVALID_ARGUMENT', `backend must be one of auto|fd|mmap|uring, got ${JSON.stringify(name)}`);
  }
  const reasons: string[] = [];
  for (const candidate of BACKENDS) {
    if (name !== 'auto' && candidate.name !== name) continue;
    const loaded = await candidate.load();
    if (!('unavailable' in loaded)) return loaded;
    if (name !== 'auto') throw new StorageError('IO', `storage backend ${name} cannot run here: ${loaded.unavailable}`);
    reasons.push(`${candidate.name}: ${loaded.unavailable}`);
  }
  throw new StorageError('IO', `no storage backend can run here (${reasons.join('; ')})`);
}
