// The original's stress and multi-topic scripts, against three real nodes with segments of 10
// entries (so rollovers move every topic from node to node all the time): writers on every node
// at once; no error that is not retriable; every acknowledged PUT is read back, in each writer's
// order, exactly once by GETs spread over the nodes. CI runs them for a few seconds; the full
// runs are
//   WALRUS_TEST_CLUSTER_SECONDS=30 npx ava test/cluster/load.test.ts
// (the original's 30 s each).

import test from 'ava';
import { ClientError, WalrusClient } from '../../src/client/index.js';
import { TestCluster, withCluster } from '../helpers/cluster.js';
import { withTempDir } from '../helpers/kernel.js';

const SECONDS = Number(process.env.WALRUS_TEST_CLUSTER_SECONDS ?? 4);

interface Writer {
  readonly topic: string;
  readonly acked: string[];
  /** Entries whose PUT got no answer (PEER_TIMEOUT, TIMEOUT): they may be in the log once more. */
  readonly unsure: Set<string>;
  retriable: number;
  readonly fatal: string[];
}

/** PUTs numbered entries through `client` until `until`; retriable refusals are retried with the next number. */
async function write(client: WalrusClient, writer: Writer, prefix: string, payloadBytes: number, until: number): Promise<void> {
  const pad = 'x'.repeat(Math.max(0, payloadBytes - prefix.length - 8));
  for (let n = 0; Date.now() < until && writer.fatal.length === 0; n++) {
    const entry = `${prefix}${n}:${pad}`;
    try {
      await client.put(writer.topic, entry);
      writer.acked.push(entry);
    } catch (error) {
      if (!(error instanceof ClientError) || !error.retriable) {
        writer.fatal.push(String(error));
        return;
      }
      writer.retriable += 1;
      if (error.code === 'TIMEOUT' || error.serverCode === 'PEER_TIMEOUT') writer.unsure.add(entry);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** GETs of `topic` spread over every node until EMPTY everywhere; returns what came, in delivery order. */
async function readAll(clients: readonly WalrusClient[], topic: string): Promise<string[]> {
  const got: string[] = [];
  let empties = 0;
  for (let turn = 0; empties < clients.length; turn++) {
    const entry = await (clients[turn % clients.length] as WalrusClient).get(topic);
    if (entry === null) empties += 1;
    else {
      empties = 0;
      got.push(entry);
    }
  }
  return got;
}

/** Checks a writer's topic: its acknowledged entries in order, each once (an unsure one at most twice). */
function sameSequence(read: readonly string[], writer: Writer, prefix: string): string | undefined {
  const mine = read.filter((entry) => entry.startsWith(prefix));
  const seen = new Set<string>();
  const ordered: string[] = [];
  for (const entry of mine) {
    if (seen.has(entry)) {
      if (!writer.unsure.has(entry)) return `${entry.slice(0, 20)} delivered twice`;
      continue;
    }
    seen.add(entry);
    ordered.push(entry);
  }
  const acked = new Set(writer.acked);
  const kept = ordered.filter((entry) => acked.has(entry) || writer.unsure.has(entry));
  if (kept.length !== ordered.length) return `${ordered.length - kept.length} entries read that were never sent`;
  const ackedRead = kept.filter((entry) => acked.has(entry));
  if (ackedRead.length !== writer.acked.length)
    return `${writer.acked.length - ackedRead.length} of ${writer.acked.length} acknowledged entries missing`;
  for (const [index, entry] of ackedRead.entries()) if (entry !== writer.acked[index]) return `out of order at ${index}`;
  return undefined;
}

test.serial(
  `stress: 16 connections over all three nodes, ${SECONDS} s of 1 KiB PUTs to one topic: no error that is not retriable, every acknowledged PUT read back once, in order`,
  async (t) => {
    t.timeout(60_000 + SECONDS * 4_000);
    await withTempDir(async (dir) => {
      const cluster = await TestCluster.start(dir);
      const clients: WalrusClient[] = [];
      try {
        await cluster.client(1).register('stress_test_topic');
        const until = Date.now() + SECONDS * 1000;
        const writers: Writer[] = [];
        const runs: Promise<void>[] = [];
        for (let connection = 0; connection < 16; connection++) {
          const id = cluster.ids[connection % 3] as number;
          const client = new WalrusClient({ host: '127.0.0.1', port: cluster.clientPorts.get(id) as number, timeoutMs: 15_000 });
          clients.push(client);
          const writer: Writer = { topic: 'stress_test_topic', acked: [], unsure: new Set(), retriable: 0, fatal: [] };
          writers.push(writer);
          runs.push(write(client, writer, `c${connection}-`, 1024, until));
        }
        await Promise.all(runs);
        const fatal = writers.flatMap((writer) => writer.fatal);
        t.deepEqual(fatal, [], cluster.problems());
        const acked = writers.reduce((sum, writer) => sum + writer.acked.length, 0);
        t.true(acked > 100, `only ${acked} PUTs acknowledged`);
        const read = await readAll(
          cluster.ids.map((id) => cluster.client(id)),
          'stress_test_topic',
        );
        for (const [connection, writer] of writers.entries()) {
          const problem = sameSequence(read, writer, `c${connection}-`);
          t.is(problem, undefined, `connection ${connection}: ${problem}`);
        }
        t.log(
          `${acked} PUTs acknowledged, ${writers.reduce((sum, writer) => sum + writer.retriable, 0)} retriable refusals, ${read.length} read back`,
        );
      } finally {
        for (const client of clients) await client.close();
        await cluster.close();
      }
    });
  },
);

test.serial(
  `multi-topic: 100 topics written at once for ${SECONDS} s through all nodes; each reads back exactly its acknowledged sequence, then EMPTY`,
  async (t) => {
    t.timeout(60_000 + SECONDS * 4_000);
    await withCluster({}, async (cluster) => {
      const topics = Array.from({ length: 100 }, (_, index) => `stress_topic_${index}`);
      for (const [index, topic] of topics.entries()) await cluster.client(cluster.ids[index % 3] as number).register(topic);
      const until = Date.now() + SECONDS * 1000;
      const writers = topics.map((topic): Writer => ({ topic, acked: [], unsure: new Set(), retriable: 0, fatal: [] }));
      // One connection per node carries many topics' PUTs at once (pipelined across topics).
      await Promise.all(writers.map((writer, index) => write(cluster.client(cluster.ids[index % 3] as number), writer, 'm-', 64, until)));
      t.deepEqual(
        writers.flatMap((writer) => writer.fatal),
        [],
        cluster.problems(),
      );
      for (const [index, writer] of writers.entries()) {
        const reader = cluster.client(cluster.ids[(index + 1) % 3] as number);
        const read: string[] = [];
        for (;;) {
          const entry = await reader.get(writer.topic);
          if (entry === null) break;
          read.push(entry);
        }
        const problem = sameSequence(read, writer, 'm-');
        t.is(problem, undefined, `${writer.topic}: ${problem}`);
      }
      t.log(`${writers.reduce((sum, writer) => sum + writer.acked.length, 0)} PUTs acknowledged over 100 topics`);
    });
  },
);
