// The Consensus contract (src/contracts/consensus.ts) over an etcd cluster (issue 15). etcd is the
// quorum: what it has taken is committed, and this node's contact with a quorum is its contact
// with etcd.
//
// Keys, under `etcd.prefix` (P):
// - P/log/…       the metadata commands (command-log.ts); the apply index is the etcd revision;
// - P/snapshot    the state machine's snapshot and the revision it covers;
// - P/nodes/<id>  the cluster's members (`{ host, port }` of the internal port): membership is data
//                 here; a join registers the node, a removal deletes its key;
// - P/alive/<id>  present while node <id> keeps its etcd lease alive (a TTL of etcd.leaseTtlMs);
// - P/leader      the id of the node that leads, bound to its lease: created by whoever finds it
//                 absent (a transaction), gone when that node's lease ends. The term is the
//                 revision that created it, so each leadership has a larger one.
//
// A node whose lease is lost (etcd unreachable for longer than the TTL, or this process frozen)
// is no longer alive or leader for the others; it counts itself as out of contact from its last
// successful heartbeat write on, so the write leases that rest on quorumContactAgeMs end on their own.

import type { Etcd3, Lease, Watcher } from 'etcd3';
import type { Consensus, ConsensusStatus, NodeId, RaftMetrics, StateMachine } from '../../contracts/consensus.js';
import { walrusError } from '../../kernel/errors.js';
import { MachineSlot } from '../../node/machine-slot.js';
import { hostPort } from '../../node/peer-client.js';
import { EtcdCommandLog } from './command-log.js';

export interface EtcdConsensusOptions {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly id: NodeId;
  /** This node's internal port, recorded in P/nodes/<id>. */
  readonly address: { readonly host: string; readonly port: number };
  /** The lease's TTL; etcd counts in whole seconds, so it is rounded up (at least 2 s). */
  readonly leaseTtlMs: number;
  /** Whether this node registers itself as a member when it is not one yet (false: it waits to be added, a join). */
  readonly register: boolean;
  /**
   * Names this node's data directory (kept there by the caller): the member record carries it,
   * so a second process started with the same id elsewhere is refused rather than taken for it.
   */
  readonly memberToken: string;
  /**
   * How often this node writes its heartbeat to etcd (its alive key), which shows it is in
   * contact with etcd's quorum and shows the leader it is up (default 100 ms; keep it well under
   * lease.ttlMs, which the write leases compare the contact's age with, and failover.timeoutMs).
   */
  readonly contactProbeMs?: number;
  readonly onProblem?: (problem: { readonly message: string; readonly error?: unknown }) => void;
  readonly onRoleChange?: (status: ConsensusStatus) => void;
  /** Where applied commands go (default: a slot of its own; register() fills it). */
  readonly slot?: MachineSlot;
  /**
   * Commands applied between two snapshots, which the leader writes to P/snapshot (and then trims
   * the log keys they cover), so a starting node restores it instead of applying the whole log.
   */
  readonly snapshotEvery?: number;
}

interface MemberRecord {
  readonly host: string;
  readonly port: number;
  /** The memberToken of the node that holds the id (absent until it first starts, after a join). */
  readonly token?: string;
}

export class EtcdConsensus implements Consensus {
  readonly slot: MachineSlot;
  private readonly options: EtcdConsensusOptions;
  private readonly log: EtcdCommandLog;
  private readonly nodesPrefix: string;
  private readonly alivePrefix: string;
  private readonly leaderKey: string;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private lastContact = Number.NEGATIVE_INFINITY;
  /** When etcd last answered a keepalive of this node's lease (or granted it): the lease runs its TTL from about then. */
  private lastRenewal = Number.NEGATIVE_INFINITY;
  private members = new Map<NodeId, MemberRecord>();
  private alive = new Set<NodeId>();
  /** When each member was last seen alive (its alive key present), for memberSilenceMs. */
  private readonly lastAlive = new Map<NodeId, number>();
  private leader: NodeId = 0;
  private term = 0;
  private leaderSince = 0;
  private readonly watchers: Watcher[] = [];
  private started = false;
  private stopped = false;
  private campaigning: Promise<void> | undefined;
  /** Commands applied since the last snapshot this node wrote (or since it started). */
  private sinceSnapshot = 0;
  private snapshotting = false;
  private probeTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  private probing = false;

  constructor(options: EtcdConsensusOptions) {
    this.options = options;
    this.slot = options.slot ?? new MachineSlot();
    this.nodesPrefix = `${options.prefix}/nodes/`;
    this.alivePrefix = `${options.prefix}/alive/`;
    this.leaderKey = `${options.prefix}/leader`;
    this.log = new EtcdCommandLog({
      client: options.client,
      prefix: options.prefix,
      writer: String(options.id),
      machine: this.slot,
      onApplied: () => this.appliedOne(),
      ...(options.onProblem === undefined ? {} : { onProblem: options.onProblem }),
    });
  }

  /**
   * Grants the lease, registers the node, catches up with the log and starts following
   * leadership and liveness. Rejects when etcd cannot be reached (the caller names the endpoints).
   */
  async start(): Promise<void> {
    await this.claimId();
    await this.grantLease();
    await this.follow();
    await this.log.start();
    this.started = true;
    this.probeTimer = setInterval(() => this.probe(), this.options.contactProbeMs ?? CONTACT_PROBE_MS);
    this.probeTimer.unref();
    await this.campaign();
  }

  /**
   * The heartbeat: this node writes its alive key again (etcd takes a write only with its quorum
   * behind it). On success, this node was in contact with a quorum when it sent the write; the
   * other nodes see the write through their watch, which is how the leader knows each member was
   * up moments ago (memberSilenceMs). Without a lease yet, a linearizable read stands in.
   */
  private probe(): void {
    if (this.probing || this.stopped) return;
    this.probing = true;
    const sent = performance.now();
    const { client } = this.options;
    const leaseId = this.leaseId;
    const request = leaseId === undefined ? client.get(this.leaderKey).exec() : this.writeAlive(leaseId);
    request
      .then(
        () => {
          if (sent > this.lastContact) this.lastContact = sent;
        },
        () => undefined,
      )
      .finally(() => {
        this.probing = false;
      });
  }

  /**
   * Makes sure the member record of this node's id is this node's: registers it when there is
   * none (unless the node waits for a join to add it), takes over a record a join left without a
   * token, updates the address of its own; refuses a record of another node (another data
   * directory), as the Raft plugin refuses a second member with one id.
   */
  private async claimId(): Promise<void> {
    const { client, id, address, memberToken } = this.options;
    const key = `${this.nodesPrefix}${id}`;
    const mine: MemberRecord = { host: address.host, port: address.port, token: memberToken };
    const text = await client.get(key).string();
    if (text === null) {
      if (!this.options.register) return;
      await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(JSON.stringify(mine)))
        .commit();
      return;
    }
    const record = JSON.parse(text) as MemberRecord;
    if (record.token === memberToken || record.token === undefined) {
      if (record.token !== memberToken || record.host !== address.host || record.port !== address.port)
        await client.put(key).value(JSON.stringify(mine)).exec();
      return;
    }
    const known = hostPort(record);
    const asked = hostPort(address);
    throw walrusError(
      'INVALID_ARGUMENT',
      known === asked
        ? `node ${id} is already a member of this cluster with another data directory: give the new node another --node-id, or remove node ${id} first`
        : `node ${id} is already a member of this cluster, at ${known}, not ${asked}: give the new node another --node-id, or remove node ${id} first`,
      { details: { nodeId: id, known, asked } },
    );
  }

  /** A new lease for this node, kept alive, with its alive key bound to it. */
  private async grantLease(): Promise<void> {
    const { client, id } = this.options;
    const lease = client.lease(this.leaseTtlSeconds());
    lease.on('keepaliveSucceeded', () => {
      if (this.lease !== lease) return;
      this.lastContact = performance.now();
      this.lastRenewal = this.lastContact;
    });
    lease.on('lost', (error) => {
      // A grant that fails fires 'lost' too: that one is the caller's to handle (it throws below).
      if (this.lease !== lease || this.leaseId === undefined || this.stopped) return;
      this.options.onProblem?.({
        message: 'the etcd lease of this node was lost (etcd unreachable for its TTL); granting a new one',
        error,
      });
      this.dropLease(lease);
      this.lastContact = Number.NEGATIVE_INFINITY;
      this.lastRenewal = Number.NEGATIVE_INFINITY;
      // The leader key went with the lease.
      if (this.leader === id) this.setLeader(0, this.term);
      void this.renewLease();
    });
    this.lease = lease;
    try {
      this.leaseId = await lease.grant();
      this.lastContact = performance.now();
      this.lastRenewal = this.lastContact;
      await this.writeAlive(this.leaseId);
    } catch (error) {
      // A lease that was never granted (or whose key could not be written) is given up for good.
      this.dropLease(lease);
      throw error;
    }
  }

  /** Writes this node's alive key, bound to lease `leaseId` (at start, and as the heartbeat). */
  private writeAlive(leaseId: string): Promise<unknown> {
    const { client, id, address } = this.options;
    return client.put(`${this.alivePrefix}${id}`).value(JSON.stringify(address)).lease(leaseId).exec();
  }

  /** Forgets `lease` and stops its keepalives (its own events are ignored from now on). */
  private dropLease(lease: Lease): void {
    if (this.lease === lease) {
      this.lease = undefined;
      this.leaseId = undefined;
    }
    lease.removeAllListeners();
    lease.release();
  }

  /** Grants a new lease until one is granted; one loop at a time, however often the lease is lost. */
  private async renewLease(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      while (!this.stopped) {
        try {
          await this.grantLease();
          await this.campaign();
          return;
        } catch (error) {
          this.options.onProblem?.({ message: 'granting a new etcd lease failed; trying again', error });
          await new Promise((resolve) => setTimeout(resolve, RENEW_RETRY_MS));
        }
      }
    } finally {
      this.renewing = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.probeTimer !== undefined) clearInterval(this.probeTimer);
    for (const watcher of this.watchers.splice(0)) await watcher.cancel().catch(() => undefined);
    await this.log.stop();
    // Revoking the lease ends this node's leadership and liveness at once, rather than after the TTL.
    await this.lease?.revoke().catch(() => undefined);
  }

  register(machine: StateMachine): void {
    this.slot.register(machine);
  }

  propose(command: Uint8Array): Promise<unknown> {
    if (!this.started) return Promise.reject(walrusError('RAFT_NOT_LEADER', 'consensus is not started yet'));
    return this.log.propose(command);
  }

  readBarrier(): Promise<void> {
    return this.log.barrier();
  }

  async addLearner(id: NodeId, address: { readonly host: string; readonly port: number }): Promise<void> {
    await this.options.client.put(`${this.nodesPrefix}${id}`).value(JSON.stringify(address)).exec();
  }

  /** Every registered member votes (etcd's own members do the voting): nothing to do. */
  async promote(id: NodeId): Promise<void> {
    if (!this.members.has(id)) throw walrusError('INVALID_ARGUMENT', `node ${id} is not a member: add it first`);
  }

  async remove(id: NodeId): Promise<void> {
    await this.options.client.delete().key(`${this.nodesPrefix}${id}`).exec();
    await this.options.client.delete().key(`${this.alivePrefix}${id}`).exec();
  }

  /** Addresses come from P/nodes/: nothing to keep here. */
  setMemberAddress(): void {}

  /**
   * Whether this node leads: it holds the leader key, and by its own clock its lease has not run
   * out. etcd ends the lease a TTL after the last keepalive it received, which was before the
   * answer that set lastRenewal; LEASE_MARGIN_MS covers that trip, so a node cut off from etcd, or
   * frozen and continued, stops acting as the leader before another node can take the key.
   */
  private leading(): boolean {
    return (
      this.leader === this.options.id &&
      !this.stopped &&
      performance.now() - this.lastRenewal < this.leaseTtlSeconds() * 1000 - LEASE_MARGIN_MS
    );
  }

  /** The TTL the lease is granted with: etcd counts whole seconds, at least 2. */
  private leaseTtlSeconds(): number {
    return Math.max(2, Math.ceil(this.options.leaseTtlMs / 1000));
  }

  status(): ConsensusStatus {
    const leading = this.leading();
    return {
      id: this.options.id,
      role: leading ? 'leader' : 'follower',
      term: this.term,
      // A node whose own lease has run out does not know who leads now.
      leader: leading || this.leader !== this.options.id ? this.leader : 0,
      commitIndex: this.log.applied,
      appliedIndex: this.log.applied,
      voters: [...this.members.keys()].sort((a, b) => a - b),
      learners: [],
    };
  }

  quorumContactAgeMs(): number {
    return this.stopped ? Number.POSITIVE_INFINITY : performance.now() - this.lastContact;
  }

  memberSilenceMs(id: NodeId): number | undefined {
    if (!this.leading()) return undefined;
    if (id === this.options.id) return 0;
    // Since its last heartbeat write, counted from no earlier than this leadership's start.
    const seen = Math.max(this.lastAlive.get(id) ?? Number.NEGATIVE_INFINITY, this.leaderSince);
    return performance.now() - seen;
  }

  liveMembers(): readonly NodeId[] {
    if (!this.started) return [];
    // Alive (its lease holds its key) and heard lately: each node rewrites its key every
    // contactProbeMs, so a killed node drops out within the window, not only when its lease ends.
    const now = performance.now();
    const window = Math.max(LIVE_WINDOW_MS_MIN, LIVE_WINDOW_PROBES * (this.options.contactProbeMs ?? CONTACT_PROBE_MS));
    const live = new Set(
      [...this.alive].filter((id) => this.members.has(id) && now - (this.lastAlive.get(id) ?? Number.NEGATIVE_INFINITY) <= window),
    );
    live.add(this.options.id);
    return [...live].sort((a, b) => a - b);
  }

  metrics(): RaftMetrics {
    const status = this.status();
    const applied = this.log.applied;
    const logId = (index: number) => (index <= 0 ? null : { leader_id: { term: this.term, node_id: this.leader }, index });
    const age = this.quorumContactAgeMs();
    return {
      running_state: { Ok: null },
      id: status.id,
      current_term: status.term,
      vote: { leader_id: { term: status.term, node_id: status.leader }, committed: status.leader !== 0 },
      last_log_index: applied,
      last_applied: logId(applied),
      snapshot: null,
      purged: null,
      state: status.role === 'leader' ? 'Leader' : this.members.has(status.id) ? 'Follower' : 'Learner',
      current_leader: status.leader === 0 ? null : status.leader,
      millis_since_quorum_ack: status.role === 'leader' && Number.isFinite(age) ? Math.round(age) : null,
      membership_config: {
        log_id: null,
        membership: {
          configs: [[...status.voters]],
          nodes: Object.fromEntries(
            [...this.members].sort(([a], [b]) => a - b).map(([id, member]) => [String(id), { addr: hostPort(member) }]),
          ),
        },
      },
      replication: null,
    };
  }

  /** Reads members, liveness and the leader, then watches all three from just after that read. */
  private async follow(): Promise<void> {
    const { client } = this.options;
    const nodes = await client.getAll().prefix(this.nodesPrefix).exec();
    const at = Number(nodes.header.revision);
    const alive = await client.getAll().prefix(this.alivePrefix).revision(at).exec();
    const leader = await client.get(this.leaderKey).revision(at).exec();
    this.members = new Map(
      nodes.kvs.map((kv) => [this.idOf(kv.key.toString(), this.nodesPrefix), JSON.parse(kv.value.toString()) as MemberRecord]),
    );
    const now = performance.now();
    this.alive = new Set(alive.kvs.map((kv) => this.idOf(kv.key.toString(), this.alivePrefix)));
    for (const id of this.alive) this.lastAlive.set(id, now);
    const current = leader.kvs[0];
    if (current !== undefined) this.setLeader(Number(current.value.toString()), Number(current.create_revision));
    const from = String(at + 1);
    const nodesWatch = await client.watch().prefix(this.nodesPrefix).startRevision(from).create();
    nodesWatch.on('put', (kv) =>
      this.members.set(this.idOf(kv.key.toString(), this.nodesPrefix), JSON.parse(kv.value.toString()) as MemberRecord),
    );
    nodesWatch.on('delete', (kv) => this.members.delete(this.idOf(kv.key.toString(), this.nodesPrefix)));
    const aliveWatch = await client.watch().prefix(this.alivePrefix).startRevision(from).create();
    aliveWatch.on('put', (kv) => {
      const id = this.idOf(kv.key.toString(), this.alivePrefix);
      this.alive.add(id);
      this.lastAlive.set(id, performance.now());
    });
    aliveWatch.on('delete', (kv) => {
      const id = this.idOf(kv.key.toString(), this.alivePrefix);
      this.alive.delete(id);
      this.lastAlive.set(id, performance.now());
    });
    const leaderWatch = await client.watch().key(this.leaderKey).startRevision(from).create();
    leaderWatch.on('put', (kv) => this.setLeader(Number(kv.value.toString()), Number(kv.create_revision)));
    leaderWatch.on('delete', () => {
      this.setLeader(0, this.term);
      void this.campaign();
    });
    this.watchers.push(nodesWatch, aliveWatch, leaderWatch);
  }

  /** The leader writes a snapshot every snapshotEvery commands (while the state machine can take one). */
  private appliedOne(): void {
    this.sinceSnapshot += 1;
    const every = this.options.snapshotEvery ?? SNAPSHOT_EVERY;
    if (this.sinceSnapshot < every || this.snapshotting || !this.leading() || !this.slot.snapshotReady()) return;
    this.snapshotting = true;
    this.sinceSnapshot = 0;
    this.log
      .snapshot()
      .catch((error: unknown) =>
        this.options.onProblem?.({ message: 'writing the metadata snapshot to etcd failed; the next one will try again', error }),
      )
      .finally(() => {
        this.snapshotting = false;
      });
  }

  /** Takes the leader key if nobody holds it (a transaction: one winner). */
  private campaign(): Promise<void> {
    if (this.stopped || !this.started || this.leader !== 0) return Promise.resolve();
    this.campaigning ??= (async () => {
      try {
        const { client, id } = this.options;
        if (this.leaseId === undefined || !this.members.has(id)) return;
        const result = await client
          .if(this.leaderKey, 'Create', '==', 0)
          .then(client.put(this.leaderKey).value(String(id)).lease(this.leaseId))
          .commit();
        if (result.succeeded) this.setLeader(id, Number(result.header.revision));
      } catch (error) {
        this.options.onProblem?.({ message: 'campaigning for the etcd leader key failed', error });
      } finally {
        this.campaigning = undefined;
      }
    })();
    return this.campaigning;
  }

  private setLeader(leader: NodeId, term: number): void {
    if (leader === this.leader && term === this.term) return;
    const was = this.leader;
    this.leader = leader;
    if (term > this.term) this.term = term;
    if (leader === this.options.id && was !== leader) this.leaderSince = performance.now();
    this.options.onRoleChange?.(this.status());
  }

  private idOf(key: string, prefix: string): NodeId {
    return Number(key.slice(prefix.length));
  }
}

/** Default of snapshotEvery. */
const SNAPSHOT_EVERY = 10_000;
/** liveMembers() counts a member whose alive key was written within this many probe intervals, and at least LIVE_WINDOW_MS_MIN. */
const LIVE_WINDOW_PROBES = 10;
const LIVE_WINDOW_MS_MIN = 1_000;
/** Default of contactProbeMs. */
const CONTACT_PROBE_MS = 100;
/** How much sooner than etcd a node counts its own lease as run out (the keepalive's round trip, and more). */
const LEASE_MARGIN_MS = 250;
/** Pause between attempts to grant a new lease after one was lost. */
const RENEW_RETRY_MS = 500;
