// The kernel lifecycle: dependency order, missing requirements and cycles, reverse stop (also
// after a failed or timed-out start), the stop deadline, manifest enforcement, and isolation
// between two kernels in one process.

import test from 'ava';
import { PluginError, StateError, TimeoutError } from '../../src/kernel/errors.js';
import type { Plugin } from '../../src/kernel/plugin.js';
import { stopOnSignals } from '../../src/kernel/signals.js';
import { token } from '../../src/kernel/tokens.js';
import { catalogOf, createKernel, fake, forever, type Service } from '../helpers/kernel.js';

test('plugins start in dependency order and stop in reverse', async (t) => {
  const events: string[] = [];
  // Listed so that list order is the wrong start order.
  const api = fake('api', { requires: ['store', 'consensus'], events });
  const consensus = fake('consensus', { requires: ['store'], events });
  const store = fake('store', { events });
  const kernel = await createKernel(catalogOf([api, consensus, store]));
  t.deepEqual(
    kernel.plan.order.map((plugin) => plugin.manifest.name),
    ['store', 'consensus', 'api'],
  );
  await kernel.start();
  t.is(kernel.state, 'started');
  const report = await kernel.stop();
  t.deepEqual(report.failures, []);
  t.is(kernel.state, 'stopped');
  t.deepEqual(events, ['start:store', 'start:consensus', 'start:api', 'stop:api', 'stop:consensus', 'stop:store']);
});

test('independent plugins keep their list order', async (t) => {
  const kernel = await createKernel(catalogOf([fake('b'), fake('a'), fake('c')]));
  t.deepEqual(
    kernel.plan.order.map((plugin) => plugin.manifest.name),
    ['b', 'a', 'c'],
  );
});

test('a requirement nothing provides stops the start and names the capability', async (t) => {
  const error = await t.throwsAsync(createKernel(catalogOf([fake('api', { requires: ['consensus'] })])), { instanceOf: PluginError });
  t.is(error?.code, 'PLUGIN_MISSING_REQUIREMENT');
  t.regex(error?.message ?? '', /plugin "api" requires "consensus", which no loaded plugin provides \(no known plugin provides it\)/);
});

test('a missing requirement explains why its provider is not loaded', async (t) => {
  const raft = fake('raft', { provides: ['consensus'], probe: { ok: false, reason: 'not implemented yet' } });
  const error = await t.throwsAsync(createKernel(catalogOf([raft, fake('api', { requires: ['consensus'] })])));
  t.is((error as PluginError).code, 'PLUGIN_MISSING_REQUIREMENT');
  t.regex(error?.message ?? '', /raft is unavailable: not implemented yet/);
});

test('a requirement cycle is refused and the cycle is named', async (t) => {
  const a = fake('a', { requires: ['b'] });
  const b = fake('b', { requires: ['c'] });
  const c = fake('c', { requires: ['a'] });
  const error = await t.throwsAsync(createKernel(catalogOf([a, b, c])));
  t.is((error as PluginError).code, 'PLUGIN_CYCLE');
  t.regex(error?.message ?? '', /a → b → c → a/);
});

test('two loaded plugins providing one capability are refused', async (t) => {
  const error = await t.throwsAsync(createKernel(catalogOf([fake('one', { provides: ['store'] }), fake('two', { provides: ['store'] })])));
  t.is((error as PluginError).code, 'PLUGIN_DUPLICATE');
  t.regex(error?.message ?? '', /"one" and "two" both provide "store"/);
});

test('a failed start stops the plugins already started, in reverse, and reports the cause', async (t) => {
  const events: string[] = [];
  const boom = new Error('port in use');
  const plugins = [
    fake('a', { events }),
    fake('b', { events }),
    fake('c', {
      events,
      start: () => {
        throw boom;
      },
    }),
    fake('d', { events }),
  ];
  const kernel = await createKernel(catalogOf(plugins));
  const error = await t.throwsAsync(kernel.start(), { instanceOf: PluginError });
  t.is(error?.code, 'PLUGIN_START_FAILED');
  t.is(error?.cause, boom);
  t.regex(error?.message ?? '', /plugin "c" failed to start: port in use/);
  // c's own stop is not called (its start failed: it cleans up after itself); d never started.
  t.deepEqual(events, ['start:a', 'start:b', 'start:c', 'stop:b', 'stop:a']);
  t.is(kernel.state, 'stopped');
});

test('a plugin that does not finish starting times out, and everything started is stopped', async (t) => {
  const events: string[] = [];
  const plugins = [fake('a', { events }), fake('slow', { events, start: forever }), fake('after', { events })];
  const kernel = await createKernel(catalogOf(plugins), { flags: [{ path: 'kernel.startTimeoutMs', text: '50', source: 'test' }] });
  const began = Date.now();
  const error = await t.throwsAsync(kernel.start(), { instanceOf: TimeoutError });
  t.is(error?.code, 'PLUGIN_START_TIMEOUT');
  t.true(error?.retriable);
  t.regex(error?.message ?? '', /plugin "slow" did not finish starting within 50 ms/);
  t.true(Date.now() - began < 5000);
  // The timed-out plugin may hold resources, so it is stopped too, before the ones started earlier.
  t.deepEqual(events, ['start:a', 'start:slow', 'stop:slow', 'stop:a']);
});

test('stop keeps going past a plugin that overruns the deadline and reports it', async (t) => {
  const events: string[] = [];
  const plugins = [fake('a', { events }), fake('stuck', { events, stop: forever }), fake('c', { events })];
  const kernel = await createKernel(catalogOf(plugins), { flags: [{ path: 'kernel.stopTimeoutMs', text: '60', source: 'test' }] });
  await kernel.start();
  const began = Date.now();
  const error = await t.throwsAsync(kernel.stopOrThrow(), { instanceOf: PluginError });
  t.is(error?.code, 'PLUGIN_STOP_FAILED');
  t.regex(error?.message ?? '', /stuck: did not stop before the 60 ms deadline/);
  t.deepEqual(events, ['start:a', 'start:stuck', 'start:c', 'stop:c', 'stop:stuck', 'stop:a']);
  t.true(Date.now() - began < 5000);
});

test('a plugin whose stop throws is reported and the others still stop', async (t) => {
  const events: string[] = [];
  const plugins = [
    fake('a', { events }),
    fake('bad', {
      events,
      stop: () => {
        throw new Error('disk gone');
      },
    }),
  ];
  const kernel = await createKernel(catalogOf(plugins));
  await kernel.start();
  const report = await kernel.stop();
  t.deepEqual(report.failures, [{ plugin: 'bad', error: 'disk gone' }]);
  t.deepEqual(events, ['start:a', 'start:bad', 'stop:bad', 'stop:a']);
  // A second stop returns the same report without stopping anything twice.
  t.is(await kernel.stop(), report);
  t.is(events.length, 4);
});

test('start twice is refused', async (t) => {
  const kernel = await createKernel(catalogOf([fake('a')]));
  await kernel.start();
  const error = await t.throwsAsync(kernel.start(), { instanceOf: StateError });
  t.is(error?.code, 'KERNEL_STATE');
  await kernel.stop();
});

test('two kernels in one process share no services, config or lifecycle', async (t) => {
  const eventsOne: string[] = [];
  const store = fake('store', { events: eventsOne });
  const one = await createKernel(catalogOf([store]), { flags: [{ path: 'log.level', text: 'debug', source: 'test' }] });
  const two = await createKernel(catalogOf([store]));
  const storeToken = token<Service>('store');
  const fromOne = one.resolve(storeToken);
  const fromTwo = two.resolve(storeToken);
  t.not(fromOne.instance, fromTwo.instance);
  // Within one kernel the service is built once.
  t.is(one.resolve(storeToken), fromOne);
  t.is(one.config.log.level, 'debug');
  t.is(two.config.log.level, 'info');
  await one.start();
  await two.start();
  await one.stop();
  t.is(one.state, 'stopped');
  t.is(two.state, 'started');
  t.is(two.resolve(storeToken), fromTwo);
  await two.stop();
});

test('a plugin may bind only what it provides and resolve only what it declares', async (t) => {
  const sneaky: Plugin = {
    manifest: { name: 'sneaky', description: '', provides: [], requires: [] },
    register(scope) {
      scope.provide(token('consensus'), () => ({}));
    },
  };
  const bindError = await t.throwsAsync(createKernel(catalogOf([sneaky])));
  t.is((bindError as PluginError).code, 'PLUGIN_UNDECLARED');
  t.regex(bindError?.message ?? '', /binds "consensus" but its manifest does not list it under provides/);

  const store = fake('store');
  const peeker: Plugin = {
    manifest: { name: 'peeker', description: '', provides: [], requires: [] },
    register() {},
    start(scope) {
      scope.resolve(token('store'));
    },
  };
  const kernel = await createKernel(catalogOf([store, peeker]));
  const resolveError = await t.throwsAsync(kernel.start());
  t.is((resolveError as PluginError).code, 'PLUGIN_START_FAILED');
  t.is(((resolveError as PluginError).cause as PluginError).code, 'PLUGIN_UNDECLARED');
});

test('a plugin that declares a capability but does not bind it is refused', async (t) => {
  const lazy = { manifest: { name: 'lazy', description: '', provides: ['store'], requires: [] }, register() {} };
  const error = await t.throwsAsync(createKernel(catalogOf([lazy])));
  t.is((error as PluginError).code, 'PLUGIN_CONTRACT');
  t.regex(error?.message ?? '', /declares that it provides "store" but its register\(\) did not bind it/);
});

test('a plugin whose probe fails is not loaded and its reason is shown', async (t) => {
  const events: string[] = [];
  const kernel = await createKernel(
    catalogOf([fake('a', { events }), fake('uring', { events, probe: { ok: false, reason: 'kernel too old' } })]),
  );
  const status = kernel.statuses().find((entry) => entry.name === 'uring');
  t.is(status?.state, 'unavailable');
  t.is(status?.reason, 'kernel too old');
  await kernel.start();
  await kernel.stop();
  t.deepEqual(events, ['start:a', 'stop:a']);
});

test('a register() that throws fails the kernel with the plugin named', async (t) => {
  const broken = {
    manifest: { name: 'broken', description: '', provides: [], requires: [] },
    register() {
      throw new Error('bad wiring');
    },
  };
  const error = await t.throwsAsync(createKernel(catalogOf([broken])));
  t.is((error as PluginError).code, 'PLUGIN_START_FAILED');
  t.regex(error?.message ?? '', /plugin "broken" failed to register: bad wiring/);
});

test('stop() during start lets the current plugin finish, starts no more, and stops what started', async (t) => {
  const events: string[] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const plugins = [fake('a', { events }), fake('slow', { events, start: () => gate }), fake('never', { events })];
  const kernel = await createKernel(catalogOf(plugins));
  const starting = kernel.start();
  await new Promise((resolve) => setImmediate(resolve));
  const stopping = kernel.stop();
  release();
  const error = await t.throwsAsync(starting, { instanceOf: StateError });
  t.regex(error?.message ?? '', /start aborted before plugin "never": stop\(\) was called while starting/);
  const report = await stopping;
  t.deepEqual(report.failures, []);
  t.deepEqual(events, ['start:a', 'start:slow', 'stop:slow', 'stop:a']);
  t.is(kernel.state, 'stopped');
});

test('stop() during a start that never finishes gives up on it after kernel.stopTimeoutMs and stops it with the rest', async (t) => {
  const events: string[] = [];
  const plugins = [
    fake('a', { events }),
    fake('hang', { events, start: () => new Promise<void>(() => undefined) }),
    fake('never', { events }),
  ];
  const kernel = await createKernel(catalogOf(plugins), { flags: [{ path: 'kernel.stopTimeoutMs', text: '50', source: 'test' }] });
  const starting = kernel.start();
  await new Promise((resolve) => setImmediate(resolve));
  const report = await kernel.stop();
  t.deepEqual(report.failures, []);
  const error = await t.throwsAsync(starting, { instanceOf: StateError });
  t.regex(error?.message ?? '', /start of plugin "hang" abandoned: stop\(\) was called and it did not finish starting within 50 ms/);
  t.deepEqual(events, ['start:a', 'start:hang', 'stop:hang', 'stop:a']);
  t.is(kernel.state, 'stopped');
});

test('a signal stops the kernel gracefully and exits 0; a second signal exits 1 at once', async (t) => {
  const events: string[] = [];
  let release: () => void = () => undefined;
  const slowStop = new Promise<void>((resolve) => {
    release = resolve;
  });
  const kernel = await createKernel(catalogOf([fake('a', { events }), fake('slow', { events, stop: () => slowStop })]));
  await kernel.start();
  const codes: number[] = [];
  const exited = new Promise<void>((resolve) => {
    const remove = stopOnSignals(kernel, {
      signals: ['SIGUSR2'],
      exit: (code) => {
        codes.push(code);
        if (codes.length === 2) {
          remove();
          resolve();
        }
      },
    });
  });
  process.emit('SIGUSR2', 'SIGUSR2');
  process.emit('SIGUSR2', 'SIGUSR2');
  t.deepEqual(codes, [1]);
  release();
  await exited;
  t.deepEqual(codes, [1, 0]);
  t.deepEqual(events, ['start:a', 'start:slow', 'stop:slow', 'stop:a']);
  t.is(process.listenerCount('SIGUSR2'), 0);
});
