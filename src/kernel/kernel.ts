// The kernel: builds the configuration, decides which plugins load, gives them one private
// tsyringe child container, starts them in dependency order (each within a timeout) and stops
// them in reverse, also after a failed start, within one overall stop deadline. It knows
// nothing of WALs, Raft or sockets. Two kernels in one process share nothing.

import { dirname } from 'node:path';
import { type Logger, pino } from 'pino';
import 'reflect-metadata';
import { type DependencyContainer, container as rootContainer } from 'tsyringe';
import type { Catalog } from './catalog.js';
import {
  type ConfigFile,
  environmentSettings,
  type ResolvedConfig,
  readConfigFile,
  resolveConfig,
  sourceOf,
  type TextSetting,
  valueAt,
} from './config.js';
import { type Environment, processEnvironment } from './env.js';
import { ConfigError, describeError, isWalrusError, PluginError, StateError, TimeoutError } from './errors.js';
import { limits } from './limits.js';
import { type LoadedPlugin, loadPlugins } from './load.js';
import { attemptPlan, type Plan, type PlanAttempt, type PluginStatus, probeAll } from './plan.js';
import type { AnyPlugin } from './plugin.js';
import { type Fields, type Infer, ObjectSchema, type Problem, s } from './schema.js';
import { KernelScope, resolveCapability } from './scope.js';
import type { Token } from './tokens.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function kernelSections(defaultPlugins: readonly string[]) {
  return {
    plugins: s.array(s.string({ default: '', minLength: 1, description: 'A plugin name or module path.' }), {
      default: defaultPlugins,
      description:
        'Plugins to load, in order: built-in names, or module paths of custom plugins (./x.js, relative to the config file). Storage backends listed here are candidates for `storage.backend`.',
    }),
    log: s.object(
      { level: s.enum(LOG_LEVELS, { default: 'info', description: 'Lowest level written to the log (JSON lines on stdout).' }) },
      'Logging.',
    ),
    kernel: s.object(
      {
        startTimeoutMs: s.int({
          default: limits.startTimeoutMsDefault,
          min: limits.startTimeoutMsMin,
          max: limits.startTimeoutMsMax,
          description: 'Longest time one plugin may take to start before the start fails with PLUGIN_START_TIMEOUT.',
        }),
        stopTimeoutMs: s.int({
          default: limits.stopTimeoutMsDefault,
          min: limits.stopTimeoutMsMin,
          max: limits.stopTimeoutMsMax,
          description: 'Deadline for stopping all plugins together; a plugin still stopping then is abandoned and reported.',
        }),
      },
      'Plugin lifecycle.',
    ),
  } satisfies Fields;
}

type KernelSections = ReturnType<typeof kernelSections>;
export type KernelConfig = { readonly [K in keyof KernelSections]: Infer<KernelSections[K]> };

export interface KernelOptions {
  readonly catalog: Catalog;
  /** Path of a YAML config file, or an already parsed one. */
  readonly configFile?: string | ConfigFile | undefined;
  /** Settings from command-line flags, the highest layer. */
  readonly flags?: readonly TextSetting[];
  /** Defaults to a snapshot of the process environment. */
  readonly env?: Environment;
  /** Defaults to pino on stdout at `log.level`. */
  readonly logger?: Logger;
}

export interface Inspection extends PlanAttempt {
  readonly resolved: ResolvedConfig;
  /** The full config schema: kernel sections, the catalog's shared sections, every known plugin's section. */
  readonly schema: ObjectSchema<Fields>;
}

export type KernelState = 'created' | 'starting' | 'started' | 'stopping' | 'stopped';

export interface StopReport {
  /** Plugins whose stop failed or overran the deadline, with why. */
  readonly failures: readonly { readonly plugin: string; readonly error: string }[];
}

/**
 * Log fields for an error. Our messages already include their cause's message, so the cause
 * contributes only its stack (pino's own `err` serializer would repeat the text).
 */
export function errorFields(error: unknown): Record<string, unknown> {
  const code = isWalrusError(error) ? error.code : undefined;
  const cause = error instanceof Error ? error.cause : undefined;
  return {
    ...(code === undefined ? {} : { code }),
    error: error instanceof Error ? error.message : String(error),
    ...(cause instanceof Error && cause.stack !== undefined ? { causeStack: cause.stack } : {}),
  };
}

function timeout<T>(work: Promise<T>, ms: number, makeError: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(makeError()), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/**
 * The plugin list is needed before the full schema exists (custom plugins add sections), so it
 * is resolved on its own, with the same precedence: flag, then environment, then file, then default.
 */
function checkPluginList(
  catalog: Catalog,
  file: ConfigFile | undefined,
  env: Environment,
  flags: readonly TextSetting[],
): readonly string[] {
  const schema = kernelSections(catalog.defaultPlugins).plugins;
  const text = [...environmentSettings(env), ...flags].filter((setting) => setting.path === 'plugins').at(-1);
  let value: unknown = valueAt(file?.tree, 'plugins') ?? catalog.defaultPlugins;
  let source = file === undefined ? 'default' : `file ${file.path}`;
  if (text !== undefined) {
    const parsed = schema.parseText(text.text);
    value = parsed.ok ? parsed.value : text.text;
    source = text.source;
  }
  const problems: Problem[] = [];
  const names = schema.check(value, 'plugins', problems);
  if (names === undefined) {
    const lines = problems.map((problem) => `${problem.path}: ${problem.message} (from ${source})`);
    throw new ConfigError('CONFIG_INVALID', `invalid configuration:\n  ${lines.join('\n  ')}`, { problems: lines });
  }
  return names;
}

function configSchema(catalog: Catalog, plugins: readonly LoadedPlugin[]): ObjectSchema<Fields> {
  const fields: Record<string, Fields[string]> = { ...kernelSections(catalog.defaultPlugins), ...catalog.sections };
  for (const { plugin, origin } of plugins) {
    if (plugin.config === undefined) continue;
    if (Object.hasOwn(fields, plugin.config.key)) {
      throw new PluginError(
        'PLUGIN_CONTRACT',
        `plugin "${plugin.manifest.name}" (${origin}) claims config key "${plugin.config.key}", which is already taken`,
        { details: { plugin: plugin.manifest.name, key: plugin.config.key } },
      );
    }
    fields[plugin.config.key] = plugin.config.schema;
  }
  return new ObjectSchema(fields, 'Walrus configuration');
}

/** The rejection that ends the wait for a plugin's start once a stop has waited long enough. */
class AbandonedStart extends Error {}

export class Kernel {
  readonly config: Readonly<Record<string, unknown>> & KernelConfig;
  readonly resolved: ResolvedConfig;
  readonly plan: Plan;
  readonly log: Logger;
  private readonly container: DependencyContainer;
  private readonly scopes: Map<AnyPlugin, KernelScope>;
  private readonly started: AnyPlugin[] = [];
  private stateValue: KernelState = 'created';
  private stopping: Promise<StopReport> | undefined;
  private starting: Promise<void> | undefined;
  private stopRequested = false;
  /** Abandons the wait for the plugin being started; set while one starts. */
  private abandonStart: (() => void) | undefined;

  private constructor(resolved: ResolvedConfig, plan: Plan, log: Logger) {
    this.resolved = resolved;
    this.config = resolved.value as Kernel['config'];
    this.plan = plan;
    this.log = log;
    this.container = rootContainer.createChildContainer();
    this.scopes = new Map();
  }

  /** Resolves config, loads and probes plugins, plans and registers them. Nothing starts yet. */
  static async create(options: KernelOptions): Promise<Kernel> {
    const inspection = await Kernel.inspect(options);
    if (inspection.error !== undefined || inspection.plan === undefined) {
      throw inspection.error ?? new Error('invariant: a plan attempt without a plan has an error');
    }
    const log = options.logger ?? pino({ name: 'walrus', level: (inspection.resolved.value as KernelConfig).log.level });
    const kernel = new Kernel(inspection.resolved, inspection.plan, log);
    kernel.register();
    kernel.logPlan(options.catalog.selectors.map((selector) => selector.capability));
    return kernel;
  }

  /**
   * Resolves the config and every plugin's status without registering or starting anything.
   * A plan that cannot work (a forced backend that cannot run, a missing requirement) comes
   * back as `error` next to the statuses, so `walrus plugins` can still show why.
   */
  static async inspect(options: KernelOptions): Promise<Inspection> {
    const env = options.env ?? processEnvironment();
    const flags = options.flags ?? [];
    const file = typeof options.configFile === 'string' ? readConfigFile(options.configFile) : options.configFile;
    const names = checkPluginList(options.catalog, file, env, flags);
    const baseDir = file === undefined ? process.cwd() : dirname(file.path);
    const plugins = await loadPlugins(names, options.catalog, baseDir);
    const schema = configSchema(options.catalog, plugins);
    const resolved = resolveConfig({
      schema,
      file,
      env: environmentSettings(env),
      flags,
      derive: options.catalog.derive,
    });
    const config = resolved.value as KernelConfig & Record<string, unknown>;
    const probes = await timeout(
      probeAll(plugins, config),
      config.kernel.startTimeoutMs,
      () => new TimeoutError('PLUGIN_START_TIMEOUT', `plugin probes did not finish within ${config.kernel.startTimeoutMs} ms`),
    );
    return { resolved, schema, ...attemptPlan(plugins, probes, options.catalog, config) };
  }

  get state(): KernelState {
    return this.stateValue;
  }

  /** Where the effective value at `path` came from: `default`, `file <path>`, `env <VAR>` or `flag --<name>`. */
  sourceOf(path: string): string {
    return sourceOf(this.resolved.sources, path);
  }

  statuses(): readonly PluginStatus[] {
    return this.plan.statuses;
  }

  /** Resolves a capability bound by a loaded plugin (for embedding and tests). */
  resolve<T>(token: Token<T>): T {
    return resolveCapability(this.container, token);
  }

  private register(): void {
    for (const plugin of this.plan.order) {
      const name = plugin.manifest.name;
      const scope = new KernelScope(this.container, plugin, this.log.child({ plugin: name }), this.config);
      const section = plugin.config === undefined ? undefined : this.config[plugin.config.key];
      try {
        plugin.register(scope, section);
      } catch (error) {
        if (error instanceof PluginError) throw error;
        throw new PluginError('PLUGIN_START_FAILED', `plugin "${name}" failed to register: ${describeError(error)}`, {
          cause: error,
          details: { plugin: name },
        });
      }
      const missing = plugin.manifest.provides.filter((capability) => !scope.boundCapabilities.has(capability));
      if (missing.length > 0) {
        throw new PluginError(
          'PLUGIN_CONTRACT',
          `plugin "${name}" declares that it provides ${missing.map((c) => `"${c}"`).join(', ')} but its register() did not bind it`,
          { details: { plugin: name, missing } },
        );
      }
      this.scopes.set(plugin, scope);
    }
  }

  /** Logs what loads and why; for each capability a selector decided (the storage backend), the choice and its reason. */
  private logPlan(selected: readonly string[]): void {
    const by = (state: string) => this.plan.statuses.filter((status) => status.state === state);
    const choices: Record<string, string> = {};
    for (const capability of selected) {
      const chosen = this.plan.statuses.find((status) => status.state === 'loaded' && status.provides.includes(capability));
      choices[capability] = chosen === undefined ? 'none' : `${chosen.name} (${chosen.reason})`;
    }
    this.log.info(
      {
        loaded: this.plan.order.map((plugin) => plugin.manifest.name),
        selected: choices,
        available: by('available').map((status) => `${status.name} (${status.reason})`),
        unavailable: by('unavailable').map((status) => `${status.name} (${status.reason})`),
        config: this.resolved.file ?? 'embedded default',
      },
      'plugins selected',
    );
  }

  private scope(plugin: AnyPlugin): KernelScope {
    const scope = this.scopes.get(plugin);
    if (scope === undefined) throw new Error(`invariant: plugin ${plugin.manifest.name} has no scope`);
    return scope;
  }

  /** Starts every loaded plugin in order. On failure, stops what started (in reverse) and rejects. */
  start(): Promise<void> {
    if (this.stateValue !== 'created') {
      return Promise.reject(new StateError('KERNEL_STATE', `start() called while the kernel is ${this.stateValue}; a kernel starts once`));
    }
    this.stateValue = 'starting';
    this.starting = this.startAll();
    return this.starting;
  }

  private async startAll(): Promise<void> {
    const ms = this.config.kernel.startTimeoutMs;
    for (const plugin of this.plan.order) {
      const name = plugin.manifest.name;
      if (this.stopRequested) {
        await this.abortStart(undefined);
        throw new StateError('KERNEL_STATE', `start aborted before plugin "${name}": stop() was called while starting`);
      }
      const began = performance.now();
      const abandoned = new Promise<never>((_, reject) => {
        this.abandonStart = () => reject(new AbandonedStart());
      });
      try {
        if (plugin.start !== undefined) {
          await timeout(
            Promise.race([Promise.resolve().then(() => plugin.start?.(this.scope(plugin))), abandoned]),
            ms,
            () =>
              new TimeoutError('PLUGIN_START_TIMEOUT', `plugin "${name}" did not finish starting within ${ms} ms (kernel.startTimeoutMs)`, {
                details: { plugin: name, timeoutMs: ms },
              }),
          );
        }
      } catch (error) {
        if (error instanceof AbandonedStart) {
          // Still starting, so it may hold resources: it gets a stop call like the started ones.
          this.started.push(plugin);
          await this.abortStart(undefined);
          throw new StateError(
            'KERNEL_STATE',
            `start of plugin "${name}" abandoned: stop() was called and it did not finish starting within ${this.config.kernel.stopTimeoutMs} ms (kernel.stopTimeoutMs)`,
            { details: { plugin: name } },
          );
        }
        const failure =
          error instanceof TimeoutError
            ? error
            : new PluginError('PLUGIN_START_FAILED', `plugin "${name}" failed to start: ${describeError(error)}`, {
                cause: error,
                details: { plugin: name },
              });
        // A plugin whose start timed out may hold resources; it gets a stop call like the started ones.
        if (error instanceof TimeoutError) this.started.push(plugin);
        await this.abortStart(failure);
        throw failure;
      } finally {
        this.abandonStart = undefined;
      }
      this.started.push(plugin);
      this.log.debug({ plugin: name, ms: Math.round(performance.now() - began) }, 'plugin started');
    }
    this.stateValue = 'started';
    this.log.info({ plugins: this.started.map((plugin) => plugin.manifest.name) }, 'ready');
  }

  /** Stops what started; `failure` is undefined when a stop() request interrupted the start. */
  private async abortStart(failure: Error | undefined): Promise<void> {
    if (failure === undefined) this.log.info('stop requested while starting; stopping the plugins already started');
    else this.log.error(errorFields(failure), 'start failed; stopping the plugins already started');
    this.stopping ??= this.stopAll();
    await this.stopping;
  }

  /**
   * Stops started plugins in reverse order within `kernel.stopTimeoutMs` overall. A plugin that
   * fails or overruns is reported and the rest still stop. Safe to call more than once. Called
   * while starting, it lets the plugin being started finish, starts no more, then stops; a
   * plugin still starting after `kernel.stopTimeoutMs` is given up on and stopped like the rest
   * (a stop, a SIGTERM, must not wait for a start that may never end).
   */
  stop(): Promise<StopReport> {
    if (this.stopping !== undefined) return this.stopping;
    if (this.stateValue === 'starting' && this.starting !== undefined) {
      this.stopRequested = true;
      const patience = setTimeout(() => this.abandonStart?.(), this.config.kernel.stopTimeoutMs);
      const settled = this.starting.then(
        () => clearTimeout(patience),
        () => clearTimeout(patience),
      );
      return settled.then(() => {
        this.stopping ??= this.stopAll();
        return this.stopping;
      });
    }
    this.stopping = this.stopAll();
    return this.stopping;
  }

  /** Like stop(), but rejects with PLUGIN_STOP_FAILED when any plugin failed to stop. */
  async stopOrThrow(): Promise<void> {
    const report = await this.stop();
    if (report.failures.length > 0) {
      const lines = report.failures.map((failure) => `${failure.plugin}: ${failure.error}`);
      throw new PluginError('PLUGIN_STOP_FAILED', `plugins failed to stop:\n  ${lines.join('\n  ')}`, {
        details: { failures: report.failures },
      });
    }
  }

  private async stopAll(): Promise<StopReport> {
    this.stateValue = 'stopping';
    const ms = this.config.kernel.stopTimeoutMs;
    const deadline = performance.now() + ms;
    const failures: { plugin: string; error: string }[] = [];
    for (const plugin of [...this.started].reverse()) {
      const name = plugin.manifest.name;
      if (plugin.stop === undefined) continue;
      const remaining = Math.max(0, Math.floor(deadline - performance.now()));
      try {
        await timeout(
          Promise.resolve().then(() => plugin.stop?.(this.scope(plugin))),
          remaining,
          () => new Error(`did not stop before the ${ms} ms deadline (kernel.stopTimeoutMs)`),
        );
        this.log.debug({ plugin: name }, 'plugin stopped');
      } catch (error) {
        const message = describeError(error);
        failures.push({ plugin: name, error: message });
        this.log.error({ plugin: name, ...errorFields(error) }, 'plugin failed to stop');
      }
    }
    this.started.length = 0;
    try {
      await this.container.dispose();
    } catch (error) {
      failures.push({ plugin: '(container)', error: describeError(error) });
    }
    this.stateValue = 'stopped';
    this.log.info({ failures: failures.length }, 'stopped');
    return { failures };
  }
}
