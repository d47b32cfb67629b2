// A run of payloads laid out back to back, as an MPUT carries them: in one byte array or in the
// pieces a request arrived in, with their sizes. Walrus.appendBatch takes one as it is and copies
// the bytes into its records with one copy per piece and one move per payload, making no object
// per payload; code off that path (a forward, replication) asks for `payloads`, views made once.

/** Payloads back to back: the first starts at `start` of `parts[0]`, each follows the one before. */
export class PayloadRun {
  /** The byte arrays the payloads lie in, in order (the first may hold only bytes before `start`). */
  readonly parts: readonly Uint8Array[];
  /** Where the first payload starts in `parts[0]`. */
  readonly start: number;
  /** Each payload's size in bytes. */
  readonly sizes: readonly number[];
  /** The sum of `sizes`. */
  readonly bytes: number;
  private views: Buffer[] | undefined;

  /**
   * `sizes` must add up to the bytes of `parts` from `start` on (the parser that found them
   * checked it); a run needs at least one payload.
   */
  constructor(parts: readonly Uint8Array[], start: number, sizes: readonly number[]) {
    if (sizes.length === 0) throw new RangeError('a PayloadRun needs at least one payload');
    let bytes = 0;
    for (const size of sizes) bytes += size;
    let held = -start;
    for (const part of parts) held += part.length;
    if (held !== bytes || start < 0) throw new RangeError(`a PayloadRun's sizes add up to ${bytes} bytes, its parts hold ${held}`);
    this.parts = parts;
    this.start = start;
    this.sizes = sizes;
    this.bytes = bytes;
  }

  /** A run of `payloads` as they are (each one a part). */
  static of(payloads: readonly Uint8Array[]): PayloadRun {
    const run = new PayloadRun(
      payloads.filter((payload) => payload.length > 0),
      0,
      payloads.map((payload) => payload.length),
    );
    if (payloads.every((payload) => payload instanceof Buffer)) run.views = payloads as Buffer[];
    return run;
  }

  get count(): number {
    return this.sizes.length;
  }

  /** The payloads, as views of the parts (one spanning two parts is copied); made on first use. */
  get payloads(): readonly Buffer[] {
    this.views ??= this.cut();
    return this.views;
  }

  private cut(): Buffer[] {
    const views: Buffer[] = new Array(this.sizes.length);
    let part = 0;
    let at = this.start;
    for (let index = 0; index < this.sizes.length; index++) {
      const size = this.sizes[index] as number;
      let current = this.parts[part] as Uint8Array | undefined;
      if (current !== undefined && at === current.length && size > 0) {
        part += 1;
        current = this.parts[part] as Uint8Array;
        at = 0;
      }
      if (current === undefined || at + size <= current.length) {
        views[index] = current === undefined ? Buffer.alloc(0) : Buffer.from(current.buffer, current.byteOffset + at, size);
        at += size;
        continue;
      }
      const copy = Buffer.allocUnsafe(size);
      let copied = 0;
      while (copied < size) {
        if (at === current.length) {
          part += 1;
          current = this.parts[part] as Uint8Array;
          at = 0;
        }
        const step = Math.min(size - copied, current.length - at);
        copy.set(current.subarray(at, at + step), copied);
        copied += step;
        at += step;
      }
      views[index] = copy;
    }
    return views;
  }
}
