// A write flood against a node's client port, and a new client's first-reply latency during it:
// shared by the flood test (test/integration/protocol-flood.test.ts) and the server benchmark's
// flood row (bench/server.bench.ts). Raw sockets, loopback only, a bounded number of connections
// and a bounded time; every socket is destroyed when the flood stops.

import { connect, type Socket } from 'node:net';
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

/** Opens `connections` sockets that each keep `depth` PUTs of `payloadBytes` in flight until stop(). */
export async function startFlood(options: FloodOptions): Promise<Flood> {
  const frame = encodeFrame(`PUT ${options.topic} ${'f'.repeat(options.payloadBytes)}`);
  const sockets: Socket[] = [];
  let acknowledged = 0;
  let stopped = false;
  const failures: string[] = [];
  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: options.port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.on('error', () => undefined);
        resolve(socket);
      });
    });
  // All at once, as a burst of clients would: each starts flooding as soon as it is connected.
  await Promise.all(
    Array.from({ length: options.connections }, () =>
      open().then((socket) => {
        sockets.push(socket);
        const decoder = new FrameDecoder();
        socket.on('data', (chunk: Buffer) => {
          decoder.push(chunk);
          for (let reply = decoder.next(); reply !== undefined; reply = decoder.next()) {
            if (reply.kind === 'text' && reply.text === 'OK') acknowledged += 1;
            else if (failures.length < 10) failures.push(reply.kind === 'text' ? reply.text.slice(0, 200) : `<${reply.kind}>`);
            // One reply in, one more PUT out: `depth` stay in flight.
            if (options.depth !== 'unbounded' && !stopped && !socket.destroyed) socket.write(frame);
          }
        });
        if (options.depth === 'unbounded') {
          // As fast as the socket takes them: the server's own limits (and TCP) are the only brake.
          const fill = (): void => {
            while (!stopped && !socket.destroyed && socket.write(frame)) {
              // keep writing until the socket's buffer is full
            }
          };
          socket.on('drain', fill);
          fill();
        } else {
          for (let sent = 0; sent < options.depth; sent += 1) socket.write(frame);
        }
      }),
    ),
  );
  return {
    acknowledged: () => acknowledged,
    failures: () => [...failures],
    stop() {
      stopped = true;
      for (const socket of sockets) socket.destroy();
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
