// The data-path simulator (issue 14): replicated segments and their failover, on a virtual clock,
// under kills, pauses (SIGSTOP) and one-way or two-way link cuts, as a pure function of a seed.
// It runs the real pieces — SegmentReplicator (leader side: runs, commit counts, fencing answers),
// FailoverMonitor (fence a majority, seal at the largest count, move sealed segments), the
// metadata state machine, replicaSet, and the follower's append rule (replicaWrite) — and models
// what joins them: Raft as one committed command log that each node applies when it can hear the
// Raft leader, write leases as "can hear the Raft leader", the node-to-node messages with delays,
// and the glue of src/node/replication.ts (which replicators run, catch-up of a segment a node
// was named to serve, asking the Raft leader to finish a fenced segment).
//
// Writers PUT numbered entries through random nodes (forwarded to the segment's leader as the
// controller does); each PUT ends acknowledged, refused (certainly not written) or unsure. At the
// end every fault is healed, the cluster runs on until quiet, and the log is read back: every
// sealed segment from the node serving it, the open one up to its commit count. A violation is an
// acknowledged entry missing, an entry in the log twice, a refused or unknown entry in the log,
// one writer's acknowledged entries out of order, a sealed segment's server missing entries of its
// seal, or two copies that disagree within what readers can see.
//
// Not modelled: GET positions (the log is read by position), storage failures, membership changes,
// power loss (a kill keeps what the process wrote, as kill -9 does).

import { Rng } from '../../kernel/rng.js';
import { FailoverMonitor } from '../failover.js';
import { encodeCommand, type MetadataCommand, type MetadataResult, MetadataStateMachine, segmentKey } from '../metadata.js';
import { replicaSet } from '../placement.js';
import { type ReplicaAnswer, type ReplicaRun, type ReplicatorClock, SegmentReplicator } from '../replicator.js';
import { replicaWrite } from '../segment-store.js';

export interface DataSimOptions {
  readonly seed: number;
  /** Nodes (all voters; every segment is kept by min(factor, live) of them). Default 3. */
  readonly nodes?: number;
  readonly factor?: number;
  /** Virtual milliseconds of load and faults before the heal. Default 4000. */
  readonly durationMs?: number;
  /** Entries per segment before a rollover. Default 12. */
  readonly maxEntries?: number;
  readonly writers?: number;
  /** Record a trace of events (for replaying a failing seed). */
  readonly trace?: boolean;
}

export interface DataSimResult {
  readonly seed: number;
  readonly violations: readonly string[];
  readonly acked: number;
  readonly refused: number;
  readonly unsure: number;
  readonly segments: number;
  readonly failovers: number;
  readonly faults: number;
  readonly trace: readonly string[];
}

const TOPIC = 'sim';
const FAILOVER_MS = 1_500;
const COMMIT_WAIT_MS = 1_500;
const HEARTBEAT_MS = 50;
const LINK_TIMEOUT_MS = 300;

interface Event {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
  cancelled: boolean;
}

/** A min-heap of events by (time, sequence): the same seed always runs them in the same order. */
class Agenda {
  private readonly heap: Event[] = [];
  private seq = 0;
  now = 0;

  schedule(delayMs: number, run: () => void): Event {
    const event: Event = { at: this.now + Math.max(0, delayMs), seq: this.seq++, run, cancelled: false };
    const heap = this.heap;
    heap.push(event);
    for (let at = heap.length - 1; at > 0; ) {
      const parent = (at - 1) >> 1;
      if (before(heap[parent] as Event, event)) break;
      heap[at] = heap[parent] as Event;
      heap[parent] = event;
      at = parent;
    }
    return event;
  }

  next(): Event | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined) return undefined;
    if (heap.length > 0) {
      heap[0] = last;
      for (let at = 0; ; ) {
        const left = 2 * at + 1;
        const right = left + 1;
        let least = at;
        if (left < heap.length && before(heap[left] as Event, heap[least] as Event)) least = left;
        if (right < heap.length && before(heap[right] as Event, heap[least] as Event)) least = right;
        if (least === at) break;
        const swap = heap[at] as Event;
        heap[at] = heap[least] as Event;
        heap[least] = swap;
        at = least;
      }
    }
    this.now = Math.max(this.now, top.at);
    return top;
  }

  get size(): number {
    return this.heap.length;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

interface Copy {
  readonly entries: string[];
  fenced: boolean;
  closedEarly: boolean;
}

interface SimNode {
  readonly id: number;
  up: boolean;
  paused: boolean;
  /** Bumped by each kill: callbacks of an earlier life are dropped. */
  life: number;
  /** Work that arrived while paused, run on resume. */
  held: (() => void)[];
  view: MetadataStateMachine;
  /** Entries of the command log applied to `view`. */
  applied: number;
  readonly copies: Map<string, Copy>;
  replicators: Map<string, SegmentReplicator>;
  monitor: FailoverMonitor;
  readonly clock: ReplicatorClock;
  asking: Set<string>;
}

interface Put {
  readonly payload: string;
  readonly writer: number;
  outcome: 'acked' | 'refused' | 'unsure' | undefined;
}

class Refused extends Error {}
class Unsure extends Error {}

export async function simulateDataPath(options: DataSimOptions): Promise<DataSimResult> {
  const sim = new DataSim(options);
  return sim.run();
}

class DataSim {
  private readonly options: Required<Omit<DataSimOptions, 'trace'>> & { trace: boolean };
  private readonly rng: Rng;
  private readonly agenda = new Agenda();
  private readonly nodes: SimNode[] = [];
  private readonly log: MetadataCommand[] = [];
  private readonly global = new MetadataStateMachine();
  private readonly cut = new Set<string>();
  private readonly puts: Put[] = [];
  private readonly violations: string[] = [];
  private readonly trace: string[] = [];
  private raftLeader = 0;
  private leaderSince = 0;
  private readonly lastHeard = new Map<number, number>();
  private faults = 0;
  private failovers = 0;
  private stopped = false;

  constructor(options: DataSimOptions) {
    this.options = {
      seed: options.seed,
      nodes: options.nodes ?? 3,
      factor: options.factor ?? 3,
      durationMs: options.durationMs ?? 8_000,
      maxEntries: options.maxEntries ?? 12,
      writers: options.writers ?? 3,
      trace: options.trace ?? false,
    };
    this.rng = new Rng(options.seed);
    for (let id = 1; id <= this.options.nodes; id++) this.nodes.push(this.makeNode(id));
  }

  private note(line: string): void {
    if (this.options.trace) this.trace.push(`${this.agenda.now.toFixed(1)} ${line}`);
  }

  private node(id: number): SimNode {
    return this.nodes[id - 1] as SimNode;
  }

  private makeNode(id: number): SimNode {
    const agenda = this.agenda;
    const node = {
      id,
      up: true,
      paused: false,
      life: 0,
      held: [],
      view: new MetadataStateMachine(),
      applied: 0,
      copies: new Map(),
      replicators: new Map(),
      asking: new Set(),
    } as unknown as SimNode;
    // Timers of a node run only while it is up and not paused (a paused process runs nothing).
    const clock: ReplicatorClock = {
      now: () => agenda.now,
      setTimeout: (callback, ms) => agenda.schedule(ms, this.onNode(node, callback)),
      clearTimeout: (handle) => {
        (handle as Event).cancelled = true;
      },
      setInterval: (callback, ms) => {
        const handle = { current: undefined as Event | undefined, cancelled: false };
        const tick = (): void => {
          if (handle.cancelled) return;
          this.onNode(node, callback)();
          handle.current = agenda.schedule(ms, tick);
        };
        handle.current = agenda.schedule(ms, tick);
        return handle;
      },
      clearInterval: (handle) => {
        const interval = handle as { current: Event | undefined; cancelled: boolean };
        interval.cancelled = true;
        if (interval.current !== undefined) interval.current.cancelled = true;
      },
    };
    (node as { clock: ReplicatorClock }).clock = clock;
    node.monitor = this.makeMonitor(node);
    return node;
  }

  /** `callback` as work of `node` in its current life: dropped if it dies, held while it is paused. */
  private onNode(node: SimNode, callback: () => void): () => void {
    const life = node.life;
    const run = (): void => {
      if (!node.up || node.life !== life) return;
      if (node.paused) node.held.push(run);
      else callback();
    };
    return run;
  }

  private makeMonitor(node: SimNode): FailoverMonitor {
    return new FailoverMonitor({
      nodeId: node.id,
      timeoutMs: FAILOVER_MS,
      fenceTimeoutMs: 2 * LINK_TIMEOUT_MS,
      replicationFactor: this.options.factor,
      clock: node.clock,
      log: {
        info: (fields, message) => {
          if (message.startsWith('failover:')) this.failovers += 1;
          this.note(`node ${node.id}: ${message} ${JSON.stringify(fields)}`);
        },
        warn: (fields, message) => this.note(`node ${node.id} warns: ${message} ${JSON.stringify(fields)}`),
      },
      target: {
        isLeader: () => this.raftLeader === node.id && node.up && !node.paused,
        silenceMs: (id) =>
          this.raftLeader === node.id ? this.agenda.now - Math.max(this.lastHeard.get(id) ?? 0, this.leaderSince) : undefined,
        voters: () => this.nodes.map((each) => each.id),
        // A dead node's port refuses connections; a paused one's kernel still accepts them, and
        // across a cut link nothing answers: only a death is evidence.
        refused: (id) =>
          new Promise((resolve) => {
            const to = this.node(id);
            const answered = this.reaches(node, to) && this.reaches(to, node);
            this.agenda.schedule(
              answered ? 2 * this.delay() : LINK_TIMEOUT_MS,
              this.onNode(node, () => resolve(answered && !to.up)),
            );
          }),
        metadata: node.view,
        fence: (id, topic, segment) =>
          this.request(node, id, (target) => {
            if (target.view.segmentLeader(topic, segment) === target.id && target.view.sealedCount(topic, segment) === undefined)
              throw new Refused(`node ${target.id} leads ${topic}/${segment}`);
            const copy = this.copy(target, topic, segment);
            copy.fenced = true;
            return copy.entries.length;
          }),
        propose: (command) => this.propose(node, command),
      },
    });
  }

  // --- network ---------------------------------------------------------------------------------

  private reaches(from: SimNode, to: SimNode): boolean {
    return !this.cut.has(`${from.id}>${to.id}`);
  }

  /**
   * A request from `from` to node `to`, answered by `handler` there: delayed both ways; fails
   * with Refused when `to` is down (nothing was done), Unsure when a link is cut either way (the
   * request may have been handled), and waits while `to` is paused.
   */
  /** A message's delay: a few milliseconds, now and then far more (a slow link, a GC pause). */
  private delay(): number {
    return this.rng.chance(0.01) ? this.rng.between(20, 400) : this.rng.between(1, 4);
  }

  private request<T>(from: SimNode, toId: number, handler: (to: SimNode) => T | Promise<T>): Promise<T> {
    const to = this.node(toId);
    if (to === from) return Promise.resolve().then(() => handler(to));
    return new Promise<T>((resolve, reject) => {
      const fromLife = from.life;
      const back = (settle: () => void): void => {
        this.agenda.schedule(
          this.delay(),
          this.onNode(from, () => from.life === fromLife && settle()),
        );
      };
      if (!this.reaches(from, to)) {
        this.agenda.schedule(
          LINK_TIMEOUT_MS,
          this.onNode(from, () => reject(new Unsure('link cut'))),
        );
        return;
      }
      this.agenda.schedule(this.delay(), () => {
        if (!to.up) {
          back(() => reject(new Refused(`node ${to.id} is down`)));
          return;
        }
        this.onNode(to, () => {
          Promise.resolve()
            .then(() => handler(to))
            .then(
              (value) => {
                if (!this.reaches(to, from))
                  this.agenda.schedule(
                    LINK_TIMEOUT_MS,
                    this.onNode(from, () => reject(new Unsure('no answer'))),
                  );
                else back(() => resolve(value));
              },
              (error: unknown) => {
                if (!this.reaches(to, from))
                  this.agenda.schedule(
                    LINK_TIMEOUT_MS,
                    this.onNode(from, () => reject(new Unsure('no answer'))),
                  );
                else back(() => reject(error));
              },
            );
        })();
      });
    });
  }

  // --- Raft, abstracted --------------------------------------------------------------------------

  private responsive(node: SimNode): boolean {
    return node.up && !node.paused;
  }

  /** Whether a and b can talk both ways right now. */
  private talk(a: SimNode, b: SimNode): boolean {
    return a === b || (this.responsive(a) && this.responsive(b) && this.reaches(a, b) && this.reaches(b, a));
  }

  /** The Raft leader: the lowest id that talks with a majority (itself included); 0 when none. */
  private electLeader(): void {
    const majority = Math.floor(this.nodes.length / 2) + 1;
    const current = this.raftLeader === 0 ? undefined : this.node(this.raftLeader);
    const holds = (node: SimNode) => this.responsive(node) && this.nodes.filter((other) => this.talk(node, other)).length >= majority;
    if (current !== undefined && holds(current)) return;
    const next = this.nodes.find(holds);
    const id = next?.id ?? 0;
    if (id !== this.raftLeader) {
      this.note(`raft leader ${this.raftLeader} -> ${id}`);
      this.raftLeader = id;
      this.leaderSince = this.agenda.now;
    }
  }

  /** Nodes that hear the Raft leader apply the log; the leader notes whom it heard back from. */
  private heartbeat(): void {
    this.electLeader();
    const leader = this.raftLeader === 0 ? undefined : this.node(this.raftLeader);
    if (leader === undefined) return;
    for (const node of this.nodes) {
      if (!this.hears(node, leader)) continue;
      this.catchUp(node);
      if (this.reaches(node, leader)) this.lastHeard.set(node.id, this.agenda.now);
    }
  }

  /** Whether `node` gets the Raft leader's messages (both running, that link up). */
  private hears(node: SimNode, leader: SimNode): boolean {
    return node === leader || (this.responsive(node) && this.responsive(leader) && this.reaches(leader, node));
  }

  private catchUp(node: SimNode): void {
    const commands: MetadataCommand[] = [];
    while (node.applied < this.log.length) {
      const command = this.log[node.applied] as MetadataCommand;
      node.applied += 1;
      node.view.apply(encodeCommand(command), node.applied);
      commands.push(command);
    }
    if (commands.length > 0) this.follow(node, commands);
  }

  /**
   * A write lease holds while the node hears the Raft leader (or is it, with a majority), as
   * quorumContactAgeMs has it on a follower — also when the leader does not hear the node (a
   * one-way cut): then only the fence keeps its writes out. Its view may lag the log by a
   * heartbeat, as a real node's applied index lags the commit.
   */
  private leased(node: SimNode): boolean {
    this.electLeader();
    const leader = this.raftLeader === 0 ? undefined : this.node(this.raftLeader);
    return leader !== undefined && this.hears(node, leader);
  }

  private propose(from: SimNode, command: MetadataCommand): Promise<MetadataResult> {
    this.electLeader();
    const leaderId = this.raftLeader;
    if (leaderId === 0) return Promise.reject(new Unsure('no Raft leader'));
    return this.request(from, leaderId, (leader) => {
      if (this.raftLeader !== leader.id) throw new Refused('not the Raft leader');
      const result = this.global.apply(encodeCommand(command), this.log.length + 1);
      this.log.push(command);
      this.note(`applied ${JSON.stringify(command)} -> ${JSON.stringify(result)}`);
      // The leader applies at once; the others at its next heartbeat (a view can lag by one).
      this.catchUp(leader);
      return result;
    }).then((result) => {
      if (this.raftLeader !== 0 && this.hears(from, this.node(this.raftLeader))) this.catchUp(from);
      return result;
    });
  }

  // --- a node's data plane -------------------------------------------------------------------------

  private copy(node: SimNode, topic: string, segment: number): Copy {
    const key = segmentKey(topic, segment);
    let copy = node.copies.get(key);
    if (copy === undefined) {
      copy = { entries: [], fenced: false, closedEarly: false };
      node.copies.set(key, copy);
    }
    return copy;
  }

  /** What replication.ts does on each metadata change. */
  private follow(node: SimNode, commands: readonly MetadataCommand[]): void {
    const view = node.view;
    for (const topic of view.topics()) {
      const state = view.topic(topic);
      if (state === undefined || state.leaderNode !== node.id) continue;
      const key = segmentKey(topic, state.currentSegment);
      if (!node.replicators.has(key)) this.startReplicator(node, topic, state.currentSegment, undefined);
    }
    for (const [key, replicator] of node.replicators) {
      const { topic, segment } = replicator.segmentOf;
      const sealed = view.sealedCount(topic, segment);
      const leads = view.segmentLeader(topic, segment) === node.id;
      if (sealed === undefined && leads) continue;
      if (sealed !== undefined && leads && !replicator.caughtUp()) continue;
      replicator.stop(new Refused(`${key} ended here`));
      node.replicators.delete(key);
    }
    for (const command of commands) {
      let served: { topic: string; segment: number } | undefined;
      if (command.kind === 'RolloverTopic' && command.sealedOwner === node.id)
        served = { topic: command.topic, segment: command.expectedSegment };
      if (command.kind === 'MoveSegment' && command.owner === node.id) served = { topic: command.topic, segment: command.segment };
      if (served === undefined) continue;
      const sealed = view.sealedCount(served.topic, served.segment);
      const key = segmentKey(served.topic, served.segment);
      if (sealed !== undefined && view.segmentLeader(served.topic, served.segment) === node.id && !node.replicators.has(key))
        this.startReplicator(node, served.topic, served.segment, sealed);
    }
  }

  private startReplicator(node: SimNode, topic: string, segment: number, sealed: number | undefined): void {
    const replicas = node.view.segmentReplicas(topic, segment) ?? [node.id];
    const followers = replicas.filter((id) => id !== node.id);
    if (followers.length === 0) return;
    const key = segmentKey(topic, segment);
    const copy = this.copy(node, topic, segment);
    const replicator = new SegmentReplicator({
      topic,
      segment,
      epoch: node.view.epoch,
      followers,
      clock: node.clock,
      retryMs: 100,
      waitMs: COMMIT_WAIT_MS,
      timedOut: () => new Unsure('not committed in time'),
      read: (offset) => {
        const entry = copy.entries[offset];
        return entry === undefined ? null : Buffer.from(entry);
      },
      transport: { send: (id, run) => this.request(node, id, (to) => this.replicate(to, run)) },
      onFenced: () => this.askToFinish(node, topic, segment),
      ...(sealed === undefined
        ? {
            onBehind: () => {
              copy.closedEarly = true;
              this.askToFinish(node, topic, segment);
            },
          }
        : {}),
    });
    node.replicators.set(key, replicator);
    replicator.appended(sealed ?? copy.entries.length);
  }

  /** The follower's side of a run (Replication's `replicate` handler and SegmentStore.appendReplica). */
  private replicate(node: SimNode, run: ReplicaRun): ReplicaAnswer {
    const copy = this.copy(node, run.topic, run.segment);
    const sealed = node.view.sealedCount(run.topic, run.segment);
    const plan = replicaWrite(copy.entries.length, run.offset, run.payloads.length, sealed, copy.fenced);
    if (plan === 'fenced') return { fenced: true };
    for (const payload of run.payloads.slice(plan.from, plan.to)) copy.entries.push(Buffer.from(payload).toString());
    return { held: copy.entries.length };
  }

  private askToFinish(node: SimNode, topic: string, segment: number): void {
    const key = segmentKey(topic, segment);
    if (node.asking.has(key)) return;
    node.asking.add(key);
    const attempt = (tries: number): void => {
      const open = node.view.sealedCount(topic, segment) === undefined && node.view.segmentLeader(topic, segment) === node.id;
      if (!open || tries > 40) {
        node.asking.delete(key);
        return;
      }
      this.electLeader();
      if (this.raftLeader !== 0) {
        void this.request(node, this.raftLeader, (leader) => leader.monitor.finish(topic, segment)).catch(() => undefined);
      }
      node.clock.setTimeout(() => attempt(tries + 1), 500);
    };
    attempt(0);
  }

  /** A PUT on the segment's leader (the controller's appendLocal): resolves once committed. */
  private async appendLocal(node: SimNode, segment: number, payload: string): Promise<void> {
    const state = node.view.topic(TOPIC);
    const copy = this.copy(node, TOPIC, segment);
    if (state === undefined || state.currentSegment !== segment || state.leaderNode !== node.id || !this.leased(node) || copy.closedEarly)
      throw new Refused('not the leader');
    if (copy.entries.length >= this.options.maxEntries) throw new Refused('segment full');
    copy.entries.push(payload);
    const count = copy.entries.length;
    const replicator = node.replicators.get(segmentKey(TOPIC, segment));
    if (count >= this.options.maxEntries) void this.rollOver(node, segment, count);
    if (replicator === undefined) return;
    replicator.appended(count);
    await replicator.committed(count).catch((error: unknown) => {
      throw error instanceof Refused || error instanceof Unsure ? new Unsure(error.message) : error;
    });
  }

  /** The rollover monitor: seal a full segment once all of it is committed, hand the topic on. */
  private async rollOver(node: SimNode, segment: number, count: number): Promise<void> {
    const replicator = node.replicators.get(segmentKey(TOPIC, segment));
    for (let tries = 0; tries < 20; tries++) {
      try {
        await replicator?.committed(count);
        const live = this.nodes.filter((other) => this.talk(node, other)).map((other) => other.id);
        const voters = this.nodes.map((other) => other.id);
        const others = live.filter((id) => id !== node.id).sort((a, b) => a - b);
        const newLeader = others.find((id) => id > node.id) ?? others[0] ?? node.id;
        await this.propose(node, {
          kind: 'RolloverTopic',
          topic: TOPIC,
          expectedSegment: segment,
          sealedCount: count,
          newLeader,
          replicas: replicaSet(newLeader, this.options.factor, voters, live),
        });
        return;
      } catch {
        if (!node.up || node.view.sealedCount(TOPIC, segment) !== undefined) return;
        await new Promise<void>((resolve) => node.clock.setTimeout(resolve, 200));
      }
    }
  }

  /** A client's PUT through `via`: local, or forwarded to the segment's leader as its view has it. */
  private async put(via: SimNode, payload: string): Promise<void> {
    if (!via.up) throw new Refused('connection refused');
    const state = via.view.topic(TOPIC);
    if (state === undefined) throw new Refused('unknown topic');
    const segment = state.currentSegment;
    if (state.leaderNode === via.id) return this.appendLocal(via, segment, payload);
    return this.request(via, state.leaderNode, (leader) => this.appendLocal(leader, segment, payload));
  }

  // --- load, faults, the read-back -------------------------------------------------------------

  private writer(index: number): void {
    let sequence = 0;
    const next = (): void => {
      if (this.stopped) return;
      const via = this.rng.pick(this.nodes);
      const record: Put = { payload: `w${index}-${sequence++}`, writer: index, outcome: undefined };
      this.puts.push(record);
      let settled = false;
      const settle = (outcome: Put['outcome']): void => {
        if (settled) return;
        settled = true;
        record.outcome = outcome;
        this.agenda.schedule(this.rng.between(1, 15), next);
      };
      // The client's own connection: its reply is lost if `via` dies or freezes for good.
      this.agenda.schedule(1, () => {
        this.put(via, record.payload).then(
          () => settle('acked'),
          (error: unknown) => settle(error instanceof Refused ? 'refused' : 'unsure'),
        );
      });
      // A client gives up after 5 s: unsure.
      this.agenda.schedule(5_000, () => settle('unsure'));
    };
    next();
  }

  private fault(): void {
    if (this.stopped) return;
    this.faults += 1;
    const target = this.rng.pick(this.nodes);
    const others = this.nodes.filter((node) => node !== target);
    const kind = this.rng.int(5);
    const lastsMs = this.rng.between(200, 3_500);
    if (kind === 0 && target.up) {
      this.note(`kill ${target.id} for ${lastsMs} ms`);
      this.kill(target);
      this.agenda.schedule(lastsMs, () => this.restart(target));
    } else if (kind === 1 && !target.paused) {
      this.note(`pause ${target.id} for ${lastsMs} ms`);
      target.paused = true;
      this.agenda.schedule(lastsMs, () => this.resume(target));
    } else {
      const cuts =
        kind === 2
          ? others.flatMap((other) => [`${target.id}>${other.id}`, `${other.id}>${target.id}`])
          : kind === 3
            ? others.map((other) => `${target.id}>${other.id}`)
            : others.map((other) => `${other.id}>${target.id}`);
      this.note(`cut ${cuts.join(' ')} for ${lastsMs} ms`);
      for (const cut of cuts) this.cut.add(cut);
      this.agenda.schedule(lastsMs, () => {
        for (const cut of cuts) this.cut.delete(cut);
      });
    }
    // Mostly one fault at a time (as the fault tests on real processes), with a quiet spell
    // between; sometimes the next starts while this one lasts (a lagging replica, then a leader lost).
    const overlap = this.rng.chance(0.4);
    this.agenda.schedule(overlap ? this.rng.between(100, lastsMs) : lastsMs + this.rng.between(100, 1_200), () => this.fault());
  }

  private kill(node: SimNode): void {
    node.up = false;
    node.paused = false;
    node.held = [];
    node.life += 1;
    for (const replicator of node.replicators.values()) replicator.stop(new Unsure('killed'));
    node.replicators = new Map();
    node.asking = new Set();
  }

  /** A restart: the copies and the applied log survive (kill -9 keeps what was written); the rest is new. */
  private restart(node: SimNode): void {
    if (node.up) return;
    node.up = true;
    node.monitor = this.makeMonitor(node);
    this.note(`restart ${node.id}`);
    this.follow(node, []);
  }

  private resume(node: SimNode): void {
    if (!node.paused) return;
    node.paused = false;
    this.note(`resume ${node.id}`);
    const work = node.held;
    node.held = [];
    for (const run of work) run();
  }

  async run(): Promise<DataSimResult> {
    const { durationMs, writers } = this.options;
    // The topic, created while everything is up.
    const first = this.rng.int(this.nodes.length) + 1;
    const voters = this.nodes.map((node) => node.id);
    const create: MetadataCommand = {
      kind: 'CreateTopic',
      topic: TOPIC,
      initialLeader: first,
      replicas: replicaSet(first, this.options.factor, voters, voters),
    };
    this.global.apply(encodeCommand(create), 1);
    this.log.push(create);
    this.heartbeat();
    const beat = (): void => {
      this.heartbeat();
      for (const node of this.nodes) if (this.responsive(node)) void node.monitor.tick();
      if (!this.quiet()) this.agenda.schedule(HEARTBEAT_MS, beat);
    };
    this.agenda.schedule(HEARTBEAT_MS, beat);
    for (let index = 0; index < writers; index++) this.writer(index);
    this.agenda.schedule(this.rng.between(200, 800), () => this.fault());
    this.agenda.schedule(durationMs, () => {
      this.stopped = true;
      this.note('heal everything');
      this.cut.clear();
      for (const node of this.nodes) {
        this.restart(node);
        this.resume(node);
      }
    });
    // Load and faults, then quiet down: every PUT settled, replicas caught up.
    const endAt = durationMs + 20_000;
    for (let steps = 0; this.agenda.size > 0 && steps < 2_000_000; steps++) {
      const event = this.agenda.next();
      if (event === undefined || event.at > endAt) break;
      if (event.cancelled) continue;
      event.run();
      // Let the promise chains this event started run to their ends before the next one.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped && this.quiet()) break;
    }
    this.check();
    const count = (outcome: Put['outcome']) => this.puts.filter((put) => put.outcome === outcome).length;
    return {
      seed: this.options.seed,
      violations: this.violations,
      acked: count('acked'),
      refused: count('refused'),
      unsure: this.puts.length - count('acked') - count('refused'),
      segments: this.global.topic(TOPIC)?.currentSegment ?? 0,
      failovers: this.failovers,
      faults: this.faults,
      trace: this.trace,
    };
  }

  /** After the heal: every PUT has its outcome and every sealed segment's replicas hold it. */
  private quiet(): boolean {
    if (!this.stopped) return false;
    if (this.puts.some((put) => put.outcome === undefined)) return false;
    return this.nodes.every((node) => [...node.replicators.values()].every((replicator) => replicator.caughtUp()));
  }

  private check(): void {
    const state = this.global.topic(TOPIC);
    if (state === undefined) {
      this.violations.push('the topic is gone');
      return;
    }
    const logEntries: { payload: string; at: string }[] = [];
    for (let segment = 1; segment <= state.currentSegment; segment++) {
      const key = segmentKey(TOPIC, segment);
      const sealed = this.global.sealedCount(TOPIC, segment);
      const server = this.node(this.global.segmentLeader(TOPIC, segment) ?? 0);
      const served = server.copies.get(key)?.entries ?? [];
      let visible: number;
      if (sealed !== undefined) {
        if (served.length < sealed)
          this.violations.push(`${key} is sealed at ${sealed} but node ${server.id}, which serves it, holds ${served.length}`);
        visible = Math.min(sealed, served.length);
      } else {
        visible = server.replicators.get(key)?.commit ?? served.length;
      }
      for (let offset = 0; offset < visible; offset++) logEntries.push({ payload: served[offset] as string, at: `${segment}/${offset}` });
      // Every copy agrees with the served one as far as readers see and the copy goes.
      for (const node of this.nodes) {
        const entries = node.copies.get(key)?.entries ?? [];
        for (let offset = 0; offset < Math.min(entries.length, visible); offset++) {
          if (entries[offset] !== served[offset])
            this.violations.push(`${key}/${offset}: node ${node.id} holds ${entries[offset]}, node ${server.id} serves ${served[offset]}`);
        }
      }
    }
    const byPayload = new Map(this.puts.map((put) => [put.payload, put]));
    const seen = new Map<string, string>();
    const lastSeen = new Map<number, number>();
    for (const { payload, at } of logEntries) {
      const put = byPayload.get(payload);
      if (put === undefined) this.violations.push(`${at}: ${payload} was never sent`);
      else if (put.outcome === 'refused') this.violations.push(`${at}: ${payload} is in the log but its PUT was refused`);
      const before = seen.get(payload);
      if (before !== undefined) this.violations.push(`${payload} is in the log twice (${before} and ${at})`);
      seen.set(payload, at);
      if (put?.outcome === 'acked') {
        const sequence = Number(payload.slice(payload.indexOf('-') + 1));
        const previous = lastSeen.get(put.writer) ?? -1;
        if (sequence < previous)
          this.violations.push(`${payload} (${at}) comes after w${put.writer}-${previous}: out of its writer's order`);
        lastSeen.set(put.writer, Math.max(previous, sequence));
      }
    }
    for (const put of this.puts)
      if (put.outcome === 'acked' && !seen.has(put.payload)) this.violations.push(`${put.payload} was acknowledged and is not in the log`);
  }
}
