// protocol-tcp: the length-prefixed client TCP protocol (REGISTER, PUT, GET, STATE, METRICS).
// Placeholder until its implementation lands.

import { CAPABILITIES } from '../../kernel/tokens.js';
import { notImplementedYet } from '../not-yet.js';

export const protocolTcpPlugin = notImplementedYet(
  {
    name: 'protocol-tcp',
    description: 'length-prefixed client TCP protocol on node.clientHost:node.clientPort',
    provides: [CAPABILITIES.clientProtocol],
    requires: [CAPABILITIES.consensus, CAPABILITIES.storageBackend, CAPABILITIES.leaseFencing],
  },
  'issue 6: a Walrus node end to end',
);
