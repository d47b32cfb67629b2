// Replicated segments on three real nodes (replication.factor 3, acks quorum; issue 14, before
// failover): every acknowledged PUT is on the disks of a majority of the nodes, at the same
// offset; readers see exactly what was acknowledged, in order, across rollovers that move the
// open segment from node to node; with one follower down PUTs go on, and with none of the
// leader's followers answering no PUT is acknowledged (never OK), and once they answer again
// everything acknowledged is read back.

import { join } from 'node:path';
import test from 'ava';
import { ClientError } from '../../src/client/index.js';
import { Walrus } from '../../src/engine/walrus.js';
import { type TestCluster, withCluster } from '../helpers/cluster.js';
import { clean, describeReport, History } from '../helpers/history.js';
import { silent } from '../helpers/kernel.js';

const REPLICATED = 'replication:\n  factor: 3\n  commitTimeoutMs: 1500\n';

/** GETs through `client` until EMPTY (at most `max`). */
/**
 * GETs through `via` until EMPTY (at most `max`). A retriable refusal (a node just back whose
 * view lags, a position its replicas have not recorded yet) is retried after a pause, at most 50
 * times in all, and logged: GET never skips, so the entries read are still the whole log.
 */
async function drain(cluster: TestCluster, via: number, topic: string, max: number, log?: (line: string) => void): Promise<string[]> {
  const got: string[] = [];
  let retries = 0;
  for (let index = 0; index < max; index++) {
    let entry: string | null;
    try {
      entry = await cluster.client(via).get(topic);
    } catch (error) {
      if (!(error instanceof ClientError) || !error.retriable || retries >= 50) throw error;
      retries += 1;
      log?.(`GET retried after: ${error.serverCode ?? error.code} ${error.message}`);
      index -= 1;
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    if (entry === null) return got;
    got.push(entry);
  }
  return got;
}

/** What node `id`'s engine holds of segments 1..`segments` of `topic`, and its GET position in each (the node must be stopped). */
async function onDisk(dir: string, id: number, topic: string, segments: number): Promise<{ held: string[][]; consumed: number[] }> {
  const wal = await Walrus.open({ dataDir: join(dir, 'data', `node_${id}`, 'data'), logger: silent() });
  try {
    const held: string[][] = [];
    const consumed: number[] = [];
    for (let segment = 1; segment <= segments; segment++) {
      const key = `t_${topic}_s_${segment}`;
      const entries: string[] = [];
      for (let offset = 0; offset < wal.entryCount(key); offset++) entries.push(wal.readAt(key, offset)?.toString() ?? '');
      held.push(entries);
      consumed.push(wal.entryCount(key) - wal.pendingCount(key));
    }
    return { held, consumed };
  } finally {
    await wal.close();
  }
}

test.serial(
  'replication factor 3: every acknowledged PUT is on a majority of the disks at its offset, and GETs return exactly those, in order',
  async (t) => {
    t.timeout(120_000);
    await withCluster({ extraConfig: REPLICATED }, async (cluster, dir) => {
      await cluster.client(1).register('copies');
      const sent = Array.from({ length: 35 }, (_, index) => `c-${index}`);
      // Through every node in turn: most PUTs are forwarded, and the open segment moves on every 10.
      for (const [index, entry] of sent.entries()) await cluster.client(cluster.ids[index % 3] as number).put('copies', entry);
      const state = await cluster.client(2).state('copies');
      t.deepEqual(state.sealed_segments, { 1: 10, 2: 10, 3: 10 });
      t.deepEqual(await drain(cluster, 2, 'copies', 40), sent);
      // The followers' GET positions follow the leader's a moment later.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      for (const id of cluster.ids) await cluster.kill(id);
      const read = await Promise.all(cluster.ids.map((id) => onDisk(dir, id, 'copies', 4)));
      const disks = read.map((node) => node.held);
      const log = [sent.slice(0, 10), sent.slice(10, 20), sent.slice(20, 30), sent.slice(30)];
      for (const [segment, entries] of log.entries()) {
        for (const [offset, entry] of entries.entries()) {
          const holders = cluster.ids.filter((_, node) => disks[node]?.[segment]?.[offset] === entry);
          t.true(holders.length >= 2, `${entry} (segment ${segment + 1}, offset ${offset}) is on nodes ${holders.join(', ') || 'none'}`);
        }
        // No node holds anything else there: each copy is a prefix of the log.
        for (const [node, held] of disks.entries()) t.deepEqual(held[segment], entries.slice(0, held[segment]?.length), `node ${node + 1}`);
        // Every GET went out before the kill: a majority's cursors are at the segment's end.
        const atEnd = read.filter((node) => node.consumed[segment] === entries.length).length;
        t.true(
          atEnd >= 2,
          `segment ${segment + 1}: GET positions ${read.map((node) => node.consumed[segment]).join(', ')} of ${entries.length}`,
        );
      }
    });
  },
);

test.serial(
  "one follower down, PUTs go on; the leader's followers both frozen, no PUT is acknowledged; once they answer, nothing acknowledged is lost",
  async (t) => {
    t.timeout(120_000);
    await withCluster({ extraConfig: REPLICATED, env: { WALRUS_MAX_SEGMENT_ENTRIES: '1000' } }, async (cluster) => {
      const history = new History();
      await cluster.client(1).register('frozen');
      const leader = (await cluster.client(1).state('frozen')).leader_node;
      const [first, second] = cluster.ids.filter((id) => id !== leader) as [number, number];
      const put = async (entry: string): Promise<string> => {
        const settle = history.put('writer', entry);
        try {
          await cluster.client(leader).put('frozen', entry);
          settle('acked');
          return 'OK';
        } catch (error) {
          const code = error instanceof ClientError ? (error.serverCode ?? error.code) : String(error);
          settle(code === 'NOT_COMMITTED' || code === 'TIMEOUT' ? 'unsure' : 'refused');
          t.log(`${entry}: ${code} ${(error as Error).message}`);
          return code;
        }
      };
      for (let index = 0; index < 5; index++) t.is(await put(`before-${index}`), 'OK');
      await cluster.kill(first);
      for (let index = 0; index < 5; index++) t.is(await put(`one-down-${index}`), 'OK', 'a majority (leader and one follower) is up');
      const frozen = cluster.node(second).child;
      frozen.kill('SIGSTOP');
      try {
        const outcomes = [await put('frozen-0'), await put('frozen-1')];
        t.false(outcomes.includes('OK'), `PUTs with no follower answering: ${outcomes.join(', ')}`);
      } finally {
        frozen.kill('SIGCONT');
      }
      const leaderProcess = cluster.node(leader);
      // Only the test kills nodes (SIGKILL): any other exit is a crash.
      void leaderProcess.exited.then((finished) => {
        if (finished.signal !== 'SIGKILL') t.fail(`the leader exited by itself (${finished.code}): ${finished.stderr.slice(-3000)}`);
      });
      cluster.launch(first);
      await cluster.ready(first, 30_000);
      // Writes resume (the first PUTs may still meet the leader catching its followers up).
      let resumed = 'none';
      for (let attempt = 0; attempt < 50 && resumed !== 'OK'; attempt++) {
        resumed = await put(`after-${attempt}`);
        if (resumed !== 'OK') await new Promise((resolve) => setTimeout(resolve, 200));
      }
      t.is(resumed, 'OK', `PUTs are acknowledged again once the followers answer; ${cluster.problems()}`);
      for (const entry of await drain(cluster, first, 'frozen', 100, (line) => t.log(line))) history.got(entry);
      const report = history.check({ complete: true });
      t.log(describeReport(report));
      t.true(clean(report), describeReport(report));
    });
  },
);
