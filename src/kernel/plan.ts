// Decides which plugins load and in what order. Every known plugin is probed; listed plugins
// that can run are candidates; a selector narrows several providers of one capability to one
// (storage backends); then every requirement must be met by a loaded provider, and the start
// order is a topological sort of requires → provides that otherwise keeps list order.

import type { Candidate, Catalog } from './catalog.js';
import { describeError, PluginError } from './errors.js';
import type { LoadedPlugin } from './load.js';
import type { AnyPlugin, ProbeResult } from './plugin.js';

export type PluginState = 'loaded' | 'available' | 'unavailable';

export interface PluginStatus {
  readonly name: string;
  readonly description: string;
  readonly origin: string;
  readonly provides: readonly string[];
  readonly requires: readonly string[];
  readonly listed: boolean;
  readonly state: PluginState;
  /** Why it is in this state: the probe's reason, the selector's choice, or "not listed". */
  readonly reason: string;
}

export interface Plan {
  /** Loaded plugins in start order. */
  readonly order: readonly AnyPlugin[];
  /** Every known plugin with its state, in the order they were listed, then the unlisted ones. */
  readonly statuses: readonly PluginStatus[];
}

/** The statuses, plus why no valid plan exists (a forced provider that cannot run, a missing requirement, a cycle). */
export interface PlanAttempt {
  readonly statuses: readonly PluginStatus[];
  readonly plan?: Plan;
  readonly error?: PluginError;
}

export async function probeAll(
  plugins: readonly LoadedPlugin[],
  config: Readonly<Record<string, unknown>>,
): Promise<Map<string, ProbeResult>> {
  const results = new Map<string, ProbeResult>();
  await Promise.all(
    plugins.map(async ({ plugin }) => {
      let result: ProbeResult;
      try {
        result = plugin.probe === undefined ? { ok: true } : await plugin.probe({ config });
      } catch (error) {
        result = { ok: false, reason: `probe failed: ${describeError(error)}` };
      }
      results.set(plugin.manifest.name, result);
    }),
  );
  return results;
}

function selectProviders(
  candidates: Map<string, Candidate>,
  catalog: Catalog,
  config: Readonly<Record<string, unknown>>,
  notes: Map<string, { state: PluginState; reason: string }>,
  listedProviders: (capability: string) => Candidate[],
): PluginError | undefined {
  let fatal: PluginError | undefined;
  for (const selector of catalog.selectors) {
    // Selectors run even with no listed provider: a forced choice must still be refused.
    const providers = listedProviders(selector.capability);
    const selection = selector.select(providers, config);
    const chosenCanRun = selection.chosen !== null && candidates.has(selection.chosen);
    if ((selection.chosen === null && selection.fatal) || (selection.chosen !== null && !chosenCanRun)) {
      fatal ??= new PluginError('PLUGIN_UNAVAILABLE', selection.why, { details: { capability: selector.capability } });
    }
    for (const provider of providers) {
      const name = provider.plugin.manifest.name;
      if (name === selection.chosen) {
        notes.set(name, { state: 'loaded', reason: selection.why });
        continue;
      }
      candidates.delete(name);
      if (provider.probe.ok) notes.set(name, { state: 'available', reason: `not selected: ${selection.why}` });
    }
  }
  return fatal;
}

function checkCapabilities(loaded: readonly AnyPlugin[], statuses: ReadonlyMap<string, PluginStatus>): Map<string, AnyPlugin> {
  const providerOf = new Map<string, AnyPlugin>();
  for (const plugin of loaded) {
    for (const capability of plugin.manifest.provides) {
      const other = providerOf.get(capability);
      if (other !== undefined) {
        throw new PluginError(
          'PLUGIN_DUPLICATE',
          `plugins "${other.manifest.name}" and "${plugin.manifest.name}" both provide "${capability}"; list only one of them`,
          { details: { capability } },
        );
      }
      providerOf.set(capability, plugin);
    }
  }
  for (const plugin of loaded) {
    for (const capability of plugin.manifest.requires) {
      if (providerOf.has(capability)) continue;
      const others = [...statuses.values()].filter((status) => status.provides.includes(capability));
      const why =
        others.length === 0
          ? 'no known plugin provides it'
          : others.map((status) => `${status.name} is ${status.listed ? status.state : 'not listed'}: ${status.reason}`).join('; ');
      throw new PluginError(
        'PLUGIN_MISSING_REQUIREMENT',
        `plugin "${plugin.manifest.name}" requires "${capability}", which no loaded plugin provides (${why})`,
        { details: { plugin: plugin.manifest.name, capability } },
      );
    }
  }
  return providerOf;
}

/** Depth-first topological sort; visits plugins in list order so independent plugins keep it. */
export function startOrder(loaded: readonly AnyPlugin[], providerOf: ReadonlyMap<string, AnyPlugin>): AnyPlugin[] {
  const order: AnyPlugin[] = [];
  const state = new Map<AnyPlugin, 'visiting' | 'done'>();
  const visit = (plugin: AnyPlugin, path: readonly string[]): void => {
    const seen = state.get(plugin);
    if (seen === 'done') return;
    if (seen === 'visiting') {
      const cycle = [...path.slice(path.indexOf(plugin.manifest.name)), plugin.manifest.name];
      throw new PluginError('PLUGIN_CYCLE', `plugins require each other in a cycle: ${cycle.join(' → ')}`, { details: { cycle } });
    }
    state.set(plugin, 'visiting');
    for (const capability of plugin.manifest.requires) {
      const provider = providerOf.get(capability);
      if (provider !== undefined && provider !== plugin) visit(provider, [...path, plugin.manifest.name]);
    }
    state.set(plugin, 'done');
    order.push(plugin);
  };
  for (const plugin of loaded) visit(plugin, []);
  return order;
}

/** Decides statuses and, when possible, the start order. Never throws for a bad plan: see `error`. */
export function attemptPlan(
  plugins: readonly LoadedPlugin[],
  probes: ReadonlyMap<string, ProbeResult>,
  catalog: Catalog,
  config: Readonly<Record<string, unknown>>,
): PlanAttempt {
  const candidates = new Map<string, Candidate>();
  const notes = new Map<string, { state: PluginState; reason: string }>();
  for (const { plugin, listed } of plugins) {
    const name = plugin.manifest.name;
    const probe = probes.get(name) ?? { ok: false, reason: 'not probed' };
    if (!probe.ok) notes.set(name, { state: 'unavailable', reason: probe.reason ?? 'its probe failed without a reason' });
    else if (!listed) notes.set(name, { state: 'available', reason: probe.reason ?? 'not in the plugins list' });
    else {
      candidates.set(name, { plugin, probe });
      notes.set(name, { state: 'loaded', reason: probe.reason ?? 'listed' });
    }
  }
  const listedProviders = (capability: string): Candidate[] =>
    plugins
      .filter(({ plugin, listed }) => listed && plugin.manifest.provides.includes(capability))
      .map(({ plugin }) => ({ plugin, probe: probes.get(plugin.manifest.name) ?? { ok: false, reason: 'not probed' } }));
  const selectionError = selectProviders(candidates, catalog, config, notes, listedProviders);

  const statuses = new Map<string, PluginStatus>();
  for (const { plugin, origin, listed } of plugins) {
    const note = notes.get(plugin.manifest.name) ?? { state: 'unavailable', reason: 'not probed' };
    statuses.set(plugin.manifest.name, {
      name: plugin.manifest.name,
      description: plugin.manifest.description,
      origin,
      provides: plugin.manifest.provides,
      requires: plugin.manifest.requires,
      listed,
      state: note.state,
      reason: note.reason,
    });
  }
  const list = [...statuses.values()];
  if (selectionError !== undefined) return { statuses: list, error: selectionError };
  try {
    const loaded = plugins.map(({ plugin }) => plugin).filter((plugin) => candidates.has(plugin.manifest.name));
    const providerOf = checkCapabilities(loaded, statuses);
    return { statuses: list, plan: { order: startOrder(loaded, providerOf), statuses: list } };
  } catch (error) {
    if (error instanceof PluginError) return { statuses: list, error };
    throw error;
  }
}
