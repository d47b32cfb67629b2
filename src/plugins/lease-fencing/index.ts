// lease-fencing: write fencing for the data plane. It provides the factory the data plane builds
// its fencing with: leases derived from the metadata replica (src/node/leases.ts), each with the
// epoch that granted it, valid only while consensus has had contact with a quorum within
// `lease.ttlMs` — so a leader cut off from the others stops acknowledging writes before the rest
// of the group can elect a new one (keep ttlMs below raft.electionTimeoutMinMs).

import type { WriteFencingFactory } from '../../contracts/fencing.js';
import { CONSENSUS, WRITE_FENCING } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { type Infer, s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { LeaseTable } from '../../node/leases.js';

export const leaseSchema = s.object(
  {
    ttlMs: s.int({
      default: 500,
      min: 1,
      max: 60_000,
      description:
        'A write lease holds only while consensus heard from a quorum within this many milliseconds; keep it below raft.electionTimeoutMinMs.',
    }),
  },
  'Write leases.',
);

export type LeaseConfig = Infer<typeof leaseSchema>;

export const leaseFencingPlugin: Plugin<LeaseConfig> = {
  manifest: {
    name: 'lease-fencing',
    description: 'segment write leases with epochs, valid while a quorum was heard from within lease.ttlMs',
    provides: [CAPABILITIES.leaseFencing],
    requires: [CAPABILITIES.consensus],
  },
  config: { key: 'lease', schema: leaseSchema },
  register(scope, config) {
    scope.provide(WRITE_FENCING, (): WriteFencingFactory => {
      const consensus = scope.resolve(CONSENSUS);
      return {
        create: ({ nodeId, source }) => new LeaseTable({ nodeId, source, confirmed: () => consensus.quorumContactAgeMs() <= config.ttlMs }),
      };
    });
  },
};
