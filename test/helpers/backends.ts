// Which storage backends the conformance suite runs against, and how a test opens a Walrus on
// one of them. Every backend in BACKENDS whose load() succeeds here runs; WALRUS_TEST_BACKENDS (a
// comma list, e.g. "fd,mmap") narrows that to the backends it names.
//
// A run never leaves a backend out without saying so (house rule 7): each file registers one
// skipped test per backend that does not run, titled `[name] <file theme> — skipped: <reason>`:
// - a backend that cannot load here (no native addon, WALRUS_DISABLE_NATIVE=1, io_uring refused
//   by the kernel): `backend uring unavailable: <what its probe said>`;
// - a backend left out on purpose by WALRUS_TEST_BACKENDS: `not selected by WALRUS_TEST_BACKENDS=fd`
//   (a skip rather than nothing, so the skip count of a narrowed run shows what it did not cover).
// A name in WALRUS_TEST_BACKENDS that is no backend at all gets a failing test instead.

import test from 'ava';
import { BACKENDS } from '../../src/engine/storage/select.js';
import { type BackendName, Walrus, type WalrusOptions } from '../../src/engine/walrus.js';
import { silent, withTempDir } from './kernel.js';

/** Backend name → why it cannot run here (undefined: it loads). */
const availability: ReadonlyMap<string, string | undefined> = await probeBackends();

async function probeBackends(): Promise<Map<string, string | undefined>> {
  const found = new Map<string, string | undefined>();
  for (const candidate of BACKENDS) {
    try {
      const loaded = await candidate.load();
      found.set(candidate.name, 'unavailable' in loaded ? loaded.unavailable : undefined);
    } catch (error) {
      found.set(candidate.name, `load() threw: ${(error as Error).message}`);
    }
  }
  return found;
}

/** WALRUS_TEST_BACKENDS as a list of names, or undefined when it is not set (every backend is asked for). */
function selectedNames(): string[] | undefined {
  const raw = process.env.WALRUS_TEST_BACKENDS?.trim();
  if (raw === undefined || raw === '') return undefined;
  return [...new Set(raw.split(',').map((name) => name.trim()))].filter((name) => name !== '');
}

/** The backends to run the suite against: the selected ones (all, without WALRUS_TEST_BACKENDS) that load here. */
export function testBackends(): string[] {
  const selected = selectedNames();
  return [...availability]
    .filter(([name, reason]) => reason === undefined && (selected === undefined || selected.includes(name)))
    .map(([name]) => name);
}

export interface BackendNotRun {
  readonly name: string;
  /** Why it does not run, as the skipped test's title says it. */
  readonly reason: string;
  /** False for a name in WALRUS_TEST_BACKENDS that is no backend: that is a mistake, not a skip. */
  readonly known: boolean;
}

/** Every backend that will not run (known ones in BACKENDS order), and unknown names asked for, with the reason. */
export function backendsNotRun(): BackendNotRun[] {
  const selected = selectedNames();
  const notRun: BackendNotRun[] = [];
  for (const [name, unavailable] of availability) {
    if (selected !== undefined && !selected.includes(name)) {
      notRun.push({ name, reason: `not selected by WALRUS_TEST_BACKENDS=${selected.join(',')}`, known: true });
    } else if (unavailable !== undefined) {
      notRun.push({ name, reason: `backend ${name} unavailable: ${unavailable}`, known: true });
    }
  }
  for (const name of selected ?? []) {
    if (!availability.has(name)) {
      notRun.push({ name, reason: `is not a storage backend (known: ${[...availability.keys()].join(', ')})`, known: false });
    }
  }
  return notRun;
}

/** The title of the skipped test that stands for `backend` in the file `theme`. */
export function skippedTitle(theme: string, backend: string, reason: string): string {
  return `[${backend}] ${theme} — skipped: ${reason}`;
}

/**
 * Registers a skipped test for every backend that does not run (its title gives the reason) and
 * a failing one for every unknown name in WALRUS_TEST_BACKENDS; `theme` keeps the titles of
 * different files apart.
 */
export function reportBackendsNotRun(theme: string): void {
  for (const { name, reason, known } of backendsNotRun()) {
    if (known) test.skip(skippedTitle(theme, name, reason), (t) => t.pass());
    else test(`[${name}] ${theme}: WALRUS_TEST_BACKENDS ${reason}`, (t) => t.fail(`WALRUS_TEST_BACKENDS names ${name}, which ${reason}`));
  }
}

/** Applies `suite` to every backend that runs and reports the ones that do not. */
export function forEachBackend(theme: string, suite: (backend: string) => void): void {
  for (const backend of testBackends()) suite(backend);
  reportBackendsNotRun(theme);
}

export type OpenOptions = Omit<WalrusOptions, 'dataDir' | 'backend'> & { readonly dataDir?: string };

/** Opens a Walrus on `dir` with `backend` and a silent logger (recovery reports would be noise). */
export function openWal(dir: string, backend: string, options: OpenOptions = {}): Promise<Walrus> {
  return Walrus.open({ logger: silent(), ...options, dataDir: options.dataDir ?? dir, backend: backend as BackendName });
}

export interface WalDir {
  readonly dir: string;
  readonly backend: string;
  /** Opens an instance on the test's directory; the scope closes it at the end. */
  open(options?: OpenOptions): Promise<Walrus>;
}

/** Runs `body` with its own temp directory; every instance opened through the scope is closed afterwards. */
export function withWal(backend: string, body: (wal: WalDir) => Promise<void>): Promise<void> {
  return withTempDir(async (dir) => {
    const opened: Walrus[] = [];
    try {
      await body({
        dir,
        backend,
        open: async (options) => {
          const wal = await openWal(dir, backend, options);
          opened.push(wal);
          return wal;
        },
      });
    } finally {
      // Newest first: older instances of a directory were superseded, so their close is a no-op.
      for (const wal of opened.reverse()) await wal.close().catch(() => undefined);
    }
  });
}
