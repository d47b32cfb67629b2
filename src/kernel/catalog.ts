// What a kernel can choose from: the built-in plugins, the default `plugins:` list, config
// sections shared by several plugins, and selectors that pick one provider among several for a
// capability (e.g. which storage backend). The kernel knows only this shape; Walrus's own
// catalog lives in src/plugins/catalog.ts and tests pass small catalogs of their own.

import type { ResolveInput } from './config.js';
import type { AnyPlugin, ProbeResult } from './plugin.js';
import type { Fields } from './schema.js';

export interface Candidate {
  readonly plugin: AnyPlugin;
  readonly probe: ProbeResult;
}

export type Selection =
  | { readonly chosen: string; readonly why: string }
  | { readonly chosen: null; readonly why: string; readonly fatal: boolean };

export interface Selector {
  /** The capability that several listed plugins may provide. */
  readonly capability: string;
  /** Picks at most one of the listed providers. `fatal` stops the start (a forced choice that cannot run). */
  select(candidates: readonly Candidate[], config: Readonly<Record<string, unknown>>): Selection;
}

export interface Catalog {
  readonly builtins: readonly AnyPlugin[];
  readonly defaultPlugins: readonly string[];
  /** Config sections not owned by a single plugin (e.g. `node`, `storage`). */
  readonly sections: Fields;
  readonly selectors: readonly Selector[];
  readonly derive?: ResolveInput['derive'];
}
