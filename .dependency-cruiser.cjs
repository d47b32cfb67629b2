// The layering rule of docs/ARCHITECTURE.md, checked by `npm run layers` (and so by .ci/run):
// each folder of src/ may import only from the folders below it in LAYERS, and a plugin never
// imports another plugin (src/plugins/catalog.ts, which lists them all, is the one exception).
// Type-only imports count: they are dependencies of the design even though they vanish at run
// time. TypeScript is parsed with swc, since typescript 7 has no JavaScript API.

/** Lowest first. src/index.ts and src/commands/ (the package's entry points) sit above them all. */
const LAYERS = ['kernel', 'contracts', 'engine', 'protocol', 'node', 'client', 'plugins'];
const TOP = '^src/(index\\.ts$|commands/)';

const upward = LAYERS.slice(0, -1).map((layer, index) => ({
  name: `layer-${layer}`,
  comment: `src/${layer}/ may import only from ${LAYERS.slice(0, index).join(', ') || 'nothing else in src/'} (docs/ARCHITECTURE.md)`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: [...LAYERS.slice(index + 1).map((higher) => `^src/${higher}/`), TOP] },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'plugins-top',
      comment: 'plugins may not import the entry points (src/index.ts, src/commands/)',
      severity: 'error',
      from: { path: '^src/plugins/' },
      to: { path: TOP },
    },
    {
      name: 'plugin-to-plugin',
      comment: 'a plugin only binds and starts what lower layers define; plugins never import each other or the catalog',
      severity: 'error',
      from: { path: '^src/plugins/([^/]+)/' },
      to: { path: '^src/plugins/', pathNot: '^src/plugins/$1/' },
    },
    {
      name: 'no-cycles',
      comment: 'no import cycles anywhere in src/',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(build|node_modules)/' },
    tsPreCompilationDeps: true,
    parser: 'swc',
  },
};
