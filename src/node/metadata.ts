// The cluster metadata state machine (reference/cluster.md §3): topics with their segments, sealed
// counts and segment leaders, plus every node's addresses. Raft applies the same commands in the
// same order on every node, so every replica holds the same state and the same epoch.
// apply() is total: bytes it cannot decode and commands it must refuse give an error result and
// leave the state untouched, so no command can stop a replica (§10.7). A rollover names the
// segment it seals and is a no-op once that segment is sealed, so duplicates seal nothing (§10.1).
// Snapshots are canonical JSON (sorted topics and nodes): equal states give equal bytes (§10.9).
// No timers, sockets or files: the caller owns all I/O.

import type { NodeId, StateMachine } from '../contracts/consensus.js';
import { StorageError, walrusError } from '../kernel/errors.js';
import { limits } from '../kernel/limits.js';

/** Version of the command encoding; a command with another version is refused (error result). */
export const COMMAND_VERSION = 1;
/** Version of the snapshot encoding; restore reads this one and the one before it (1: no replica sets). */
export const SNAPSHOT_VERSION = 2;

/** Bytes a segment key adds to its topic name: `t_`, `_s_` and the longest segment id (16 digits). */
const SEGMENT_KEY_OVERHEAD_BYTES = 't_'.length + '_s_'.length + String(Number.MAX_SAFE_INTEGER).length;

/**
 * Bounds of the metadata. They live here rather than in kernel/limits.ts because only this module
 * enforces them; the topic bound is derived from the engine's so that every segment key of a valid
 * topic is itself a valid engine topic name.
 */
export const metadataLimits = {
  /** Longest topic name in UTF-8 bytes: the engine's limit less what the segment key adds. */
  topicNameBytesMax: limits.topicNameBytesMax - SEGMENT_KEY_OVERHEAD_BYTES,
  /** Most topics in the cluster; a CreateTopic past it gets an error result. */
  topicsMax: 100_000,
  /** Most nodes in the nodes map; an UpsertNode for a new node past it gets an error result. */
  nodesMax: 1024,
  /** Longest advertised address (`host:port`), in UTF-8 bytes. */
  addressBytesMax: 300,
  /** Largest encoded command; anything bigger is refused before it is parsed. */
  commandBytesMax: 64 * 1024,
  /** Most nodes in one segment's replica set. */
  replicasMax: 7,
} as const;

// ---------------------------------------------------------------------------------------------
// Commands and results

/**
 * Creates the topic with segment 1 led by `initialLeader`, kept by `replicas` (the leader first;
 * absent: the leader alone); no change if it exists.
 */
export interface CreateTopic {
  readonly kind: 'CreateTopic';
  readonly topic: string;
  readonly initialLeader: NodeId;
  readonly replicas?: readonly NodeId[];
}

/**
 * Seals `expectedSegment` with `sealedCount` entries and opens the next one on `newLeader`, kept
 * by `replicas` (the new leader first; absent: the leader alone), if it is still open. A failover
 * (its leader is gone) also names `sealedOwner`: the replica of the sealed segment that holds all
 * of it, which serves it from then on in place of its old leader.
 */
export interface RolloverTopic {
  readonly kind: 'RolloverTopic';
  readonly topic: string;
  readonly expectedSegment: number;
  readonly sealedCount: number;
  readonly newLeader: NodeId;
  readonly replicas?: readonly NodeId[];
  readonly sealedOwner?: NodeId;
}

/**
 * A sealed segment is served by `owner` (one of its replicas, holding all of it) in place of
 * `expectedOwner`, whose node is gone; stale (no change) when its owner is no longer that.
 */
export interface MoveSegment {
  readonly kind: 'MoveSegment';
  readonly topic: string;
  readonly segment: number;
  readonly expectedOwner: NodeId;
  readonly owner: NodeId;
}

/** Inserts or overwrites a node's advertised addresses (`host:port`). */
export interface UpsertNode {
  readonly kind: 'UpsertNode';
  readonly nodeId: NodeId;
  readonly clientAddress: string;
  readonly raftAddress: string;
}

/**
 * A sealed segment's copy on `removed` (a node that left the cluster) is replaced by one on
 * `added`, which the segment's server then fills: the replica set lists `added` in its place.
 * Stale (no change) when `removed` is no longer in the set.
 */
export interface ReplaceReplica {
  readonly kind: 'ReplaceReplica';
  readonly topic: string;
  readonly segment: number;
  readonly removed: NodeId;
  readonly added: NodeId;
}

export type MetadataCommand = CreateTopic | RolloverTopic | MoveSegment | ReplaceReplica | UpsertNode;

/** created / exists: CreateTopic; rolled / stale: RolloverTopic; moved / stale: MoveSegment; replaced / stale: ReplaceReplica; node: UpsertNode. */
export type MetadataOutcome = 'created' | 'exists' | 'rolled' | 'moved' | 'replaced' | 'stale' | 'node';

/** What apply returns (and what propose() resolves with): plain JSON, so it can be forwarded. */
export type MetadataResult = { readonly ok: true; readonly outcome: MetadataOutcome } | { readonly ok: false; readonly error: string };

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error rather than replacement characters; ignoreBOM keeps a BOM so JSON.parse refuses it.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Compact JSON with the version first and the fields in a fixed order, as UTF-8. It does not
 * validate: apply is the authority. Proposers check first with commandProblem() to fail early.
 */
export function encodeCommand(command: MetadataCommand): Uint8Array {
  let wire: Record<string, unknown>;
  switch (command.kind) {
    case 'CreateTopic':
      wire = { v: COMMAND_VERSION, kind: command.kind, topic: command.topic, initialLeader: command.initialLeader };
      if (command.replicas !== undefined) wire.replicas = command.replicas;
      break;
    case 'RolloverTopic':
      wire = {
        v: COMMAND_VERSION,
        kind: command.kind,
        topic: command.topic,
        expectedSegment: command.expectedSegment,
        sealedCount: command.sealedCount,
        newLeader: command.newLeader,
      };
      if (command.replicas !== undefined) wire.replicas = command.replicas;
      if (command.sealedOwner !== undefined) wire.sealedOwner = command.sealedOwner;
      break;
    case 'MoveSegment':
      wire = {
        v: COMMAND_VERSION,
        kind: command.kind,
        topic: command.topic,
        segment: command.segment,
        expectedOwner: command.expectedOwner,
        owner: command.owner,
      };
      break;
    case 'ReplaceReplica':
      wire = {
        v: COMMAND_VERSION,
        kind: command.kind,
        topic: command.topic,
        segment: command.segment,
        removed: command.removed,
        added: command.added,
      };
      break;
    case 'UpsertNode':
      wire = {
        v: COMMAND_VERSION,
        kind: command.kind,
        nodeId: command.nodeId,
        clientAddress: command.clientAddress,
        raftAddress: command.raftAddress,
      };
      break;
  }
  return utf8Encoder.encode(JSON.stringify(wire));
}

/** The fields each kind carries besides `v` and `kind`, and whether each is a string or a number. */
const COMMAND_FIELDS: { readonly [K in MetadataCommand['kind']]: Readonly<Record<string, 'string' | 'number'>> } = {
  CreateTopic: { topic: 'string', initialLeader: 'number' },
  RolloverTopic: { topic: 'string', expectedSegment: 'number', sealedCount: 'number', newLeader: 'number' },
  MoveSegment: { topic: 'string', segment: 'number', expectedOwner: 'number', owner: 'number' },
  ReplaceReplica: { topic: 'string', segment: 'number', removed: 'number', added: 'number' },
  UpsertNode: { nodeId: 'number', clientAddress: 'string', raftAddress: 'string' },
};

/** Fields a kind may carry: a replica set is a list of node ids, a sealed segment's owner a node id. */
const OPTIONAL_FIELDS: { readonly [K in MetadataCommand['kind']]: readonly string[] } = {
  CreateTopic: ['replicas'],
  RolloverTopic: ['replicas', 'sealedOwner'],
  MoveSegment: [],
  ReplaceReplica: [],
  UpsertNode: [],
};

function isCommandKind(kind: unknown): kind is MetadataCommand['kind'] {
  return typeof kind === 'string' && Object.hasOwn(COMMAND_FIELDS, kind);
}

/** Decodes and validates command bytes; never throws. */
export function decodeCommand(bytes: Uint8Array): MetadataCommand | { readonly error: string } {
  if (!(bytes instanceof Uint8Array)) return { error: 'command is not a byte array' };
  if (bytes.byteLength > metadataLimits.commandBytesMax)
    return { error: `command is ${bytes.byteLength} bytes, more than the limit of ${metadataLimits.commandBytesMax}` };
  let value: unknown;
  try {
    value = JSON.parse(utf8Decoder.decode(bytes));
  } catch {
    return { error: 'command is not UTF-8 JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'command is not a JSON object' };
  const wire = value as Record<string, unknown>;
  if (wire.v !== COMMAND_VERSION) return { error: `unsupported command version ${JSON.stringify(wire.v)} (expected ${COMMAND_VERSION})` };
  if (!isCommandKind(wire.kind)) return { error: `unknown command kind ${JSON.stringify(wire.kind)}` };
  const fields = COMMAND_FIELDS[wire.kind];
  const optional = OPTIONAL_FIELDS[wire.kind];
  for (const key of Object.keys(wire))
    if (key !== 'v' && key !== 'kind' && !Object.hasOwn(fields, key) && !optional.includes(key))
      return { error: `${wire.kind}: unknown field ${key}` };
  for (const [field, type] of Object.entries(fields))
    if (typeof wire[field] !== type) return { error: `${wire.kind}: field ${field} must be a ${type}` };
  if (wire.replicas !== undefined && (!Array.isArray(wire.replicas) || !wire.replicas.every((id) => typeof id === 'number')))
    return { error: `${wire.kind}: field replicas must be a list of node ids` };
  if (wire.sealedOwner !== undefined && typeof wire.sealedOwner !== 'number')
    return { error: `${wire.kind}: field sealedOwner must be a node id` };
  // Every field is present with its type, so the object is a command of its kind.
  const command = wire as unknown as MetadataCommand;
  const problem = commandProblem(command);
  return problem === undefined ? stripVersion(command) : { error: problem };
}

function stripVersion(command: MetadataCommand): MetadataCommand {
  switch (command.kind) {
    case 'CreateTopic':
      return {
        kind: command.kind,
        topic: command.topic,
        initialLeader: command.initialLeader,
        ...(command.replicas === undefined ? {} : { replicas: [...command.replicas] }),
      };
    case 'RolloverTopic':
      return {
        kind: command.kind,
        topic: command.topic,
        expectedSegment: command.expectedSegment,
        sealedCount: command.sealedCount,
        newLeader: command.newLeader,
        ...(command.replicas === undefined ? {} : { replicas: [...command.replicas] }),
        ...(command.sealedOwner === undefined ? {} : { sealedOwner: command.sealedOwner }),
      };
    case 'MoveSegment':
      return {
        kind: command.kind,
        topic: command.topic,
        segment: command.segment,
        expectedOwner: command.expectedOwner,
        owner: command.owner,
      };
    case 'ReplaceReplica':
      return { kind: command.kind, topic: command.topic, segment: command.segment, removed: command.removed, added: command.added };
    case 'UpsertNode':
      return { kind: command.kind, nodeId: command.nodeId, clientAddress: command.clientAddress, raftAddress: command.raftAddress };
  }
}

/** Why a well-typed command would be refused by apply regardless of the state, or undefined. */
export function commandProblem(command: MetadataCommand): string | undefined {
  switch (command.kind) {
    case 'CreateTopic':
      return (
        topicNameProblem(command.topic) ??
        nodeIdProblem('initialLeader', command.initialLeader) ??
        replicasProblem(command.replicas, command.initialLeader)
      );
    case 'RolloverTopic':
      return (
        topicNameProblem(command.topic) ??
        countProblem('expectedSegment', command.expectedSegment, 1) ??
        countProblem('sealedCount', command.sealedCount, 0) ??
        nodeIdProblem('newLeader', command.newLeader) ??
        replicasProblem(command.replicas, command.newLeader) ??
        (command.sealedOwner === undefined ? undefined : nodeIdProblem('sealedOwner', command.sealedOwner))
      );
    case 'MoveSegment':
      return (
        topicNameProblem(command.topic) ??
        countProblem('segment', command.segment, 1) ??
        nodeIdProblem('expectedOwner', command.expectedOwner) ??
        nodeIdProblem('owner', command.owner)
      );
    case 'ReplaceReplica':
      return (
        topicNameProblem(command.topic) ??
        countProblem('segment', command.segment, 1) ??
        nodeIdProblem('removed', command.removed) ??
        nodeIdProblem('added', command.added) ??
        (command.removed === command.added ? `removed and added must be different nodes, got ${command.added} twice` : undefined)
      );
    case 'UpsertNode':
      return (
        nodeIdProblem('nodeId', command.nodeId) ??
        addressProblem('clientAddress', command.clientAddress) ??
        addressProblem('raftAddress', command.raftAddress)
      );
  }
}

// Whitespace would break the space-separated client protocol; control characters have no use in names.
const FORBIDDEN_NAME_CHARACTERS = /[\s\p{Cc}]/u;

/** Why `name` cannot be a topic name, or undefined when it can. */
export function topicNameProblem(name: string): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'topic name must be a non-empty string';
  // A lone surrogate would be replaced when encoded, so two names could share one segment key.
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) return 'topic name is not well-formed Unicode';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > metadataLimits.topicNameBytesMax)
    return `topic name is ${bytes} UTF-8 bytes, more than the limit of ${metadataLimits.topicNameBytesMax}`;
  if (FORBIDDEN_NAME_CHARACTERS.test(name)) return 'topic name must not contain whitespace or control characters';
  return undefined;
}

/**
 * A replica set: 1 to replicasMax distinct node ids, the segment's leader first (`anywhere`: the
 * leader among them — a sealed segment's owner after a failover need not be first).
 */
function replicasProblem(replicas: readonly NodeId[] | undefined, leader: NodeId, anywhere = false): string | undefined {
  if (replicas === undefined) return undefined;
  if (replicas.length === 0 || replicas.length > metadataLimits.replicasMax)
    return `replicas must list 1 to ${metadataLimits.replicasMax} nodes, got ${replicas.length}`;
  for (const id of replicas) {
    const problem = nodeIdProblem('replicas', id);
    if (problem !== undefined) return problem;
  }
  if (new Set(replicas).size !== replicas.length) return `replicas must be distinct nodes, got ${replicas.join(', ')}`;
  if (anywhere)
    return replicas.includes(leader) ? undefined : `replicas must include the segment's owner ${leader}, got ${replicas.join(', ')}`;
  if (replicas[0] !== leader) return `replicas must start with the segment's leader ${leader}, got ${replicas.join(', ')}`;
  return undefined;
}

function countProblem(field: string, value: number, min: number): string | undefined {
  return Number.isSafeInteger(value) && value >= min ? undefined : `${field} must be a safe integer ≥ ${min}, got ${value}`;
}

function nodeIdProblem(field: string, value: number): string | undefined {
  return Number.isSafeInteger(value) && value >= 1 ? undefined : `${field} must be a node id (a safe integer ≥ 1), got ${value}`;
}

/** `host:port` with a non-empty host, a port in 1..65535, no whitespace; IPv6 hosts in brackets. */
function addressProblem(field: string, address: string): string | undefined {
  const bytes = Buffer.byteLength(address, 'utf8');
  if (bytes === 0 || bytes > metadataLimits.addressBytesMax)
    return `${field} must be 1 to ${metadataLimits.addressBytesMax} UTF-8 bytes, got ${bytes}`;
  if (FORBIDDEN_NAME_CHARACTERS.test(address)) return `${field} must not contain whitespace or control characters`;
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || !/^[0-9]{1,5}$/.test(address.slice(colon + 1)) || port < 1 || port > 65535)
    return `${field} must be host:port with a port in 1..65535, got ${JSON.stringify(address)}`;
  return undefined;
}

function failure(error: string): MetadataResult {
  return { ok: false, error };
}

// ---------------------------------------------------------------------------------------------
// Segment keys

/** The engine topic that holds one segment's data: `t_<topic>_s_<segment>` (§4.1). */
export function segmentKey(topic: string, segment: number): string {
  return `t_${topic}_s_${segment}`;
}

/** The inverse of segmentKey; splits on the last `_s_`, so topics containing `_s_` round-trip. */
export function parseSegmentKey(key: string): { readonly topic: string; readonly segment: number } | undefined {
  const separator = key.lastIndexOf('_s_');
  if (!key.startsWith('t_') || separator < 2) return undefined;
  const digits = key.slice(separator + 3);
  if (!/^[1-9][0-9]*$/.test(digits)) return undefined;
  const segment = Number(digits);
  return Number.isSafeInteger(segment) ? { topic: key.slice(2, separator), segment } : undefined;
}

// ---------------------------------------------------------------------------------------------
// State

/** A topic's open segment, as the local replica sees it. Immutable: a rollover makes a new one. */
export interface TopicState {
  /** The open segment (≥ 1); segments 1 .. currentSegment-1 are sealed. */
  readonly currentSegment: number;
  /** Leader of the open segment. */
  readonly leaderNode: NodeId;
  /** Sum of the sealed counts: the logical offset of the open segment's first entry. */
  readonly lastSealedEntryOffset: number;
}

export interface NodeAddresses {
  readonly clientAddress: string;
  readonly raftAddress: string;
}

/** One topic's whole state. The arrays only ever grow, so a TopicState handed out stays consistent. */
interface TopicRecord {
  view: TopicState;
  /** sealedCounts[s-1]: entries of sealed segment s; length currentSegment-1. */
  readonly sealedCounts: number[];
  /** sealedEnds[s-1]: logical offset just past sealed segment s (running sum of sealedCounts). */
  readonly sealedEnds: number[];
  /** segmentLeaders[s-1]: leader of segment s; length currentSegment (the open one included). */
  readonly segmentLeaders: NodeId[];
  /** segmentReplicas[s-1]: the nodes keeping segment s, its leader first; length currentSegment. */
  readonly segmentReplicas: (readonly NodeId[])[];
}

/** Reported to onChange listeners after every apply and every restore. */
export interface MetadataChange {
  /** The applied entry's log index; for a restore, the snapshot's last applied index. */
  readonly index: number;
  /** The decoded command; undefined when it could not be decoded and for a restore. */
  readonly command: MetadataCommand | undefined;
  readonly result: MetadataResult | { readonly ok: true; readonly outcome: 'restored' };
  /** Whether the state changed (the epoch moved). A restore always counts as a change. */
  readonly changed: boolean;
  /** The epoch after the change. */
  readonly epoch: number;
}

export interface MetadataOptions {
  /**
   * Receives what an onChange listener threw (apply itself must not throw). Without it the error
   * is rethrown from a microtask, so a listener bug surfaces as an uncaught exception.
   */
  readonly onListenerError?: (error: unknown) => void;
}

export class MetadataStateMachine implements StateMachine {
  private topicRecords = new Map<string, TopicRecord>();
  /** Names in code-unit order, rebuilt lazily after a topic is created or a snapshot restored. */
  private sortedNames: readonly string[] | undefined;
  /** Replaced (never changed in place) on every node change; kept in ascending id order. */
  private nodeMap: ReadonlyMap<NodeId, NodeAddresses> = new Map();
  private applied = 0;
  private changes = 0;
  private readonly listeners = new Set<{ readonly listener: (change: MetadataChange) => void }>();
  private readonly options: MetadataOptions;

  constructor(options: MetadataOptions = {}) {
    this.options = options;
  }

  /** Index of the last entry applied (0 before any); part of the snapshot. */
  get lastAppliedIndex(): number {
    return this.applied;
  }

  /**
   * Number of applies that changed the state. Every replica computes the same value at the same
   * log index, so leases can name the epoch that granted them.
   */
  get epoch(): number {
    return this.changes;
  }

  // --- StateMachine -----------------------------------------------------------------------------

  /** Applies one committed command; total (never throws). Indexes must increase; a replayed one is refused. */
  apply(command: Uint8Array, index: number): MetadataResult {
    let decoded: MetadataCommand | undefined;
    let result: MetadataResult;
    let changed = false;
    if (!Number.isSafeInteger(index) || index <= this.applied) {
      result = failure(`log index ${index} is not after the last applied index ${this.applied}`);
    } else {
      const read = decodeCommand(command);
      if ('error' in read) {
        result = failure(read.error);
      } else {
        decoded = read;
        ({ result, changed } = this.execute(read));
      }
      this.applied = index;
      if (changed) this.changes += 1;
    }
    this.notify({ index, command: decoded, result, changed, epoch: this.changes });
    return result;
  }

  snapshot(): Uint8Array {
    const topics = this.topics().map((name) => {
      const record = this.record(name);
      return {
        name,
        currentSegment: record.view.currentSegment,
        leaderNode: record.view.leaderNode,
        lastSealedEntryOffset: record.view.lastSealedEntryOffset,
        sealedCounts: record.sealedCounts,
        segmentLeaders: record.segmentLeaders,
        segmentReplicas: record.segmentReplicas,
      };
    });
    const nodes = [...this.nodeMap].map(([id, addresses]) => ({
      id,
      clientAddress: addresses.clientAddress,
      raftAddress: addresses.raftAddress,
    }));
    const wire = { v: SNAPSHOT_VERSION, lastAppliedIndex: this.applied, epoch: this.changes, topics, nodes };
    return utf8Encoder.encode(JSON.stringify(wire));
  }

  /** Replaces the whole state with a snapshot's; throws (changing nothing) if the snapshot is not valid. */
  restore(data: Uint8Array): void {
    const restored = readSnapshot(data);
    this.topicRecords = restored.topics;
    this.sortedNames = undefined;
    this.nodeMap = restored.nodes;
    this.applied = restored.lastAppliedIndex;
    this.changes = restored.epoch;
    this.notify({ index: this.applied, command: undefined, result: { ok: true, outcome: 'restored' }, changed: true, epoch: this.changes });
  }

  // --- Listeners --------------------------------------------------------------------------------

  /** Calls `listener` after every apply (changing or not) and every restore; returns an unsubscribe. */
  onChange(listener: (change: MetadataChange) => void): () => void {
    const entry = { listener };
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  private notify(change: MetadataChange): void {
    // A copy, so a listener that subscribes or unsubscribes during the call changes only later calls.
    for (const { listener } of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        if (this.options.onListenerError !== undefined) this.options.onListenerError(error);
        else
          queueMicrotask(() => {
            throw error;
          });
      }
    }
  }

  // --- Queries on the local replica (no read barrier) -------------------------------------------

  /** The topic's open segment and its leader, or undefined for an unknown topic. */
  topic(name: string): TopicState | undefined {
    return this.topicRecords.get(name)?.view;
  }

  /** Topic names in code-unit order. */
  topics(): readonly string[] {
    if (this.sortedNames === undefined) this.sortedNames = Object.freeze([...this.topicRecords.keys()].sort(compareCodeUnits));
    return this.sortedNames;
  }

  /**
   * The STATE reply (§1.6): compact JSON with the original's field order, map keys as decimal
   * strings in ascending numeric order. Undefined for an unknown topic.
   */
  stateJson(name: string): string | undefined {
    const record = this.topicRecords.get(name);
    if (record === undefined) return undefined;
    const { currentSegment, leaderNode, lastSealedEntryOffset } = record.view;
    return (
      `{"current_segment":${currentSegment},"leader_node":${leaderNode},"last_sealed_entry_offset":${lastSealedEntryOffset},` +
      `"sealed_segments":${segmentMapJson(record.sealedCounts)},"segment_leaders":${segmentMapJson(record.segmentLeaders)}}`
    );
  }

  /** The open segment of every topic that `nodeId` leads, by topic name: the write leases it should hold. */
  ownedOpenSegments(nodeId: NodeId): { readonly topic: string; readonly segment: number }[] {
    const owned: { topic: string; segment: number }[] = [];
    for (const topic of this.topics()) {
      const view = this.record(topic).view;
      if (view.leaderNode === nodeId) owned.push({ topic, segment: view.currentSegment });
    }
    return owned;
  }

  /** Entries in a sealed segment; undefined for the open segment, beyond it, or an unknown topic. */
  sealedCount(topic: string, segment: number): number | undefined {
    const record = this.topicRecords.get(topic);
    if (record === undefined || !isSegmentBelow(segment, record.view.currentSegment)) return undefined;
    return record.sealedCounts[segment - 1];
  }

  /** Leader of a sealed or the open segment; undefined for an unknown topic or a segment not opened yet. */
  segmentLeader(topic: string, segment: number): NodeId | undefined {
    const record = this.topicRecords.get(topic);
    if (record === undefined || !isSegmentBelow(segment, record.view.currentSegment + 1)) return undefined;
    return record.segmentLeaders[segment - 1] ?? record.view.leaderNode;
  }

  /** The nodes keeping a sealed or the open segment, its leader first; undefined for an unknown topic or a segment not opened yet. */
  segmentReplicas(topic: string, segment: number): readonly NodeId[] | undefined {
    const record = this.topicRecords.get(topic);
    if (record === undefined || !isSegmentBelow(segment, record.view.currentSegment + 1)) return undefined;
    return record.segmentReplicas[segment - 1];
  }

  /** Logical offset of the first entry of a sealed or the open segment (sum of the counts before it). */
  segmentStart(topic: string, segment: number): number | undefined {
    const record = this.topicRecords.get(topic);
    if (record === undefined || !isSegmentBelow(segment, record.view.currentSegment + 1)) return undefined;
    return segment === 1 ? 0 : record.sealedEnds[segment - 2];
  }

  /**
   * Maps a topic-wide logical entry offset (0-based) to its segment: sealed segments hold their
   * counts in segment order (a segment sealed with 0 holds nothing), and offsets at or past
   * lastSealedEntryOffset fall in the open segment. Undefined for an unknown topic.
   */
  locate(topic: string, logicalOffset: number): { readonly segment: number; readonly offsetInSegment: number } | undefined {
    if (!Number.isSafeInteger(logicalOffset) || logicalOffset < 0)
      throw new RangeError(`logical offset must be a safe integer ≥ 0, got ${logicalOffset}`);
    const record = this.topicRecords.get(topic);
    if (record === undefined) return undefined;
    const { currentSegment, lastSealedEntryOffset } = record.view;
    if (logicalOffset >= lastSealedEntryOffset) return { segment: currentSegment, offsetInSegment: logicalOffset - lastSealedEntryOffset };
    // The first sealed segment that ends past the offset holds it (sealedEnds never decreases).
    const ends = record.sealedEnds;
    let low = 0;
    let high = ends.length - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((ends[middle] ?? 0) > logicalOffset) high = middle;
      else low = middle + 1;
    }
    const start = low === 0 ? 0 : (ends[low - 1] ?? 0);
    return { segment: low + 1, offsetInSegment: logicalOffset - start };
  }

  /** The engine topic of one segment; same as the standalone segmentKey(). */
  segmentKey(topic: string, segment: number): string {
    return segmentKey(topic, segment);
  }

  /** Every known node's addresses, in ascending id order. The map is replaced, not changed, on updates. */
  nodes(): ReadonlyMap<NodeId, NodeAddresses> {
    return this.nodeMap;
  }

  // --- Commands ---------------------------------------------------------------------------------

  private record(name: string): TopicRecord {
    const record = this.topicRecords.get(name);
    if (record === undefined) throw new Error(`metadata invariant broken: topic ${name} is listed but has no record`);
    return record;
  }

  /** Runs a validated command; every check comes before the first change, so a refusal changes nothing. */
  private execute(command: MetadataCommand): { result: MetadataResult; changed: boolean } {
    switch (command.kind) {
      case 'CreateTopic':
        return this.createTopic(command);
      case 'RolloverTopic':
        return this.rolloverTopic(command);
      case 'MoveSegment':
        return this.moveSegment(command);
      case 'ReplaceReplica':
        return this.replaceReplica(command);
      case 'UpsertNode':
        return this.upsertNode(command);
    }
  }

  private createTopic({ topic, initialLeader, replicas }: CreateTopic): { result: MetadataResult; changed: boolean } {
    if (this.topicRecords.has(topic)) return { result: { ok: true, outcome: 'exists' }, changed: false };
    if (this.topicRecords.size >= metadataLimits.topicsMax)
      return {
        result: failure(`cannot create topic ${topic}: the cluster already has ${metadataLimits.topicsMax} topics`),
        changed: false,
      };
    this.topicRecords.set(topic, {
      view: Object.freeze({ currentSegment: 1, leaderNode: initialLeader, lastSealedEntryOffset: 0 }),
      sealedCounts: [],
      sealedEnds: [],
      segmentLeaders: [initialLeader],
      segmentReplicas: [Object.freeze([...(replicas ?? [initialLeader])])],
    });
    this.sortedNames = undefined;
    return { result: { ok: true, outcome: 'created' }, changed: true };
  }

  /** As the original (§3.2) — seal the open segment, hand the next to newLeader — but only the segment named. */
  private rolloverTopic({ topic, expectedSegment, sealedCount, newLeader, replicas, sealedOwner }: RolloverTopic): {
    result: MetadataResult;
    changed: boolean;
  } {
    const record = this.topicRecords.get(topic);
    if (record === undefined) return { result: failure(`unknown topic ${topic}`), changed: false };
    const { currentSegment, lastSealedEntryOffset } = record.view;
    if (expectedSegment !== currentSegment) return { result: { ok: true, outcome: 'stale' }, changed: false };
    const sealedEnd = lastSealedEntryOffset + sealedCount;
    if (!Number.isSafeInteger(sealedEnd) || !Number.isSafeInteger(currentSegment + 1))
      return { result: failure(`rollover of ${topic} would overflow its offsets`), changed: false };
    const sealedSet = record.segmentReplicas[currentSegment - 1] ?? [];
    if (sealedOwner !== undefined && !sealedSet.includes(sealedOwner))
      return {
        result: failure(
          `${topic} segment ${currentSegment} cannot be served by node ${sealedOwner}: it is not one of its replicas (${sealedSet.join(', ')})`,
        ),
        changed: false,
      };
    if (sealedOwner !== undefined) record.segmentLeaders[currentSegment - 1] = sealedOwner;
    // The open segment's leader entry already names the old leader, as the original's rewrite would.
    record.sealedCounts.push(sealedCount);
    record.sealedEnds.push(sealedEnd);
    record.segmentLeaders.push(newLeader);
    record.segmentReplicas.push(Object.freeze([...(replicas ?? [newLeader])]));
    record.view = Object.freeze({ currentSegment: currentSegment + 1, leaderNode: newLeader, lastSealedEntryOffset: sealedEnd });
    return { result: { ok: true, outcome: 'rolled' }, changed: true };
  }

  /** A sealed segment served by another of its replicas (its owner's node is gone). */
  private moveSegment({ topic, segment, expectedOwner, owner }: MoveSegment): { result: MetadataResult; changed: boolean } {
    const record = this.topicRecords.get(topic);
    if (record === undefined) return { result: failure(`unknown topic ${topic}`), changed: false };
    if (!isSegmentBelow(segment, record.view.currentSegment))
      return { result: failure(`${topic} segment ${segment} is not sealed: only a sealed segment moves`), changed: false };
    if (record.segmentLeaders[segment - 1] !== expectedOwner) return { result: { ok: true, outcome: 'stale' }, changed: false };
    const set = record.segmentReplicas[segment - 1] ?? [];
    if (!set.includes(owner))
      return {
        result: failure(`${topic} segment ${segment} cannot be served by node ${owner}: it is not one of its replicas (${set.join(', ')})`),
        changed: false,
      };
    if (owner === expectedOwner) return { result: { ok: true, outcome: 'stale' }, changed: false };
    record.segmentLeaders[segment - 1] = owner;
    return { result: { ok: true, outcome: 'moved' }, changed: true };
  }

  /** A sealed segment's copy on a node that left is replaced by one on another node. */
  private replaceReplica({ topic, segment, removed, added }: ReplaceReplica): { result: MetadataResult; changed: boolean } {
    const record = this.topicRecords.get(topic);
    if (record === undefined) return { result: failure(`unknown topic ${topic}`), changed: false };
    if (!isSegmentBelow(segment, record.view.currentSegment))
      return {
        result: failure(`${topic} segment ${segment} is open: an open segment gets a new replica set at its rollover`),
        changed: false,
      };
    const set = record.segmentReplicas[segment - 1] ?? [];
    if (!set.includes(removed)) return { result: { ok: true, outcome: 'stale' }, changed: false };
    if (set.includes(added))
      return { result: failure(`node ${added} already keeps ${topic} segment ${segment} (${set.join(', ')})`), changed: false };
    if (record.segmentLeaders[segment - 1] === removed)
      return { result: failure(`node ${removed} serves ${topic} segment ${segment}: move the segment first`), changed: false };
    record.segmentReplicas[segment - 1] = Object.freeze(set.map((id) => (id === removed ? added : id)));
    return { result: { ok: true, outcome: 'replaced' }, changed: true };
  }

  private upsertNode({ nodeId, clientAddress, raftAddress }: UpsertNode): { result: MetadataResult; changed: boolean } {
    const known = this.nodeMap.get(nodeId);
    if (known !== undefined && known.clientAddress === clientAddress && known.raftAddress === raftAddress)
      return { result: { ok: true, outcome: 'node' }, changed: false };
    if (known === undefined && this.nodeMap.size >= metadataLimits.nodesMax)
      return { result: failure(`cannot add node ${nodeId}: the cluster already has ${metadataLimits.nodesMax} nodes`), changed: false };
    const next = new Map(this.nodeMap);
    next.set(nodeId, Object.freeze({ clientAddress, raftAddress }));
    this.nodeMap = new Map([...next].sort(([a], [b]) => a - b));
    return { result: { ok: true, outcome: 'node' }, changed: true };
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Whether `segment` is an integer in 1 .. limit-1. */
function isSegmentBelow(segment: number, limit: number): boolean {
  return Number.isInteger(segment) && segment >= 1 && segment < limit;
}

/** `{"1":v1,"2":v2,…}` for values[s-1] of segment s. */
function segmentMapJson(values: readonly number[]): string {
  let json = '{';
  for (let index = 0; index < values.length; index++) json += `${index === 0 ? '' : ','}"${index + 1}":${values[index]}`;
  return `${json}}`;
}

// ---------------------------------------------------------------------------------------------
// Snapshot decoding: every field is checked, and the state is only built once all of it is valid.

interface RestoredState {
  readonly lastAppliedIndex: number;
  readonly epoch: number;
  readonly topics: Map<string, TopicRecord>;
  readonly nodes: ReadonlyMap<NodeId, NodeAddresses>;
}

/** A snapshot field that does not decode (readSnapshot adds which snapshot it was). */
class CorruptSnapshot extends StorageError {
  constructor(problem: string) {
    super('CORRUPT_SNAPSHOT', problem);
  }
}

function corrupt(problem: string): never {
  throw new CorruptSnapshot(problem);
}

function readSnapshot(data: Uint8Array): RestoredState {
  try {
    return readSnapshotFields(data);
  } catch (error) {
    if (error instanceof CorruptSnapshot) throw walrusError('CORRUPT_SNAPSHOT', `corrupt metadata snapshot: ${error.message}`);
    throw error;
  }
}

function readSnapshotFields(data: Uint8Array): RestoredState {
  if (!(data instanceof Uint8Array)) corrupt('it is not a byte array');
  let value: unknown;
  try {
    value = JSON.parse(utf8Decoder.decode(data));
  } catch {
    corrupt(`it is not UTF-8 JSON (${data.byteLength} bytes)`);
  }
  const wire = objectWith(value, ['v', 'lastAppliedIndex', 'epoch', 'topics', 'nodes'], 'the snapshot');
  if (wire.v !== SNAPSHOT_VERSION && wire.v !== 1)
    corrupt(`unsupported version ${JSON.stringify(wire.v)} (expected ${SNAPSHOT_VERSION} or 1)`);
  const withReplicas = wire.v !== 1;
  const lastAppliedIndex = safeInteger(wire.lastAppliedIndex, 0, 'lastAppliedIndex');
  const epoch = safeInteger(wire.epoch, 0, 'epoch');
  const topicList = arrayOf(wire.topics, metadataLimits.topicsMax, 'topics');
  const topics = new Map<string, TopicRecord>();
  for (const [position, item] of topicList.entries()) {
    const [name, record] = readTopic(item, `topics[${position}]`, withReplicas);
    if (topics.has(name)) corrupt(`topic ${JSON.stringify(name)} appears twice`);
    topics.set(name, record);
  }
  const nodeList = arrayOf(wire.nodes, metadataLimits.nodesMax, 'nodes');
  const nodes = new Map<NodeId, NodeAddresses>();
  for (const [position, item] of nodeList.entries()) {
    const where = `nodes[${position}]`;
    const node = objectWith(item, ['id', 'clientAddress', 'raftAddress'], where);
    const id = safeInteger(node.id, 1, `${where}.id`);
    if (nodes.has(id)) corrupt(`node ${id} appears twice`);
    if (typeof node.clientAddress !== 'string' || typeof node.raftAddress !== 'string') corrupt(`${where}: addresses must be strings`);
    const problem = addressProblem('clientAddress', node.clientAddress) ?? addressProblem('raftAddress', node.raftAddress);
    if (problem !== undefined) corrupt(`${where}: ${problem}`);
    nodes.set(id, Object.freeze({ clientAddress: node.clientAddress, raftAddress: node.raftAddress }));
  }
  return { lastAppliedIndex, epoch, topics, nodes: new Map([...nodes].sort(([a], [b]) => a - b)) };
}

function readTopic(value: unknown, where: string, withReplicas: boolean): [string, TopicRecord] {
  const fields = ['name', 'currentSegment', 'leaderNode', 'lastSealedEntryOffset', 'sealedCounts', 'segmentLeaders'];
  const wire = objectWith(value, withReplicas ? [...fields, 'segmentReplicas'] : fields, where);
  if (typeof wire.name !== 'string') corrupt(`${where}.name must be a string`);
  const nameProblem = topicNameProblem(wire.name);
  if (nameProblem !== undefined) corrupt(`${where}: ${nameProblem}`);
  const currentSegment = safeInteger(wire.currentSegment, 1, `${where}.currentSegment`);
  const leaderNode = safeInteger(wire.leaderNode, 1, `${where}.leaderNode`);
  const lastSealedEntryOffset = safeInteger(wire.lastSealedEntryOffset, 0, `${where}.lastSealedEntryOffset`);
  const counts = arrayOf(wire.sealedCounts, currentSegment - 1, `${where}.sealedCounts`);
  const leaders = arrayOf(wire.segmentLeaders, currentSegment, `${where}.segmentLeaders`);
  if (counts.length !== currentSegment - 1) corrupt(`${where}: ${counts.length} sealed counts for current segment ${currentSegment}`);
  if (leaders.length !== currentSegment) corrupt(`${where}: ${leaders.length} segment leaders for current segment ${currentSegment}`);
  const sealedCounts: number[] = [];
  const sealedEnds: number[] = [];
  let end = 0;
  for (const [position, count] of counts.entries()) {
    const sealed = safeInteger(count, 0, `${where}.sealedCounts[${position}]`);
    end += sealed;
    if (!Number.isSafeInteger(end)) corrupt(`${where}: sealed counts overflow`);
    sealedCounts.push(sealed);
    sealedEnds.push(end);
  }
  if (end !== lastSealedEntryOffset)
    corrupt(`${where}: lastSealedEntryOffset ${lastSealedEntryOffset} is not the sum of the sealed counts (${end})`);
  const segmentLeaders = leaders.map((leader, position) => safeInteger(leader, 1, `${where}.segmentLeaders[${position}]`));
  if (segmentLeaders[currentSegment - 1] !== leaderNode) corrupt(`${where}: leaderNode ${leaderNode} is not the open segment's leader`);
  // A version 1 snapshot predates replica sets: every segment was kept by its leader alone.
  const sets = withReplicas
    ? arrayOf(wire.segmentReplicas, currentSegment, `${where}.segmentReplicas`)
    : segmentLeaders.map((leader) => [leader]);
  if (sets.length !== currentSegment) corrupt(`${where}: ${sets.length} replica sets for current segment ${currentSegment}`);
  const segmentReplicas = sets.map((set, position) => {
    const at = `${where}.segmentReplicas[${position}]`;
    const ids = arrayOf(set, metadataLimits.replicasMax, at).map((id, index) => safeInteger(id, 1, `${at}[${index}]`));
    // A sealed segment's owner may be any of its replicas (a failover moved it); the open one's leads.
    const problem = replicasProblem(ids, segmentLeaders[position] as NodeId, position < currentSegment - 1);
    if (problem !== undefined) corrupt(`${at}: ${problem}`);
    return Object.freeze(ids);
  });
  const view = Object.freeze({ currentSegment, leaderNode, lastSealedEntryOffset });
  return [wire.name, { view, sealedCounts, sealedEnds, segmentLeaders, segmentReplicas }];
}

/** A plain object with exactly these keys. */
function objectWith(value: unknown, keys: readonly string[], where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) corrupt(`${where} is not an object`);
  const record = value as Record<string, unknown>;
  for (const key of keys) if (!Object.hasOwn(record, key)) corrupt(`${where} has no field ${key}`);
  for (const key of Object.keys(record)) if (!keys.includes(key)) corrupt(`${where} has an unknown field ${key}`);
  return record;
}

function arrayOf(value: unknown, lengthMax: number, where: string): unknown[] {
  if (!Array.isArray(value)) corrupt(`${where} is not an array`);
  if (value.length > lengthMax) corrupt(`${where} has ${value.length} items, more than ${lengthMax}`);
  return value;
}

function safeInteger(value: unknown, min: number, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) corrupt(`${where} must be a safe integer ≥ ${min}`);
  return value;
}
