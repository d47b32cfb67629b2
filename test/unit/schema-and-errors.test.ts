// The config schema language on its own (types from text, limits, typo hints) and the error
// table: every code builds an error of the class its kind names, with its retriable flag.

import test from 'ava';
import {
  BusyError,
  ClientError,
  ConfigError,
  ERROR_CODES,
  type ErrorCode,
  FencedError,
  InputError,
  PluginError,
  ProtocolError,
  StateError,
  StorageError,
  TimeoutError,
  WalrusError,
  walrusError,
} from '../../src/kernel/errors.js';
import { limits } from '../../src/kernel/limits.js';
import { type Problem, s, schemaAt } from '../../src/kernel/schema.js';

test('integers from text accept only whole numbers, then the range applies', (t) => {
  const port = s.int({ default: 1, min: 0, max: 65_535, description: 'port' });
  t.deepEqual(port.parseText(' 8080 '), { ok: true, value: 8080 });
  t.deepEqual(port.parseText('80.5'), { ok: false, message: 'expected an integer, got "80.5"' });
  t.deepEqual(port.parseText('0x50'), { ok: false, message: 'expected an integer, got "0x50"' });
  const problems: Problem[] = [];
  t.is(port.check(-1, 'p', problems), undefined);
  t.deepEqual(problems, [{ path: 'p', message: 'expected an integer in 0..65535, got -1' }]);
});

test('booleans from text accept the usual spellings and nothing else', (t) => {
  const flag = s.bool({ default: false, description: 'flag' });
  for (const text of ['1', 'true', 'YES', 'on']) t.deepEqual(flag.parseText(text), { ok: true, value: true });
  for (const text of ['0', 'false', 'No', 'off']) t.deepEqual(flag.parseText(text), { ok: true, value: false });
  t.false(flag.parseText('y').ok);
});

test('nullable values take empty text as null; lists split on commas', (t) => {
  const join = s.nullable(s.string({ default: '', pattern: /^[^:]+:\d+$/, patternHint: 'host:port', description: 'j' }), 'join');
  t.deepEqual(join.parseText(''), { ok: true, value: null });
  const problems: Problem[] = [];
  t.is(join.check('nohost', 'node.join', problems), undefined);
  t.deepEqual(problems, [{ path: 'node.join', message: 'expected host:port, got "nohost"' }]);
  const list = s.array(s.string({ default: '', description: 'x' }), { default: [], description: 'l' });
  t.deepEqual(list.parseText('a, b,,c'), { ok: true, value: ['a', 'b', 'c'] });
});

test('strings and lists are bounded by the limits', (t) => {
  const problems: Problem[] = [];
  s.string({ default: '', description: 'x' }).check('x'.repeat(limits.configStringLengthMax + 1), 'k', problems);
  s.array(s.int({ default: 0, min: 0, max: 1, description: 'x' }), { default: [], description: 'l' }).check(
    new Array(limits.configArrayItemsMax + 1).fill(0),
    'l',
    problems,
  );
  t.deepEqual(
    problems.map((problem) => problem.path),
    ['k', 'l'],
  );
  t.regex(problems[0]?.message ?? '', /more than the limit of 4096/);
});

test('schemaAt finds nested settings and nothing else', (t) => {
  const root = s.object({ storage: s.object({ backend: s.enum(['fd', 'mmap'], { default: 'fd', description: 'b' }) }) });
  t.truthy(schemaAt(root, 'storage.backend'));
  t.is(schemaAt(root, 'storage.nope'), undefined);
  t.is(schemaAt(root, 'storage.backend.deeper'), undefined);
});

test('every error code builds the class its kind names and carries its retriable flag', (t) => {
  const classes = {
    config: ConfigError,
    plugin: PluginError,
    timeout: TimeoutError,
    state: StateError,
    input: InputError,
    busy: BusyError,
    storage: StorageError,
    fenced: FencedError,
    protocol: ProtocolError,
    client: ClientError,
  } as const;
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    const cause = new Error('root cause');
    const error = walrusError(code as ErrorCode, 'message', { cause, details: { key: 'value' } });
    t.true(error instanceof classes[info.kind], code);
    t.true(error instanceof WalrusError, code);
    t.is(error.code as string, code);
    t.is(error.retriable, info.retriable, code);
    t.is(error.cause, cause);
    t.deepEqual(error.details, { key: 'value' });
    t.is(error.name, classes[info.kind].name);
    t.regex(code, /^[A-Z][A-Z0-9_]*$/);
  }
});
