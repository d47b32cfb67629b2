// The payloads of one MPUT (docs/protocol.md, "Batches"), carried through the PUT path as one
// unit: a rollover queue keeps it in one place, a forward sends it in one request, and the node
// leading the segment appends it with one engine appendBatch, so it lands whole in one segment.
// On that last path the payloads stay where the request's bytes are (a PayloadRun); a forward
// or replication takes them as views (made once, on first use).

import { PayloadRun } from '../engine/payload-run.js';

/** What one PUT carries: one payload, or an MPUT's batch of them. */
export type PutUnit = string | Uint8Array | PayloadBatch;

export class PayloadBatch {
  readonly run: PayloadRun;

  constructor(payloads: PayloadRun | readonly Buffer[]) {
    if (!(payloads instanceof PayloadRun) && payloads.length === 0) throw new RangeError('a PayloadBatch needs at least one payload');
    this.run = payloads instanceof PayloadRun ? payloads : PayloadRun.of(payloads);
  }

  get count(): number {
    return this.run.count;
  }

  /** The payloads one by one (views of the request's bytes, made on first use). */
  get payloads(): readonly Buffer[] {
    return this.run.payloads;
  }
}
