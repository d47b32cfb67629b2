// Test doubles for the kernel: plugins that record what happens to them, small catalogs, and a
// silent logger. Each fake binds a service object per kernel, so tests can tell kernels apart.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Catalog } from '../../src/kernel/catalog.js';
import { Kernel, type KernelOptions } from '../../src/kernel/kernel.js';
import type { Plugin, ProbeResult } from '../../src/kernel/plugin.js';
import type { Fields } from '../../src/kernel/schema.js';
import { token } from '../../src/kernel/tokens.js';

export const silent = () => pino({ level: 'silent' });

export interface Service {
  readonly owner: string;
  readonly instance: number;
}

let instances = 0;

export interface FakeOptions {
  readonly provides?: readonly string[];
  readonly requires?: readonly string[];
  readonly probe?: ProbeResult;
  readonly start?: () => void | Promise<void>;
  readonly stop?: () => void | Promise<void>;
  /** Shared list the fake appends `start:<name>` / `stop:<name>` to. */
  readonly events?: string[];
}

export function fake(name: string, options: FakeOptions = {}): Plugin {
  const provides = options.provides ?? [name];
  return {
    manifest: { name, description: `fake ${name}`, provides, requires: options.requires ?? [] },
    ...(options.probe === undefined ? {} : { probe: () => options.probe as ProbeResult }),
    register(scope) {
      for (const capability of provides) {
        instances += 1;
        const instance = instances;
        scope.provide(token<Service>(capability), () => ({ owner: name, instance }));
      }
    },
    async start() {
      options.events?.push(`start:${name}`);
      await options.start?.();
    },
    async stop() {
      options.events?.push(`stop:${name}`);
      await options.stop?.();
    },
  };
}

export function catalogOf(plugins: readonly Plugin[], extra: Partial<Catalog> = {}): Catalog {
  return {
    builtins: plugins,
    defaultPlugins: plugins.map((plugin) => plugin.manifest.name),
    sections: {} as Fields,
    selectors: [],
    ...extra,
  };
}

export function createKernel(catalog: Catalog, options: Partial<KernelOptions> = {}): Promise<Kernel> {
  return Kernel.create({ catalog, env: {}, logger: silent(), ...options });
}

/** Runs `body` with a fresh temp directory that is removed afterwards. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'walrus-test-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A promise that never settles, for start/stop timeouts. */
export const forever = () => new Promise<void>(() => undefined);
