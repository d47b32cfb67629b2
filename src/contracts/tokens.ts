// The typed injection tokens of the built-in capabilities: a plugin that provides or requires
// one of these names gets the service with this TypeScript type. The data plane's token is
// defined with the data plane (src/node/data-plane.ts), whose types it carries.

import { CAPABILITIES, token } from '../kernel/tokens.js';
import type { Consensus } from './consensus.js';
import type { WriteFencingFactory } from './fencing.js';
import type { InternalPort } from './internal-port.js';
import type { AdminEndpoint, ClientProtocolServer, CommandInfo, RolloverMonitoring, ServiceSlot } from './services.js';
import type { StorageBackend } from './storage.js';

export const STORAGE_BACKEND = token<StorageBackend>(CAPABILITIES.storageBackend);
export const CONSENSUS = token<Consensus>(CAPABILITIES.consensus);
export const INTERNAL_PORT = token<InternalPort>(CAPABILITIES.internalPort);
export const WRITE_FENCING = token<WriteFencingFactory>(CAPABILITIES.leaseFencing);
export const ROLLOVER_MONITOR = token<ServiceSlot<RolloverMonitoring>>(CAPABILITIES.rolloverMonitor);
export const CLIENT_PROTOCOL = token<ServiceSlot<ClientProtocolServer>>(CAPABILITIES.clientProtocol);
export const ADMIN_ENDPOINT = token<ServiceSlot<AdminEndpoint>>(CAPABILITIES.adminEndpoint);
export const COMMANDS = token<readonly CommandInfo[]>(CAPABILITIES.commands);
