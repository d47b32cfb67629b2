// The rollover monitor proposes exactly one rollover per full segment, with the exact count and
// the segment it expects to seal, hands the next segment to the next live voter (skipping voters
// that are down, keeping it when none other is up), and retries a failed proposal at the next tick.

import test from 'ava';
import { nextLeader, type Rollover, RolloverMonitor, type RolloverTarget } from '../../src/plugins/rollover-monitor/monitor.js';

class Target implements RolloverTarget {
  open = new Map<string, number>([
    ['a', 1],
    ['b', 3],
  ]);
  counts = new Map<string, number>();
  voterIds = [1];
  /** Undefined: every voter is up. */
  live: number[] | undefined;
  proposals: Rollover[] = [];
  failNext = false;
  release: (() => void) | undefined;

  ownedOpenSegments() {
    return [...this.open].map(([topic, segment]) => ({ topic, segment }));
  }

  count(topic: string, segment: number): number {
    return this.counts.get(`${topic}/${segment}`) ?? 0;
  }

  voters() {
    return this.voterIds;
  }

  liveMembers() {
    return this.live ?? this.voterIds;
  }

  async propose(rollover: Rollover): Promise<void> {
    this.proposals.push(rollover);
    if (this.failNext) {
      this.failNext = false;
      throw new Error('no leader');
    }
    await new Promise<void>((resolve) => {
      this.release = resolve;
    });
    this.open.set(rollover.topic, rollover.expectedSegment + 1);
  }
}

const quiet = { info: () => undefined, warn: () => undefined };

test('next leader: round-robin over the live voters in id order; alone, itself', (t) => {
  t.is(nextLeader(1, [1], [1]), 1);
  t.is(nextLeader(1, [], [1]), 1);
  t.is(nextLeader(2, [1, 2, 3], [1, 2, 3]), 3);
  t.is(nextLeader(3, [3, 1, 2], [2, 3, 1]), 1);
  t.is(nextLeader(1, [1, 2, 3], [1, 2, 3]), 2);
  t.is(nextLeader(2, [1, 3], [1, 2, 3]), 3, 'a node that is not a voter passes to the next voter above it');
});

test('next leader: a voter that is down is skipped; with no other voter up the segment stays', (t) => {
  t.is(nextLeader(1, [1, 2, 3], [1, 3]), 3, '2 is down: 1 hands over to 3');
  t.is(nextLeader(2, [1, 2, 3], [1, 2]), 1, '3 is down: 2 wraps round to 1');
  t.is(nextLeader(3, [1, 2, 3, 4, 5], [2, 3, 5]), 5);
  t.is(nextLeader(1, [1, 2, 3], [1]), 1, 'nobody else is up: 1 keeps it');
  t.is(nextLeader(1, [1, 2, 3], []), 1, 'nothing known: 1 keeps it');
  t.is(nextLeader(1, [1, 2], [1, 2, 7]), 2, 'a live member that is not a voter is never chosen');
  t.is(nextLeader(1, [1, 2], [1, 7]), 1);
});

test('one proposal per full segment with its exact count, none for segments below the threshold', async (t) => {
  const target = new Target();
  target.counts.set('a/1', 12);
  target.counts.set('b/3', 9);
  target.voterIds = [1, 2, 3];
  const monitor = new RolloverMonitor({ nodeId: 1, threshold: 10, checkMs: 10_000, target, log: quiet });
  const first = monitor.tick();
  // While the proposal is in flight: the store's report and another tick add no duplicate.
  monitor.segmentFull('a', 1);
  t.is(monitor.tick(), first, 'a tick in progress is shared');
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(target.proposals, [{ topic: 'a', expectedSegment: 1, sealedCount: 12, newLeader: 2 }]);
  target.release?.();
  await first;
  t.is(target.open.get('a'), 2);
  await monitor.tick();
  t.is(target.proposals.length, 1, 'the new segment is empty: nothing more to propose');
});

test('a failed proposal is retried at the next tick; the timer runs every checkMs', async (t) => {
  const target = new Target();
  target.counts.set('b/3', 10);
  target.failNext = true;
  const monitor = new RolloverMonitor({ nodeId: 1, threshold: 10, checkMs: 20, target, log: quiet });
  monitor.start();
  try {
    const deadline = Date.now() + 5000;
    while (target.proposals.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    t.deepEqual(
      target.proposals.map((proposal) => proposal.expectedSegment),
      [3, 3],
    );
    t.is(target.proposals[1]?.newLeader, 1, 'alone: the next segment stays here');
    target.release?.();
  } finally {
    await monitor.stop();
  }
});

test('a store that throws on count (a storage failure) is logged and retried; no rejection goes unhandled', async (t) => {
  const target = new Target();
  target.counts.set('a/1', 10);
  let broken = true;
  const realCount = target.count.bind(target);
  target.count = (topic, segment) => {
    if (broken) throw Object.assign(new Error('write-ahead log I/O failed: ENOSPC: no space left on device'), { code: 'IO' });
    return realCount(topic, segment);
  };
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (_fields: object, message: string) => warnings.push(message) };
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const monitor = new RolloverMonitor({ nodeId: 1, threshold: 10, checkMs: 10, target, log });
  monitor.start();
  try {
    monitor.segmentFull('a', 1);
    const deadline = Date.now() + 5000;
    while (warnings.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    // Let any dropped rejection surface (it is reported after the microtask queue drains).
    await new Promise((resolve) => setTimeout(resolve, 20));
    t.deepEqual(unhandled, [], 'no unhandled rejection');
    t.true(warnings.length >= 3, `every failed check is logged (${warnings.length})`);
    t.true(warnings.every((message) => message === 'rollover check failed'));
    t.is(target.proposals.length, 0);
    broken = false;
    while (target.proposals.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    t.is(target.proposals[0]?.sealedCount, 10, 'once the store answers again, the rollover is proposed');
    target.release?.();
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await monitor.stop();
  }
});

test('a rollover skips a voter that is down and hands the next segment to the next one that is up', async (t) => {
  const target = new Target();
  target.open = new Map([['a', 1]]);
  target.counts.set('a/1', 10);
  target.voterIds = [1, 2, 3];
  target.live = [1, 3];
  const monitor = new RolloverMonitor({ nodeId: 1, threshold: 10, checkMs: 10_000, target, log: quiet });
  const tick = monitor.tick();
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(target.proposals, [{ topic: 'a', expectedSegment: 1, sealedCount: 10, newLeader: 3 }]);
  target.release?.();
  await tick;
  // Now 3 is down too: the next full segment stays on 1.
  target.live = [1];
  target.counts.set('a/2', 10);
  const next = monitor.tick();
  await new Promise((resolve) => setImmediate(resolve));
  t.is(target.proposals[1]?.newLeader, 1);
  target.release?.();
  await next;
});
