// The plugin contract. A plugin is a plain, stateless object: a manifest, an optional config
// section, an optional probe, `register` (binds factories, nothing else) and optional
// `start` / `stop`. All per-kernel state lives in the services it binds, so one plugin object
// can serve many kernels in one process. `checkPlugin` tells a custom plugin's author exactly
// which part of this contract their module misses.

import type { Logger } from 'pino';
import { PluginError } from './errors.js';
import { limits } from './limits.js';
import { isSchema, type Schema } from './schema.js';
import type { Token } from './tokens.js';

export interface PluginManifest {
  /** Unique lower-kebab name, e.g. `storage-fd`. */
  readonly name: string;
  /** One line for `walrus plugins`. */
  readonly description: string;
  /** Capability names this plugin binds in `register`. */
  readonly provides: readonly string[];
  /** Capability names this plugin resolves; their providers start before it. */
  readonly requires: readonly string[];
}

export interface ProbeResult {
  readonly ok: boolean;
  /** Why the plugin cannot run here (when `ok` is false), or a note on what it found. */
  readonly reason?: string;
}

export interface PluginConfigSection<C> {
  /** Top-level config key owned by this plugin, e.g. `rollover`. */
  readonly key: string;
  readonly schema: Schema<C>;
}

/** What a plugin sees of its kernel: its own config, a logger, and its declared capabilities. */
export interface PluginScope {
  readonly pluginName: string;
  readonly log: Logger;
  /** The whole effective configuration, frozen. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Binds the service for a capability this plugin `provides`; built once per kernel, on first use. */
  provide<T>(token: Token<T>, factory: (scope: PluginScope) => T): void;
  /** Resolves a capability this plugin `requires` or `provides`. */
  resolve<T>(token: Token<T>): T;
}

export interface ProbeContext {
  readonly config: Readonly<Record<string, unknown>>;
}

export interface Plugin<C = unknown> {
  readonly manifest: PluginManifest;
  readonly config?: PluginConfigSection<C>;
  /** Can this plugin run on this machine? Absent means always. Must not have side effects. */
  probe?(context: ProbeContext): ProbeResult | Promise<ProbeResult>;
  register(scope: PluginScope, config: C): void;
  start?(scope: PluginScope): void | Promise<void>;
  stop?(scope: PluginScope): void | Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: a list of plugins mixes config types.
export type AnyPlugin = Plugin<any>;

const NAME_PATTERN = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

function checkName(value: unknown, path: string, problems: string[]): void {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value) || value.length > limits.pluginNameLengthMax) {
    problems.push(`${path}: expected a lower-kebab name of at most ${limits.pluginNameLengthMax} characters, got ${JSON.stringify(value)}`);
  }
}

function checkNameList(value: unknown, path: string, problems: string[]): void {
  if (!Array.isArray(value)) {
    problems.push(`${path}: expected a list of capability names`);
    return;
  }
  value.forEach((item, index) => {
    checkName(item, `${path}[${index}]`, problems);
  });
}

function checkOptionalFunction(plugin: Record<string, unknown>, key: string, problems: string[]): void {
  if (plugin[key] !== undefined && typeof plugin[key] !== 'function') problems.push(`${key}: expected a function when present`);
}

/** Lists every way `value` misses the plugin contract; empty when it fits. */
export function pluginContractProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return ['expected a plugin object'];
  const plugin = value as Record<string, unknown>;
  const problems: string[] = [];
  const manifest = plugin.manifest as Record<string, unknown> | undefined;
  if (typeof manifest !== 'object' || manifest === null) {
    problems.push('manifest: expected an object with name, description, provides and requires');
  } else {
    checkName(manifest.name, 'manifest.name', problems);
    if (typeof manifest.description !== 'string') problems.push('manifest.description: expected a string');
    checkNameList(manifest.provides, 'manifest.provides', problems);
    checkNameList(manifest.requires, 'manifest.requires', problems);
  }
  if (typeof plugin.register !== 'function') problems.push('register: expected a function (scope, config) => void');
  for (const key of ['probe', 'start', 'stop']) checkOptionalFunction(plugin, key, problems);
  const config = plugin.config as Record<string, unknown> | undefined;
  if (config !== undefined) {
    if (typeof config !== 'object' || config === null) problems.push('config: expected { key, schema }');
    else {
      if (typeof config.key !== 'string' || !/^[a-z][a-zA-Z0-9]*$/.test(config.key)) {
        problems.push(`config.key: expected a camelCase config key, got ${JSON.stringify(config.key)}`);
      }
      if (!isSchema(config.schema)) problems.push('config.schema: expected a schema built with `s` from walrus');
    }
  }
  return problems;
}

/** Throws PLUGIN_CONTRACT naming `origin` (a module path or built-in name) when `value` does not fit. */
export function assertPlugin(value: unknown, origin: string): AnyPlugin {
  const problems = pluginContractProblems(value);
  if (problems.length > 0) {
    throw new PluginError('PLUGIN_CONTRACT', `plugin ${origin} does not fit the plugin contract:\n  ${problems.join('\n  ')}`, {
      details: { origin, problems },
    });
  }
  return value as AnyPlugin;
}
