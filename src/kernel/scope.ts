// A plugin's window onto its kernel's container. It enforces the manifest: a plugin binds only
// what it `provides` and resolves only what it `requires` (or provides). Services are built by
// their factory once per kernel, on first resolve, inside the kernel's own child container.

import type { Logger } from 'pino';
import { type DependencyContainer, instanceCachingFactory } from 'tsyringe';
import { PluginError } from './errors.js';
import type { AnyPlugin, PluginScope } from './plugin.js';
import type { Token } from './tokens.js';

export class KernelScope implements PluginScope {
  readonly log: Logger;
  readonly config: Readonly<Record<string, unknown>>;
  private readonly container: DependencyContainer;
  private readonly plugin: AnyPlugin;
  private readonly bound = new Set<string>();

  constructor(container: DependencyContainer, plugin: AnyPlugin, log: Logger, config: Readonly<Record<string, unknown>>) {
    this.container = container;
    this.plugin = plugin;
    this.log = log;
    this.config = config;
  }

  get pluginName(): string {
    return this.plugin.manifest.name;
  }

  /** Capabilities this plugin has bound so far. */
  get boundCapabilities(): ReadonlySet<string> {
    return this.bound;
  }

  provide<T>(token: Token<T>, factory: (scope: PluginScope) => T): void {
    if (!this.plugin.manifest.provides.includes(token.name)) {
      throw new PluginError(
        'PLUGIN_UNDECLARED',
        `plugin "${this.pluginName}" binds "${token.name}" but its manifest does not list it under provides`,
        { details: { plugin: this.pluginName, capability: token.name } },
      );
    }
    this.container.register(token.key, { useFactory: instanceCachingFactory<T>(() => factory(this)) });
    this.bound.add(token.name);
  }

  resolve<T>(token: Token<T>): T {
    const { provides, requires } = this.plugin.manifest;
    if (!requires.includes(token.name) && !provides.includes(token.name)) {
      throw new PluginError(
        'PLUGIN_UNDECLARED',
        `plugin "${this.pluginName}" resolves "${token.name}" but its manifest does not list it under requires`,
        { details: { plugin: this.pluginName, capability: token.name } },
      );
    }
    return resolveCapability(this.container, token);
  }
}

export function resolveCapability<T>(container: DependencyContainer, token: Token<T>): T {
  if (!container.isRegistered(token.key, false)) {
    throw new PluginError('PLUGIN_MISSING_REQUIREMENT', `no loaded plugin provides "${token.name}"`, {
      details: { capability: token.name },
    });
  }
  return container.resolve(token.key);
}
