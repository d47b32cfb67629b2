// rollover-monitor: seals full segments and opens the next one through consensus (see
// monitor.ts). Every `rollover.monitorCheckMs`, and at once when the segment store reports a
// segment full, each open segment this node leads with at least `segments.maxEntries`
// entries gets a RolloverTopic with its exact count and the segment it expects to seal.
// It also runs the failover of replicated segments (src/node/failover.ts), which acts only while
// this node leads the Raft group: segments of a node silent for `failover.timeoutMs` are sealed
// at what a majority of their replicas holds, or moved to a replica holding them whole.

import type { FailoverConfig, SegmentsConfig } from '../../contracts/config.js';
import { CONSENSUS, ROLLOVER_MONITOR } from '../../contracts/tokens.js';
import { limits } from '../../kernel/limits.js';
import type { Plugin } from '../../kernel/plugin.js';
import { s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { DATA_PLANE } from '../../node/data-plane.js';
import { FailoverMonitor } from '../../node/failover.js';
import { PEER_OPS } from '../../node/forwarding.js';
import { encodeCommand, type MetadataResult } from '../../node/metadata.js';
import { connectionRefused } from '../../node/peer-client.js';
import { RolloverMonitor } from './monitor.js';

export const rolloverSchema = s.object(
  {
    monitorCheckMs: s.int({
      default: 10_000,
      min: 10,
      max: 24 * 60 * 60 * 1000,
      description: 'How often the monitor looks for full segments, in milliseconds.',
    }),
  },
  'Segment rollover.',
);

export interface RolloverConfig {
  readonly monitorCheckMs: number;
}

/** What the plugin keeps between start and stop. */
interface Monitors {
  readonly rollover: RolloverMonitor;
  readonly failover: FailoverMonitor | undefined;
}

const running = new WeakMap<object, Monitors>();

export const rolloverMonitorPlugin: Plugin<RolloverConfig> = {
  manifest: {
    name: 'rollover-monitor',
    description: 'seals full segments and opens the next one through consensus',
    provides: [CAPABILITIES.rolloverMonitor],
    requires: [CAPABILITIES.consensus, CAPABILITIES.dataPlane],
  },
  config: { key: 'rollover', schema: rolloverSchema },
  register(scope) {
    scope.provide(ROLLOVER_MONITOR, () => ({ current: undefined }));
  },
  start(scope) {
    const config = scope.config.rollover as RolloverConfig;
    const plane = scope.resolve(DATA_PLANE).get();
    const consensus = scope.resolve(CONSENSUS);
    const monitor = new RolloverMonitor({
      nodeId: plane.nodeId,
      replicationFactor: plane.replicationFactor,
      threshold: (scope.config.segments as SegmentsConfig).maxEntries,
      checkMs: config.monitorCheckMs,
      log: scope.log,
      target: {
        ownedOpenSegments: () => plane.metadata.ownedOpenSegments(plane.nodeId),
        count: (topic, segment) => plane.store.count(topic, segment),
        voters: () => consensus.status().voters,
        liveMembers: () => consensus.liveMembers(),
        propose: async (rollover) => {
          // The sealed count goes into the metadata only once those entries are on disk, and
          // committed: held by a majority of a replicated segment's replicas.
          await plane.replication.settled(rollover.topic, rollover.expectedSegment, rollover.sealedCount);
          await plane.store.persist();
          const result = (await consensus.propose(encodeCommand({ kind: 'RolloverTopic', ...rollover }))) as MetadataResult;
          if (!result.ok) throw new Error(result.error);
          return result;
        },
      },
    });
    plane.onSegmentFull((topic, segment) => monitor.segmentFull(topic, segment));
    monitor.start();
    const peers = plane.peers;
    const failover =
      peers === undefined
        ? undefined
        : new FailoverMonitor({
            nodeId: plane.nodeId,
            timeoutMs: (scope.config.failover as FailoverConfig).timeoutMs,
            replicationFactor: plane.replicationFactor,
            log: scope.log,
            target: {
              isLeader: () => consensus.status().role === 'leader',
              silenceMs: (id) => consensus.memberSilenceMs(id),
              voters: () => consensus.status().voters,
              refused: async (id) => {
                const address = peers.addressOf(id);
                return address !== undefined && connectionRefused(address, peers.localHost, limits.peerProbeTimeoutMs);
              },
              metadata: plane.metadata,
              fence: async (id, topic, segment) => {
                if (id === plane.nodeId) return plane.replication.fence(topic, segment);
                const reply = await peers.client(id).request(PEER_OPS.fence, { topic, segment });
                const held = reply.head.held;
                if (typeof held !== 'number' || !Number.isSafeInteger(held) || held < 0)
                  throw new Error(`node ${id} answered fence with ${JSON.stringify(reply.head)}`);
                return held;
              },
              propose: async (command) => (await consensus.propose(encodeCommand(command))) as MetadataResult,
            },
          });
    if (failover !== undefined) {
      plane.replication.setFinisher((topic, segment) => failover.finish(topic, segment));
      failover.start();
    }
    scope.resolve(ROLLOVER_MONITOR).current = monitor;
    running.set(scope.resolve(ROLLOVER_MONITOR), { rollover: monitor, failover });
  },
  async stop(scope) {
    const holder = scope.resolve(ROLLOVER_MONITOR);
    const monitors = running.get(holder);
    running.delete(holder);
    try {
      scope.resolve(DATA_PLANE).get().replication.setFinisher(undefined);
    } catch {
      // the data plane stopped first: nothing to undo there
    }
    await monitors?.failover?.stop();
    await holder.current?.stop();
    holder.current = undefined;
  },
};
