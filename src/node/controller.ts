// The node controller: what each client command does on this node. It reads the local metadata
// replica, proposes metadata changes through consensus (REGISTER), appends through the segment
// store under the write lease (PUT), serves GET from the topic's shared position (consuming the
// entry only once the reply is written) and FETCH by position, and answers STATE and METRICS.
// Successes are the original's texts (reference: cluster.md §1.4–1.7); failures are WalrusErrors
// with codes, which the server turns into `ERR …` through the one wire table
// (src/protocol/wire-errors.ts).
//
// A new topic is placed on one of the live nodes by a hash of its name (placement.ts): on one node
// that is always this node. Writes for a segment another node leads get
// `ERR NotLeaderForPartition: t_<topic>_s_<n>` until forwarding between nodes exists.

import { isUtf8 } from 'node:buffer';
import type { Consensus } from '../contracts/consensus.js';
import { type ErrorCode, walrusError } from '../kernel/errors.js';
import type { Command } from '../protocol/commands.js';
import { FRAME_HEADER_BYTES } from '../protocol/frames.js';
import { EMPTY, fetched, OK, okPayload } from '../protocol/replies.js';
import { notLeaderFor } from './leases.js';
import { encodeCommand, type MetadataResult, type MetadataStateMachine, segmentKey, topicNameProblem } from './metadata.js';
import { placeTopic } from './placement.js';
import type { NextResult, TopicReader } from './reader.js';
import { isRolling, RolloverWait } from './rollover-wait.js';
import type { SegmentStore } from './segment-store.js';

/**
 * A reply, and what to do once it has been written to the client (or could not be). GET replies
 * with an entry come as `frame`, encoded straight from the entry's bytes; failures as `error`
 * (the server sends its wire text); every other reply as `text`.
 */
export type ControllerReply =
  | { readonly text: string; readonly frame?: undefined; readonly error?: undefined; readonly written?: (ok: boolean) => void }
  | { readonly frame: Buffer; readonly text?: undefined; readonly error?: undefined; readonly written?: (ok: boolean) => void }
  | { readonly error: Error; readonly text?: undefined; readonly frame?: undefined; readonly written?: undefined };

export interface ControllerOptions {
  readonly nodeId: number;
  readonly metadata: MetadataStateMachine;
  readonly consensus: Pick<Consensus, 'propose' | 'metrics'>;
  readonly store: SegmentStore;
  readonly reader: TopicReader;
  /** How long a PUT waits for a full segment's rollover to apply before giving up with the retriable error. */
  readonly rolloverWaitMs?: number;
  /**
   * The nodes known to be up (Consensus.liveMembers), among which REGISTER places a new topic.
   * Absent, or empty, places every new topic on this node.
   */
  readonly liveNodes?: () => readonly number[];
}

/** A PUT that meets a full segment waits this long, at most, for the rollover to apply. */
export const ROLLOVER_WAIT_MS_DEFAULT = 2000;
/** When the metadata names the next segment but the lease has not followed yet, the retry pause. */
const RETRY_PAUSE_MS = 2;

const lossy = new TextDecoder('utf-8');

export class NodeController {
  private readonly options: ControllerOptions;

  /** PUTs waiting for a rollover, per topic, in arrival order. */
  private readonly rollovers: RolloverWait;

  constructor(options: ControllerOptions) {
    this.options = options;
    this.rollovers = new RolloverWait({
      waitMs: options.rolloverWaitMs ?? ROLLOVER_WAIT_MS_DEFAULT,
      retryPauseMs: RETRY_PAUSE_MS,
      target: {
        openSegment: (topic) => {
          const segment = this.openSegmentHere(topic);
          return typeof segment === 'number' ? segment : (segment.error ?? new Error('no open segment'));
        },
        append: (topic, segment, payload) => options.store.append(topic, segment, payload),
        full: (topic, segment) => options.store.full(topic, segment),
        onChange: (listener) => options.metadata.onChange(listener),
      },
    });
  }

  /** Answers every PUT still waiting for a rollover (the node is stopping). */
  close(): void {
    this.rollovers.close(walrusError('CLOSED', 'the node is stopping; the PUT was not written'));
  }

  /**
   * What `command` does. PUT and GET answer synchronously when nothing has to be waited for (the
   * key is free and the engine acknowledged at once); everything else answers with a promise.
   */
  handle(command: Command): ControllerReply | Promise<ControllerReply> {
    switch (command.op) {
      case 'REGISTER':
        return this.register(command.topic);
      case 'PUT':
        return this.put(command.topic, command.payload);
      case 'GET':
        return this.get(command.topic);
      case 'FETCH':
        return this.fetch(command.topic, command.segment, command.offset);
      case 'STATE': {
        const json = this.options.metadata.stateJson(command.topic);
        return json === undefined ? unknownTopic(command.topic) : { text: json };
      }
      case 'METRICS':
        return { text: JSON.stringify(this.options.consensus.metrics(), null, 2) };
    }
  }

  private async register(topic: string): Promise<ControllerReply> {
    const problem = topicNameProblem(topic);
    if (problem !== undefined) return failed('INVALID_TOPIC_NAME', problem, { topic });
    if (this.options.metadata.topic(topic) !== undefined) return OK_REPLY;
    const result = (await this.propose({ kind: 'CreateTopic', topic, initialLeader: this.placement(topic) })) as MetadataResult;
    return result.ok ? OK_REPLY : failed('METADATA_REJECTED', result.error, { topic });
  }

  /**
   * One attempt at once. A PUT that meets a segment being rolled over, or arrives while others for
   * its topic wait for one, waits in the topic's queue (rollover-wait.ts), which keeps arrival order.
   */
  private put(topic: string, payload: string | Uint8Array): ControllerReply | Promise<ControllerReply> {
    const arrival = this.rollovers.arrive();
    if (this.rollovers.has(topic)) return this.waitForRollover(topic, arrival, payload, undefined);
    const segment = this.openSegmentHere(topic);
    if (typeof segment !== 'number') return segment;
    try {
      const offset = this.options.store.appendNow(topic, segment, payload);
      if (typeof offset === 'number') return OK_REPLY;
      return offset.then(
        () => OK_REPLY,
        (error: unknown) => (isRolling(error) ? this.waitForRollover(topic, arrival, payload, error) : { error: error as Error }),
      );
    } catch (error) {
      return isRolling(error) ? this.waitForRollover(topic, arrival, payload, error) : { error: error as Error };
    }
  }

  private async waitForRollover(topic: string, arrival: number, payload: string | Uint8Array, failure: unknown): Promise<ControllerReply> {
    const result = await this.rollovers.wait(topic, arrival, payload, failure);
    return typeof result === 'number' ? OK_REPLY : { error: result };
  }

  /** The topic's open segment when this node leads it; otherwise the error reply. */
  private openSegmentHere(topic: string): number | ControllerReply {
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return unknownTopic(topic);
    if (state.leaderNode !== this.options.nodeId) return { error: notLeaderFor(segmentKey(topic, state.currentSegment)) };
    return state.currentSegment;
  }

  private get(topic: string): ControllerReply | Promise<ControllerReply> {
    const next = this.options.reader.nextNow(topic);
    return next instanceof Promise ? next.then((found) => getReply(topic, found)) : getReply(topic, next);
  }

  private async fetch(topic: string, segment: number, offset: number): Promise<ControllerReply> {
    const state = this.options.metadata.topic(topic);
    if (state === undefined) return unknownTopic(topic);
    if (segment > state.currentSegment) return EMPTY_REPLY;
    const payload = await this.options.store.read(topic, segment, offset);
    return payload === null ? EMPTY_REPLY : { text: fetched(offset + 1, lossy.decode(payload)) };
  }

  private async propose(command: Parameters<typeof encodeCommand>[0]): Promise<unknown> {
    return this.options.consensus.propose(encodeCommand(command));
  }

  /** Where a new topic's first segment goes: a live node picked by the name's hash (placement.ts). */
  private placement(topic: string): number {
    return placeTopic(topic, this.options.liveNodes?.() ?? [], this.options.nodeId);
  }
}

/** The replies without a value, built once: the synchronous PUT path allocates no reply. */
const OK_REPLY: ControllerReply = Object.freeze({ text: OK });
const EMPTY_REPLY: ControllerReply = Object.freeze({ text: EMPTY });

function failed(code: ErrorCode, message: string, details: Readonly<Record<string, unknown>>): ControllerReply {
  return { error: walrusError(code, message, { details }) };
}

/** The GET reply for what the reader found: the entry is consumed once the reply is written. */
function getReply(topic: string, next: NextResult): ControllerReply {
  if (next.kind === 'unknown-topic') return unknownTopic(topic);
  if (next.kind === 'empty') return EMPTY_REPLY;
  if (next.kind === 'elsewhere') return { error: notLeaderFor(segmentKey(topic, next.segment)) };
  const { entry } = next;
  const written = (ok: boolean): void => {
    // A failed cursor write fails the engine, and with it the next request that needs it.
    if (ok) entry.delivered().catch(() => undefined);
    else entry.abandoned();
  };
  // Payloads written through the protocol are UTF-8; anything else is sent with U+FFFD in place
  // of the invalid bytes, as a text reply.
  if (!isUtf8(entry.payload)) return { text: okPayload(lossy.decode(entry.payload)), written };
  return { frame: okPayloadFrame(entry.payload), written };
}

/** The frame of `OK <payload>` for a payload that is valid UTF-8, built from its bytes. */
function okPayloadFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + OK_SPACE.length + payload.length);
  frame.writeUInt32LE(OK_SPACE.length + payload.length, 0);
  OK_SPACE.copy(frame, FRAME_HEADER_BYTES);
  frame.set(payload, FRAME_HEADER_BYTES + OK_SPACE.length);
  return frame;
}

/** `OK ` before a GET reply's payload. */
const OK_SPACE = Buffer.from('OK ', 'latin1');

function unknownTopic(topic: string): ControllerReply {
  return failed('UNKNOWN_TOPIC', `unknown topic ${topic}`, { topic });
}
