// GET's shared consumption position: every entry once, in append order, across sealed segments;
// it moves only when the reply is delivered; concurrent GETs on a topic take turns; a restart
// neither replays nor skips.

import test from 'ava';
import { Walrus } from '../../src/engine/walrus.js';
import { limits } from '../../src/kernel/limits.js';
import { type LeaseSource, LeaseTable } from '../../src/node/leases.js';
import { type NextResult, type TopicLayout, TopicReader } from '../../src/node/reader.js';
import { SegmentStore } from '../../src/node/segment-store.js';
import { silent, withTempDir } from '../helpers/kernel.js';

/** A one-node metadata replica: topic → open segment and sealed counts. */
class Layout implements LeaseSource, TopicLayout {
  epoch = 0;
  readonly open = new Map<string, number>();
  readonly sealed = new Map<string, number>();
  /** `topic/segment` keys another node led. */
  readonly elsewhere = new Set<string>();
  private readonly listeners = new Set<() => void>();

  create(topic: string): void {
    this.open.set(topic, 1);
    this.changed();
  }

  rollover(topic: string, count: number): void {
    const segment = this.open.get(topic) as number;
    this.sealed.set(`${topic}/${segment}`, count);
    this.open.set(topic, segment + 1);
    this.changed();
  }

  openSegment(topic: string): number | undefined {
    return this.open.get(topic);
  }

  sealedCount(topic: string, segment: number): number | undefined {
    return this.sealed.get(`${topic}/${segment}`);
  }

  ledElsewhere(topic: string, segment: number): boolean {
    return this.elsewhere.has(`${topic}/${segment}`);
  }

  ownedOpenSegments() {
    return [...this.open].map(([topic, segment]) => ({ topic, segment }));
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    this.epoch += 1;
    for (const listener of this.listeners) listener();
  }
}

async function node(dir: string, layout: Layout, maxEntries: number, holdMsMax?: number, fsync: 'none' | 'each' = 'none') {
  const wal = await Walrus.open({ dataDir: dir, logger: silent(), consistency: 'strict', fsync });
  const leases = new LeaseTable({ nodeId: 1, source: layout });
  leases.start();
  // A single node's rollover: as soon as a segment is full, seal it with its count.
  const store: SegmentStore = new SegmentStore({
    wal,
    leases,
    maxEntries,
    onFull: (topic, _segment, count) => queueMicrotask(() => layout.rollover(topic, count)),
  });
  const reader = new TopicReader(store, layout, holdMsMax === undefined ? {} : { holdMsMax });
  return {
    store,
    reader,
    /** PUT: append to the open segment, retrying while a full one is being rolled over. */
    async put(topic: string, payload: string) {
      for (;;) {
        try {
          await store.append(topic, layout.openSegment(topic) as number, payload);
          return;
        } catch (error) {
          if (!(error as { retriable?: boolean }).retriable) throw error;
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      }
    },
    /** GET: the next payload, delivered, or null for EMPTY. */
    async get(topic: string): Promise<string | null> {
      const result: NextResult = await reader.next(topic);
      if (result.kind === 'empty') return null;
      if (result.kind === 'unknown-topic') throw new Error(`unknown topic ${topic}`);
      if (result.kind === 'elsewhere') throw new Error(`segment ${result.segment} is on another node`);
      await result.entry.delivered();
      return result.entry.payload.toString();
    },
    async close() {
      leases.stop();
      await wal.close();
    },
  };
}

type TestNode = Awaited<ReturnType<typeof node>>;

/** A node in a fresh temp directory with `topic` created, closed however `body` ends. */
async function withNode(
  topic: string,
  options: { maxEntries: number; holdMsMax?: number; fsync?: 'none' | 'each' },
  body: (n: TestNode, layout: Layout) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const layout = new Layout();
    layout.create(topic);
    const n = await node(dir, layout, options.maxEntries, options.holdMsMax, options.fsync);
    try {
      await body(n, layout);
    } finally {
      await n.close();
    }
  });
}

test('60 entries with a threshold of 10: six sealed segments, and 60 GETs return them in order, then EMPTY', async (t) => {
  await withNode('logs', { maxEntries: 10 }, async (n, layout) => {
    for (let index = 0; index < 60; index++) await n.put('logs', `m${index}`);
    await new Promise((resolve) => setImmediate(resolve));
    t.deepEqual(
      [1, 2, 3, 4, 5, 6].map((segment) => layout.sealedCount('logs', segment)),
      [10, 10, 10, 10, 10, 10],
    );
    const got: (string | null)[] = [];
    for (let index = 0; index < 61; index++) got.push(await n.get('logs'));
    t.deepEqual(got, [...Array.from({ length: 60 }, (_, index) => `m${index}`), null]);
    t.deepEqual(await n.reader.next('nothing'), { kind: 'unknown-topic' });
  });
});

test('a GET whose reply was not written leaves the entry for the next; concurrent GETs take turns', async (t) => {
  await withNode('q', { maxEntries: 1000 }, async (n) => {
    for (const word of ['a', 'b', 'c', 'd', 'e']) await n.put('q', word);
    const first = await n.reader.next('q');
    t.is(first.kind, 'entry');
    if (first.kind === 'entry') first.entry.abandoned();
    t.is(await n.get('q'), 'a', 'the abandoned entry comes again');
    const together = await Promise.all([n.get('q'), n.get('q'), n.get('q'), n.get('q'), n.get('q')]);
    t.deepEqual(together, ['b', 'c', 'd', 'e', null]);
  });
});

test('a restart neither replays nor skips: the position is persisted per segment', async (t) => {
  await withTempDir(async (dir) => {
    const layout = new Layout();
    layout.create('r');
    const first = await node(dir, layout, 10);
    for (let index = 0; index < 25; index++) await first.put('r', `m${index}`);
    for (let index = 0; index < 13; index++) await first.get('r');
    await first.close();
    await new Promise((resolve) => setImmediate(resolve));
    const again = await node(dir, layout, 10);
    try {
      const rest: (string | null)[] = [];
      for (let index = 0; index < 13; index++) rest.push(await again.get('r'));
      t.deepEqual(rest, [...Array.from({ length: 12 }, (_, index) => `m${index + 13}`), null]);
    } finally {
      await again.close();
    }
  });
});

test('a peeked entry whose reply is never written lets go of its topic after holdMsMax, and is delivered again', async (t) => {
  await withNode('h', { maxEntries: 1000, holdMsMax: 80 }, async (n) => {
    await n.put('h', 'only');
    const stuck = await n.reader.next('h');
    t.is(stuck.kind, 'entry', 'held by a reply that is never written');
    const started = performance.now();
    // The reader's sweep timer does not keep a process alive (a held entry belongs to a live
    // connection, which does); here a plain timer stands in for that connection.
    const alive = setInterval(() => undefined, 1000);
    const again = await n.get('h').finally(() => clearInterval(alive));
    t.is(again, 'only', 'the next GET waits for the hold to lapse, then gets the same entry');
    const waited = performance.now() - started;
    t.true(waited >= 60 && waited < 2000, `waited ${waited.toFixed(0)} ms for a hold of 80 ms`);
    if (stuck.kind === 'entry') await stuck.entry.delivered();
    t.is(await n.get('h'), null, 'a lapsed hold delivers nothing: the entry was consumed once');
  });
});

test('the next GET goes on once the position has moved, without waiting for the record that persists it', async (t) => {
  // fsync each: a consumption record is acknowledged only after its sync.
  await withNode('f', { maxEntries: 1000, fsync: 'each' }, async (n) => {
    for (const word of ['a', 'b']) await n.put('f', word);
    const first = await n.reader.next('f');
    if (first.kind !== 'entry') return t.fail('expected an entry');
    let persisted = false;
    const delivered = first.entry.delivered().then(() => {
      persisted = true;
    });
    const second = await n.reader.next('f');
    t.false(persisted, "the second GET did not wait for the first one's sync");
    t.is(second.kind === 'entry' ? second.entry.payload.toString() : second.kind, 'b');
    if (second.kind === 'entry') await second.entry.delivered();
    await delivered;
    t.true(persisted);
  });
});

test('a GET whose position is in a segment another node led is refused, never EMPTY and never moved past it', async (t) => {
  await withNode('logs', { maxEntries: 2 }, async (n, layout) => {
    await n.put('logs', 'a');
    await n.put('logs', 'b');
    await new Promise((resolve) => setImmediate(resolve));
    // Segment 2 was led (and written) by another node, then sealed; segment 3 is open here.
    layout.elsewhere.add('logs/2');
    layout.rollover('logs', 2);
    t.is(await n.get('logs'), 'a');
    t.is(await n.get('logs'), 'b');
    const refused = await n.reader.next('logs');
    t.deepEqual(refused, { kind: 'elsewhere', segment: 2 });
    // Asking again does not move the position past segment 2.
    t.deepEqual(await n.reader.next('logs'), { kind: 'elsewhere', segment: 2 });
  });
});

/**
 * A second node's reader of the topic `owner` holds: every segment is led elsewhere, and its
 * remote reads call the owner's reader directly (counting the requests a node would send).
 */
function borrower(owner: TestNode, layout: Layout) {
  const requests = { take: 0, settle: 0 };
  const view: TopicLayout = {
    openSegment: (topic) => layout.openSegment(topic),
    sealedCount: (topic, segment) => layout.sealedCount(topic, segment),
    ledElsewhere: () => true,
    owner: () => 1,
  };
  const noStore = {
    read: () => {
      throw new Error('the borrower has no entries of its own');
    },
    readRun: () => {
      throw new Error('the borrower has no entries of its own');
    },
    consumed: () => 0,
    consumeAt: () => Promise.reject(new Error('the borrower has no entries of its own')),
    consumeRun: () => Promise.reject(new Error('the borrower has no entries of its own')),
  };
  const reader = new TopicReader(noStore, view, {
    remote: {
      take: async (_owner, { topic, segment, sealed, max, close }) => {
        requests.take += 1;
        if (close !== undefined) await owner.reader.settleForPeer(close.hold, close.consumed, true);
        return owner.reader.takeForPeer(topic, segment, sealed, 2000, max);
      },
      settle: async (_owner, hold, consumed, release) => {
        requests.settle += 1;
        return owner.reader.settleForPeer(hold, consumed, release);
      },
    },
  });
  return {
    reader,
    requests,
    async get(topic: string): Promise<string | null> {
      const result = await reader.next(topic);
      if (result.kind === 'empty') return null;
      if (result.kind !== 'entry') throw new Error(`unexpected ${result.kind}`);
      await result.entry.delivered();
      return result.entry.payload.toString();
    },
  };
}

const settleTime = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('GETs through another node borrow runs of entries: 300 pipelined GETs get all 300 in order in far fewer takes, then EMPTY', async (t) => {
  await withNode('far', { maxEntries: 100 }, async (n, layout) => {
    for (let index = 0; index < 300; index++) await n.put('far', `m${index}`);
    await new Promise((resolve) => setImmediate(resolve));
    const other = borrower(n, layout);
    const got = await Promise.all(Array.from({ length: 300 }, () => other.get('far')));
    t.deepEqual(
      got,
      Array.from({ length: 300 }, (_, index) => `m${index}`),
    );
    t.true(other.requests.take <= 30, `${other.requests.take} takes for 300 entries`);
    t.is(await other.get('far'), null);
    t.is(await n.get('far'), null, 'the holder consumed them all: the position is shared');
  });
});

test('GETs alternating between two other nodes: each borrows one entry and frees the segment with its reply', async (t) => {
  await withNode('alt', { maxEntries: 4 }, async (n, layout) => {
    for (let index = 0; index < 10; index++) await n.put('alt', `m${index}`);
    await new Promise((resolve) => setImmediate(resolve));
    const [one, two] = [borrower(n, layout), borrower(n, layout)];
    const got: (string | null)[] = [];
    for (let index = 0; index < 10; index++) {
      got.push(await (index % 2 === 0 ? one : two).get('alt'));
      // The holder's own GET would not have to wait for the segment: the reply freed it.
      const peek = n.reader.nextNow('alt');
      t.false(peek instanceof Promise, `segment free after GET ${index}`);
      if (!(peek instanceof Promise) && peek.kind === 'entry') peek.entry.abandoned();
    }
    t.deepEqual(
      got,
      Array.from({ length: 10 }, (_, index) => `m${index}`),
    );
    t.deepEqual([await one.get('alt'), await two.get('alt'), await n.get('alt')], [null, null, null]);
  });
});

test('a borrowed run left with an entry no GET wrote goes back after lendIdleMs: the holder serves it, once', async (t) => {
  await withNode('back', { maxEntries: 1000 }, async (n, layout) => {
    for (const word of ['a', 'b', 'c', 'd']) await n.put('back', word);
    const other = borrower(n, layout);
    // Three GETs at once borrow a run of three; the last one's reply is never written.
    const started = [other.reader.next('back'), other.reader.next('back'), other.reader.next('back')];
    const payloads: string[] = [];
    for (const [index, next] of started.entries()) {
      const result = await next;
      if (result.kind !== 'entry') return t.fail(`GET ${index}: ${result.kind}`);
      payloads.push(result.entry.payload.toString());
      if (index < 2) await result.entry.delivered();
      else result.entry.abandoned();
    }
    t.deepEqual(payloads, ['a', 'b', 'c']);
    t.is(other.requests.take, 1, 'one take for the three');
    await settleTime(limits.lendIdleMs * 10);
    t.deepEqual([await n.get('back'), await n.get('back'), await n.get('back')], ['c', 'd', null], 'the holder goes on at c');
    t.is(await other.get('back'), null);
  });
});

test('a borrowed entry whose reply was not written comes again with the next GET through that node', async (t) => {
  await withNode('again', { maxEntries: 1000 }, async (n, layout) => {
    for (const word of ['a', 'b', 'c']) await n.put('again', word);
    const other = borrower(n, layout);
    const first = await other.reader.next('again');
    if (first.kind !== 'entry') return t.fail(`expected an entry, got ${first.kind}`);
    first.entry.abandoned();
    t.deepEqual(
      [await other.get('again'), await other.get('again'), await other.get('again'), await other.get('again')],
      ['a', 'b', 'c', null],
    );
    t.is(await n.get('again'), null);
  });
});

test('a borrower that goes away: its hold ends after remoteHoldMsMax and the entries it had not delivered are served', async (t) => {
  await withNode('gone', { maxEntries: 1000, holdMsMax: 200 }, async (n) => {
    for (const word of ['a', 'b', 'c']) await n.put('gone', word);
    // The borrower takes two entries and is never heard from again (its node died).
    const taken = await n.reader.takeForPeer('gone', 1, undefined, 2000, 2);
    t.is(taken.kind, 'entries');
    if (taken.kind === 'entries') t.deepEqual(taken.payloads.map(String), ['a', 'b']);
    const alive = setInterval(() => undefined, 1000);
    const started = performance.now();
    const next = await n.get('gone').finally(() => clearInterval(alive));
    t.is(next, 'a', 'nothing was delivered: the run is served again');
    t.true(performance.now() - started >= 100, 'the holder waited for the hold to lapse');
    if (taken.kind === 'entries') t.false(await n.reader.settleForPeer(taken.hold, 2, true), 'a late settle consumes nothing');
    t.deepEqual([await n.get('gone'), await n.get('gone'), await n.get('gone')], ['b', 'c', null]);
  });
});
