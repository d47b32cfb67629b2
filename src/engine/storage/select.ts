// The one storage backend rule, for the embedded engine (Walrus.open) and the node's storage
// selector (src/plugins/catalog.ts) alike: `auto` takes uring (unless the caller disables it),
// else mmap, else fd, else any custom backend in the caller's order — the first that can run
// here. A named backend must be there, must not be disabled and must be able to run, or the
// choice fails with the reason. `chooseBackend` is the rule; each caller words its own messages.
// The engine reads no environment: whoever opens it says whether io_uring is disabled.

import type { StorageConfig } from '../../contracts/config.js';
import { STORAGE_BACKENDS } from '../../contracts/config.js';
import type { StorageBackend } from '../../contracts/storage.js';
import { InputError, StorageError } from '../../kernel/errors.js';
import type { ProbeResult } from '../../kernel/plugin.js';
import { FdBackend } from './fd.js';
import { MmapBackend } from './mmap.js';
import { loadMmap } from './mmap-native.js';
import { createUringBackend } from './uring.js';

/** The built-in backends, in `auto`'s order of preference. */
export const BUILTIN_BACKENDS = ['uring', 'mmap', 'fd'] as const;
export type BuiltinBackend = (typeof BUILTIN_BACKENDS)[number];
/** What a caller may ask for: `auto` or a built-in backend (a custom one is only ever picked by `auto`). */
export type WantedBackend = StorageConfig['backend'];

export interface Contender {
  /** The caller's name for it (a plugin name, a backend name); reasons are keyed by it. */
  readonly name: string;
  /** Which built-in backend it is; undefined for a custom one. */
  readonly builtin: BuiltinBackend | undefined;
  /** Can it run here? Called at most once per choice, and only when the choice depends on it. */
  readonly probe: () => ProbeResult;
}

export interface Skipped<C extends Contender> {
  readonly contender: C;
  /** Why `auto` passed over it: the probe's reason, or `disabled by <switch>`. */
  readonly reason: string;
}

export type BackendChoice<C extends Contender> =
  /** `auto` or the named backend, with every contender `auto` passed over before it. */
  | { readonly outcome: 'chosen'; readonly chosen: C; readonly skipped: readonly Skipped<C>[] }
  /** `auto` found none that can run (`skipped` is empty when there was no contender at all). */
  | { readonly outcome: 'none'; readonly skipped: readonly Skipped<C>[] }
  /** The named backend is not among the contenders. */
  | { readonly outcome: 'absent' }
  /** The named backend is there but disabled (`disabled`), or cannot run here (`reason`). */
  | { readonly outcome: 'refused'; readonly contender: C; readonly disabled: boolean; readonly reason: string };

export interface ChooseOptions {
  readonly disableIoUring?: boolean;
  /** Names the switch in reasons: `storage.disableIoUring`, `the disableIoUring option`. */
  readonly disabledBy: string;
}

/** The rule itself: synchronous, and no effect beyond the probes it calls. */
export function chooseBackend<C extends Contender>(
  contenders: readonly C[],
  wanted: WantedBackend,
  options: ChooseOptions,
): BackendChoice<C> {
  const disabled = (contender: C) => contender.builtin === 'uring' && options.disableIoUring === true;
  const disabledReason = `disabled by ${options.disabledBy}`;
  if (wanted !== 'auto') {
    const contender = contenders.find((candidate) => candidate.builtin === wanted);
    if (contender === undefined) return { outcome: 'absent' };
    if (disabled(contender)) return { outcome: 'refused', contender, disabled: true, reason: disabledReason };
    const probe = contender.probe();
    if (!probe.ok) return { outcome: 'refused', contender, disabled: false, reason: probe.reason ?? 'its probe failed' };
    return { outcome: 'chosen', chosen: contender, skipped: [] };
  }
  const builtin = BUILTIN_BACKENDS.flatMap((name) => contenders.filter((candidate) => candidate.builtin === name));
  const custom = contenders.filter((candidate) => candidate.builtin === undefined);
  const skipped: Skipped<C>[] = [];
  for (const contender of [...builtin, ...custom]) {
    if (disabled(contender)) {
      skipped.push({ contender, reason: disabledReason });
      continue;
    }
    const probe = contender.probe();
    if (probe.ok) return { outcome: 'chosen', chosen: contender, skipped };
    skipped.push({ contender, reason: probe.reason ?? 'its probe failed' });
  }
  return { outcome: 'none', skipped };
}

/** `name: reason; name: reason`, the form every message lists skipped contenders in. */
export function skippedText(skipped: readonly Skipped<Contender>[]): string {
  return skipped.map(({ contender, reason }) => `${contender.name}: ${reason}`).join('; ');
}

export interface BackendCandidate {
  readonly name: BuiltinBackend;
  /** Builds the backend, or says why it cannot run here (the native parts are probed once per process). */
  readonly load: () => StorageBackend | { readonly unavailable: string };
}

/** The engine's built-in backends, in order of preference under `auto`. */
export const BACKENDS: readonly BackendCandidate[] = [
  { name: 'uring', load: () => createUringBackend() },
  {
    name: 'mmap',
    load: () => {
      const loaded = loadMmap();
      return 'unavailable' in loaded ? loaded : new MmapBackend(loaded.native);
    },
  },
  { name: 'fd', load: () => new FdBackend() },
];

export interface ResolveOptions {
  /** `auto` passes over io_uring (and `uring` by name is refused). Default false. */
  readonly disableIoUring?: boolean;
}

/** The backend `Walrus.open` uses for `backend: name`: one of BACKENDS, chosen by `chooseBackend`. */
export async function resolveBackend(name: string, options: ResolveOptions = {}): Promise<StorageBackend> {
  if (!(STORAGE_BACKENDS as readonly string[]).includes(name)) {
    throw new InputError('INVALID_ARGUMENT', `backend must be one of ${STORAGE_BACKENDS.join('|')}, got ${JSON.stringify(name)}`);
  }
  const built = new Map<BuiltinBackend, StorageBackend>();
  const contenders = BACKENDS.map((candidate) => ({
    name: candidate.name,
    builtin: candidate.name,
    probe: (): ProbeResult => {
      const loaded = candidate.load();
      if ('unavailable' in loaded) return { ok: false, reason: loaded.unavailable };
      built.set(candidate.name, loaded);
      return { ok: true };
    },
  }));
  const choice = chooseBackend(contenders, name as WantedBackend, {
    disableIoUring: options.disableIoUring,
    disabledBy: 'the disableIoUring option',
  });
  switch (choice.outcome) {
    case 'chosen': {
      const backend = built.get(choice.chosen.builtin);
      if (backend === undefined) throw new StorageError('IO', `storage backend ${name} was chosen but not built`);
      return backend;
    }
    case 'refused':
      throw new StorageError('IO', `storage backend ${name} cannot run here: ${choice.reason}`);
    case 'none':
      throw new StorageError('IO', `no storage backend can run here (${skippedText(choice.skipped)})`);
    case 'absent':
      throw new InputError('INVALID_ARGUMENT', `backend ${name} is not one of the engine's backends`);
  }
}
