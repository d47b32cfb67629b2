// METRICS for one Raft member: the parts of OpenRaft's RaftMetrics that the original's scripts
// read, with OpenRaft's names, nesting and field order (reference/cluster.md §1.7,
// docs/protocol.md). A log id names the term and the node that led it; a member remembers the
// leaders of recent terms only, so an older entry's `node_id` may be 0 (unknown). The nanosecond
// timestamps OpenRaft adds (`last_quorum_acked`, `heartbeat`) are left out: they do not fit a JSON
// number exactly.

import type { LogIdJson, RaftMetrics } from '../../contracts/consensus.js';
import { hostPort } from '../../node/peer-client.js';
import type { PeerAddress } from './adapters/transport.js';
import { NONE, type NodeId, type Status } from './core/types.js';

/** What the metrics are made from (RaftNode provides it). */
export interface MetricsSource {
  status(): Status;
  termAt(index: number): number | undefined;
  leaderOf(term: number): NodeId;
  addressOf(id: NodeId): PeerAddress | undefined;
  quorumContactAgeMs(): number;
  readonly failed: Error | undefined;
}

export function raftMetrics(source: MetricsSource): RaftMetrics {
  const status = source.status();
  const logId = (index: number): LogIdJson | null => {
    if (index <= 0) return null;
    const term = source.termAt(index) ?? 0;
    return { leader_id: { term, node_id: source.leaderOf(term) }, index };
  };
  const { voters, learners } = status.membership;
  const quorumAge = source.quorumContactAgeMs();
  const failure = source.failed;
  return {
    running_state: failure === undefined ? { Ok: null } : { Err: failure.message },
    id: status.id,
    current_term: status.term,
    vote:
      status.leader === NONE
        ? { leader_id: { term: status.term, node_id: status.vote }, committed: false }
        : { leader_id: { term: status.term, node_id: status.leader }, committed: true },
    last_log_index: status.lastIndex,
    last_applied: logId(status.applied),
    snapshot: logId(status.firstIndex - 1),
    purged: logId(status.firstIndex - 1),
    state: stateOf(status),
    current_leader: status.leader === NONE ? null : status.leader,
    millis_since_quorum_ack: status.role === 'leader' && Number.isFinite(quorumAge) ? quorumAge : null,
    membership_config: {
      log_id: logId(status.membershipIndex),
      membership: {
        configs: [[...voters]],
        nodes: Object.fromEntries(
          [...new Set([...voters, ...learners])].sort((a, b) => a - b).map((id) => [String(id), { addr: addr(source.addressOf(id)) }]),
        ),
      },
    },
    replication:
      status.progress === undefined
        ? null
        : Object.fromEntries(
            [[status.id, status.lastIndex] as const, ...[...status.progress].map(([id, progress]) => [id, progress.match] as const)]
              .sort(([a], [b]) => a - b)
              .map(([id, index]) => [String(id), logId(index)]),
          ),
  };
}

function stateOf(status: Status): RaftMetrics['state'] {
  if (status.role === 'leader') return 'Leader';
  if (!status.membership.voters.includes(status.id)) return 'Learner';
  return status.role === 'follower' ? 'Follower' : 'Candidate';
}

/** `host:port`, with an IPv6 host in brackets; empty when the address is not known here. */
function addr(address: PeerAddress | undefined): string {
  if (address === undefined) return '';
  return hostPort(address);
}
