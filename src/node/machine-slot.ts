// What a consensus plugin applies before the node's state machine has registered (raft and
// consensus-etcd replay their logs as they start, which can be before the metadata registers):
// kept, with the latest snapshot restored meanwhile, and handed over at registration.

import type { StateMachine } from '../contracts/consensus.js';

/**
 * Delivers applied commands to the registered state machine; until one registers, keeps them
 * (and the latest restored snapshot) to replay to it, so a consumer that starts after Raft has
 * replayed its log misses nothing.
 */
export class MachineSlot implements StateMachine {
  private machine: StateMachine | undefined;
  private pendingSnapshot: Uint8Array | undefined;
  private pending: { readonly command: Uint8Array; readonly index: number }[] = [];

  snapshotReady(): boolean {
    return this.machine !== undefined && (this.machine.snapshotReady?.() ?? true);
  }

  register(machine: StateMachine): void {
    if (this.machine !== undefined) throw new Error('a state machine is already registered with consensus');
    this.machine = machine;
    if (this.pendingSnapshot !== undefined) machine.restore(this.pendingSnapshot);
    for (const { command, index } of this.pending) machine.apply(command, index);
    this.pendingSnapshot = undefined;
    this.pending = [];
  }

  apply(command: Uint8Array, index: number): unknown {
    if (this.machine !== undefined) return this.machine.apply(command, index);
    this.pending.push({ command, index });
    return undefined;
  }

  snapshot(): Uint8Array {
    if (this.machine === undefined) throw new Error('no state machine to snapshot');
    return this.machine.snapshot();
  }

  restore(data: Uint8Array): void {
    if (this.machine !== undefined) {
      this.machine.restore(data);
      return;
    }
    this.pendingSnapshot = data;
    this.pending = [];
  }
}
