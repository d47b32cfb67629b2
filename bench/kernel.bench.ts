// Kernel start-up costs, side by side in one run: parsing the YAML alone (the floor), the full
// config pipeline (parse + env + flags + validation + freeze), and a whole kernel lifecycle
// (create, start, stop) with eight no-op plugins. Tests and an in-process cluster create many
// kernels, so this must stay far below a millisecond.
//
//   npm run bench -- kernel          # this suite only

import Benchmark from 'benchmark';
import { pino } from 'pino';
import { parse } from 'yaml';
import type { Catalog } from '../src/kernel/catalog.js';
import { parseConfigText } from '../src/kernel/config.js';
import { Kernel } from '../src/kernel/kernel.js';
import type { Plugin } from '../src/kernel/plugin.js';
import { token } from '../src/kernel/tokens.js';
import { walrusCatalog } from '../src/plugins/catalog.js';

const YAML = `node:\n  id: 2\n  dataDir: /var/lib/walrus\ncluster:\n  nodes:\n${[1, 2, 3]
  .map((id) => `    - { id: ${id}, clientPort: 909${id}, raftPort: 600${id} }`)
  .join('\n')}\nstorage:\n  backend: auto\nsegments:\n  maxEntries: 500000\n`;
const ENV = { WALRUS_LOG_LEVEL: 'warn', WALRUS_MONITOR_CHECK_MS: '1000' };
const FLAGS = [{ path: 'node.clientHost', text: '127.0.0.1', source: 'flag --client-host' }];
const silent = pino({ level: 'silent' });

const noops: Plugin[] = Array.from({ length: 8 }, (_, index) => ({
  manifest: { name: `p${index}`, description: '', provides: [`c${index}`], requires: index === 0 ? [] : [`c${index - 1}`] },
  register(scope) {
    scope.provide(token(`c${index}`), () => ({ index }));
  },
  start() {},
  stop() {},
}));
const noopCatalog: Catalog = { builtins: noops, defaultPlugins: noops.map((p) => p.manifest.name), sections: {}, selectors: [] };

export function kernelSuite(): Benchmark.Suite {
  return new Benchmark.Suite('kernel')
    .add('yaml parse only (floor)', () => {
      parse(YAML);
    })
    .add('config pipeline: yaml + env + flags + validate', {
      defer: true,
      fn: (deferred: Benchmark.Deferred) => {
        Kernel.inspect({ catalog: walrusCatalog, configFile: parseConfigText(YAML, 'bench.yaml'), env: ENV, flags: FLAGS }).then(() =>
          deferred.resolve(),
        );
      },
    })
    .add('kernel create + start + stop, 8 plugins', {
      defer: true,
      fn: (deferred: Benchmark.Deferred) => {
        Kernel.create({ catalog: noopCatalog, env: {}, logger: silent })
          .then(async (kernel) => {
            await kernel.start();
            await kernel.stop();
          })
          .then(() => deferred.resolve());
      },
    });
}
