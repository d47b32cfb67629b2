// A small, strict schema language for configuration: every value has a type, a default and a
// description (docs/config.md is checked against the descriptions). `check` never throws: it
// records each problem with its key path and keeps going, so one error can list them all.
// Text from environment variables and flags goes through `parseText`, which knows the type.

import { limits } from './limits.js';

export interface Problem {
  readonly path: string;
  readonly message: string;
}

export type TextResult = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string };

export abstract class Schema<T> {
  readonly description: string;
  readonly defaultValue: T;

  constructor(description: string, defaultValue: T) {
    this.description = description;
    this.defaultValue = defaultValue;
  }

  /** A short type name for docs and messages, e.g. `integer 1..65535`. */
  abstract get typeName(): string;

  /** Validates `value`, appending problems; returns the normalised value, or undefined if invalid. */
  abstract check(value: unknown, path: string, problems: Problem[]): T | undefined;

  /** Turns environment or flag text into a value of this type (checked afterwards by `check`). */
  parseText(_text: string): TextResult {
    return { ok: false, message: `cannot be set from text (${this.typeName})` };
  }
}

export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

export function joinPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

export interface StringOptions {
  readonly default: string;
  readonly description: string;
  readonly minLength?: number;
  readonly pattern?: RegExp;
  /** Says in words what `pattern` accepts, for messages. */
  readonly patternHint?: string;
}

export class StringSchema extends Schema<string> {
  private readonly options: StringOptions;

  constructor(options: StringOptions) {
    super(options.description, options.default);
    this.options = options;
  }

  get typeName(): string {
    return this.options.patternHint ?? 'string';
  }

  check(value: unknown, path: string, problems: Problem[]): string | undefined {
    if (typeof value !== 'string') {
      problems.push({ path, message: `expected ${this.typeName}, got ${show(value)}` });
      return undefined;
    }
    const min = this.options.minLength ?? 0;
    if (value.length < min) {
      problems.push({ path, message: min === 1 ? 'must not be empty' : `must be at least ${min} characters` });
      return undefined;
    }
    if (value.length > limits.configStringLengthMax) {
      problems.push({ path, message: `is ${value.length} characters, more than the limit of ${limits.configStringLengthMax}` });
      return undefined;
    }
    if (this.options.pattern !== undefined && !this.options.pattern.test(value)) {
      problems.push({ path, message: `expected ${this.typeName}, got ${show(value)}` });
      return undefined;
    }
    return value;
  }

  override parseText(text: string): TextResult {
    return { ok: true, value: text };
  }
}

export interface IntOptions {
  readonly default: number;
  readonly description: string;
  readonly min: number;
  readonly max: number;
}

export class IntSchema extends Schema<number> {
  readonly min: number;
  readonly max: number;

  constructor(options: IntOptions) {
    super(options.description, options.default);
    this.min = options.min;
    this.max = options.max;
  }

  get typeName(): string {
    return `integer ${this.min}..${this.max}`;
  }

  check(value: unknown, path: string, problems: Problem[]): number | undefined {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      problems.push({ path, message: `expected an integer, got ${show(value)}` });
      return undefined;
    }
    if (value < this.min || value > this.max) {
      problems.push({ path, message: `expected an integer in ${this.min}..${this.max}, got ${value}` });
      return undefined;
    }
    return value;
  }

  override parseText(text: string): TextResult {
    const trimmed = text.trim();
    if (!/^-?\d+$/.test(trimmed)) return { ok: false, message: `expected an integer, got ${JSON.stringify(text)}` };
    return { ok: true, value: Number(trimmed) };
  }
}

const TRUE_TEXT = new Set(['1', 'true', 'yes', 'on']);
const FALSE_TEXT = new Set(['0', 'false', 'no', 'off', '']);

export class BoolSchema extends Schema<boolean> {
  get typeName(): string {
    return 'boolean';
  }

  check(value: unknown, path: string, problems: Problem[]): boolean | undefined {
    if (typeof value !== 'boolean') {
      problems.push({ path, message: `expected true or false, got ${show(value)}` });
      return undefined;
    }
    return value;
  }

  override parseText(text: string): TextResult {
    const lower = text.trim().toLowerCase();
    if (TRUE_TEXT.has(lower)) return { ok: true, value: true };
    if (FALSE_TEXT.has(lower)) return { ok: true, value: false };
    return { ok: false, message: `expected 1/true/yes/on or 0/false/no/off, got ${JSON.stringify(text)}` };
  }
}

export class EnumSchema<V extends string> extends Schema<V> {
  readonly values: readonly V[];

  constructor(values: readonly V[], options: { default: V; description: string }) {
    super(options.description, options.default);
    this.values = values;
  }

  get typeName(): string {
    return `one of ${this.values.join('|')}`;
  }

  check(value: unknown, path: string, problems: Problem[]): V | undefined {
    if (typeof value === 'string' && (this.values as readonly string[]).includes(value)) return value as V;
    problems.push({ path, message: `expected ${this.typeName}, got ${show(value)}` });
    return undefined;
  }

  override parseText(text: string): TextResult {
    return { ok: true, value: text.trim() };
  }
}

/** A value that may be absent (`null`, the default). */
export class NullableSchema<T> extends Schema<T | null> {
  readonly inner: Schema<T>;

  constructor(inner: Schema<T>, description: string) {
    super(description, null);
    this.inner = inner;
  }

  get typeName(): string {
    return `${this.inner.typeName} or null`;
  }

  check(value: unknown, path: string, problems: Problem[]): T | null | undefined {
    if (value === null) return null;
    return this.inner.check(value, path, problems);
  }

  override parseText(text: string): TextResult {
    if (text.trim() === '') return { ok: true, value: null };
    return this.inner.parseText(text);
  }
}

export class ArraySchema<T> extends Schema<readonly T[]> {
  readonly item: Schema<T>;

  constructor(item: Schema<T>, options: { default: readonly T[]; description: string }) {
    super(options.description, options.default);
    this.item = item;
  }

  get typeName(): string {
    return `list of ${this.item.typeName}`;
  }

  check(value: unknown, path: string, problems: Problem[]): readonly T[] | undefined {
    if (!Array.isArray(value)) {
      problems.push({ path, message: `expected a list, got ${show(value)}` });
      return undefined;
    }
    if (value.length > limits.configArrayItemsMax) {
      problems.push({ path, message: `has ${value.length} items, more than the limit of ${limits.configArrayItemsMax}` });
      return undefined;
    }
    const before = problems.length;
    const out = value.map((item, index) => this.item.check(item, `${path}[${index}]`, problems));
    return problems.length === before ? (out as T[]) : undefined;
  }

  override parseText(text: string): TextResult {
    const items = text
      .split(',')
      .map((part) => part.trim())
      .filter((part) => part !== '');
    const parsed: unknown[] = [];
    for (const item of items) {
      const result = this.item.parseText(item);
      if (!result.ok) return result;
      parsed.push(result.value);
    }
    return { ok: true, value: parsed };
  }
}

export type Fields = Readonly<Record<string, Schema<unknown>>>;
export type InferFields<F extends Fields> = { readonly [K in keyof F]: F[K] extends Schema<infer T> ? T : never };
export type Infer<S> = S extends Schema<infer T> ? T : never;

export class ObjectSchema<F extends Fields> extends Schema<InferFields<F>> {
  readonly fields: F;
  /** Keys that must be given (their defaults are never used). */
  readonly required: readonly (keyof F & string)[];

  constructor(fields: F, description: string, required: readonly (keyof F & string)[] = []) {
    const defaults: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(fields)) defaults[key] = field.defaultValue;
    super(description, defaults as InferFields<F>);
    this.fields = fields;
    this.required = required;
  }

  get typeName(): string {
    return 'mapping';
  }

  check(value: unknown, path: string, problems: Problem[]): InferFields<F> | undefined {
    if (!isPlainObject(value)) {
      problems.push({ path: path === '' ? '(top level)' : path, message: `expected a mapping, got ${show(value)}` });
      return undefined;
    }
    const before = problems.length;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      if (!Object.hasOwn(this.fields, key)) {
        const hint = closestName(key, Object.keys(this.fields));
        problems.push({ path: joinPath(path, key), message: `unknown key${hint === undefined ? '' : ` (did you mean "${hint}"?)`}` });
      }
    }
    for (const [key, field] of Object.entries(this.fields)) {
      if (!Object.hasOwn(value, key) && (this.required as readonly string[]).includes(key)) {
        problems.push({ path: joinPath(path, key), message: 'is required' });
        continue;
      }
      const given = Object.hasOwn(value, key) ? value[key] : field.defaultValue;
      out[key] = field.check(given, joinPath(path, key), problems);
    }
    return problems.length === before ? (out as InferFields<F>) : undefined;
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The key within edit distance 2 of `name`, if exactly one is closest: a typo hint. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** Finds the schema at a dotted path (`storage.backend`), descending through mappings only. */
export function schemaAt(root: Schema<unknown>, path: string): Schema<unknown> | undefined {
  let node: Schema<unknown> | undefined = root;
  for (const key of path.split('.')) {
    if (!(node instanceof ObjectSchema) || !Object.hasOwn(node.fields, key)) return undefined;
    node = (node.fields as Fields)[key];
  }
  return node;
}

export interface Leaf {
  /** Dotted path; items of a list of mappings appear as `list[].field`. */
  readonly path: string;
  readonly schema: Schema<unknown>;
}

/** Every documented setting below `root`: scalars, lists, and the fields of list items. */
export function leaves(root: Schema<unknown>, path = ''): Leaf[] {
  if (root instanceof ObjectSchema) {
    return Object.entries(root.fields as Fields).flatMap(([key, field]) => leaves(field, joinPath(path, key)));
  }
  const own: Leaf[] = [{ path, schema: root }];
  if (root instanceof ArraySchema && root.item instanceof ObjectSchema) return own.concat(leaves(root.item, `${path}[]`));
  return own;
}

/** The builders plugin authors use: `s.int({ default: 5, min: 1, max: 10, description: '...' })`. */
export const s = {
  string: (options: StringOptions) => new StringSchema(options),
  int: (options: IntOptions) => new IntSchema(options),
  bool: (options: { default: boolean; description: string }) => new BoolSchema(options.description, options.default),
  enum: <V extends string>(values: readonly V[], options: { default: V; description: string }) => new EnumSchema(values, options),
  nullable: <T>(inner: Schema<T>, description: string) => new NullableSchema(inner, description),
  array: <T>(item: Schema<T>, options: { default: readonly T[]; description: string }) => new ArraySchema(item, options),
  object: <F extends Fields>(fields: F, description = '', options: { required?: readonly (keyof F & string)[] } = {}) =>
    new ObjectSchema(fields, description, options.required ?? []),
};

/** Duck-typed check so that a plugin built against another copy of this module still fits. */
export function isSchema(value: unknown): value is Schema<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { check?: unknown }).check === 'function' &&
    typeof (value as { parseText?: unknown }).parseText === 'function' &&
    'defaultValue' in value
  );
}
