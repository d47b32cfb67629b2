// Keeps the docs in step with the code: docs/config.md documents every config key with its
// default and environment variable (and nothing that does not exist), every ENV_TABLE entry and
// every flag; docs/errors.md lists every error code with its class and retriable flag;
// docs/protocol.md lists every reply of the wire table (src/protocol/wire-errors.ts) with its code.

import { readFileSync } from 'node:fs';
import test from 'ava';
import { FLAG_TABLE } from '../../src/commands/walrus.js';
import { ENV_TABLE, LAUNCHER_ENV } from '../../src/kernel/env.js';
import { ERROR_CODES } from '../../src/kernel/errors.js';
import { Kernel } from '../../src/kernel/kernel.js';
import { leaves } from '../../src/kernel/schema.js';
import { walrusCatalog } from '../../src/plugins/catalog.js';
import { WIRE_ERRORS, WIRE_FALLBACK_REPLY } from '../../src/protocol/wire-errors.js';

/** The rows of the one table under `## heading`, each as its cells (trimmed), header first. */
function table(file: string, heading: string): string[][] {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`${file} has no "## ${heading}" section`);
  const section = text.slice(start + 1).split(/\n## /)[0] ?? '';
  return section
    .split('\n')
    .filter((line) => line.startsWith('|') && !/^\|[\s|:-]+\|$/.test(line))
    .map((line) =>
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim()),
    );
}

const code = (cell: string | undefined) => /^`([^`]+)`$/.exec(cell ?? '')?.[1];

test('docs/config.md documents every config key, its default and its variable, and nothing else', async (t) => {
  const rows = table('docs/config.md', 'Keys');
  t.deepEqual(rows[0], ['Key', 'Type', 'Default', 'Environment', 'Description']);
  const documented = new Map(rows.slice(1).map((row) => [code(row[0]) ?? `(unparsed: ${row[0]})`, row]));
  const { schema } = await Kernel.inspect({ catalog: walrusCatalog, env: {} });
  const expected = new Map(leaves(schema).map((leaf) => [leaf.path, leaf.schema]));
  t.deepEqual([...documented.keys()].sort(), [...expected.keys()].sort(), 'documented keys differ from the schema');
  const envByPath = new Map(ENV_TABLE.map((variable) => [variable.path, variable.name]));
  for (const [path, leaf] of expected) {
    const row = documented.get(path);
    if (row === undefined) continue;
    t.is(code(row[2]), JSON.stringify(leaf.defaultValue), `default of ${path}`);
    const variable = envByPath.get(path);
    t.is(variable === undefined ? row[3] : code(row[3]), variable ?? '—', `environment variable of ${path}`);
    t.true((row[4] ?? '').length > 10, `description of ${path}`);
  }
});

test('docs/config.md lists every environment variable with its key', (t) => {
  const rows = table('docs/config.md', 'Environment variables');
  t.deepEqual(rows[0], ['Variable', 'Key', 'Notes']);
  const documented = new Map(rows.slice(1).map((row) => [code(row[0]), row[1]]));
  const expected = new Map<string | undefined, string>(ENV_TABLE.map((variable) => [variable.name, `\`${variable.path}\``]));
  expected.set(LAUNCHER_ENV.config, '(config file path)');
  expected.set(LAUNCHER_ENV.disableNative, '(whole process)');
  expected.set(LAUNCHER_ENV.cliAddress, '(walrus-cli)');
  expected.set(LAUNCHER_ENV.cliAdminAddress, '(walrus-cli top)');
  t.deepEqual(documented, expected);
});

test('docs/config.md lists every walrus start flag with its key', (t) => {
  const rows = table('docs/config.md', 'Flags');
  t.deepEqual(rows[0], ['Flag', 'Key']);
  const documented = new Set(rows.slice(1).map((row) => `${code(row[0])} ${code(row[1])}`));
  for (const spec of FLAG_TABLE) {
    const long = spec.flags.split(' ')[0] ?? '';
    t.true(
      [...documented].some((entry) => entry.startsWith(long) && entry.endsWith(` ${spec.path}`)),
      `${long} → ${spec.path} is not in the Flags table`,
    );
  }
});

test('docs/errors.md lists every error code with its class and retriable flag', (t) => {
  const rows = table('docs/errors.md', 'Codes');
  t.deepEqual(rows[0], ['Code', 'Class', 'Retriable', 'Meaning']);
  const classes = {
    config: 'ConfigError',
    plugin: 'PluginError',
    timeout: 'TimeoutError',
    state: 'StateError',
    input: 'InputError',
    busy: 'BusyError',
    storage: 'StorageError',
    fenced: 'FencedError',
    protocol: 'ProtocolError',
    client: 'ClientError',
  } as const;
  const documented = new Map(rows.slice(1).map((row) => [code(row[0]), row]));
  t.deepEqual([...documented.keys()].sort(), Object.keys(ERROR_CODES).sort());
  for (const [name, info] of Object.entries(ERROR_CODES)) {
    const row = documented.get(name);
    t.is(row?.[1], classes[info.kind], `class of ${name}`);
    t.is(row?.[2], info.retriable ? 'yes' : 'no', `retriable of ${name}`);
    t.true((row?.[3] ?? '').length > 10, `meaning of ${name}`);
  }
});

test('docs/protocol.md lists exactly the replies of the wire table, each with its code', (t) => {
  const rows = table('docs/protocol.md', 'Errors');
  t.deepEqual(rows[0], ['Reply', 'Code', 'When']);
  const documented = new Map<string, string>();
  for (const row of rows.slice(1)) {
    const replies = [...(row[0] ?? '').matchAll(/`(ERR [^`]*)`/g)].map((match) => match[1] as string);
    t.true(replies.length > 0, `a row without a reply: ${row[0]}`);
    for (const reply of replies) {
      t.false(documented.has(reply), `${reply} is documented twice`);
      documented.set(reply, code(row[1]) ?? (row[1] as string));
    }
    t.true((row[2] ?? '').length > 10, `when of ${row[0]}`);
  }
  const expected = new Map<string, string>([[WIRE_FALLBACK_REPLY, 'any other']]);
  for (const [name, form] of Object.entries(WIRE_ERRORS)) for (const reply of form.replies) expected.set(reply, name);
  t.deepEqual(new Map([...documented].sort()), new Map([...expected].sort()));
  for (const name of Object.keys(WIRE_ERRORS)) t.true(name in ERROR_CODES, `${name} is an error code`);
});
