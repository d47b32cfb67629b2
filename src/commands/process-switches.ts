// Process-wide switches from the environment, applied by whoever owns the process (the package's
// entry point, the walrus and walrus-cli commands, the bench and test runners) before anything
// loads the native addon. The engine reads no environment: this is how WALRUS_DISABLE_NATIVE
// reaches it. Applying them twice is harmless.

import { disableNativeAddon } from '../engine/native-addon.js';
import { type Environment, nativeAddonSwitch, processEnvironment } from '../kernel/env.js';

/** WALRUS_DISABLE_NATIVE → disableNativeAddon. */
export function applyProcessSwitches(env: Environment = processEnvironment()): void {
  const reason = nativeAddonSwitch(env);
  if (reason !== undefined) disableNativeAddon(reason);
}
