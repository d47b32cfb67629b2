// What a command may touch of its process: two line writers and a snapshot of the environment.
// main() hands over the real ones; tests pass their own.

import type { Environment } from '../kernel/env.js';

export interface Io {
  /** Writes one line (the newline is added) to stdout. */
  readonly out: (text: string) => void;
  /** Writes one line (the newline is added) to stderr. */
  readonly err: (text: string) => void;
  readonly env: Environment;
}
