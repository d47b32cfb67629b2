// Repeated warnings, kept readable: while something stays broken (etcd down, a peer gone), the
// same warning would come every few hundred milliseconds. RepeatLimiter lets each distinct
// message through at most once per window and counts the ones it holds back; the next one it lets
// through says how many there were, so nothing is hidden, only folded.

export interface Folded {
  /** Whether to log this occurrence. */
  readonly log: boolean;
  /** When logged: how many occurrences of the same message were held back since the last one logged. */
  readonly heldBack: number;
}

export class RepeatLimiter {
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly last = new Map<string, { at: number; heldBack: number }>();

  constructor(windowMs: number, now: () => number = () => performance.now()) {
    if (!(windowMs > 0)) throw new RangeError(`RepeatLimiter: the window must be positive, got ${windowMs}`);
    this.windowMs = windowMs;
    this.now = now;
  }

  /** Whether an occurrence of `message` now should be logged, and how many were held back before it. */
  take(message: string): Folded {
    const now = this.now();
    const seen = this.last.get(message);
    if (seen !== undefined && now - seen.at < this.windowMs) {
      seen.heldBack += 1;
      return { log: false, heldBack: 0 };
    }
    this.last.set(message, { at: now, heldBack: 0 });
    // Messages not seen for a while are forgotten, so the map stays as small as the set of live problems.
    if (this.last.size > 64) for (const [key, entry] of this.last) if (now - entry.at >= this.windowMs) this.last.delete(key);
    return { log: true, heldBack: seen?.heldBack ?? 0 };
  }
}
