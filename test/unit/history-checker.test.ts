// The fault tests' history checker (test/helpers/history.ts) finds each kind of problem, and
// nothing in a history without one.

import test from 'ava';
import { clean, describeReport, History, type PutOutcome } from '../helpers/history.js';

/** A history of `producer` sending `payloads` with the given outcomes (default: all acknowledged). */
function sent(history: History, producer: string, payloads: readonly string[], outcomes: readonly PutOutcome[] = []): void {
  for (const [index, payload] of payloads.entries()) history.put(producer, payload)(outcomes[index] ?? 'acked');
}

test('a clean history: two producers, every acknowledged entry fetched in place and delivered once, an unsure one missing', (t) => {
  const history = new History();
  sent(history, 'p1', ['a1', 'a2', 'a3'], ['acked', 'unsure', 'acked']);
  sent(history, 'p2', ['b1', 'b2']);
  const log = ['a1', 'b1', 'b2', 'a3'];
  for (const [offset, payload] of log.entries()) history.fetched(payload, { segment: 1 + Math.floor(offset / 2), offset: offset % 2 });
  history.fetched('a1', { segment: 1, offset: 0 }); // read again: nothing new
  for (const payload of log) history.got(payload);
  const report = history.check({ complete: true });
  t.true(clean(report), describeReport(report));
  t.deepEqual(report.counts, { acked: 4, refused: 0, unsure: 1, gets: 4, fetched: 4 });
  t.regex(describeReport(report), /no problems/);
});

test('lost: an acknowledged entry no read found, reported only once the reads are complete', (t) => {
  const history = new History();
  sent(history, 'p', ['x', 'y']);
  history.fetched('x', { segment: 1, offset: 0 });
  t.deepEqual(history.check({ complete: false }).lost, []);
  t.deepEqual(history.check({ complete: true }).lost, ['y (p #1)']);
});

test('phantom: an entry nobody sent, or whose PUT was refused, that a read found', (t) => {
  const history = new History();
  sent(history, 'p', ['ok', 'no'], ['acked', 'refused']);
  history.got('ok');
  history.got('no');
  history.fetched('ghost', { segment: 2, offset: 0 });
  t.deepEqual(history.check({ complete: true }).phantom, ['no was read but its PUT was refused', 'ghost was read but never sent']);
});

test('duplicated: an entry in the log twice, or delivered by GET more often than the allowed replays', (t) => {
  const history = new History();
  sent(history, 'p', ['a', 'b']);
  history.fetched('a', { segment: 1, offset: 0 });
  history.fetched('a', { segment: 2, offset: 0 });
  history.fetched('b', { segment: 2, offset: 1 });
  for (const payload of ['a', 'b', 'b']) history.got(payload);
  const strict = history.check({ complete: true });
  t.deepEqual(strict.duplicated, ['a is in the log 2 times (segment 1 offset 0, segment 2 offset 0)', 'b delivered 2 times by GET']);
  t.deepEqual(history.check({ complete: true, getReplays: 1 }).duplicated, [
    'a is in the log 2 times (segment 1 offset 0, segment 2 offset 0)',
  ]);
});

test('reordered: a producer whose acknowledged PUTs the log or the GETs hold out of send order; other producers interleave freely', (t) => {
  const history = new History();
  sent(history, 'p', ['p0', 'p1', 'p2']);
  sent(history, 'q', ['q0', 'q1']);
  for (const [offset, payload] of ['q0', 'p0', 'p2', 'q1', 'p1'].entries()) history.fetched(payload, { segment: 1, offset });
  for (const payload of ['p1', 'p0', 'q0', 'q1', 'p2']) history.got(payload);
  t.deepEqual(history.check({ complete: true }).reordered, [
    "log: p's p1 (#1) comes after p2 (#2)",
    "GETs: p's p0 (#0) comes after p1 (#1)",
  ]);
});

test('changed: a position that answered with one entry and later with another (a read entry taken back)', (t) => {
  const history = new History();
  sent(history, 'old', ['split-brain-write'], ['unsure']);
  sent(history, 'new', ['during-split-new']);
  history.fetched('split-brain-write', { segment: 3, offset: 0 });
  history.fetched('during-split-new', { segment: 3, offset: 0 });
  const report = history.check({ complete: false });
  t.deepEqual(report.changed, ['segment 3 offset 0 read as split-brain-write, later as during-split-new']);
  t.false(clean(report));
});

test('a payload sent twice is refused: the checker needs distinct payloads', (t) => {
  const history = new History();
  history.put('p', 'same');
  t.throws(() => history.put('q', 'same'), { message: /sent twice/ });
});
