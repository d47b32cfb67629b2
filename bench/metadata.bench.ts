// Metadata changes per second with the built-in Raft against consensus-etcd (issue 15), in one
// run: three Walrus nodes on loopback (bench/walrus-nodes.ts) for each, the etcd one with a
// single-member etcd of its own (Debian's etcd-server, on a temp directory and free loopback
// ports, stopped by its PID; the suite says so and skips that half when etcd is not installed).
//
// Rows, each through node 1:
// - REGISTER, sequential: fresh topics one after another (each a metadata command committed and
//   applied before the reply);
// - REGISTER, 16 in flight: the same with 16 callers at once;
// - PUT with a rollover every 10 entries (`segments.maxEntries` 10): sequential PUTs to a topic
//   led by node 1; each tenth fills the segment and the next waits for the rollover's command.
//
//   npm run bench -- metadata            # full sizes
//   npm run bench -- metadata --smoke    # a few seconds

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdMissing, startEtcd, type TestEtcd } from '../test/helpers/etcd.js';
import { formatRate, installExitHook, loadAverage } from './server.bench.js';
import { registerTopic, startWalrusNodes, type WalrusNodes } from './walrus-nodes.js';

export interface MetadataBenchOptions {
  readonly smoke: boolean;
}

interface Row {
  readonly consensus: string;
  readonly row: string;
  readonly perSecond: number;
  readonly p50Ms: number;
}

export async function runMetadataBench(options: MetadataBenchOptions): Promise<void> {
  installExitHook();
  const registers = options.smoke ? 20 : 300;
  const puts = options.smoke ? 50 : 1000;
  console.log('\nmetadata: changes per second, built-in Raft against consensus-etcd (three nodes each, through node 1)');
  console.log(
    `  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown'}), load average ${loadAverage()}`,
  );
  console.log(`  ${registers} REGISTERs per row; ${puts} PUTs of 64 B with a rollover every 10`);
  const rows: Row[] = [];
  const root = mkdtempSync(join(tmpdir(), 'walrus-metadata-bench-'));
  try {
    for (const consensus of ['raft', 'etcd'] as const) {
      if (consensus === 'etcd' && etcdMissing !== undefined) {
        console.log(`  consensus-etcd skipped: ${etcdMissing}`);
        continue;
      }
      const etcd: TestEtcd | undefined = consensus === 'etcd' ? await startEtcd() : undefined;
      const settings = [
        'segments: { maxEntries: 10 }',
        'replication: { factor: 3 }',
        ...(etcd === undefined ? [] : ['consensus: etcd', `etcd: { endpoints: ["${etcd.endpoint}"] }`]),
      ];
      let cluster: WalrusNodes | undefined;
      try {
        cluster = await startWalrusNodes(join(root), settings, { clientTimeoutMs: 30_000 });
        const client = cluster.client(1);
        const tag = `${consensus}${Date.now().toString(36)}`;
        await client.register(`${tag}-warm`);
        rows.push({
          consensus,
          row: 'REGISTER, sequential',
          ...(await timed(registers, 1, (index) => client.register(`${tag}-s${index}`))),
        });
        rows.push({
          consensus,
          row: 'REGISTER, 16 in flight',
          ...(await timed(registers, 16, (index) => client.register(`${tag}-p${index}`))),
        });
        // A topic whose open segment node 1 leads, so the PUTs go to it directly.
        let topic = '';
        for (let attempt = 0; attempt < 50 && topic === ''; attempt++) {
          const candidate = `${tag}-r${attempt}`;
          if ((await registerTopic(cluster, candidate, 1)) === 1) topic = candidate;
        }
        if (topic === '') throw new Error('no topic was placed on node 1 in 50 tries');
        const result = await timed(puts, 1, () => client.put(topic, 'x'.repeat(64)));
        rows.push({ consensus, row: 'PUT, rollover every 10', perSecond: result.perSecond / 10, p50Ms: result.p50Ms });
        const state = await client.state(topic);
        console.log(
          `  ${consensus}: the PUT topic has ${Object.keys(state.sealed_segments).length} sealed segments (expected ${Math.floor(puts / 10) - 1} or more)`,
        );
      } finally {
        await cluster?.stop();
        await etcd?.stop();
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  console.log('\n| consensus | row                    | per second          | p50 ms |');
  console.log('|-----------|------------------------|---------------------|--------|');
  for (const row of rows) {
    const unit = row.row.startsWith('PUT') ? 'rollovers/s' : 'REGISTERs/s';
    console.log(
      `| ${row.consensus.padEnd(9)} | ${row.row.padEnd(22)} | ${`${formatRate(row.perSecond)} ${unit}`.padEnd(19)} | ${row.p50Ms.toFixed(2).padStart(6)} |`,
    );
  }
  console.log(`\n  load average at end: ${loadAverage()}`);
}

/** Runs `count` calls, `lanes` at a time; the rate of completions and the median call time. */
async function timed(
  count: number,
  lanes: number,
  call: (index: number) => Promise<unknown>,
): Promise<{ perSecond: number; p50Ms: number }> {
  const times: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < count) {
        const index = next++;
        const at = performance.now();
        await call(index);
        times.push(performance.now() - at);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return { perSecond: count / elapsed, p50Ms: times[Math.floor(times.length / 2)] ?? 0 };
}
