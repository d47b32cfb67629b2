// rollover-monitor: proposes a rollover when an open segment this node leads is full.
// Its config section is already fixed (the environment variables of the original map to it);
// the monitor itself is a placeholder until its implementation lands.

import { s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

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

export const rolloverMonitorPlugin = notImplementedYet(
  {
    name: 'rollover-monitor',
    description: 'seals full segments and opens the next one through consensus',
    provides: [CAPABILITIES.rolloverMonitor],
    requires: [CAPABILITIES.consensus, CAPABILITIES.leaseFencing],
  },
  'issue 6: a Walrus node end to end',
  { key: 'rollover', schema: rolloverSchema },
);
