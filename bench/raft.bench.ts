// Raft on this machine, in one process on loopback with real files, fdatasync and TCP:
// committed proposals per second for a group of 1 and of 3 members, with 1 and 64 proposals in
// flight, beside the floor of one fdatasync per commit (the group's own durability cost); and
// failover time — from stopping the leader to the next committed proposal — over 20 trials with
// the default timing (election timeout 1–2 s, heartbeat 150 ms).
//
//   npm run bench -- raft             # full run (about two minutes here)
//   npm run bench -- raft --smoke     # a few seconds

import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StateMachine } from '../src/contracts/consensus.js';
import type { NodeId } from '../src/plugins/raft/core/types.js';
import { DEFAULT_TIMING, RaftNode, type RaftTiming } from '../src/plugins/raft/node.js';
import { freePorts } from '../test/helpers/net.js';

export interface RaftBenchOptions {
  readonly smoke: boolean;
}

class Counter implements StateMachine {
  count = 0;
  apply(): unknown {
    this.count += 1;
    return this.count;
  }
  snapshot(): Uint8Array {
    return Buffer.from(String(this.count));
  }
  restore(data: Uint8Array): void {
    this.count = Number(Buffer.from(data).toString());
  }
}

interface Group {
  readonly nodes: Map<NodeId, RaftNode>;
  stop(): Promise<void>;
}

async function startGroup(root: string, size: number, timing: RaftTiming): Promise<Group> {
  const ports = await freePorts(size);
  const members = new Map(ports.map((port, index) => [index + 1, { host: '127.0.0.1', port }]));
  const nodes = new Map<NodeId, RaftNode>();
  for (const [id, address] of members) {
    nodes.set(
      id,
      await RaftNode.start({ id, dir: join(root, `n${id}`), host: address.host, port: address.port, members, timing }, new Counter()),
    );
  }
  return {
    nodes,
    async stop() {
      for (const node of nodes.values()) await node.stop();
    },
  };
}

async function leaderOf(group: Group, timeoutMs = 10_000): Promise<RaftNode> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leader = [...group.nodes.values()].find((node) => node.status().role === 'leader');
    if (leader !== undefined) return leader;
    if (Date.now() > deadline) throw new Error('no leader elected');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Proposals per second with `width` in flight, `count` in all. */
async function throughput(root: string, size: number, width: number, count: number): Promise<number> {
  const group = await startGroup(root, size, DEFAULT_TIMING);
  try {
    const leader = await leaderOf(group);
    const command = Buffer.alloc(64, 1);
    let started = 0;
    const lane = async (): Promise<void> => {
      while (started < count) {
        started += 1;
        await leader.propose(command);
      }
    };
    const begin = performance.now();
    await Promise.all(Array.from({ length: width }, lane));
    return (count / (performance.now() - begin)) * 1000;
  } finally {
    await group.stop();
  }
}

/** The floor of an awaited commit on one member: one write and one fdatasync. */
function syncFloor(root: string, count: number): number {
  const fd = openSync(join(root, 'floor.bin'), 'w');
  const record = Buffer.alloc(96, 1);
  const begin = performance.now();
  for (let index = 0; index < count; index++) {
    writeSync(fd, record, 0, record.length, index * record.length);
    fdatasyncSync(fd);
  }
  const rate = (count / (performance.now() - begin)) * 1000;
  closeSync(fd);
  return rate;
}

/** Milliseconds from stopping the leader to the next committed proposal, per trial. */
async function failovers(root: string, trials: number): Promise<number[]> {
  const times: number[] = [];
  for (let trial = 0; trial < trials; trial++) {
    const group = await startGroup(join(root, `failover-${trial}`), 3, DEFAULT_TIMING);
    try {
      const leader = await leaderOf(group);
      await leader.propose(Buffer.from('before'));
      const stoppedAt = performance.now();
      // As abrupt as a crash: no hand-over of leadership first.
      await leader.stop({ handOver: false });
      group.nodes.delete(leader.id);
      for (;;) {
        const next = [...group.nodes.values()].find((node) => node.status().role === 'leader');
        if (next !== undefined) {
          try {
            await next.propose(Buffer.from('after'));
            break;
          } catch {
            // Lost leadership again in between: look again.
          }
        }
        if (performance.now() - stoppedAt > 30_000) throw new Error('no commit within 30 s of the leader stopping');
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      times.push(performance.now() - stoppedAt);
    } finally {
      await group.stop();
    }
  }
  return times;
}

function rate(value: number): string {
  return Math.round(value).toLocaleString('en-US').padStart(10);
}

export async function runRaftBench(options: RaftBenchOptions): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'walrus-raft-bench-'));
  const log = (line: string): void => console.log(line);
  const count = (inFlight: number, size: number): number => (options.smoke ? 50 : inFlight === 1 ? (size === 1 ? 3000 : 1000) : 20_000);
  try {
    log(`\nraft (${options.smoke ? 'smoke sizes' : 'full sizes'})`);
    log(`  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}); temp dir ${tmpdir()}`);
    log('  every member on this machine: loopback TCP, its own raft.log with one fdatasync per Ready');
    const floor = syncFloor(root, options.smoke ? 50 : 1000);
    log(`  floor: write + fdatasync of one record                    ${rate(floor)} ops/s`);
    for (const size of [1, 3]) {
      for (const inFlight of [1, 64]) {
        const value = await throughput(join(root, `g${size}-${inFlight}`), size, inFlight, count(inFlight, size));
        log(
          `  ${String(size)} member${size === 1 ? ' ' : 's'}, ${String(inFlight).padStart(2)} in flight: committed proposals      ${rate(value)} /s  (${(value / floor).toFixed(2)}× the floor)`,
        );
      }
    }
    const trials = options.smoke ? 2 : 20;
    const times = (await failovers(root, trials)).sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)] ?? 0;
    const max = times[times.length - 1] ?? 0;
    log(
      `  failover, 3 members, ${trials} trials (leader stopped → next commit): median ${Math.round(median)} ms, max ${Math.round(max)} ms (election timeout ${DEFAULT_TIMING.electionMinMs}–${DEFAULT_TIMING.electionMaxMs} ms)`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
