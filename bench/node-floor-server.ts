// The floor of the server benchmark: the least a Node.js process can do per request of the
// Walrus protocol. It speaks the same framing on the same `node:net` sockets as a Walrus node, but
// stores nothing and checks nothing: `GET …` is answered `OK <payload>` with a fixed payload and
// every other request `OK`. All replies to the frames of one read go out in one write.
// Whatever a Walrus node costs above this row is the node's own work (parsing, the log write,
// leases, the GET position); this row's cost is the runtime's (event loop, streams, system calls).
//
//   node build/bench/node-floor-server.js <payload>     prints {"port":N} once listening

import { createServer } from 'node:net';

const payload = process.argv[2] ?? '';
const OK = frame('OK');
const GOT = frame(`OK ${payload}`);
/** 'GET ' as the first four bytes of a body. */
const GET = Buffer.from('GET ', 'latin1').readUInt32LE(0);

function frame(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  return out;
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    const input = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const replies: Buffer[] = [];
    let at = 0;
    while (input.length - at >= 4) {
      const length = input.readUInt32LE(at);
      if (input.length - at - 4 < length) break;
      replies.push(length >= 4 && input.readUInt32LE(at + 4) === GET ? GOT : OK);
      at += 4 + length;
    }
    pending = input.subarray(at);
    if (replies.length === 1) socket.write(replies[0] as Buffer);
    else if (replies.length > 1) socket.write(Buffer.concat(replies));
  });
  socket.on('error', () => undefined);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 }));
});
