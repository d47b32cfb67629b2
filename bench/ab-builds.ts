// Two builds of Walrus side by side: a node of this checkout and a node of another checkout's
// build, started together, each taking rounds of the batches benchmark's produce row (one
// producer, linger 1 ms, 256 B entries, at most 16,000 sends unacknowledged) in alternating
// order, after a warm-up round each. For changes whose effect depends on the machine's moment
// (fresh memory on this VM): both nodes meet the same conditions within each round.
//
//   npm run build && (cd OTHER && npm run build) && node build/bench/ab-builds.js OTHER [--rounds 6] [--count 1000000]
//
// Prints each node's entries/s and node CPU µs/entry per round, then the ratio of every round.
// Both nodes run `storage.fsync: interval` every 1000 ms on their own temp directory and are
// stopped by PID however the run ends.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WalrusClient } from '../src/client/index.js';
import { launchWalrusNode, processCpuSeconds } from './server.bench.js';

type Launch = typeof launchWalrusNode;
type Node = Awaited<ReturnType<Launch>>;

const STORAGE = 'storage: { fsync: interval, fsyncIntervalMs: 1000 }';
const IN_FLIGHT = 16_000;

function option(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  if (at < 0) return fallback;
  const value = Number(args[at + 1]);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} needs a positive integer, got ${args[at + 1]}`);
  return value;
}

async function produce(node: Node, topic: string, count: number): Promise<{ rate: number; cpuPerEntry: number }> {
  const client = await WalrusClient.connect({ host: '127.0.0.1', port: node.port, timeoutMs: 60_000 });
  try {
    await client.register(topic);
    const producer = client.producer({ topic, lingerMs: 1 });
    const payload = 'x'.repeat(256);
    const pid = node.child.process.pid;
    const cpuBefore = processCpuSeconds(pid);
    const started = performance.now();
    const pending: (Promise<void> | undefined)[] = new Array(count);
    let head = 0;
    for (let index = 0; index < count; index++) {
      pending[index] = producer.send(payload);
      if (index - head >= IN_FLIGHT) {
        await pending[head];
        pending[head] = undefined;
        head += 250;
      }
    }
    await producer.flush();
    await Promise.all(pending.slice(head));
    const seconds = (performance.now() - started) / 1000;
    return { rate: count / seconds, cpuPerEntry: ((processCpuSeconds(pid) - cpuBefore) * 1e6) / count };
  } finally {
    await client.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const other = args[0];
  if (other === undefined || other.startsWith('--')) {
    throw new Error(
      'usage: node build/bench/ab-builds.js OTHER_CHECKOUT [--rounds N] [--count N] (OTHER_CHECKOUT built with npm run build)',
    );
  }
  const rounds = option(args, '--rounds', 6);
  const count = option(args, '--count', 1_000_000);
  const otherModule = pathToFileURL(join(resolve(other), 'build', 'bench', 'server.bench.js')).href;
  const launchOther = ((await import(otherModule)) as { launchWalrusNode: Launch }).launchWalrusNode;
  const root = mkdtempSync(join(tmpdir(), 'walrus-ab-'));
  const nodes: Node[] = [];
  try {
    const here = await launchWalrusNode(root, 'this-', STORAGE);
    nodes.push(here);
    const there = await launchOther(root, 'other-', STORAGE);
    nodes.push(there);
    const named: [string, Node][] = [
      ['this', here],
      ['other', there],
    ];
    console.log(
      `ab-builds: this checkout (pid ${here.child.process.pid}) against ${other} (pid ${there.child.process.pid}), ${rounds} rounds of ${count.toLocaleString('en-US')}`,
    );
    for (const [name, node] of named) {
      const warm = await produce(node, 'warm-up', count);
      console.log(`  warm-up ${name.padEnd(5)} ${Math.round(warm.rate).toLocaleString('en-US')} entries/s`);
    }
    const ratios: string[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? named : [...named].reverse();
      const result = new Map<string, number>();
      for (const [name, node] of order) {
        const { rate, cpuPerEntry } = await produce(node, `round-${round}`, count);
        result.set(name, rate);
        console.log(
          `  round ${round + 1} ${name.padEnd(5)} ${Math.round(rate).toLocaleString('en-US').padStart(10)} entries/s  node ${cpuPerEntry.toFixed(2)} µs/entry`,
        );
      }
      ratios.push(`${((result.get('this') as number) / (result.get('other') as number)).toFixed(2)}×`);
    }
    console.log(`  this / other by round: ${ratios.join(', ')}`);
  } finally {
    for (const node of nodes) await node.child.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
