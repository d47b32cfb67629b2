// One simulation run: a cluster driven through K random steps (ticks, proposals, lossy,
// duplicating and reordering networks, partitions both ways, crashes and restarts that keep only
// what was persisted, compactions, read-index rounds, leadership transfers, membership changes),
// with every safety property checked after every step. Then everything is healed, and the run
// must still make progress: a leader is elected and a fresh proposal commits on every member
// within a bound. The run is a pure function of its options, so a failing seed replays exactly.

import { Rng } from '../../../kernel/rng.js';
import { NotLeaderError, RaftBusyError } from '../core/raft.js';
import type { Membership, NodeId } from '../core/types.js';
import { SafetyChecker, type Violation } from './checks.js';
import { bytes, Cluster, type ClusterOptions } from './cluster.js';
import { type NetworkOptions, RELIABLE } from './network.js';

export interface SimOptions {
  readonly seed: number;
  /** Node slots (ids 1..nodes). */
  readonly nodes: number;
  readonly steps: number;
  /** Voters at the start, ids 1..voters (default: every slot); the other slots start outside the group. */
  readonly voters?: number;
  /** Whether the random actions include membership changes (default: MEMBERSHIP_BY_DEFAULT). */
  readonly membership?: boolean;
}

export interface SimResult extends SimOptions {
  readonly violations: readonly Violation[];
  /** True when, after healing, a new proposal committed on every node within the bound. */
  readonly live: boolean;
  readonly ticks: number;
  /** Proposals the cores accepted during the random phase. */
  readonly proposals: number;
  /** Entries applied by the most advanced node at the end. */
  readonly committed: number;
  /** Snapshots leaders sent to followers too far behind (how often that path ran). */
  readonly snapshotsSent: number;
  /** Read-index rounds that completed (and were checked). */
  readonly readsServed: number;
  /** Membership changes the leaders accepted during the random phase. */
  readonly membershipChanges: number;
  /** The group as the leader saw it at the end (undefined when there was none). */
  readonly finalMembership: Membership | undefined;
}

export const DEFAULT_STEPS = 2000;

/**
 * Whether runs include membership changes unless told otherwise (`--membership 0` turns them off).
 * They were off until three faults of the core's membership handling, which this simulator found,
 * were fixed (see the regression tests at the end of test/unit/raft-membership.test.ts).
 */
export const MEMBERSHIP_BY_DEFAULT = true;

/** Ticks allowed, after healing, for an election and a commit on every node. */
export const LIVENESS_TICKS = 600;

interface Run {
  readonly cluster: Cluster;
  readonly checker: SafetyChecker;
  readonly rng: Rng;
  readonly seed: number;
  proposals: number;
  commands: number;
  membershipChanges: number;
  /** Nodes removed from the group and crashed on purpose: they stay down until added again (or healing). */
  readonly retired: Set<NodeId>;
}

interface Action {
  readonly weight: number;
  readonly run: (run: Run) => void;
}

const ACTIONS: readonly Action[] = [
  { weight: 40, run: (r) => r.cluster.tick(r.rng.between(1, 4)) },
  { weight: 14, run: (r) => propose(r, 'leader') },
  { weight: 4, run: (r) => propose(r, r.rng.pick(r.cluster.ids)) },
  { weight: 3, run: (r) => proposeBurst(r) },
  { weight: 3, run: (r) => crashOne(r) },
  { weight: 5, run: (r) => restartOne(r) },
  { weight: 3, run: (r) => rebootOne(r) },
  { weight: 3, run: (r) => rebootDuringElection(r) },
  { weight: 2, run: (r) => splitSymmetric(r) },
  { weight: 2, run: (r) => blockOneWay(r) },
  { weight: 2, run: (r) => isolateLeader(r) },
  { weight: 3, run: (r) => r.cluster.heal() },
  { weight: 3, run: (r) => compactOne(r) },
  { weight: 4, run: (r) => readAt(r) },
  { weight: 1, run: (r) => r.cluster.transferLeadership(r.rng.pick(r.cluster.ids)) },
  { weight: 3, run: (r) => degradeNetwork(r) },
  { weight: 2, run: (r) => setNetwork(r, RELIABLE) },
];

/** Membership changes, at the leader: a modest share of the actions (each one a no-op when it does not apply). */
const MEMBERSHIP_ACTIONS: readonly Action[] = [
  { weight: 2, run: (r) => addLearner(r) },
  { weight: 2, run: (r) => promoteLearner(r) },
  { weight: 2, run: (r) => removeMember(r) },
];

const WITH_MEMBERSHIP: readonly Action[] = [...ACTIONS, ...MEMBERSHIP_ACTIONS];

export function simulate(options: SimOptions): SimResult {
  const voters = options.voters ?? options.nodes;
  if (!Number.isInteger(voters) || voters < 1 || voters > options.nodes) {
    throw new Error(`simulate: voters must be within 1..${options.nodes}, got ${voters}`);
  }
  const membership: Membership = { voters: Array.from({ length: voters }, (_, i) => i + 1), learners: [] };
  const checker = new SafetyChecker(membership);
  const cluster = new Cluster({ ...timing(options.seed), nodes: options.nodes, seed: options.seed, membership, observer: checker });
  const run: Run = {
    cluster,
    checker,
    rng: cluster.rng.fork(),
    seed: options.seed,
    proposals: 0,
    commands: 0,
    membershipChanges: 0,
    retired: new Set(),
  };
  const actions = (options.membership ?? MEMBERSHIP_BY_DEFAULT) ? WITH_MEMBERSHIP : ACTIONS;
  // Half the seeds also reboot nodes right after they handle a message; votes get extra
  // attention, as a vote granted and then forgotten is how a term gets two leaders.
  const rebootChance = run.rng.chance(0.5) ? run.rng.next() * 0.02 : 0;
  const voteRebootChance = rebootChance > 0 ? run.rng.next() * 0.3 : 0;
  cluster.rebootAfter = (_, message) => run.rng.chance(message.type === 'vote' ? voteRebootChance : rebootChance);
  for (let step = 0; step < options.steps && checker.ok; step++) {
    pickAction(run, actions).run(run);
    checker.check(cluster, cluster.now);
  }
  const live = checker.ok && checkLiveness(run);
  return {
    ...options,
    violations: checker.violations,
    live,
    ticks: cluster.now,
    proposals: run.proposals,
    committed: Math.max(...cluster.ids.map((id) => cluster.status(id)?.applied ?? 0)),
    snapshotsSent: cluster.counters.sent('installSnapshot'),
    readsServed: cluster.readsServed,
    membershipChanges: run.membershipChanges,
    finalMembership: cluster.members(),
  };
}

/**
 * Timing and batching vary by seed: a narrow election window makes split votes (and so the
 * races around them) common, a wide one makes them rare; small batches and pipelines exercise
 * back-pressure and retransmission.
 */
function timing(seed: number): Partial<ClusterOptions> {
  const rng = new Rng(seed ^ 0x5eed);
  const heartbeatTicks = rng.between(1, 3);
  const electionTicksMin = heartbeatTicks * rng.between(3, 6);
  return {
    heartbeatTicks,
    electionTicksMin,
    // At least three possible timeouts: with fewer, nodes time out in lockstep and split votes forever.
    electionTicksMax: electionTicksMin + rng.between(3, Math.max(3, electionTicksMin)),
    maxEntriesPerMessage: rng.pick([1, 4, 16, 64]),
    maxInflight: rng.pick([1, 4, 256]),
  };
}

function pickAction(run: Run, actions: readonly Action[]): Action {
  let roll = run.rng.int(totalWeight(actions));
  for (const action of actions) {
    roll -= action.weight;
    if (roll < 0) return action;
  }
  return actions[0] as Action;
}

const totals = new WeakMap<readonly Action[], number>();

function totalWeight(actions: readonly Action[]): number {
  let total = totals.get(actions);
  if (total === undefined) {
    total = actions.reduce((sum, action) => sum + action.weight, 0);
    totals.set(actions, total);
  }
  return total;
}

// ---- actions ----

function propose(run: Run, target: number | 'leader'): void {
  const data = bytes(`seed ${run.seed} command ${run.commands++}`);
  if (run.cluster.propose(target, data) !== undefined) run.proposals++;
}

function proposeBurst(run: Run): void {
  const count = run.rng.between(2, 8);
  for (let i = 0; i < count; i++) propose(run, 'leader');
}

function crashOne(run: Run): void {
  const up = run.cluster.upNodes();
  if (up.length > 0) run.cluster.crash(run.rng.pick(up));
}

/** Restarts a crashed node; retired ones stay down unless the leader still counts them in (their removal was lost). */
function restartOne(run: Run): void {
  const members = run.cluster.members();
  const down = run.cluster.downNodes().filter((id) => !run.retired.has(id) || (members !== undefined && isMember(members, id)));
  if (down.length === 0) return;
  const id = run.rng.pick(down);
  run.retired.delete(id);
  run.cluster.restart(id);
}

/** A crash and an immediate restart: only what was persisted carries over. */
function rebootOne(run: Run): void {
  const id = run.rng.pick(run.cluster.ids);
  if (run.retired.has(id)) return;
  run.cluster.crash(id);
  run.cluster.restart(id);
}

/**
 * While a candidate is collecting votes, reboots another node: the moment where a vote or a
 * term that was not persisted would let one node vote twice in a term.
 */
function rebootDuringElection(run: Run): void {
  const { cluster } = run;
  const candidates = cluster.ids.filter((id) => cluster.status(id)?.role === 'candidate');
  if (candidates.length === 0) return;
  const voters = cluster.ids.filter((id) => !candidates.includes(id));
  if (voters.length === 0) return;
  const id = run.rng.pick(voters);
  cluster.crash(id);
  cluster.restart(id);
}

/** A node snapshots its state machine and drops its log up to there; laggards then need the snapshot. */
function compactOne(run: Run): void {
  const up = run.cluster.upNodes();
  if (up.length > 0) run.cluster.compact(run.rng.pick(up));
}

// ---- membership ----

/**
 * Proposes `next` at the leader. A refusal (no leader, or a change still being committed) is an
 * answer; anything else the core throws is a fault, as every change proposed here is one server
 * away from the leader's membership and keeps a voter.
 */
function changeMembership(run: Run, next: Membership): boolean {
  try {
    run.cluster.proposeMembership(next);
    run.membershipChanges++;
    return true;
  } catch (error) {
    if (error instanceof NotLeaderError || error instanceof RaftBusyError) return false;
    const leader = run.cluster.leader() ?? 0;
    run.checker.report('core-error', `node ${leader}: refused a valid membership change: ${String(error)}`, run.cluster.now);
    return false;
  }
}

function isMember(membership: Membership, id: NodeId): boolean {
  return membership.voters.includes(id) || membership.learners.includes(id);
}

/** Adds a node outside the group as a learner (starting it again if it was down, mostly). */
function addLearner(run: Run): void {
  const { cluster, rng } = run;
  const members = cluster.members();
  if (members === undefined) return;
  const outside = cluster.ids.filter((id) => !isMember(members, id));
  if (outside.length === 0) return;
  const id = rng.pick(outside);
  if (!changeMembership(run, { voters: members.voters, learners: [...members.learners, id] })) return;
  if (!cluster.isUp(id) && rng.chance(0.8)) {
    run.retired.delete(id);
    cluster.restart(id);
  }
}

/** Promotes a learner whose log has caught up with the leader's commit index. */
function promoteLearner(run: Run): void {
  const { cluster, rng } = run;
  const leader = cluster.leader();
  const status = leader === undefined ? undefined : cluster.status(leader);
  if (status?.progress === undefined) return;
  const { membership, progress, commit } = status;
  const ready = membership.learners.filter((id) => (progress.get(id)?.match ?? 0) >= commit);
  if (ready.length === 0) return;
  const id = rng.pick(ready);
  changeMembership(run, { voters: [...membership.voters, id], learners: membership.learners.filter((other) => other !== id) });
}

/** Removes a voter (never the last one; sometimes the leader itself) or a learner, and often crashes it for good. */
function removeMember(run: Run): void {
  const { cluster, rng } = run;
  const members = cluster.members();
  if (members === undefined) return;
  const removable = [...(members.voters.length > 1 ? members.voters : []), ...members.learners];
  if (removable.length === 0) return;
  const id = rng.pick(removable);
  const next = { voters: members.voters.filter((other) => other !== id), learners: members.learners.filter((other) => other !== id) };
  if (!changeMembership(run, next)) return;
  if (rng.chance(0.5)) {
    cluster.crash(id);
    run.retired.add(id);
  }
}

/** A linearisable read, mostly at the leader (elsewhere it is refused), sometimes at a stale one. */
function readAt(run: Run): void {
  const { cluster, rng } = run;
  const leaders = cluster.leaders().map((leader) => leader.id);
  const target = leaders.length > 0 && rng.chance(0.8) ? rng.pick(leaders) : rng.pick(cluster.ids);
  if (cluster.isUp(target)) cluster.read(target);
}

/** Splits the cluster in two at random (replacing any earlier partition). */
function splitSymmetric(run: Run): void {
  const order = run.rng.shuffled(run.cluster.ids);
  const cut = run.rng.between(1, order.length - 1);
  run.cluster.partition(order.slice(0, cut), order.slice(cut));
}

/** One node stops hearing another, while the other still hears it. */
function blockOneWay(run: Run): void {
  const [from, to] = run.rng.shuffled(run.cluster.ids);
  if (from !== undefined && to !== undefined) run.cluster.network.blockLink(from, to);
}

function isolateLeader(run: Run): void {
  const leader = run.cluster.leader();
  if (leader !== undefined) run.cluster.isolate(leader);
}

function degradeNetwork(run: Run): void {
  const { rng } = run;
  const delayMin = rng.between(0, 2);
  setNetwork(run, {
    loss: rng.next() * 0.3,
    duplicate: rng.next() * 0.15,
    reorder: rng.next() * 0.4,
    reorderTicks: rng.between(1, 8),
    delayMin,
    delayMax: delayMin + rng.between(0, 3),
  });
}

function setNetwork(run: Run, options: NetworkOptions): void {
  run.cluster.network.options = options;
}

// ---- liveness ----

/**
 * Heals everything — every node up (retired ones too: whatever group the log settles on, all of
 * its voters are then alive and connected) — and requires a fresh proposal to commit on every
 * voter and learner of the leader's group within the bound.
 */
function checkLiveness(run: Run): boolean {
  const { cluster, checker } = run;
  cluster.heal();
  setNetwork(run, RELIABLE);
  cluster.rebootAfter = undefined;
  for (const id of cluster.downNodes()) cluster.restart(id);
  run.retired.clear();
  const index = cluster.replicate(bytes(`seed ${run.seed} liveness`), 'members', LIVENESS_TICKS);
  checker.checkAll(cluster, cluster.now);
  if (index !== undefined) return checker.ok;
  const leader = cluster.leader();
  const what = leader === undefined ? 'no leader elected' : `leader ${leader} elected but the proposal did not commit on every member`;
  checker.report('liveness', `${what} within ${LIVENESS_TICKS} ticks of healing`, cluster.now);
  return false;
}
