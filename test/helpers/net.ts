// Small helpers for tests (and benchmarks) that run real servers on loopback.

import { createServer } from 'node:net';
import type { StateMachine } from '../../src/contracts/consensus.js';

/** `count` ports that were free a moment ago on 127.0.0.1 (bound to port 0, then closed). */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let index = 0; index < count; index++) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    ports.push(typeof address === 'object' && address !== null ? address.port : 0);
    await new Promise((resolve) => server.close(resolve));
  }
  return ports;
}

/** Polls `probe` every 10 ms until it returns a value; throws after `ms`, naming `what`. */
export async function until<T>(what: string, probe: () => T | undefined, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A replicated state machine for tests: appends each command's text; apply returns the count. */
export class Journal implements StateMachine {
  items: string[] = [];
  apply(command: Uint8Array): unknown {
    this.items.push(Buffer.from(command).toString());
    return this.items.length;
  }
  snapshot(): Uint8Array {
    return Buffer.from(JSON.stringify(this.items));
  }
  restore(data: Uint8Array): void {
    this.items = JSON.parse(Buffer.from(data).toString()) as string[];
  }
}

/** Whether `port` on 127.0.0.1 can be listened on right now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * The first of `count` consecutive ports that were all free a moment ago on 127.0.0.1, for
 * commands that count ports up from a base (`walrus cluster start`). Tries random bases in the
 * range Linux does not hand out as ephemeral ports (below 32768).
 */
export async function freePortRun(count: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (32_000 - 20_000 - count));
    let free = true;
    for (let port = base; free && port < base + count; port++) free = await portFree(port);
    if (free) return base;
  }
  throw new Error(`no run of ${count} free ports found on 127.0.0.1`);
}
