// What one node knows of its cluster, as the admin endpoint's /api/cluster shows it (and the status
// page and `walrus-cli top` read it): this node, the consensus state it sees, every member with
// its addresses and whether it is up, and each topic with its segments, their leaders and
// replicas, the entries they hold and, for the segments led here, each follower's lag. All of it
// comes from this node's metadata replica and its own stores: no request leaves the node.

import type { Consensus, NodeId } from '../contracts/consensus.js';
import type { MetadataStateMachine } from './metadata.js';
import type { FollowerProgress } from './replication.js';

/** The most segments listed per topic (the newest ones); `segmentsListed` says how many are. */
export const SEGMENTS_LISTED_MAX = 50;

export interface ClusterViewSources {
  readonly nodeId: NodeId;
  readonly version: string;
  readonly consensus: Pick<Consensus, 'status' | 'liveMembers'>;
  readonly metadata: MetadataStateMachine;
  /** Entries a segment holds on this node (throws while the engine is unavailable). */
  readonly localCount: (topic: string, segment: number) => number;
  readonly followers: () => readonly FollowerProgress[];
  /** This node's client and admin addresses as bound (`host:port`), if listening. */
  readonly clientAddress: () => string | undefined;
  readonly adminAddress: () => string | undefined;
  /** The storage outage in progress, if any. */
  readonly storageOutage: () => string | undefined;
  readonly startedAt: number;
  readonly now?: () => number;
}

export interface NodeView {
  readonly id: NodeId;
  readonly clientAddress: string | null;
  readonly raftAddress: string | null;
  /** `leader`, `follower` (a voter that does not lead) or `learner`. */
  readonly role: 'leader' | 'follower' | 'learner';
  /** Known to be up: heard from lately by this node or, on a follower, by the Raft leader. */
  readonly up: boolean;
  /** This is the node answering. */
  readonly self: boolean;
}

export interface SegmentView {
  readonly segment: number;
  readonly sealed: boolean;
  readonly leader: NodeId | null;
  readonly replicas: readonly NodeId[];
  /** A sealed segment's count; the open one's when this node holds it; else null (not known here). */
  readonly entries: number | null;
  /** On the leader of a replicated open segment: what each follower holds and how far behind it is. */
  readonly followers?: readonly { readonly node: NodeId; readonly held: number; readonly lag: number }[];
}

export interface TopicView {
  readonly name: string;
  readonly currentSegment: number;
  readonly leader: NodeId;
  /** Entries of the sealed segments, plus the open one's when known here (`entriesExact` says which). */
  readonly entries: number;
  readonly entriesExact: boolean;
  readonly segmentsListed: number;
  readonly segments: readonly SegmentView[];
}

export interface ClusterView {
  readonly version: string;
  readonly time: string;
  readonly node: {
    readonly id: NodeId;
    readonly clientAddress: string | null;
    readonly adminAddress: string | null;
    readonly uptimeSeconds: number;
    readonly storageOutage: string | null;
  };
  readonly consensus: {
    readonly role: string;
    readonly term: number;
    readonly leader: NodeId | null;
    readonly commitIndex: number;
    readonly appliedIndex: number;
    readonly voters: readonly NodeId[];
    readonly learners: readonly NodeId[];
  };
  readonly nodes: readonly NodeView[];
  readonly topics: readonly TopicView[];
  readonly counts: {
    readonly nodes: number;
    readonly nodesUp: number;
    readonly topics: number;
    readonly segments: number;
    readonly openSegments: number;
    readonly sealedSegments: number;
    /** Open segments this node leads. */
    readonly ledHere: number;
  };
}

export function clusterView(sources: ClusterViewSources): ClusterView {
  const { metadata, consensus, nodeId } = sources;
  const status = consensus.status();
  const live = new Set(consensus.liveMembers());
  const addresses = metadata.nodes();
  const ids = [...new Set([...status.voters, ...status.learners, ...addresses.keys(), nodeId])].sort((a, b) => a - b);
  const voters = new Set(status.voters);
  const nodes: NodeView[] = ids.map((id) => ({
    id,
    clientAddress: addresses.get(id)?.clientAddress ?? (id === nodeId ? (sources.clientAddress() ?? null) : null),
    raftAddress: addresses.get(id)?.raftAddress ?? null,
    role: id === status.leader ? 'leader' : voters.has(id) || status.voters.length === 0 ? 'follower' : 'learner',
    up: live.has(id),
    self: id === nodeId,
  }));
  const lagBySegment = new Map<string, { node: NodeId; held: number; lag: number }[]>();
  for (const progress of sources.followers()) {
    const key = `${progress.topic}\u0000${progress.segment}`;
    const list = lagBySegment.get(key) ?? [];
    list.push({ node: progress.follower, held: progress.held, lag: Math.max(0, progress.leader - progress.held) });
    lagBySegment.set(key, list);
  }
  const localCount = (topic: string, segment: number): number | null => {
    try {
      return sources.localCount(topic, segment);
    } catch {
      return null; // the engine is unavailable (storage outage)
    }
  };
  let segments = 0;
  let ledHere = 0;
  const topics: TopicView[] = metadata.topics().map((name) => {
    const state = metadata.topic(name);
    if (state === undefined) throw new Error(`metadata lists topic ${name} without a state`);
    const { currentSegment, leaderNode, lastSealedEntryOffset } = state;
    segments += currentSegment;
    if (leaderNode === nodeId) ledHere += 1;
    const openHere = leaderNode === nodeId || (metadata.segmentReplicas(name, currentSegment) ?? []).includes(nodeId);
    const openCount = openHere ? localCount(name, currentSegment) : null;
    const first = Math.max(1, currentSegment - SEGMENTS_LISTED_MAX + 1);
    const listed: SegmentView[] = [];
    for (let segment = currentSegment; segment >= first; segment--) {
      const sealed = segment < currentSegment;
      const followers = lagBySegment.get(`${name}\u0000${segment}`);
      listed.push({
        segment,
        sealed,
        leader: metadata.segmentLeader(name, segment) ?? null,
        replicas: metadata.segmentReplicas(name, segment) ?? [],
        entries: sealed ? (metadata.sealedCount(name, segment) ?? null) : openCount,
        ...(followers === undefined ? {} : { followers }),
      });
    }
    return {
      name,
      currentSegment,
      leader: leaderNode,
      entries: lastSealedEntryOffset + (openCount ?? 0),
      entriesExact: openCount !== null,
      segmentsListed: listed.length,
      segments: listed,
    };
  });
  const now = sources.now?.() ?? Date.now();
  return {
    version: sources.version,
    time: new Date(now).toISOString(),
    node: {
      id: nodeId,
      clientAddress: sources.clientAddress() ?? null,
      adminAddress: sources.adminAddress() ?? null,
      uptimeSeconds: Math.round((now - sources.startedAt) / 100) / 10,
      storageOutage: sources.storageOutage() ?? null,
    },
    consensus: {
      role: status.role,
      term: status.term,
      leader: status.leader === 0 ? null : status.leader,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      voters: status.voters,
      learners: status.learners,
    },
    nodes,
    topics,
    counts: {
      nodes: nodes.length,
      nodesUp: nodes.filter((node) => node.up).length,
      topics: topics.length,
      segments,
      openSegments: topics.length,
      sealedSegments: segments - topics.length,
      ledHere,
    },
  };
}

/** Why this node is not ready to serve (empty when it is): /readyz. */
export function notReadyReasons(status: ReturnType<Consensus['status']>, listening: boolean, removed: boolean): string[] {
  const reasons: string[] = [];
  if (status.leader === 0) reasons.push('no Raft leader is known');
  if (status.appliedIndex < status.commitIndex)
    reasons.push(`the metadata is not applied yet (applied ${status.appliedIndex} of ${status.commitIndex} committed)`);
  if (!listening) reasons.push('the client port is not listening');
  if (removed) reasons.push('this node was removed from the cluster');
  return reasons;
}
