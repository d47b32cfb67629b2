// Turns SIGINT / SIGTERM into a graceful kernel stop. The first signal stops the plugins in
// reverse order (bounded by kernel.stopTimeoutMs) and then exits 0, or 1 if a plugin failed to
// stop; a second signal while stopping exits 1 at once for an operator who cannot wait.

import { errorFields, type Kernel } from './kernel.js';

export interface SignalOptions {
  /** Defaults to process.exit; tests replace it. */
  readonly exit?: (code: number) => void;
  readonly signals?: readonly NodeJS.Signals[];
  /** Called first on every signal received. */
  readonly onSignal?: (signal: NodeJS.Signals) => void;
}

/** Installs the handlers; returns a function that removes them. */
export function stopOnSignals(kernel: Kernel, options: SignalOptions = {}): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    options.onSignal?.(signal);
    if (stopping) {
      kernel.log.warn({ signal }, 'second signal while stopping: exiting now');
      exit(1);
      return;
    }
    stopping = true;
    kernel.log.info({ signal }, 'signal received: stopping');
    kernel.stop().then(
      (report) => exit(report.failures.length === 0 ? 0 : 1),
      (error: unknown) => {
        kernel.log.error(errorFields(error), 'stop failed');
        exit(1);
      },
    );
  };
  for (const signal of signals) process.on(signal, onSignal);
  return () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
}
