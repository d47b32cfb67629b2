// Raft messages on the wire: one message per frame body (the transport adds the length prefix).
// Layout: u8 type, u32 from, u32 to, f64 term, then the type's fields in declaration order.
// Besides the core's messages, members forward proposals from a follower to the leader, and the
// leader tells its followers which voters it hears from (`live`, see RaftNode.liveMembers).

import type { Message, MessageType, NodeId } from '../core/types.js';
import { DecodeError, Reader, Writer } from './codec.js';

/** A follower hands a proposal to the leader (`term` is unused: 0). */
export interface ForwardMessage {
  readonly type: 'forward';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly id: number;
  readonly command: Uint8Array;
}

/**
 * The leader's answer: the index and term its entry got (the follower resolves once it has
 * applied that entry itself), or why it was refused (`error`, with the leader it knows of).
 */
export interface ForwardReplyMessage {
  readonly type: 'forwardReply';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly id: number;
  readonly index: number;
  readonly entryTerm: number;
  readonly error: string;
  readonly leader: NodeId;
}

/**
 * The leader's view of who is up: the voters that answered it recently, itself included, at
 * `term`. Only a host reads it; the Raft core never sees it, so it carries no Raft state.
 */
export interface LiveMessage {
  readonly type: 'live';
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
  readonly members: readonly NodeId[];
}

export type WireMessage = Message | ForwardMessage | ForwardReplyMessage | LiveMessage;

const FORWARD = 20;
const FORWARD_REPLY = 21;
const LIVE = 22;
/** Most ids a `live` message may name (a group is far smaller; the bound keeps decoding cheap). */
const LIVE_MEMBERS_MAX = 10_000;

const CODES: Record<MessageType, number> = {
  preVote: 1,
  preVoteReply: 2,
  vote: 3,
  voteReply: 4,
  append: 5,
  appendReply: 6,
  installSnapshot: 7,
  installSnapshotReply: 8,
  timeoutNow: 9,
};
const TYPES = new Map(Object.entries(CODES).map(([type, code]) => [code, type as MessageType]));

export function encodeMessage(message: WireMessage): Buffer {
  if (message.type === 'forward') {
    return new Writer().u8(FORWARD).u32(message.from).u32(message.to).f64(0).f64(message.id).bytes(message.command).finish();
  }
  if (message.type === 'forwardReply') {
    const writer = new Writer().u8(FORWARD_REPLY).u32(message.from).u32(message.to).f64(0).f64(message.id);
    return writer.f64(message.index).f64(message.entryTerm).u32(message.leader).bytes(Buffer.from(message.error, 'utf8')).finish();
  }
  if (message.type === 'live') {
    const writer = new Writer().u8(LIVE).u32(message.from).u32(message.to).f64(message.term).u32(message.members.length);
    for (const id of message.members) writer.u32(id);
    return writer.finish();
  }
  const writer = new Writer().u8(CODES[message.type]).u32(message.from).u32(message.to).f64(message.term);
  switch (message.type) {
    case 'preVote':
      writer.f64(message.lastIndex).f64(message.lastTerm);
      break;
    case 'vote':
      writer
        .f64(message.lastIndex)
        .f64(message.lastTerm)
        .u8(message.transfer ? 1 : 0);
      break;
    case 'preVoteReply':
    case 'voteReply':
      writer.u8(message.granted ? 1 : 0);
      break;
    case 'append':
      writer.f64(message.prevIndex).f64(message.prevTerm).f64(message.commit).f64(message.readId).u32(message.entries.length);
      for (const entry of message.entries) writer.entry(entry);
      break;
    case 'appendReply':
      writer
        .u8(message.success ? 1 : 0)
        .f64(message.matchIndex)
        .f64(message.hintIndex)
        .f64(message.hintTerm)
        .f64(message.readId);
      break;
    case 'installSnapshot':
      writer.f64(message.snapshot.index).f64(message.snapshot.term).membership(message.snapshot.membership).bytes(message.snapshot.data);
      break;
    case 'installSnapshotReply':
      writer.f64(message.index);
      break;
    case 'timeoutNow':
      break;
  }
  return writer.finish();
}

/** Decodes one frame body; throws DecodeError on anything malformed (the sender is then cut off). */
export function decodeMessage(body: Buffer): WireMessage {
  const reader = new Reader(body);
  const code = reader.u8();
  if (code === FORWARD || code === FORWARD_REPLY) return decodeForward(code, reader, body.length);
  if (code === LIVE) return decodeLive(reader, body.length);
  const type = TYPES.get(code);
  if (type === undefined) throw new DecodeError(`unknown message type ${code}`);
  const from = reader.u32();
  const to = reader.u32();
  const term = reader.f64();
  const envelope = { from, to, term };
  let message: Message;
  switch (type) {
    case 'preVote':
      message = { type, ...envelope, lastIndex: reader.f64(), lastTerm: reader.f64() };
      break;
    case 'vote':
      message = { type, ...envelope, lastIndex: reader.f64(), lastTerm: reader.f64(), transfer: reader.u8() === 1 };
      break;
    case 'preVoteReply':
    case 'voteReply':
      message = { type, ...envelope, granted: reader.u8() === 1 };
      break;
    case 'append': {
      const prevIndex = reader.f64();
      const prevTerm = reader.f64();
      const commit = reader.f64();
      const readId = reader.f64();
      const count = reader.u32();
      const entries = [];
      for (let index = 0; index < count; index++) entries.push(reader.entry());
      message = { type, ...envelope, prevIndex, prevTerm, commit, readId, entries };
      break;
    }
    case 'appendReply':
      message = {
        type,
        ...envelope,
        success: reader.u8() === 1,
        matchIndex: reader.f64(),
        hintIndex: reader.f64(),
        hintTerm: reader.f64(),
        readId: reader.f64(),
      };
      break;
    case 'installSnapshot':
      message = {
        type,
        ...envelope,
        snapshot: { index: reader.f64(), term: reader.f64(), membership: reader.membership(), data: reader.bytes() },
      };
      break;
    case 'installSnapshotReply':
      message = { type, ...envelope, index: reader.f64() };
      break;
    case 'timeoutNow':
      message = { type, ...envelope };
      break;
  }
  if (!reader.done) throw new DecodeError(`${body.length} bytes hold more than one ${type} message`);
  return message;
}

function decodeForward(code: number, reader: Reader, length: number): WireMessage {
  const from = reader.u32();
  const to = reader.u32();
  const term = reader.f64();
  const id = reader.f64();
  let message: WireMessage;
  if (code === FORWARD) {
    message = { type: 'forward', from, to, term, id, command: reader.bytes() };
  } else {
    const index = reader.f64();
    const entryTerm = reader.f64();
    const leader = reader.u32();
    const error = Buffer.from(reader.bytes()).toString('utf8');
    message = { type: 'forwardReply', from, to, term, id, index, entryTerm, leader, error };
  }
  if (!reader.done) throw new DecodeError(`${length} bytes hold more than one ${message.type} message`);
  return message;
}

function decodeLive(reader: Reader, length: number): LiveMessage {
  const from = reader.u32();
  const to = reader.u32();
  const term = reader.f64();
  const count = reader.u32();
  if (count > LIVE_MEMBERS_MAX) throw new DecodeError(`implausible member count ${count} in a live message`);
  const members: NodeId[] = [];
  for (let index = 0; index < count; index++) members.push(reader.u32());
  if (!reader.done) throw new DecodeError(`${length} bytes hold more than one live message`);
  return { type: 'live', from, to, term, members };
}
