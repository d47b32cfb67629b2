// Loads Walrus's one native addon (native/build/Release/walrus_native.node, built by
// scripts/build-native.mjs at install) once per process or worker. Each user narrows the part it
// needs: the CRC-32 functions (engine/checksum.ts), `mmap` (storage-mmap) and `uring`
// (storage-uring). When the addon cannot be used, `unavailable` says why in one line: the
// build's own note (native/build/unavailable.txt) when it left one, else the load error.
// `disableNativeAddon(reason)` makes it unloadable on purpose, for tests and diagnosis: the
// engine reads no environment, so the process's owner (src/index.ts, the commands, the bench and
// test runners) applies `WALRUS_DISABLE_NATIVE` by calling it before the first load.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { StateError } from '../kernel/errors.js';

export type AddonLoad = { readonly addon: Readonly<Record<string, unknown>> } | { readonly unavailable: string };

let loaded: AddonLoad | undefined;
/** Why the addon was switched off, when it was (handed on to worker threads). */
let switchedOff: string | undefined;

/** The addon's path: build/src/engine/native-addon.js → the package root is three levels up. */
export const ADDON_PATH = new URL('../../../native/build/Release/walrus_native.node', import.meta.url).pathname;

export function loadAddon(): AddonLoad {
  loaded ??= load();
  return loaded;
}

/**
 * Keeps this process (or worker) off the addon from now on; `reason` is what `unavailable` says.
 * Call it before anything loads the addon: once it is in use, it cannot be taken back.
 */
export function disableNativeAddon(reason: string): void {
  if (loaded !== undefined && 'addon' in loaded) {
    throw new StateError('NATIVE_ADDON_IN_USE', `cannot disable the native addon (${reason}): this process already uses it`);
  }
  switchedOff ??= reason;
}

/** The reason given to disableNativeAddon, if it was called (a worker thread gets the same switch). */
export function nativeAddonSwitchedOff(): string | undefined {
  return switchedOff;
}

function load(): AddonLoad {
  if (switchedOff !== undefined) return { unavailable: switchedOff };
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
