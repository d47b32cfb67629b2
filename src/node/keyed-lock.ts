// One holder at a time per key, in arrival order: the segment store holds a segment key across
// its lease check and append, GET's reader holds a topic from peeking an entry until its reply
// is written. Keys with no holder and no waiter take no memory. A free key is taken synchronously
// (tryAcquire), so the common uncontended case costs no promise at all.

export class KeyedLock {
  /** Held keys, each with the callers waiting for it (null: none yet), oldest first. */
  private readonly held = new Map<string, Array<(release: () => void) => void> | null>();

  /** Takes `key` now if nobody holds it; returns the function that passes it on, else undefined. */
  tryAcquire(key: string): (() => void) | undefined {
    if (this.held.has(key)) return undefined;
    this.held.set(key, null);
    return this.releaser(key);
  }

  /** Waits for `key`'s turn; call the returned function (once) to pass it on. */
  acquire(key: string): Promise<() => void> {
    const release = this.tryAcquire(key);
    if (release !== undefined) return Promise.resolve(release);
    return new Promise((resolve) => {
      let waiters = this.held.get(key);
      if (waiters === null || waiters === undefined) {
        waiters = [];
        this.held.set(key, waiters);
      }
      waiters.push(resolve);
    });
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

  /** How many callers wait for `key` (not counting its holder). */
  waiting(key: string): number {
    return this.held.get(key)?.length ?? 0;
  }

  /** Whether someone holds `key` (tests, diagnostics). */
  isHeld(key: string): boolean {
    return this.held.has(key);
  }

  private releaser(key: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const waiters = this.held.get(key);
      const next = waiters?.shift();
      if (next === undefined) this.held.delete(key);
      else next(this.releaser(key));
    };
  }
}
