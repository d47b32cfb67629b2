// consensus-etcd: the cluster metadata kept in an etcd cluster the operator already runs, in
// place of the built-in Raft (issue 15). Chosen with `consensus: etcd` (WALRUS_CONSENSUS); it
// binds the same Consensus contract (./consensus.ts) and, as raft does, owns the internal port
// (`node.raftHost:node.raftPort`), where only node-to-node requests arrive now: consensus
// traffic goes to etcd. etcd's own membership and durability are etcd's business.

import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import type { Consensus, ConsensusStatus, NodeId, RaftMetrics, StateMachine } from '../../contracts/consensus.js';
import type { InternalPort } from '../../contracts/internal-port.js';
import { CONSENSUS, INTERNAL_PORT } from '../../contracts/tokens.js';
import { walrusError } from '../../kernel/errors.js';
import type { Plugin } from '../../kernel/plugin.js';
import { RepeatLimiter } from '../../kernel/repeats.js';
import { type Infer, s } from '../../kernel/schema.js';
import { CAPABILITIES } from '../../kernel/tokens.js';
import { InternalListener, lateInternalPort } from '../../node/internal-port.js';
import { MachineSlot } from '../../node/machine-slot.js';
import { etcdClient } from './client.js';
import { EtcdConsensus } from './consensus.js';

export const etcdSchema = s.object(
  {
    endpoints: s.array(s.string({ default: '', description: 'An etcd client endpoint, host:port (or http://host:port).' }), {
      default: [],
      description: 'etcd client endpoints (WALRUS_ETCD_ENDPOINTS, comma-separated); needed with `consensus: etcd`.',
    }),
    prefix: s.string({
      default: '/walrus',
      description: 'Key prefix of this cluster in etcd: clusters sharing one etcd need different ones.',
    }),
    leaseTtlMs: s.int({
      default: 2000,
      min: 1000,
      max: 600_000,
      description:
        "TTL of each node's etcd lease, in milliseconds (etcd counts whole seconds: rounded up, at least 2 s). A node whose lease ends stops leading.",
    }),
    requestTimeoutMs: s.int({ default: 2000, min: 100, max: 60_000, description: 'Deadline of each request to etcd, in milliseconds.' }),
    snapshotEvery: s.int({
      default: 10_000,
      min: 10,
      max: Number.MAX_SAFE_INTEGER,
      description: 'Metadata commands between two snapshots the leader writes to etcd (the log keys a snapshot covers are then deleted).',
    }),
  },
  'The etcd cluster that keeps the metadata with `consensus: etcd`.',
);

type EtcdConfig = Infer<typeof etcdSchema>;

interface NodeSection {
  readonly id: number;
  readonly dataDir: string;
  readonly raftHost: string;
  readonly raftPort: number;
  readonly join: string | null;
}

/**
 * The Consensus the kernel resolves: the EtcdConsensus once the plugin has started it (a state
 * machine may register before: its slot exists from the start), with what the plugin must stop.
 */
class EtcdConsensusHandle implements Consensus {
  readonly slot = new MachineSlot();
  consensus: EtcdConsensus | undefined;
  listener: InternalListener | undefined;
  close: (() => void) | undefined;

  private started(): EtcdConsensus {
    if (this.consensus === undefined) throw new Error('consensus is not started yet');
    return this.consensus;
  }

  register(machine: StateMachine): void {
    this.slot.register(machine);
  }
  propose(command: Uint8Array): Promise<unknown> {
    return this.started().propose(command);
  }
  readBarrier(): Promise<void> {
    return this.started().readBarrier();
  }
  status(): ConsensusStatus {
    return this.started().status();
  }
  metrics(): RaftMetrics {
    return this.started().metrics();
  }
  addLearner(id: NodeId, address: { readonly host: string; readonly port: number }): Promise<void> {
    return this.started().addLearner(id, address);
  }
  promote(id: NodeId): Promise<void> {
    return this.started().promote(id);
  }
  remove(id: NodeId): Promise<void> {
    return this.started().remove(id);
  }
  setMemberAddress(): void {}
  quorumContactAgeMs(): number {
    return this.consensus?.quorumContactAgeMs() ?? Number.POSITIVE_INFINITY;
  }
  memberSilenceMs(id: NodeId): number | undefined {
    return this.consensus?.memberSilenceMs(id);
  }
  liveMembers(): readonly NodeId[] {
    return this.consensus?.liveMembers() ?? [];
  }
}

export const consensusEtcdPlugin: Plugin<EtcdConfig> = {
  manifest: {
    name: 'consensus-etcd',
    description: 'cluster metadata kept in an existing etcd cluster',
    provides: [CAPABILITIES.consensus, CAPABILITIES.internalPort],
    requires: [],
  },
  config: { key: 'etcd', schema: etcdSchema },
  probe({ config }) {
    const etcd = config.etcd as EtcdConfig | undefined;
    if (etcd === undefined || etcd.endpoints.length === 0)
      return { ok: false, reason: 'no etcd endpoint is configured (etcd.endpoints, WALRUS_ETCD_ENDPOINTS)' };
    return { ok: true };
  },
  register(scope) {
    scope.provide(CONSENSUS, () => new EtcdConsensusHandle());
    // The listener exists once the plugin has started; until then the port is not there to take.
    scope.provide(INTERNAL_PORT, (): InternalPort => {
      const handle = scope.resolve(CONSENSUS) as EtcdConsensusHandle;
      return lateInternalPort(() => {
        if (handle.listener === undefined) throw new Error('the internal port opens when the consensus-etcd plugin starts');
        return handle.listener;
      });
    });
  },
  async start(scope) {
    const config = scope.config.etcd as EtcdConfig;
    const node = scope.config.node as NodeSection;
    const running = scope.resolve(CONSENSUS) as EtcdConsensusHandle;
    const endpoints = config.endpoints.join(', ');
    const listener = await InternalListener.listen({
      host: node.raftHost,
      port: node.raftPort,
      // Only node-to-node connections come here: consensus traffic goes to etcd.
      onOther: (socket: Socket) => socket.destroy(),
      onProblem: (problem) => scope.log.warn(problem),
    });
    running.listener = listener;
    const client = etcdClient({ endpoints: config.endpoints, requestTimeoutMs: config.requestTimeoutMs });
    const repeats = new RepeatLimiter(PROBLEM_LOG_MS);
    running.close = () => client.close();
    const consensus = new EtcdConsensus({
      client,
      prefix: config.prefix.replace(/\/+$/, ''),
      id: node.id,
      address: { host: listener.host, port: listener.port },
      leaseTtlMs: config.leaseTtlMs,
      // A joining node is registered by the node it joins through (src/node/membership.ts).
      register: node.join === null,
      memberToken: memberToken(join(node.dataDir, `node_${node.id}`, 'etcd')),
      snapshotEvery: config.snapshotEvery,
      // While etcd is down the same warnings come every few hundred ms: each is logged once per PROBLEM_LOG_MS, with a count of the rest.
      onProblem: (problem) => {
        const folded = repeats.take(problem.message);
        if (!folded.log) return;
        scope.log.warn(
          { err: problem.error, ...(folded.heldBack > 0 ? { repeated: folded.heldBack } : {}) },
          folded.heldBack > 0 ? `${problem.message} (and ${folded.heldBack} more times since it was last logged)` : problem.message,
        );
      },
      onRoleChange: (status) =>
        scope.log.info(
          { role: status.role, term: status.term, leader: status.leader === 0 ? null : status.leader },
          'consensus role changed',
        ),
      slot: running.slot,
    });
    try {
      await consensus.start();
    } catch (error) {
      await consensus.stop().catch(() => undefined);
      client.close();
      await listener.close();
      running.listener = undefined;
      throw walrusError('CONSENSUS_UNAVAILABLE', `etcd at ${endpoints} could not be reached: ${(error as Error).message}`, {
        details: { endpoints: config.endpoints },
        cause: error,
      });
    }
    running.consensus = consensus;
    const status = consensus.status();
    scope.log.info(
      {
        endpoints: config.endpoints,
        prefix: config.prefix,
        port: listener.port,
        voters: status.voters,
        role: status.role,
        term: status.term,
      },
      `consensus-etcd member ${node.id} started`,
    );
  },
  async stop(scope) {
    const running = scope.resolve(CONSENSUS) as EtcdConsensusHandle;
    await running.consensus?.stop();
    running.close?.();
    await running.listener?.close();
  },
};

/** How often one warning of the etcd client is logged while it repeats. */
const PROBLEM_LOG_MS = 5_000;

/** The token that names this node's data directory in its etcd member record: made on first start, then kept. */
function memberToken(dir: string): string {
  const file = join(dir, 'member-token');
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept !== '') return kept;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const token = randomUUID();
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, `${token}\n`);
  return token;
}
