// The configuration pipeline as a user meets it through Walrus's own catalog: precedence
// (default < file < env < flag), provenance, strict validation that lists every problem with
// its path and source, YAML errors, the cluster.nodes entry picked by node.id, and freezing.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { parseConfigText } from '../../src/kernel/config.js';
import { ConfigError } from '../../src/kernel/errors.js';
import { Kernel, type KernelOptions } from '../../src/kernel/kernel.js';
import { walrusCatalog } from '../../src/plugins/catalog.js';
import { silent, withTempDir } from '../helpers/kernel.js';

const inspect = (options: Partial<KernelOptions> = {}) => Kernel.inspect({ catalog: walrusCatalog, env: {}, ...options });
const yaml = (text: string) => parseConfigText(text, 'test.yaml');
const flag = (path: string, text: string, name: string) => ({ path, text, source: `flag --${name}` });

async function configError(options: Partial<KernelOptions>): Promise<ConfigError> {
  const error = await inspect(options).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  if (!(error instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${String(error)}`);
  return error;
}

test('with nothing given, every value is its default', async (t) => {
  const { resolved } = await inspect();
  const node = resolved.value.node as Record<string, unknown>;
  t.deepEqual(node, {
    id: 1,
    dataDir: './data',
    clientHost: '127.0.0.1',
    clientPort: 8080,
    raftHost: '127.0.0.1',
    raftPort: 6000,
    join: null,
  });
  t.deepEqual(resolved.value.storage, {
    backend: 'auto',
    disableIoUring: false,
    fsync: 'interval',
    fsyncIntervalMs: 200,
    writeReadAhead: true,
  });
  t.deepEqual(resolved.value.segments, { maxEntries: 1_000_000 });
  t.deepEqual(resolved.value.lease, { ttlMs: 500 });
  t.deepEqual(resolved.value.rollover, { monitorCheckMs: 10_000 });
  t.is(resolved.sources.size, 0);
});

test('precedence is default < file < env < flag, and each value knows its source', async (t) => {
  const file = yaml('node:\n  clientPort: 7001\n  raftPort: 7101\n  dataDir: /from/file\nrollover:\n  monitorCheckMs: 500\n');
  const env = { WALRUS_CLIENT_PORT: '7002', WALRUS_DATA_DIR: '/from/env', WALRUS_MONITOR_CHECK_MS: '600' };
  const flags = [flag('node.clientPort', '7003', 'client-port')];
  const inspection = await inspect({ configFile: file, env, flags });
  const { value } = inspection.resolved;
  const node = value.node as Record<string, unknown>;
  t.is(node.clientPort, 7003);
  t.is(node.dataDir, '/from/env');
  t.is(node.raftPort, 7101);
  t.is(node.raftHost, '127.0.0.1');
  t.is((value.rollover as Record<string, unknown>).monitorCheckMs, 600);
  const kernel = await Kernel.create({ catalog: walrusCatalog, configFile: file, env, flags, logger: silent() });
  t.is(kernel.sourceOf('node.clientPort'), 'flag --client-port');
  t.is(kernel.sourceOf('node.dataDir'), 'env WALRUS_DATA_DIR');
  t.is(kernel.sourceOf('node.raftPort'), 'file test.yaml');
  t.is(kernel.sourceOf('node.raftHost'), 'default');
  await kernel.stop();
});

test('the effective config is frozen', async (t) => {
  const { resolved } = await inspect({ configFile: yaml('node:\n  id: 3\n') });
  t.true(Object.isFrozen(resolved.value));
  t.true(Object.isFrozen(resolved.value.node));
  t.throws(() => {
    (resolved.value.node as Record<string, unknown>).id = 4;
  });
});

test('a bad enum value names the path, the choices and what was given', async (t) => {
  const error = await configError({ configFile: yaml('storage:\n  backend: ssd\n') });
  t.is(error.code, 'CONFIG_INVALID');
  t.false(error.retriable);
  t.deepEqual(error.problems, ['storage.backend: expected one of auto|fd|mmap|uring, got "ssd" (from file test.yaml)']);
});

test('every problem is listed in one error, each with its path and source', async (t) => {
  const file = yaml(['node:', '  clientPort: 70000', '  dataDri: ./x', 'storage:', '  disableIoUring: "yes"', 'walrus: 1'].join('\n'));
  const error = await configError({
    configFile: file,
    env: { WALRUS_MAX_SEGMENT_ENTRIES: 'many' },
    flags: [flag('rollover.monitorCheckMs', '5', 'x')],
  });
  t.deepEqual(
    [...error.problems].sort(),
    [
      'node.clientPort: expected an integer in 0..65535, got 70000 (from file test.yaml)',
      'node.dataDri: unknown key (did you mean "dataDir"?) (from file test.yaml)',
      'rollover.monitorCheckMs: expected an integer in 10..86400000, got 5 (from flag --x)',
      'segments.maxEntries: expected an integer, got "many" (from env WALRUS_MAX_SEGMENT_ENTRIES)',
      'storage.disableIoUring: expected true or false, got "yes" (from file test.yaml)',
      'walrus: unknown key (from file test.yaml)',
    ].sort(),
  );
  t.regex(error.message, /^invalid configuration \(6 problems\):\n {2}/);
});

test('environment text is parsed by the type of its key', async (t) => {
  const { resolved } = await inspect({
    env: { WALRUS_DISABLE_IO_URING: '1', WALRUS_NODE_ID: ' 2 ', WALRUS_PLUGINS: 'raft, cli', WALRUS_LOG_LEVEL: '' },
  });
  t.true((resolved.value.storage as Record<string, unknown>).disableIoUring);
  t.is((resolved.value.node as Record<string, unknown>).id, 2);
  t.deepEqual(resolved.value.plugins, ['raft', 'cli']);
  // Empty counts as unset.
  t.is((resolved.value.log as Record<string, unknown>).level, 'info');
  const error = await configError({ env: { WALRUS_DISABLE_IO_URING: 'maybe' } });
  t.deepEqual(error.problems, [
    'storage.disableIoUring: expected 1/true/yes/on or 0/false/no/off, got "maybe" (from env WALRUS_DISABLE_IO_URING)',
  ]);
});

test('YAML that does not parse, or is not a mapping, is a CONFIG_FILE error', async (t) => {
  const broken = t.throws(() => yaml('node:\n  id: [1,\n'), { instanceOf: ConfigError });
  t.is(broken?.code, 'CONFIG_FILE');
  t.regex(broken?.message ?? '', /config file test.yaml is not valid YAML/);
  const list = t.throws(() => yaml('- a\n- b\n'), { instanceOf: ConfigError });
  t.regex(list?.message ?? '', /must hold a mapping at the top level, not a list/);
  const duplicate = t.throws(() => yaml('node:\n  id: 1\n  id: 2\n'), { instanceOf: ConfigError });
  t.is(duplicate?.code, 'CONFIG_FILE');
  t.deepEqual(yaml('').tree, {});
});

test('a missing config file is a CONFIG_FILE error naming the path', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'absent.yaml');
    const error = await configError({ configFile: path });
    t.is(error.code, 'CONFIG_FILE');
    t.is(error.message, `cannot read config file ${path}: no such file`);
  });
});

test('a config file is read from disk and reported as the source', async (t) => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'walrus.yaml');
    await writeFile(path, 'log:\n  level: warn\n');
    const { resolved } = await inspect({ configFile: path });
    t.is(resolved.file, path);
    t.is((resolved.value.log as Record<string, unknown>).level, 'warn');
    t.is(resolved.sources.get('log.level'), `file ${path}`);
  });
});

const CLUSTER = [
  'cluster:',
  '  nodes:',
  '    - { id: 1, clientPort: 9091, raftPort: 6001 }',
  '    - { id: 2, clientHost: 127.0.0.2, clientPort: 9092, raftPort: 6002 }',
].join('\n');

test('node.id picks its cluster.nodes entry, which fills node addresses below env and flags', async (t) => {
  const picked = await inspect({ configFile: yaml(CLUSTER), flags: [flag('node.id', '2', 'node-id')] });
  const node = picked.resolved.value.node as Record<string, unknown>;
  t.is(node.clientHost, '127.0.0.2');
  t.is(node.clientPort, 9092);
  t.is(node.raftPort, 6002);
  t.is(picked.resolved.sources.get('node.clientPort'), 'cluster.nodes entry 2');
  const overridden = await inspect({
    configFile: yaml(CLUSTER),
    env: { WALRUS_NODE_ID: '2', WALRUS_CLIENT_PORT: '9999' },
    flags: [flag('node.raftPort', '7777', 'raft-port')],
  });
  const overriddenNode = overridden.resolved.value.node as Record<string, unknown>;
  t.is(overriddenNode.clientPort, 9999);
  t.is(overriddenNode.raftPort, 7777);
  t.is(overriddenNode.clientHost, '127.0.0.2');
});

test('a node.id with no cluster.nodes entry, duplicate ids and missing fields are reported', async (t) => {
  const absent = await configError({ configFile: yaml(CLUSTER), flags: [flag('node.id', '5', 'node-id')] });
  t.deepEqual(absent.problems, ['node.id: 5 matches no entry of cluster.nodes (ids: 1, 2) (from flag --node-id)']);
  const broken = await configError({
    configFile: yaml('cluster:\n  nodes:\n    - { id: 1, clientPort: 1 }\n    - { id: 1, clientPort: 2, raftPort: 3 }\n'),
  });
  t.deepEqual([...broken.problems].sort(), [
    'cluster.nodes: node id 1 appears more than once (from file test.yaml)',
    'cluster.nodes[0].raftPort: is required (from file test.yaml)',
  ]);
});

test('the shipped config files are valid', async (t) => {
  const single = await inspect({ configFile: 'config/walrus.yaml' });
  t.is((single.resolved.value.node as Record<string, unknown>).clientPort, 8080);
  for (const [id, port] of [
    [1, 9091],
    [2, 9092],
    [3, 9093],
  ] as const) {
    const { resolved } = await inspect({ configFile: 'config/cluster.yaml', flags: [flag('node.id', String(id), 'node-id')] });
    const node = resolved.value.node as Record<string, unknown>;
    t.is(node.clientPort, port);
    t.is(node.raftPort, 6000 + id);
  }
});

test('a cluster.nodes entry supplies every address of its node, defaults included', async (t) => {
  const file = yaml('node:\n  clientHost: 10.9.9.9\ncluster:\n  nodes:\n    - { id: 1, clientPort: 9091, raftPort: 6001 }\n');
  const { resolved } = await inspect({ configFile: file });
  const node = resolved.value.node as Record<string, unknown>;
  t.is(node.clientHost, '127.0.0.1');
  t.is(resolved.sources.get('node.clientHost'), 'cluster.nodes entry 1');
});

test('a plugins list longer than the limit is a configuration error', async (t) => {
  const error = await configError({ env: { WALRUS_PLUGINS: Array.from({ length: 65 }, (_, index) => `p${index}`).join(',') } });
  t.deepEqual(error.problems, ['plugins: has 65 entries, more than the limit of 64']);
});
