// raft: Raft consensus for the cluster metadata (a one-voter group on a single node).
// Placeholder until its implementation lands.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const raftPlugin = notImplementedYet(
  {
    name: 'raft',
    description: 'Raft consensus for cluster metadata',
    provides: [CAPABILITIES.consensus],
    requires: [],
  },
  'issue 5: the Raft consensus plugin',
);
