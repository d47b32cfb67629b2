// rollover-monitor: seals full segments and opens the next one through consensus (see
// monitor.ts). Every `rollover.monitorCheckMs`, and at once when the segment store reports a
// segment full, each open segment this node leads with at least `rollover.maxSegmentEntries`
// entries gets a RolloverTopic with its exact count and the segment it expects to seal.

import type { Plugin } from '../../kernel/plugin.js';
import { s } from '../../kernel/schema.js';
import { CAPABILITIES, token } from '../../kernel/tokens.js';
import { encodeCommand, type MetadataResult } from '../../node/metadata.js';
import { LEASE_FENCING } from '../lease-fencing/index.js';
import { CONSENSUS } from '../raft/consensus.js';
import { RolloverMonitor } from './monitor.js';

export const rolloverSchema = s.object(
  {
    maxSegmentEntries: s.int({
      default: 1_000_000,
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
      description: 'Entries after which an open segment is sealed and a new one opened.',
    }),
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
  readonly maxSegmentEntries: number;
  readonly monitorCheckMs: number;
}

export const ROLLOVER_MONITOR = token<{ monitor: RolloverMonitor | undefined }>(CAPABILITIES.rolloverMonitor);

export const rolloverMonitorPlugin: Plugin<RolloverConfig> = {
  manifest: {
    name: 'rollover-monitor',
    description: 'seals full segments and opens the next one through consensus',
    provides: [CAPABILITIES.rolloverMonitor],
    requires: [CAPABILITIES.consensus, CAPABILITIES.leaseFencing],
  },
  config: { key: 'rollover', schema: rolloverSchema },
  register(scope) {
    scope.provide(ROLLOVER_MONITOR, () => ({ monitor: undefined }));
  },
  start(scope) {
    const config = scope.config.rollover as RolloverConfig;
    const plane = scope.resolve(LEASE_FENCING).get();
    const consensus = scope.resolve(CONSENSUS);
    const monitor = new RolloverMonitor({
      nodeId: plane.nodeId,
      threshold: config.maxSegmentEntries,
      checkMs: config.monitorCheckMs,
      log: scope.log,
      target: {
        ownedOpenSegments: () => plane.metadata.ownedOpenSegments(plane.nodeId),
        count: (topic, segment) => plane.store.count(topic, segment),
        liveVoters: () => consensus.status().voters,
        propose: async (rollover) => {
          const result = (await consensus.propose(encodeCommand({ kind: 'RolloverTopic', ...rollover }))) as MetadataResult;
          if (!result.ok) throw new Error(result.error);
          return result;
        },
      },
    });
    plane.onSegmentFull((topic, segment) => monitor.segmentFull(topic, segment));
    monitor.start();
    scope.resolve(ROLLOVER_MONITOR).monitor = monitor;
  },
  async stop(scope) {
    const holder = scope.resolve(ROLLOVER_MONITOR);
    await holder.monitor?.stop();
    holder.monitor = undefined;
  },
};
