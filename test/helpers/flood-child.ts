// The flooding side of test/helpers/flood.ts, in a process of its own, so that the process that
// times a new client's first reply measures the node and not its own event loop (filling 200
// sockets stalls that loop for a second at the start, and costs it CPU all along).
// Started by startFlood() with an IPC channel; argv[2] is the JSON of its FloodOptions. It sends
// { ready: true } once every connection is open, { acknowledged, failures } every REPORT_MS, and
// exits when told to stop, when the parent goes away, or after its lifetime.

import { connect, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frames.js';
import type { FloodOptions } from './flood.js';

const REPORT_MS = 50;

const options = JSON.parse(process.argv[2] ?? '{}') as FloodOptions & { readonly lifetimeMs: number };
const send = (message: unknown): void => {
  if (process.connected) process.send?.(message);
};
const sockets: Socket[] = [];
let acknowledged = 0;
let stopped = false;
const failures: string[] = [];

function stop(): void {
  stopped = true;
  for (const socket of sockets) socket.destroy();
  process.exit(0);
}
process.on('message', (message) => {
  if (message === 'stop') stop();
});
process.on('disconnect', stop);
setTimeout(stop, options.lifetimeMs).unref();

const frame = encodeFrame(`PUT ${options.topic} ${'f'.repeat(options.payloadBytes)}`);

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: options.port });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

function flood(socket: Socket): void {
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
}

// All at once, as a burst of clients would: each starts flooding as soon as it is connected.
Promise.all(Array.from({ length: options.connections }, () => open().then(flood))).then(
  () => {
    send({ ready: true });
    setInterval(() => send({ acknowledged, failures }), REPORT_MS);
  },
  (error: unknown) => {
    send({ error: String(error) });
    stop();
  },
);
