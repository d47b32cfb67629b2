// A write flood against a node's client port, and a new client's first-reply latency during it:
// shared by the flood test (test/integration/protocol-flood.test.ts) and the server benchmark's
// flood row (bench/server.bench.ts). Raw sockets, loopback only, a bounded number of connections
// and a bounded time. The flood runs in a child process (flood-child.ts), stopped by its pid;
// firstReply runs here.

import { fork } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frames.js';

export interface FloodOptions {
  readonly port: number;
  /** The topic the flood PUTs to (it must exist). */
  readonly topic: string;
  readonly connections: number;
  readonly payloadBytes: number;
  /** PUTs each flooding connection keeps unanswered, or `unbounded`: written as fast as the socket takes them. */
  readonly depth: number | 'unbounded';
}

export interface Flood {
  /** PUTs acknowledged so far, over all flooding connections. */
  acknowledged(): number;
  /** Replies other than OK (the flood counts them; a test may assert there are none). */
  failures(): string[];
  stop(): void;
}

/** How long a flood child lives at most, whatever its parent does. */
const FLOOD_LIFETIME_MS = 120_000;
const FLOOD_CHILD = fileURLToPath(new URL('./flood-child.js', import.meta.url));

/**
 * Opens `connections` sockets that each keep `depth` PUTs of `payloadBytes` in flight until
 * stop(), from a child process (flood-child.ts): this process stays free to time other clients.
 * Resolves once every connection is open; the counts are the child's, reported every 50 ms.
 */
export async function startFlood(options: FloodOptions): Promise<Flood> {
  const child = fork(FLOOD_CHILD, [JSON.stringify({ ...options, lifetimeMs: FLOOD_LIFETIME_MS })], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  let acknowledged = 0;
  let failures: string[] = [];
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`the flood child exited (${code ?? signal}) before it was ready`)));
    child.on('message', (message: { ready?: boolean; error?: string; acknowledged?: number; failures?: string[] }) => {
      if (message.error !== undefined) reject(new Error(`the flood child could not connect: ${message.error}`));
      if (message.ready === true) resolve();
      if (message.acknowledged !== undefined) acknowledged = message.acknowledged;
      if (message.failures !== undefined) failures = message.failures;
    });
  });
  child.removeAllListeners('exit');
  return {
    acknowledged: () => acknowledged,
    failures: () => [...failures],
    stop() {
      // By its own pid; it also exits by itself when this process goes away.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * Connects a new client, sends `request` and returns the milliseconds from the start of the
 * connect to its first reply, and the reply. Rejects after `timeoutMs`.
 */
export function firstReply(port: number, request: string, timeoutMs: number): Promise<{ ms: number; reply: string }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect({ host: '127.0.0.1', port });
    const decoder = new FrameDecoder();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no first reply within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
    socket.once('connect', () => socket.write(encodeFrame(request)));
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      const reply = decoder.next();
      if (reply === undefined) return;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ms: performance.now() - started, reply: reply.kind === 'text' ? reply.text : `<${reply.kind}>` });
    });
  });
}
