// Built-in plugins whose implementation has not landed yet. They are real catalog entries —
// a name, a manifest, a config section where one is already specified — but their probe says
// plainly that they cannot run, so selection skips them and `walrus plugins` shows why.
// Each later issue replaces one of these with the working plugin of the same name.

import { PluginError } from '../kernel/errors.js';
import type { Plugin, PluginConfigSection, PluginManifest } from '../kernel/plugin.js';

export function notImplementedYet<C>(manifest: PluginManifest, issue: string, config?: PluginConfigSection<C>): Plugin<C> {
  const reason = `not implemented yet (${issue})`;
  return {
    manifest,
    ...(config === undefined ? {} : { config }),
    probe: () => ({ ok: false, reason }),
    register() {
      // Unreachable through the kernel: a plugin whose probe fails is never registered.
      throw new PluginError('PLUGIN_UNAVAILABLE', `plugin "${manifest.name}" is ${reason}`);
    },
  };
}
