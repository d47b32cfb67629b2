// A scripted fake Walrus node on 127.0.0.1 for client-side tests (WalrusClient, walrus-cli):
// it speaks the real codec, records every request, and answers each with whatever the script
// says, in request order as a real node does. Close it in the test's teardown.

import { createServer, type Server, type Socket } from 'node:net';
import { limits } from '../../src/kernel/limits.js';
import { encodeFrame, FrameDecoder } from '../../src/protocol/frames.js';

/** What the fake node does with one request: a reply text, 'silent' (stops answering on this connection) or 'close'. */
export type Script = (request: string) => string | 'silent' | 'close' | Promise<string | 'silent' | 'close'>;

export interface FakeServer {
  readonly port: number;
  /** Every request text received, in order, over all connections. */
  readonly requests: string[];
  /** Connections accepted so far. */
  connections: number;
  /** Highest number of requests received and not yet answered on one connection. */
  maxOutstanding: number;
  close(): Promise<void>;
}

export async function startServer(script: Script): Promise<FakeServer> {
  const sockets = new Set<Socket>();
  const fake: FakeServer = {
    port: 0,
    requests: [],
    connections: 0,
    maxOutstanding: 0,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((socket) => {
    fake.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new FrameDecoder({ maxFrameBytes: limits.frameBytesMax });
    // Replies go out in request order even when the script answers asynchronously, as a real node does.
    let chain = Promise.resolve();
    let outstanding = 0;
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk);
      for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) {
        if (frame.kind !== 'text') {
          socket.destroy();
          return;
        }
        const request = frame.text;
        fake.requests.push(request);
        outstanding += 1;
        fake.maxOutstanding = Math.max(fake.maxOutstanding, outstanding);
        chain = chain.then(async () => {
          const reply = await script(request);
          if (reply === 'silent') await new Promise<never>(() => undefined);
          if (reply === 'close') {
            socket.destroy();
            return;
          }
          outstanding -= 1;
          if (!socket.destroyed) socket.write(encodeFrame(reply));
        });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return Object.assign(fake, { port: typeof address === 'object' && address !== null ? address.port : 0 });
}
