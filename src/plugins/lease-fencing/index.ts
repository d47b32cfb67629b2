// lease-fencing: derives segment write leases from the metadata replica and fences writes.
// Placeholder until its implementation lands.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const leaseFencingPlugin = notImplementedYet(
  {
    name: 'lease-fencing',
    description: 'segment write leases derived from metadata; fences writes without one',
    provides: [CAPABILITIES.leaseFencing],
    requires: [CAPABILITIES.consensus],
  },
  'issue 6: a Walrus node end to end',
);
