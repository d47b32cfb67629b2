// Turns the `plugins:` list into plugin objects: built-in names come from the catalog, entries
// that look like paths (./x.js, ../x.js, /abs/x.js) are imported as custom plugin modules,
// resolved against the config file's folder (or the working directory without a file).
// A custom module exports its plugin as `default` or as `plugin`; the contract is checked here.

import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Catalog } from './catalog.js';
import { ConfigError, PluginError } from './errors.js';
import { limits } from './limits.js';
import { type AnyPlugin, assertPlugin } from './plugin.js';
import { closestName } from './schema.js';

export interface LoadedPlugin {
  readonly plugin: AnyPlugin;
  /** `built-in`, or the absolute path of the module it came from. */
  readonly origin: string;
  /** Whether the `plugins:` list names it (built-ins not listed are still known, for status). */
  readonly listed: boolean;
}

export function isModulePath(entry: string): boolean {
  return entry.startsWith('./') || entry.startsWith('../') || isAbsolute(entry);
}

async function importPlugin(entry: string, baseDir: string): Promise<LoadedPlugin> {
  const path = resolve(baseDir, entry);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    throw new PluginError('PLUGIN_LOAD_FAILED', `cannot load plugin module ${entry} (${path}): ${(error as Error).message}`, {
      cause: error,
      details: { entry, path },
    });
  }
  const exported = module.default ?? module.plugin;
  if (exported === undefined) {
    throw new PluginError('PLUGIN_CONTRACT', `plugin module ${entry} (${path}) exports neither \`default\` nor \`plugin\``, {
      details: { entry, path },
    });
  }
  return { plugin: assertPlugin(exported, `${entry} (${path})`), origin: path, listed: true };
}

/** Every plugin the kernel knows: the listed ones first, in list order, then unlisted built-ins. */
export async function loadPlugins(list: readonly string[], catalog: Catalog, baseDir: string): Promise<LoadedPlugin[]> {
  if (list.length > limits.pluginsMax) {
    const problem = `plugins: has ${list.length} entries, more than the limit of ${limits.pluginsMax}`;
    throw new ConfigError('CONFIG_INVALID', `invalid configuration (1 problem):\n  ${problem}`, { problems: [problem] });
  }
  const builtins = new Map(catalog.builtins.map((plugin) => [plugin.manifest.name, plugin]));
  const loaded: LoadedPlugin[] = [];
  const seen = new Map<string, string>();
  for (const entry of list) {
    let item: LoadedPlugin;
    if (isModulePath(entry)) item = await importPlugin(entry, baseDir);
    else {
      const builtin = builtins.get(entry);
      if (builtin === undefined) {
        const hint = closestName(entry, [...builtins.keys()]);
        throw new PluginError(
          'PLUGIN_UNKNOWN',
          `unknown plugin "${entry}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; built-in plugins: ${[...builtins.keys()].join(', ')}; a custom plugin is given as a module path such as ./my-plugin.js`,
          { details: { entry } },
        );
      }
      item = { plugin: builtin, origin: 'built-in', listed: true };
    }
    const name = item.plugin.manifest.name;
    const previous = seen.get(name);
    if (previous !== undefined) {
      throw new PluginError('PLUGIN_DUPLICATE', `plugin "${name}" is listed twice (as ${previous} and as ${entry})`, { details: { name } });
    }
    seen.set(name, entry);
    loaded.push(item);
  }
  for (const [name, plugin] of builtins) if (!seen.has(name)) loaded.push({ plugin, origin: 'built-in', listed: false });
  return loaded;
}
