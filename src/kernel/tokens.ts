// Typed injection tokens. A token is a capability name (what a plugin manifest lists under
// `provides` / `requires`) carrying the TypeScript type of the service behind it. Two tokens
// with one name are the same capability, so a custom plugin compiled elsewhere can still meet
// ours. The kernel maps each name to a tsyringe token inside the kernel's own child container.

import type { InjectionToken } from 'tsyringe';

export class Token<T> {
  readonly name: string;
  /** Phantom field: carries T for type inference only; never set. */
  declare readonly type: T;

  constructor(name: string) {
    this.name = name;
  }

  /** The key under which the service is bound in a kernel's container. */
  get key(): InjectionToken<T> {
    return Symbol.for(`walrus.capability:${this.name}`);
  }

  toString(): string {
    return `Token(${this.name})`;
  }
}

export function token<T>(name: string): Token<T> {
  return new Token<T>(name);
}

/**
 * Capability names of the built-in contracts. Their TypeScript types arrive with the contracts
 * themselves (engine, consensus, node); the names are fixed here so that manifests, selection
 * and docs agree from the start.
 */
export const CAPABILITIES = {
  storageBackend: 'storage-backend',
  consensus: 'consensus',
  internalPort: 'internal-port',
  leaseFencing: 'lease-fencing',
  dataPlane: 'data-plane',
  rolloverMonitor: 'rollover-monitor',
  clientProtocol: 'client-protocol',
  adminEndpoint: 'admin-endpoint',
  commands: 'commands',
} as const;
