// The walrus command's pure parts: exit codes by error kind and the plugin table layout.

import test from 'ava';
import { exitCodeFor, formatStatuses } from '../../src/commands/walrus.js';
import { BusyError, ConfigError, PluginError, StorageError, TimeoutError } from '../../src/kernel/errors.js';

test('configuration problems exit 2, runtime failures exit 1', (t) => {
  t.is(exitCodeFor(new ConfigError('CONFIG_INVALID', 'x')), 2);
  t.is(exitCodeFor(new ConfigError('CONFIG_UNSUPPORTED', 'x')), 2);
  for (const code of [
    'PLUGIN_UNKNOWN',
    'PLUGIN_LOAD_FAILED',
    'PLUGIN_CONTRACT',
    'PLUGIN_DUPLICATE',
    'PLUGIN_MISSING_REQUIREMENT',
    'PLUGIN_CYCLE',
    'PLUGIN_UNAVAILABLE',
  ] as const) {
    t.is(exitCodeFor(new PluginError(code, 'x')), 2, code);
  }
  t.is(exitCodeFor(new PluginError('PLUGIN_START_FAILED', 'x')), 1);
  t.is(exitCodeFor(new TimeoutError('PLUGIN_START_TIMEOUT', 'x')), 1);
  // A node directory another node holds, or one that cannot be created, is a runtime failure.
  t.is(exitCodeFor(new BusyError('DIRECTORY_LOCKED', 'x')), 1);
  t.is(exitCodeFor(new StorageError('IO', 'x')), 1);
  t.is(exitCodeFor(new Error('anything else')), 1);
});

test('the plugin table aligns its columns and keeps the reason whole', (t) => {
  const base = { description: '', provides: [], requires: [], listed: true };
  const text = formatStatuses([
    { ...base, name: 'storage-fd', origin: 'built-in', state: 'loaded', reason: 'auto picked storage-fd' },
    { ...base, name: 'x', origin: '/abs/x.js', state: 'unavailable', reason: 'no | pipes' },
  ]);
  t.deepEqual(text.split('\n'), [
    'PLUGIN      STATUS       ORIGIN     WHY',
    'storage-fd  loaded       built-in   auto picked storage-fd',
    'x           unavailable  /abs/x.js  no | pipes',
  ]);
});
