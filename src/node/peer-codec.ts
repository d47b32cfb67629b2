// Frames of node-to-node requests (docs/protocol.md, "Between nodes"). After the hello
// (internal-port.ts), each direction is a stream of frames:
//
//   u32 LE body length | u8 kind | u32 LE request id | u32 LE head length | head | data
//
// kind 1 is a request, 2 its reply, 3 its failure. The head is UTF-8 JSON: a request's names its
// operation (`op`) and arguments; a failure's is `{ code, message, retriable, details }`. Data
// is raw bytes (an entry's payload), so payloads cross without JSON escaping or base64. Replies
// carry their request's id and may come in any order. Socket-free: peer-server.ts and
// peer-client.ts own the connections.

import { ERROR_CODES, type ErrorCode, walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';

export const PEER_KIND = { request: 1, reply: 2, failure: 3 } as const;
export type PeerKind = (typeof PEER_KIND)[keyof typeof PEER_KIND];

/** Bytes of the length prefix. */
const LENGTH_BYTES = 4;
/** Bytes of kind, id and head length. */
const FIXED_BYTES = 1 + 4 + 4;

export interface PeerFrame {
  readonly kind: PeerKind;
  readonly id: number;
  readonly head: Readonly<Record<string, unknown>>;
  /** The bytes after the head (empty when there are none). */
  readonly data: Buffer;
}

/** What a failure frame's head holds. */
export interface PeerFailure {
  readonly code: string;
  readonly message: string;
  readonly retriable: boolean;
  readonly details?: Readonly<Record<string, unknown>>;
}

export function encodePeerFrame(kind: PeerKind, id: number, head: Readonly<Record<string, unknown>>, data?: Uint8Array): Buffer {
  const headBytes = Buffer.from(JSON.stringify(head), 'utf8');
  if (headBytes.length > limits.peerHeadBytesMax) {
    throw walrusError(
      'PEER_PROTOCOL',
      `a node-to-node head of ${headBytes.length} bytes is over the ${limits.peerHeadBytesMax}-byte limit`,
    );
  }
  const dataLength = data?.length ?? 0;
  const bodyLength = FIXED_BYTES + headBytes.length + dataLength;
  if (bodyLength > limits.peerFrameBytesMax) {
    throw walrusError('PEER_PROTOCOL', `a node-to-node frame of ${bodyLength} bytes is over the ${limits.peerFrameBytesMax}-byte limit`);
  }
  const frame = Buffer.allocUnsafe(LENGTH_BYTES + bodyLength);
  frame.writeUInt32LE(bodyLength, 0);
  frame.writeUInt8(kind, 4);
  frame.writeUInt32LE(id, 5);
  frame.writeUInt32LE(headBytes.length, 9);
  headBytes.copy(frame, LENGTH_BYTES + FIXED_BYTES);
  if (data !== undefined && dataLength > 0) frame.set(data, LENGTH_BYTES + FIXED_BYTES + headBytes.length);
  return frame;
}

/** The failure frame head for anything thrown: a WalrusError keeps its code, anything else is reported by message. */
export function failureHead(error: unknown): PeerFailure {
  if (error !== null && typeof error === 'object' && 'code' in error && typeof error.code === 'string' && error.code in ERROR_CODES) {
    const coded = error as { code: ErrorCode; message: string; retriable?: boolean; details?: Readonly<Record<string, unknown>> };
    return {
      code: coded.code,
      message: coded.message,
      retriable: coded.retriable ?? ERROR_CODES[coded.code].retriable,
      ...(coded.details === undefined ? {} : { details: coded.details }),
    };
  }
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error), retriable: false };
}

/**
 * The error a failure frame stands for: a WalrusError with the remote code when this node knows
 * it (so callers branch on `.code` as for a local failure), else a plain Error with the remote
 * message. `peer` names the node (in the details, and in the message of an unknown code).
 */
export function failureError(head: Readonly<Record<string, unknown>>, peer: string): Error {
  const code = typeof head.code === 'string' ? head.code : '';
  const message = typeof head.message === 'string' ? head.message : `node ${peer} failed without a message`;
  const details = head.details !== null && typeof head.details === 'object' ? (head.details as Record<string, unknown>) : {};
  const retriable = typeof head.retriable === 'boolean' ? head.retriable : false;
  if (code in ERROR_CODES) return walrusError(code as ErrorCode, message, { details: { ...details, peer }, retriable });
  return new Error(`node ${peer}: ${message}`);
}

/**
 * Splits a byte stream into frames. push() returns the frames complete so far; a frame that
 * breaks the format throws PEER_PROTOCOL (the caller closes the connection).
 */
export class PeerFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  /** Bytes received and not yet part of a complete frame. */
  get bufferedBytes(): number {
    return this.pending.length;
  }

  push(chunk: Buffer): PeerFrame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: PeerFrame[] = [];
    let at = 0;
    while (this.pending.length - at >= LENGTH_BYTES) {
      const bodyLength = this.pending.readUInt32LE(at);
      if (bodyLength < FIXED_BYTES || bodyLength > limits.peerFrameBytesMax) {
        throw walrusError('PEER_PROTOCOL', `a node-to-node frame announced ${bodyLength} bytes (limit ${limits.peerFrameBytesMax})`);
      }
      if (this.pending.length - at - LENGTH_BYTES < bodyLength) break;
      const body = this.pending.subarray(at + LENGTH_BYTES, at + LENGTH_BYTES + bodyLength);
      at += LENGTH_BYTES + bodyLength;
      frames.push(decodeBody(body));
    }
    this.pending = at === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(at);
    return frames;
  }
}

function decodeBody(body: Buffer): PeerFrame {
  const kind = body.readUInt8(0);
  if (kind !== PEER_KIND.request && kind !== PEER_KIND.reply && kind !== PEER_KIND.failure) {
    throw walrusError('PEER_PROTOCOL', `a node-to-node frame of unknown kind ${kind}`);
  }
  const id = body.readUInt32LE(1);
  const headLength = body.readUInt32LE(5);
  if (headLength > limits.peerHeadBytesMax || FIXED_BYTES + headLength > body.length) {
    throw walrusError('PEER_PROTOCOL', `a node-to-node head of ${headLength} bytes does not fit its frame`);
  }
  let head: unknown;
  try {
    head = JSON.parse(body.toString('utf8', FIXED_BYTES, FIXED_BYTES + headLength));
  } catch (error) {
    throw walrusError('PEER_PROTOCOL', `a node-to-node head is not JSON: ${(error as Error).message}`);
  }
  if (head === null || typeof head !== 'object' || Array.isArray(head)) {
    throw walrusError('PEER_PROTOCOL', 'a node-to-node head is not a JSON object');
  }
  // A copy: the frame outlives the chunk it came in, which the decoder drops.
  const data = Buffer.from(body.subarray(FIXED_BYTES + headLength));
  return { kind: kind as PeerKind, id, head: head as Record<string, unknown>, data };
}
