// The payloads of one MPUT (docs/protocol.md, "Batches"), carried through the PUT path as one
// unit: a rollover queue keeps it in one place, a forward sends it in one request, and the node
// leading the segment appends it with one engine appendBatch, so it lands whole in one segment.

/** What one PUT carries: one payload, or an MPUT's batch of them. */
export type PutUnit = string | Uint8Array | PayloadBatch;

export class PayloadBatch {
  readonly payloads: readonly Buffer[];

  constructor(payloads: readonly Buffer[]) {
    if (payloads.length === 0) throw new RangeError('a PayloadBatch needs at least one payload');
    this.payloads = payloads;
  }

  get count(): number {
    return this.payloads.length;
  }
}
