// One holder at a time per key, in arrival order: the segment store holds a segment key across
// its lease check and append, GET's reader holds a topic from peeking an entry until its reply
// is written. Keys with no holder and no waiter take no memory.

export class KeyedLock {
  /** Per key: the promise that settles when the last queued holder releases. */
  private readonly tails = new Map<string, Promise<void>>();

  /** Waits for `key`'s turn; call the returned function (once) to pass it on. */
  async acquire(key: string): Promise<() => void> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    await previous;
    return release;
  }

  /** Runs `work` holding `key`, released however it ends. */
  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const release = await this.acquire(key);
    try {
      return await work();
    } finally {
      release();
    }
  }
}
