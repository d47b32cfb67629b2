// Small helpers for tests (and benchmarks) that run real servers on loopback.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { StateMachine } from '../../src/contracts/consensus.js';

/**
 * The ports tests give their servers: below the kernel's ephemeral range, where the source ports
 * of outgoing connections come from. A port the kernel handed out for "port 0" could be taken by
 * one of the cluster's own node-to-node connections before the node listened on it (seen in CI:
 * EADDRINUSE at start). Each test process starts at its own place in the range (by its PID).
 */
const PORT_RANGE = ((): { readonly low: number; readonly high: number } => {
  let ephemeralLow = 32_768;
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && Number.isInteger(low) && low > 2_048) ephemeralLow = low;
  } catch {
    // Not Linux, or no /proc: keep the usual Linux bound.
  }
  return { low: Math.max(1_024, ephemeralLow - 12_000), high: ephemeralLow };
})();
let nextPort = PORT_RANGE.low + ((process.pid * 197) % (PORT_RANGE.high - PORT_RANGE.low));

/** Whether 127.0.0.1:`port` can be listened on now. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** `count` ports that were free a moment ago on 127.0.0.1, outside the ephemeral range (see PORT_RANGE). */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let tried = 0; ports.length < count; tried++) {
    if (tried > PORT_RANGE.high - PORT_RANGE.low) throw new Error(`no free port in ${PORT_RANGE.low}..${PORT_RANGE.high - 1}`);
    const port = nextPort;
    nextPort = nextPort + 1 >= PORT_RANGE.high ? PORT_RANGE.low : nextPort + 1;
    if (await bindable(port)) ports.push(port);
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
