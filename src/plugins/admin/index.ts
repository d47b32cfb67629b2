// admin: the node's HTTP admin endpoint on admin.host:admin.port (off while admin.port is null):
// Prometheus metrics at /metrics, liveness at /healthz, readiness at /readyz, the cluster as this
// node sees it at /api/cluster, and a status page at / that refreshes from those two. It starts
// after the client protocol (so /readyz can say the client port is listening) and reads what
// the data plane, consensus and the protocol server already keep; see docs/operations.md.

import { ADMIN_ENDPOINT, CLIENT_PROTOCOL, CONSENSUS } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { clusterView, notReadyReasons } from '../../node/cluster-view.js';
import { DATA_PLANE } from '../../node/data-plane.js';
import { hostPort } from '../../node/peer-client.js';
import { VERSION } from '../../version.js';
import { nodeMetrics } from './metrics.js';
import { AdminServer } from './server.js';

export const adminSchema = s.object(
  {
    host: s.string({ default: '127.0.0.1', minLength: 1, description: 'Address the admin HTTP endpoint binds.' }),
    port: s.nullable(
      s.int({ default: 9090, min: 0, max: 65_535, description: 'Admin HTTP port (0 picks a free port).' }),
      'Admin HTTP port for /metrics, /healthz, /readyz, /api/cluster and the status page; null (the default) serves none.',
    ),
  },
  'The HTTP admin endpoint (docs/operations.md).',
);

export interface AdminConfig {
  readonly host: string;
  readonly port: number | null;
}

export const adminPlugin: Plugin<AdminConfig> = {
  manifest: {
    name: 'admin',
    description: 'HTTP admin endpoint: /metrics (Prometheus), /healthz, /readyz, /api/cluster and a status page',
    provides: [CAPABILITIES.adminEndpoint],
    requires: [CAPABILITIES.consensus, CAPABILITIES.dataPlane, CAPABILITIES.clientProtocol],
  },
  config: { key: 'admin', schema: adminSchema },
  // Listed by default; with no port it does not load, and `walrus plugins` says why.
  probe({ config }) {
    const admin = config.admin as AdminConfig | undefined;
    if (admin === undefined || admin.port === null)
      return { ok: false, reason: 'admin.port is null: no admin endpoint (set admin.port, WALRUS_ADMIN_PORT or --admin-port)' };
    return { ok: true };
  },
  register(scope) {
    scope.provide(ADMIN_ENDPOINT, () => ({ current: undefined }));
  },
  async start(scope) {
    const config = scope.config.admin as AdminConfig & { readonly port: number };
    const plane = scope.resolve(DATA_PLANE).get();
    const consensus = scope.resolve(CONSENSUS);
    const client = scope.resolve(CLIENT_PROTOCOL);
    const address = (bound: { readonly host: string; readonly port: number } | undefined): string | undefined =>
      bound === undefined ? undefined : hostPort(bound);
    const followers = () => plane.replication.followerProgress();
    const registry = nodeMetrics({
      nodeId: plane.nodeId,
      version: VERSION,
      stats: plane.stats,
      consensus,
      metadata: plane.metadata,
      followers,
      connections: () => client.current?.connections() ?? 0,
      diskUsage: () => plane.diskUsage(),
    });
    let bound: { readonly host: string; readonly port: number } | undefined;
    const server = new AdminServer({
      host: config.host,
      port: config.port,
      log: scope.log,
      routes: {
        metrics: async () => ({ body: await registry.metrics(), contentType: registry.contentType }),
        notReady: () => notReadyReasons(consensus.status(), client.current?.bound !== undefined, client.current?.removed() ?? false),
        cluster: () =>
          clusterView({
            nodeId: plane.nodeId,
            version: VERSION,
            consensus,
            metadata: plane.metadata,
            localCount: (topic, segment) => plane.store.count(topic, segment),
            followers,
            clientAddress: () => address(client.current?.bound),
            adminAddress: () => address(bound),
            storageOutage: () => plane.store.unavailable?.cause,
            startedAt: plane.stats.startedAt,
          }),
      },
    });
    bound = await server.listen();
    scope.resolve(ADMIN_ENDPOINT).current = { bound, close: () => server.close() };
  },
  async stop(scope) {
    const slot = scope.resolve(ADMIN_ENDPOINT);
    await slot.current?.close();
    slot.current = undefined;
  },
};
