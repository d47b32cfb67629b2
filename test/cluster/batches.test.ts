// The batch commands (MPUT, MGET, MFETCH; docs/protocol.md, "Batches") against three real nodes
// on loopback (WALRUS_MAX_SEGMENT_ENTRIES=10, so batches meet rollovers): refused batches write
// nothing, a batch lands whole in one segment (across a rollover too), a batch through a node
// that does not lead the open segment is forwarded as one unit and keeps its place among the
// PUTs and batches sent before and after it, and a producer's batches are read back in order by
// a consumer on another node. .ci/run runs this file on Raft and on etcd, as the whole suite.

import test from 'ava';
import type { ClientError, TopicStateJson, WalrusClient } from '../../src/client/index.js';
import { withCluster } from '../helpers/cluster.js';

const numbered = (prefix: string, count: number, from = 0): string[] =>
  Array.from({ length: count }, (_, index) => `${prefix}${from + index}`);

/** MGETs of `max` through `client` until EMPTY (at most `limit` entries), with each reply's size. */
async function drainBatches(
  client: WalrusClient,
  topic: string,
  max: number,
  limit = 100_000,
): Promise<{ entries: string[]; replies: number[] }> {
  const entries: string[] = [];
  const replies: number[] = [];
  while (entries.length < limit) {
    const batch = await client.mget(topic, max);
    if (batch.length === 0) break;
    replies.push(batch.length);
    entries.push(...batch);
  }
  return { entries, replies };
}

/** Every entry of every segment the STATE lists, by MFETCH, segment by segment. */
async function fetchSegments(client: WalrusClient, topic: string, state: TopicStateJson): Promise<string[][]> {
  const segments: string[][] = [];
  for (let segment = 1; segment <= state.current_segment; segment++) {
    const entries: string[] = [];
    for (;;) {
      const batch = await client.mfetch(topic, segment, entries.length, 7);
      if (batch.length === 0) break;
      entries.push(...batch);
    }
    segments.push(entries);
  }
  return segments;
}

test.serial(
  'refused batches write nothing: empty, sizes that do not add up, a split character, too many; the client refuses what cannot fit a frame',
  async (t) => {
    t.timeout(90_000);
    await withCluster({}, async (cluster) => {
      const client = cluster.client(1);
      await client.register('refusals');
      t.is(await client.raw('MPUT refusals'), 'ERR MPUT requires the payload sizes, then a line feed and the payloads');
      t.is(await client.raw('MPUT refusals 3 4'), 'ERR MPUT requires the payload sizes, then a line feed and the payloads');
      t.is(await client.raw('MPUT refusals 3\nab'), 'ERR MPUT payloads must add up to their sizes');
      t.is(await client.raw('MPUT refusals 1\nab'), 'ERR MPUT payloads must add up to their sizes');
      t.is(await client.raw('MPUT refusals 0\n'), 'ERR MPUT sizes must be positive integers');
      t.is(await client.raw('MPUT refusals 1 3\nééx'), 'ERR MPUT sizes must not split a UTF-8 character');
      t.is(
        await client.raw(`MPUT refusals ${Array(2001).fill('1').join(' ')}\n${'x'.repeat(2001)}`),
        'ERR MPUT takes at most 2000 payloads',
      );
      t.is(await client.raw('MPUT nosuch 1\nx'), 'ERR unknown topic nosuch');
      t.is(await client.raw('MGET refusals 0'), 'ERR MGET max must be an integer from 1 to 2000');
      t.is(await client.raw('MFETCH refusals 1 0'), 'ERR MFETCH requires a segment, an offset and a max');
      // The client checks before sending: nothing empty, nothing over one frame.
      const empty = await t.throwsAsync(client.mput('refusals', []));
      t.is((empty as ClientError).code, 'PROTOCOL');
      const big = await t.throwsAsync(client.mput('refusals', numbered('x'.repeat(300), 250)));
      t.is((big as ClientError).code, 'PROTOCOL');
      t.regex(big?.message ?? '', /the server accepts at most 65536: send fewer payloads at once/);
      t.deepEqual(await client.mfetch('refusals', 1, 0, 100), [], 'no refused batch wrote anything');
      t.is(await client.get('refusals'), null);
      // A payload may end with spaces and LFs in a batch (PUT's are trimmed).
      t.is(await client.mput('refusals', ['ends with a space ', 'two\nlines\n']), 2);
      t.deepEqual(await client.mget('refusals', 10), ['ends with a space ', 'two\nlines\n']);
    });
  },
);

test.serial(
  'a batch lands whole in one segment: 8 PUTs, then an MPUT of 5 fills segment 1 to 13 and the next one opens segment 2; MGET and MFETCH read them in order',
  async (t) => {
    t.timeout(90_000);
    await withCluster({}, async (cluster) => {
      const topic = 'whole';
      const state = await cluster
        .client(1)
        .state('whole')
        .catch(() => undefined);
      t.is(state, undefined);
      await cluster.client(1).register(topic);
      const leader = (await cluster.client(1).state(topic)).leader_node;
      const client = cluster.client(leader);
      for (const entry of numbered('p', 8)) await client.put(topic, entry);
      t.is(await client.mput(topic, numbered('a', 5)), 5);
      t.is(await client.mput(topic, numbered('b', 4)), 4);
      const after = await client.state(topic);
      t.deepEqual(after.sealed_segments, { 1: 13 }, JSON.stringify(after));
      const segments = await fetchSegments(cluster.client(leader === 1 ? 2 : 1), topic, after);
      t.deepEqual(segments, [[...numbered('p', 8), ...numbered('a', 5)], numbered('b', 4)]);
      // MGET: one segment per reply, at most max; GET and MGET share the one position.
      const reader = cluster.client(cluster.ids.find((id) => id !== leader) as number);
      t.deepEqual(await reader.mget(topic, 3), numbered('p', 3));
      t.is(await reader.get(topic), 'p3');
      t.deepEqual(await reader.mget(topic, 100), [...numbered('p', 4, 4), ...numbered('a', 5)], 'the rest of segment 1');
      t.deepEqual(await reader.mget(topic, 100), numbered('b', 4));
      t.deepEqual(await reader.mget(topic, 100), []);
      t.is(await client.get(topic), null);
    });
  },
);

test.serial(
  'batches through a node that does not lead the open segment are forwarded whole and keep their order among pipelined PUTs and batches, across rollovers',
  async (t) => {
    t.timeout(120_000);
    await withCluster({}, async (cluster) => {
      const topic = 'forwarded';
      await cluster.client(1).register(topic);
      const leader = (await cluster.client(1).state(topic)).leader_node;
      const through = cluster.ids.find((id) => id !== leader) as number;
      const client = cluster.client(through);
      // 30 rounds, all sent at once: a batch of 3, then a PUT; rollovers every 10 entries move the
      // open segment from node to node while they are in flight.
      const sent: string[] = [];
      const groups: string[][] = [];
      const answers: Promise<unknown>[] = [];
      for (let round = 0; round < 30; round++) {
        const batch = numbered(`r${round}-`, 3);
        groups.push(batch);
        sent.push(...batch, `r${round}-put`);
        answers.push(client.mput(topic, batch), client.put(topic, `r${round}-put`));
      }
      await Promise.all(answers);
      const reader = cluster.client(cluster.ids.find((id) => id !== leader && id !== through) as number);
      const { entries } = await drainBatches(reader, topic, 50);
      t.deepEqual(entries, sent, 'every entry once, in the order sent');
      // Each batch is in one segment, at consecutive positions.
      const state = await reader.state(topic);
      const segments = await fetchSegments(reader, topic, state);
      t.deepEqual(segments.flat(), sent);
      for (const batch of groups) {
        const home = segments.findIndex((segment) => segment.includes(batch[0] as string));
        const at = (segments[home] as string[]).indexOf(batch[0] as string);
        t.deepEqual((segments[home] as string[]).slice(at, at + batch.length), batch, `batch ${batch[0]} whole in segment ${home + 1}`);
      }
      t.true(Object.keys(state.sealed_segments).length >= 10, `rollovers happened: ${JSON.stringify(state.sealed_segments)}`);
      t.true(
        new Set(Object.values(state.segment_leaders)).size >= 2,
        `the open segment moved between nodes: ${JSON.stringify(state.segment_leaders)}`,
      );
    });
  },
);

test.serial(
  'a producer on one node and a consumer on another: 3,000 payloads in batches, read back in send order, once each',
  async (t) => {
    t.timeout(120_000);
    await withCluster({}, async (cluster) => {
      const topic = 'stream';
      await cluster.client(1).register(topic);
      const producer = cluster.client(2).producer({ topic, lingerMs: 2, batchEntriesMax: 64 });
      const sent = numbered('m', 3000);
      const settled: number[] = [];
      await Promise.all(sent.map((payload, index) => producer.send(payload).then(() => settled.push(index))));
      await producer.close();
      t.deepEqual(
        settled,
        sent.map((_, index) => index),
        'send() promises settled in send order',
      );
      const rejected = await t.throwsAsync(producer.send('late'));
      t.is((rejected as ClientError).code, 'CONNECTION');
      const consumer = cluster.client(3).consumer({ topic, maxEntries: 500, pollMs: 20 });
      const got: string[] = [];
      for await (const entry of consumer) {
        got.push(entry);
        if (got.length === sent.length) break;
      }
      t.deepEqual(got, sent);
      t.deepEqual(await cluster.client(1).mget(topic, 10), [], 'nothing left, nothing twice');
      // A batch at a time: the same order.
      await cluster.client(2).mput(topic, ['x0', 'x1', 'x2']);
      const batches = cluster.client(1).consumer({ topic, maxEntries: 2, pollMs: 20 });
      const read: string[][] = [];
      for await (const entries of batches.batches()) {
        read.push(entries);
        if (read.flat().length === 3) break;
      }
      t.deepEqual(read, [['x0', 'x1'], ['x2']]);
    });
  },
);

test.serial('a consumer waits for entries that come after it started, and stop() ends its wait', async (t) => {
  t.timeout(60_000);
  await withCluster({}, async (cluster) => {
    const topic = 'later';
    await cluster.client(1).register(topic);
    const consumer = cluster.client(2).consumer({ topic, maxEntries: 10, pollMs: 20 });
    const got: string[] = [];
    const reading = (async () => {
      for await (const entry of consumer) got.push(entry);
    })();
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.deepEqual(got, []);
    await cluster.client(3).mput(topic, ['one', 'two']);
    const deadline = Date.now() + 10_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    consumer.stop();
    await reading;
    t.deepEqual(got, ['one', 'two']);
  });
});

test.serial(
  'a consumer reading by position from the start, with reads ahead, gets every entry once in order across rollovers (read through another node than the one written to), resumes from its position, and consumes nothing',
  async (t) => {
    t.timeout(60_000);
    await withCluster({}, async (cluster) => {
      const topic = 'by_position';
      await cluster.client(1).register(topic);
      // Batches of 7 against segments of 10: every segment holds a batch or two whole.
      const sent = numbered('p', 140);
      for (let at = 0; at < sent.length; at += 7) await cluster.client(1).mput(topic, sent.slice(at, at + 7));
      const state = await cluster.client(3).state(topic);
      t.true(Object.keys(state.sealed_segments).length >= 9, 'the batches rolled the topic over several times');
      const consumer = cluster.client(3).consumer({ topic, from: 'start', maxEntries: 4, readAhead: 3, pollMs: 20 });
      const got: string[] = [];
      for await (const entry of consumer) {
        got.push(entry);
        if (got.length === sent.length) break;
      }
      t.deepEqual(got, sent);
      const segments = await fetchSegments(cluster.client(1), topic, await cluster.client(1).state(topic));
      let last = segments.length - 1;
      while (last > 0 && (segments[last] as string[]).length === 0) last -= 1;
      t.deepEqual(consumer.position, { segment: last + 1, offset: (segments[last] as string[]).length }, 'position: after the last entry');
      // A second one from that position waits for what comes next, and gets only that.
      const later = cluster.client(2).consumer({ topic, from: consumer.position, pollMs: 20 });
      await cluster.client(2).mput(topic, ['q0', 'q1']);
      const next: string[] = [];
      for await (const entries of later.batches()) {
        next.push(...entries);
        if (next.length >= 2) break;
      }
      t.deepEqual(next, ['q0', 'q1']);
      // Nothing was consumed: the shared position still starts at the first entry.
      t.deepEqual(await cluster.client(1).mget(topic, 3), ['p0', 'p1', 'p2']);
    });
  },
);
