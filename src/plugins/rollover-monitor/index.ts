// rollover-monitor: seals full segments and opens the next one through consensus (see
// monitor.ts). Every `rollover.monitorCheckMs`, and at once when the segment store reports a
// segment full, each open segment this node leads with at least `segments.maxEntries`
// entries gets a RolloverTopic with its exact count and the segment it expects to seal.

import type { SegmentsConfig } from '../../contracts/config.js';
import { CONSENSUS, ROLLOVER_MONITOR } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { DATA_PLANE } from '../../node/data-plane.js';
import { encodeCommand, type MetadataResult } from '../../node/metadata.js';
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
    scope.resolve(ROLLOVER_MONITOR).current = monitor;
  },
  async stop(scope) {
    const holder = scope.resolve(ROLLOVER_MONITOR);
    await holder.current?.stop();
    holder.current = undefined;
  },
};
