// Loads Walrus's one native addon (native/build/Release/walrus_native.node, built by
// scripts/build-native.mjs at install) once per process or worker. Each user narrows the part it
// needs: the CRC-32 functions (engine/checksum.ts), `mmap` (storage-mmap) and `uring`
// (storage-uring). When the addon cannot be used, `unavailable` says why in one line: the
// build's own note (native/build/unavailable.txt) when it left one, else the load error.
// `WALRUS_DISABLE_NATIVE` (any value) makes it unloadable on purpose, for tests and diagnosis.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { envValue, LAUNCHER_ENV, processEnvironment } from '../kernel/env.js';

export type AddonLoad = { readonly addon: Readonly<Record<string, unknown>> } | { readonly unavailable: string };

let loaded: AddonLoad | undefined;

/** The addon's path: build/src/engine/native-addon.js → the package root is three levels up. */
export const ADDON_PATH = new URL('../../../native/build/Release/walrus_native.node', import.meta.url).pathname;

export function loadAddon(): AddonLoad {
  loaded ??= load();
  return loaded;
}

function load(): AddonLoad {
  if (envValue(processEnvironment(), LAUNCHER_ENV.disableNative) !== undefined)
    return { unavailable: `${LAUNCHER_ENV.disableNative} is set` };
  try {
    return { addon: createRequire(import.meta.url)(ADDON_PATH) as Record<string, unknown> };
  } catch (error) {
    let reason = (error as Error).message.split('\n')[0] ?? 'unknown';
    try {
      reason = readFileSync(new URL('../../../native/build/unavailable.txt', import.meta.url), 'utf8').trim();
    } catch {
      // No note from the build: the load error says enough.
    }
    return { unavailable: `the native addon did not load: ${reason}` };
  }
}
