// Storage backend selection through Walrus's catalog rules, with fake backends whose probes the
// test controls: `auto` prefers uring, then mmap, then fd; WALRUS_DISABLE_IO_URING skips uring;
// a forced backend that cannot run stops the start with its reason.

import test from 'ava';
import type { PluginError } from '../../src/kernel/errors.js';
import { Kernel } from '../../src/kernel/kernel.js';
import type { ProbeResult } from '../../src/kernel/plugin.js';
import { CAPABILITIES } from '../../src/kernel/tokens.js';
import { walrusCatalog } from '../../src/plugins/catalog.js';
import { catalogOf, fake, silent } from '../helpers/kernel.js';

const OK: ProbeResult = { ok: true };
const NO = (reason: string): ProbeResult => ({ ok: false, reason });

function backends(
  probes: { fd: ProbeResult; mmap: ProbeResult; uring: ProbeResult },
  extra = [fake('engine', { requires: [CAPABILITIES.storageBackend] })],
) {
  const storage = (['fd', 'mmap', 'uring'] as const).map((name) =>
    fake(`storage-${name}`, { provides: [CAPABILITIES.storageBackend], probe: probes[name] }),
  );
  return catalogOf([...storage, ...extra], { sections: walrusCatalog.sections, selectors: walrusCatalog.selectors });
}

const create = (catalog: ReturnType<typeof backends>, env: Record<string, string> = {}) =>
  Kernel.create({ catalog, env, logger: silent() });
const loaded = (kernel: Kernel) => kernel.plan.order.map((plugin) => plugin.manifest.name);

test('auto picks uring when every backend can run', async (t) => {
  const kernel = await create(backends({ fd: OK, mmap: OK, uring: OK }));
  t.deepEqual(loaded(kernel), ['storage-uring', 'engine']);
  const fd = kernel.statuses().find((status) => status.name === 'storage-fd');
  t.is(fd?.state, 'available');
  t.is(fd?.reason, 'not selected: auto picked storage-uring');
});

test('auto falls back to mmap, then fd, saying why it skipped each', async (t) => {
  const mmap = await create(backends({ fd: OK, mmap: OK, uring: NO('io_uring_setup: ENOSYS') }));
  t.deepEqual(loaded(mmap), ['storage-mmap', 'engine']);
  t.is(
    mmap.statuses().find((status) => status.name === 'storage-mmap')?.reason,
    'auto picked storage-mmap (skipped storage-uring: io_uring_setup: ENOSYS)',
  );
  const fd = await create(backends({ fd: OK, mmap: NO('addon did not build'), uring: NO('addon did not build') }));
  t.deepEqual(loaded(fd), ['storage-fd', 'engine']);
});

test('WALRUS_DISABLE_IO_URING makes auto skip uring', async (t) => {
  const kernel = await create(backends({ fd: OK, mmap: OK, uring: OK }), { WALRUS_DISABLE_IO_URING: '1' });
  t.deepEqual(loaded(kernel), ['storage-mmap', 'engine']);
  const uring = kernel.statuses().find((status) => status.name === 'storage-uring');
  t.is(uring?.state, 'available');
  t.regex(uring?.reason ?? '', /skipped storage-uring: disabled by storage.disableIoUring/);
});

test('a forced backend is used even when a faster one could run', async (t) => {
  const kernel = await create(backends({ fd: OK, mmap: OK, uring: OK }), { WALRUS_STORAGE_BACKEND: 'fd' });
  t.deepEqual(loaded(kernel), ['storage-fd', 'engine']);
});

test('a forced backend that cannot run stops the start with its reason', async (t) => {
  const error = await t.throwsAsync(
    create(backends({ fd: OK, mmap: NO('mmap addon failed to load: ELF class'), uring: OK }), { WALRUS_STORAGE_BACKEND: 'mmap' }),
  );
  t.is((error as PluginError).code, 'PLUGIN_UNAVAILABLE');
  t.is(error?.message, 'storage.backend is "mmap" but storage-mmap cannot run here: mmap addon failed to load: ELF class');
  const disabled = await t.throwsAsync(
    create(backends({ fd: OK, mmap: OK, uring: OK }), { WALRUS_STORAGE_BACKEND: 'uring', WALRUS_DISABLE_IO_URING: 'yes' }),
  );
  t.regex(disabled?.message ?? '', /storage.backend is "uring" but storage.disableIoUring/);
});

test('a forced backend missing from the plugins list is refused', async (t) => {
  const error = await t.throwsAsync(
    create(backends({ fd: OK, mmap: OK, uring: OK }), { WALRUS_STORAGE_BACKEND: 'uring', WALRUS_PLUGINS: 'storage-fd,engine' }),
  );
  t.is(error?.message, 'storage.backend is "uring" but storage-uring is not in the plugins list');
});

test('with no backend able to run, whatever needs storage cannot start, and says why', async (t) => {
  const error = await t.throwsAsync(create(backends({ fd: NO('not implemented yet'), mmap: NO('no addon'), uring: NO('no addon') })));
  t.is((error as PluginError).code, 'PLUGIN_MISSING_REQUIREMENT');
  t.regex(error?.message ?? '', /requires "storage-backend".*storage-fd is unavailable: not implemented yet/);
  // Without a consumer of storage, the node still starts (this is today's default node).
  const kernel = await create(backends({ fd: NO('not implemented yet'), mmap: NO('no addon'), uring: NO('no addon') }, []));
  t.deepEqual(loaded(kernel), []);
});

test('inspect shows the statuses even when the plan cannot start', async (t) => {
  const inspection = await Kernel.inspect({
    catalog: backends({ fd: OK, mmap: NO('no addon'), uring: OK }),
    env: { WALRUS_STORAGE_BACKEND: 'mmap' },
  });
  t.is(inspection.error?.code, 'PLUGIN_UNAVAILABLE');
  t.is(inspection.plan, undefined);
  t.is(inspection.statuses.find((status) => status.name === 'storage-mmap')?.reason, 'no addon');
});

test('a forced backend is refused even when no storage plugin is listed', async (t) => {
  const error = await t.throwsAsync(
    create(backends({ fd: OK, mmap: OK, uring: OK }), { WALRUS_STORAGE_BACKEND: 'uring', WALRUS_PLUGINS: 'engine' }),
  );
  t.is((error as PluginError).code, 'PLUGIN_UNAVAILABLE');
  t.is(error?.message, 'storage.backend is "uring" but storage-uring is not in the plugins list');
});

test('auto considers a custom backend after the built-in ones', async (t) => {
  const custom = fake('storage-s3', { provides: [CAPABILITIES.storageBackend] });
  const catalog = backends({ fd: NO('not implemented yet'), mmap: NO('no addon'), uring: NO('no addon') }, [
    custom,
    fake('engine', { requires: [CAPABILITIES.storageBackend] }),
  ]);
  const kernel = await create(catalog);
  t.deepEqual(loaded(kernel), ['storage-s3', 'engine']);
  t.regex(
    kernel.statuses().find((status) => status.name === 'storage-s3')?.reason ?? '',
    /^auto picked storage-s3 \(skipped storage-uring: no addon; storage-mmap: no addon; storage-fd: not implemented yet\)$/,
  );
  const preferred = await create(backends({ fd: OK, mmap: NO('no addon'), uring: NO('no addon') }, [custom]));
  t.deepEqual(loaded(preferred), ['storage-fd']);
  t.is(preferred.statuses().find((status) => status.name === 'storage-s3')?.state, 'available');
});

test('a node without rollover-monitor is refused: protocol-tcp requires it, so no PUT can fail at the threshold unexplained', async (t) => {
  const error = await t.throwsAsync(
    Kernel.create({
      catalog: walrusCatalog,
      env: { WALRUS_PLUGINS: 'storage-fd,raft,lease-fencing,data-plane,protocol-tcp' },
      logger: silent(),
    }),
  );
  t.is((error as PluginError).code, 'PLUGIN_MISSING_REQUIREMENT');
  t.regex(error?.message ?? '', /protocol-tcp.*requires "rollover-monitor".*rollover-monitor is (available|not listed)/s);
});
