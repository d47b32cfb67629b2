// Backend selection for the embedded engine (Walrus.open), by the same rule as the node's
// storage selector: `auto` takes uring (unless WALRUS_DISABLE_IO_URING is set), else mmap, else
// fd — the first that can run here. A named backend that cannot run is an error that says why.

import type { StorageBackend } from '../../contracts/storage.js';
import { ENV_TABLE, envValue, processEnvironment } from '../../kernel/env.js';
import { InputError, StorageError } from '../../kernel/errors.js';
import { s } from '../../kernel/schema.js';
import { FdBackend } from './fd.js';
import { MmapBackend } from './mmap.js';
import { loadMmap } from './mmap-native.js';
import { createUringBackend } from './uring.js';

export interface BackendCandidate {
  readonly name: 'fd' | 'mmap' | 'uring';
  /** Builds the backend, or says why it cannot run here. */
  readonly load: () => Promise<StorageBackend | { readonly unavailable: string }>;
}

/** In order of preference under `auto`. */
export const BACKENDS: readonly BackendCandidate[] = [
  { name: 'uring', load: async () => createUringBackend() },
  {
    name: 'mmap',
    load: async () => {
      const loaded = loadMmap();
      return 'unavailable' in loaded ? loaded : new MmapBackend(loaded.native);
    },
  },
  { name: 'fd', load: async () => new FdBackend() },
];

const DISABLE_IO_URING = ENV_TABLE.find((variable) => variable.path === 'storage.disableIoUring')?.name ?? 'WALRUS_DISABLE_IO_URING';

/** How the node's config reads the variable (1/true/yes/on, 0/false/no/off). */
const DISABLE_IO_URING_TEXT = s.bool({ default: false, description: 'storage.disableIoUring as text' });

/** True when the environment asks `auto` to pass over io_uring; text the config would refuse counts as set. */
function ioUringDisabled(): boolean {
  const value = envValue(processEnvironment(), DISABLE_IO_URING);
  if (value === undefined) return false;
  const parsed = DISABLE_IO_URING_TEXT.parseText(value);
  return parsed.ok ? parsed.value === true : true;
}

export async function resolveBackend(name: string): Promise<StorageBackend> {
  if (name !== 'auto' && !BACKENDS.some((candidate) => candidate.name === name)) {
    throw new InputError('INVALID_ARGUMENT', `backend must be one of auto|fd|mmap|uring, got ${JSON.stringify(name)}`);
  }
  const reasons: string[] = [];
  for (const candidate of BACKENDS) {
    if (name !== 'auto' && candidate.name !== name) continue;
    if (name === 'auto' && candidate.name === 'uring' && ioUringDisabled()) {
      reasons.push(`uring: ${DISABLE_IO_URING} is set`);
      continue;
    }
    const loaded = await candidate.load();
    if (!('unavailable' in loaded)) return loaded;
    if (name !== 'auto') throw new StorageError('IO', `storage backend ${name} cannot run here: ${loaded.unavailable}`);
    reasons.push(`${candidate.name}: ${loaded.unavailable}`);
  }
  throw new StorageError('IO', `no storage backend can run here (${reasons.join('; ')})`);
}
