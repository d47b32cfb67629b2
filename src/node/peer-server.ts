// The serving side of node-to-node requests: connections the internal port hands over (after
// their hello) are read as frames (peer-codec.ts), each request goes to the handler of its `op`
// at once and in arrival order (so requests one node sends in order start in that order here),
// and each answer is written when it is ready, under the request's id. A connection with
// peerInFlightPerConnection requests being handled is not read until one finishes. A frame that
// breaks the format closes its connection.

import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';
import { encodePeerFrame, failureHead, PEER_KIND, type PeerFrame, PeerFrameDecoder } from './peer-codec.js';

/** A handler's answer: a JSON head and optional bytes; `written` learns whether the reply reached the socket. */
export interface PeerAnswer {
  readonly head?: Readonly<Record<string, unknown>>;
  readonly data?: Uint8Array;
  /** Called once the reply frame was handed to the kernel (true), or could not be (false: the connection is gone). */
  readonly written?: (ok: boolean) => void;
}

/** Serves one operation. A throw or rejection is sent as a failure with the error's code. */
export type PeerHandler = (head: Readonly<Record<string, unknown>>, data: Buffer) => PeerAnswer | Promise<PeerAnswer>;

export interface PeerServerOptions {
  readonly handlers: Readonly<Record<string, PeerHandler>>;
  readonly log?: Pick<Logger, 'warn' | 'debug'>;
  /** Requests one connection may have being handled (peerInFlightPerConnection). */
  readonly inFlightMax?: number;
}

interface Connection {
  readonly socket: Socket;
  readonly decoder: PeerFrameDecoder;
  inFlight: number;
  paused: boolean;
}

export class PeerServer {
  private readonly options: PeerServerOptions;
  private readonly connections = new Set<Connection>();
  private closed = false;

  constructor(options: PeerServerOptions) {
    this.options = options;
  }

  /** Connections being served. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Serves a connection from now on; `rest` is what arrived after its hello. */
  adopt(socket: Socket, rest: Buffer): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const connection: Connection = { socket, decoder: new PeerFrameDecoder(), inFlight: 0, paused: false };
    this.connections.add(connection);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.read(connection, chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.connections.delete(connection));
    if (rest.length > 0) this.read(connection, rest);
  }

  close(): void {
    this.closed = true;
    for (const connection of this.connections) connection.socket.destroy();
    this.connections.clear();
  }

  private read(connection: Connection, chunk: Buffer): void {
    let frames: PeerFrame[];
    try {
      frames = connection.decoder.push(chunk);
    } catch (error) {
      this.refuse(connection, (error as Error).message);
      return;
    }
    for (const frame of frames) {
      if (frame.kind !== PEER_KIND.request) {
        this.refuse(connection, `a frame of kind ${frame.kind} came where requests go`);
        return;
      }
      this.serve(connection, frame);
    }
  }

  private serve(connection: Connection, frame: PeerFrame): void {
    connection.inFlight += 1;
    if (connection.inFlight >= (this.options.inFlightMax ?? limits.peerInFlightPerConnection) && !connection.paused) {
      connection.paused = true;
      connection.socket.pause();
    }
    const op = typeof frame.head.op === 'string' ? frame.head.op : '';
    const handler = Object.hasOwn(this.options.handlers, op) ? this.options.handlers[op] : undefined;
    let answer: PeerAnswer | Promise<PeerAnswer>;
    try {
      if (handler === undefined) throw walrusError('PEER_PROTOCOL', `no node-to-node operation ${JSON.stringify(op)}`);
      answer = handler(frame.head, frame.data);
    } catch (error) {
      this.answer(connection, frame.id, undefined, error);
      return;
    }
    if (answer instanceof Promise) {
      answer.then(
        (value) => this.answer(connection, frame.id, value, undefined),
        (error: unknown) => this.answer(connection, frame.id, undefined, error),
      );
    } else {
      this.answer(connection, frame.id, answer, undefined);
    }
  }

  private answer(connection: Connection, id: number, answer: PeerAnswer | undefined, error: unknown): void {
    connection.inFlight -= 1;
    if (connection.paused && connection.inFlight < (this.options.inFlightMax ?? limits.peerInFlightPerConnection)) {
      connection.paused = false;
      connection.socket.resume();
    }
    const socket = connection.socket;
    if (socket.destroyed || !this.connections.has(connection)) {
      answer?.written?.(false);
      return;
    }
    let frame: Buffer;
    try {
      frame =
        answer === undefined
          ? encodePeerFrame(PEER_KIND.failure, id, { ...failureHead(error) })
          : encodePeerFrame(PEER_KIND.reply, id, answer.head ?? {}, answer.data);
    } catch (encodeError) {
      answer?.written?.(false);
      frame = encodePeerFrame(PEER_KIND.failure, id, { ...failureHead(encodeError) });
      socket.write(frame);
      return;
    }
    const written = answer?.written;
    // Answers that become ready in the same turn of the event loop (a group commit settles many
    // appends at once) leave in one write rather than one system call each.
    if (socket.writableCorked === 0) {
      socket.cork();
      process.nextTick(uncork, socket);
    }
    if (written === undefined) socket.write(frame);
    else socket.write(frame, (failure) => written(failure === undefined || failure === null));
  }

  private refuse(connection: Connection, why: string): void {
    this.options.log?.warn(
      { peer: `${connection.socket.remoteAddress}:${connection.socket.remotePort}` },
      `node-to-node connection closed: ${why}`,
    );
    connection.socket.destroy();
    this.connections.delete(connection);
  }
}

function uncork(socket: Socket): void {
  if (socket.writableCorked > 0) socket.uncork();
}
