// Custom plugins loaded from module paths in the config: the shipped example (examples/plugins/
// pidfile.js) end to end, paths relative to the config file, the contract check with its list
// of problems, unknown names, modules that fail to import, and config sections of their own.

import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import test from 'ava';
import type { ConfigError, PluginError } from '../../src/kernel/errors.js';
import { Kernel } from '../../src/kernel/kernel.js';
import { walrusCatalog } from '../../src/plugins/catalog.js';
import { silent, withTempDir } from '../helpers/kernel.js';

const EXAMPLE = resolve('examples/plugins/pidfile.js');

async function kernelFrom(dir: string, yaml: string): Promise<Kernel> {
  const configFile = join(dir, 'walrus.yaml');
  await writeFile(configFile, yaml);
  return Kernel.create({ catalog: walrusCatalog, configFile, env: {}, logger: silent() });
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

test('the example pidfile plugin loads from config, writes its file on start and removes it on stop', async (t) => {
  await withTempDir(async (dir) => {
    const pidPath = join(dir, 'node.pid');
    const kernel = await kernelFrom(dir, `plugins: [${EXAMPLE}]\npidfile:\n  path: ${pidPath}\n`);
    const status = kernel.statuses().find((entry) => entry.name === 'pidfile');
    t.is(status?.state, 'loaded');
    t.is(status?.origin, EXAMPLE);
    t.is(kernel.statuses().find((entry) => entry.name === 'protocol-tcp')?.state, 'available', 'a built-in not listed stays out');
    await kernel.start();
    t.is(await readFile(pidPath, 'utf8'), `${process.pid}\n`);
    await kernel.stopOrThrow();
    t.false(await exists(pidPath));
  });
});

test('a custom plugin config section is validated like any other', async (t) => {
  await withTempDir(async (dir) => {
    const error = await t.throwsAsync(kernelFrom(dir, `plugins: [${EXAMPLE}]\npidfile:\n  path: ''\n  mode: 644\n`));
    t.is((error as ConfigError).code, 'CONFIG_INVALID');
    t.deepEqual([...(error as ConfigError).problems].sort(), [
      `pidfile.mode: unknown key (from file ${join(dir, 'walrus.yaml')})`,
      `pidfile.path: must not be empty (from file ${join(dir, 'walrus.yaml')})`,
    ]);
  });
});

test('module paths are relative to the config file, and default or `plugin` exports both work', async (t) => {
  await withTempDir(async (dir) => {
    await writeFile(
      join(dir, 'named.mjs'),
      "export const plugin = { manifest: { name: 'named', description: 'd', provides: [], requires: [] }, register() {}, start() { globalThis.__walrusNamedStarted = true; } };\n",
    );
    const kernel = await kernelFrom(dir, 'plugins: [./named.mjs]\n');
    t.deepEqual(
      kernel.plan.order.map((plugin) => plugin.manifest.name),
      ['named'],
    );
    await kernel.start();
    t.true((globalThis as Record<string, unknown>).__walrusNamedStarted);
    await kernel.stop();
  });
});

test('a module that does not fit the contract is refused with every mismatch listed', async (t) => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'bad.mjs'), "export default { manifest: { name: 'Bad Name', provides: 'x' }, start: 5 };\n");
    const error = await t.throwsAsync(kernelFrom(dir, 'plugins: [./bad.mjs]\n'));
    t.is((error as PluginError).code, 'PLUGIN_CONTRACT');
    const message = error?.message ?? '';
    t.true(message.startsWith(`plugin ./bad.mjs (${join(dir, 'bad.mjs')}) does not fit the plugin contract:`));
    for (const line of [
      'manifest.name: expected a lower-kebab name of at most 64 characters, got "Bad Name"',
      'manifest.description: expected a string',
      'manifest.provides: expected a list of capability names',
      'manifest.requires: expected a list of capability names',
      'register: expected a function (scope, config) => void',
      'start: expected a function when present',
    ]) {
      t.true(message.includes(`\n  ${line}`), line);
    }
    await writeFile(join(dir, 'empty.mjs'), 'export const something = 1;\n');
    const empty = await t.throwsAsync(kernelFrom(dir, 'plugins: [./empty.mjs]\n'));
    t.regex(empty?.message ?? '', /exports neither `default` nor `plugin`/);
  });
});

test('a module that fails to import reports PLUGIN_LOAD_FAILED with the cause', async (t) => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'broken.mjs'), 'export default {\n');
    const error = await t.throwsAsync(kernelFrom(dir, 'plugins: [./broken.mjs, ./missing.mjs]\n'));
    t.is((error as PluginError).code, 'PLUGIN_LOAD_FAILED');
    t.truthy(error?.cause);
    t.regex(error?.message ?? '', /cannot load plugin module \.\/broken\.mjs/);
  });
});

test('an unknown plugin name gets a hint and the list of built-ins', async (t) => {
  await withTempDir(async (dir) => {
    const error = await t.throwsAsync(kernelFrom(dir, 'plugins: [storage-fb]\n'));
    t.is((error as PluginError).code, 'PLUGIN_UNKNOWN');
    t.regex(
      error?.message ?? '',
      /unknown plugin "storage-fb" \(did you mean "storage-fd"\?\); built-in plugins: storage-fd, storage-mmap/,
    );
    t.regex(error?.message ?? '', /a custom plugin is given as a module path such as \.\/my-plugin\.js/);
  });
});

test('a plugin listed twice, or a config key already taken, is refused', async (t) => {
  await withTempDir(async (dir) => {
    const twice = await t.throwsAsync(kernelFrom(dir, 'plugins: [raft, raft]\n'));
    t.is((twice as PluginError).code, 'PLUGIN_DUPLICATE');
    await writeFile(
      join(dir, 'greedy.mjs'),
      "export default { manifest: { name: 'greedy', description: '', provides: [], requires: [] }, config: { key: 'storage', schema: { check: () => ({}), parseText: () => ({ ok: false }), defaultValue: {} } }, register() {} };\n",
    );
    const taken = await t.throwsAsync(kernelFrom(dir, 'plugins: [./greedy.mjs]\n'));
    t.is((taken as PluginError).code, 'PLUGIN_CONTRACT');
    t.regex(taken?.message ?? '', /claims config key "storage", which is already taken/);
  });
});
