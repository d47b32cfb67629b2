// Which storage backends the conformance suite runs against, and how a test opens a Walrus on
// one of them. WALRUS_TEST_BACKENDS (a comma list, e.g. "fd,mmap") names the backends to run;
// without it, every backend in BACKENDS whose load() succeeds here. A requested backend that
// cannot load gets a skipped test whose title says why, and an unknown name a failing one, so
// a run never passes without saying what it left out.

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

/** The backend names asked for: WALRUS_TEST_BACKENDS, else every backend that loads here. */
function requestedBackends(): string[] {
  const raw = process.env.WALRUS_TEST_BACKENDS?.trim();
  if (raw === undefined || raw === '') return [...availability].filter(([, reason]) => reason === undefined).map(([name]) => name);
  return [...new Set(raw.split(',').map((name) => name.trim()))].filter((name) => name !== '');
}

/** The backends to run the suite against: the requested ones that load here. */
export function testBackends(): string[] {
  return requestedBackends().filter((name) => availability.has(name) && availability.get(name) === undefined);
}

/** Requested backends that will not run, with the reason. */
export function backendsNotRun(): { readonly name: string; readonly reason: string; readonly known: boolean }[] {
  return requestedBackends()
    .filter((name) => !availability.has(name) || availability.get(name) !== undefined)
    .map((name) =>
      availability.has(name)
        ? { name, reason: `cannot load here: ${availability.get(name)}`, known: true }
        : { name, reason: `is not a storage backend (known: ${[...availability.keys()].join(', ')})`, known: false },
    );
}

/**
 * Registers a skipped test for every requested backend that cannot load (its title gives the
 * reason) and a failing one for every unknown name; `theme` keeps the titles of different
 * files apart.
 */
export function reportBackendsNotRun(theme: string): void {
  for (const { name, reason, known } of backendsNotRun()) {
    const title = `[${name}] ${theme}: backend ${reason}`;
    if (known) test.skip(title, (t) => t.pass());
    else test(title, (t) => t.fail(`WALRUS_TEST_BACKENDS names ${name}, which ${reason}`));
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
