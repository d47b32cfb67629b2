// The configuration pipeline: defaults → YAML file → environment → command-line flags, each
// later layer overriding the earlier ones key by key. Every value remembers where it came from
// (for `walrus config print` and for error messages). Validation is strict and total: all
// problems are collected and reported in one CONFIG_INVALID error; the result is deep-frozen.

import { readFileSync, statSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { ENV_TABLE, type Environment, envValue } from './env.js';
import { ConfigError } from './errors.js';
import { limits } from './limits.js';
import { isPlainObject, type Problem, type Schema, schemaAt } from './schema.js';

export const DEFAULT_SOURCE = 'default';

/** One value set at one path by one source. A mapping value merges key by key; anything else replaces. */
export interface Assignment {
  readonly path: string;
  readonly value: unknown;
  readonly source: string;
}

/** A setting given as text (an environment variable or a flag); its type comes from the schema. */
export interface TextSetting {
  readonly path: string;
  readonly text: string;
  /** e.g. `env WALRUS_DATA_DIR` or `flag --data-dir`. */
  readonly source: string;
}

export interface ConfigFile {
  readonly path: string;
  readonly tree: Record<string, unknown>;
}

export interface ResolvedConfig<T = Record<string, unknown>> {
  readonly value: T;
  /** Where each set path came from; paths not listed inherit from their parent, else `default`. */
  readonly sources: ReadonlyMap<string, string>;
  readonly file: string | null;
}

/** Reads and parses a YAML config file. An empty file is an empty mapping. */
export function readConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    const size = statSync(path).size;
    if (size > limits.configFileBytesMax) {
      throw new ConfigError('CONFIG_FILE', `config file ${path} is ${size} bytes, more than the limit of ${limits.configFileBytesMax}`);
    }
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new ConfigError('CONFIG_FILE', `cannot read config file ${path}: ${reason}`, { cause: error });
  }
  return parseConfigText(text, path);
}

export function parseConfigText(text: string, path: string): ConfigFile {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    const problems = document.errors.map((error) => error.message.split('\n')[0] ?? error.message);
    throw new ConfigError('CONFIG_FILE', `config file ${path} is not valid YAML:\n  ${problems.join('\n  ')}`, { problems });
  }
  const tree: unknown = document.toJS({ maxAliasCount: 100 }) ?? {};
  if (!isPlainObject(tree)) {
    throw new ConfigError(
      'CONFIG_FILE',
      `config file ${path} must hold a mapping at the top level, not ${Array.isArray(tree) ? 'a list' : typeof tree}`,
    );
  }
  return { path, tree };
}

/** Settings from the environment, as listed in ENV_TABLE. */
export function environmentSettings(env: Environment): TextSetting[] {
  const settings: TextSetting[] = [];
  for (const variable of ENV_TABLE) {
    const text = envValue(env, variable.name);
    if (text !== undefined) settings.push({ path: variable.path, text, source: `env ${variable.name}` });
  }
  return settings;
}

function splitPath(path: string): string[] {
  return path === '' ? [] : path.split('.');
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

class Merger {
  readonly value: Record<string, unknown>;
  readonly sources = new Map<string, string>();

  constructor(defaults: Record<string, unknown>) {
    this.value = clone(defaults);
  }

  apply(assignment: Assignment): void {
    const keys = splitPath(assignment.path);
    if (keys.length === 0) {
      if (isPlainObject(assignment.value)) this.mergeInto(this.value, assignment.value, '', assignment.source);
      return;
    }
    let parent = this.value;
    for (const key of keys.slice(0, -1)) {
      if (!isPlainObject(parent[key])) parent[key] = {};
      parent = parent[key] as Record<string, unknown>;
    }
    const last = keys[keys.length - 1] as string;
    if (isPlainObject(assignment.value) && isPlainObject(parent[last])) {
      this.mergeInto(parent[last] as Record<string, unknown>, assignment.value, assignment.path, assignment.source);
    } else {
      this.set(parent, last, assignment.path, assignment.value, assignment.source);
    }
  }

  private mergeInto(target: Record<string, unknown>, tree: Record<string, unknown>, path: string, source: string): void {
    for (const [key, value] of Object.entries(tree)) {
      const childPath = path === '' ? key : `${path}.${key}`;
      if (isPlainObject(value) && isPlainObject(target[key]))
        this.mergeInto(target[key] as Record<string, unknown>, value, childPath, source);
      else this.set(target, key, childPath, value, source);
    }
  }

  private set(target: Record<string, unknown>, key: string, path: string, value: unknown, source: string): void {
    target[key] = clone(value);
    for (const known of [...this.sources.keys()]) {
      if (known.startsWith(`${path}.`) || known.startsWith(`${path}[`)) this.sources.delete(known);
    }
    this.sources.set(path, source);
  }
}

/** The source of `path`: its own, or that of its nearest ancestor, else `default`. */
export function sourceOf(sources: ReadonlyMap<string, string>, path: string): string {
  let current = path;
  for (;;) {
    const found = sources.get(current);
    if (found !== undefined) return found;
    const cut = Math.max(current.lastIndexOf('.'), current.lastIndexOf('['));
    if (cut <= 0) return DEFAULT_SOURCE;
    current = current.slice(0, cut);
  }
}

export interface ResolveInput {
  readonly schema: Schema<Record<string, unknown>>;
  readonly file?: ConfigFile | undefined;
  readonly env?: readonly TextSetting[];
  readonly flags?: readonly TextSetting[];
  /**
   * Values derived from the merged config that sit just above the file layer (below env and
   * flags). Walrus uses it to fill `node.*` from the `cluster.nodes` entry that `node.id` picks.
   */
  readonly derive?: (merged: Readonly<Record<string, unknown>>) => { assignments: Assignment[]; problems: Problem[] };
}

function textAssignments(schema: Schema<unknown>, settings: readonly TextSetting[], problems: Problem[]): Assignment[] {
  const out: Assignment[] = [];
  for (const setting of settings) {
    const target = schemaAt(schema, setting.path);
    if (target === undefined) {
      problems.push({ path: setting.path, message: `is not a config key (from ${setting.source})` });
      continue;
    }
    const parsed = target.parseText(setting.text);
    if (!parsed.ok) problems.push({ path: setting.path, message: `${parsed.message} (from ${setting.source})` });
    else out.push({ path: setting.path, value: parsed.value, source: setting.source });
  }
  return out;
}

function mergeLayers(defaults: Record<string, unknown>, layers: readonly (readonly Assignment[])[]): Merger {
  const merger = new Merger(defaults);
  for (const layer of layers) for (const assignment of layer) merger.apply(assignment);
  return merger;
}

function invalid(problems: readonly Problem[], sources: ReadonlyMap<string, string>): ConfigError {
  const lines = problems.map((problem) => {
    const source = sourceOf(sources, problem.path);
    const from = source === DEFAULT_SOURCE || problem.message.includes('(from ') ? '' : ` (from ${source})`;
    return `${problem.path}: ${problem.message}${from}`;
  });
  const shown = lines.slice(0, limits.configProblemsListedMax);
  const more = lines.length > shown.length ? `\n  ... and ${lines.length - shown.length} more` : '';
  const count = lines.length === 1 ? '1 problem' : `${lines.length} problems`;
  return new ConfigError('CONFIG_INVALID', `invalid configuration (${count}):\n  ${shown.join('\n  ')}${more}`, { problems: lines });
}

/** Merges the layers, validates the result against `schema`, and freezes it. */
export function resolveConfig<T extends Record<string, unknown>>(input: ResolveInput): ResolvedConfig<T> {
  const problems: Problem[] = [];
  const fileLayer: Assignment[] = input.file === undefined ? [] : [{ path: '', value: input.file.tree, source: `file ${input.file.path}` }];
  const envLayer = textAssignments(input.schema, input.env ?? [], problems);
  const flagLayer = textAssignments(input.schema, input.flags ?? [], problems);
  let merged = mergeLayers(input.schema.defaultValue, [fileLayer, envLayer, flagLayer]);
  if (input.derive !== undefined) {
    const derived = input.derive(merged.value);
    problems.push(...derived.problems);
    if (derived.assignments.length > 0) {
      merged = mergeLayers(input.schema.defaultValue, [fileLayer, derived.assignments, envLayer, flagLayer]);
    }
  }
  const checked = input.schema.check(merged.value, '', problems);
  if (problems.length > 0 || checked === undefined) throw invalid(problems, merged.sources);
  return { value: deepFreeze(checked) as T, sources: merged.sources, file: input.file?.path ?? null };
}

export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Reads a value at a dotted path of a plain tree (undefined when absent). */
export function valueAt(tree: unknown, path: string): unknown {
  let node: unknown = tree;
  for (const key of splitPath(path)) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}
