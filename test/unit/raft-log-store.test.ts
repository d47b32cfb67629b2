// The Raft log store: what a node persists (term, vote, commit, entries, snapshot) comes back
// after a restart, a conflicting run replaces the tail, a torn tail is cut off and reported, and
// a snapshot drops the entries it covers. Also drives a one-node Raft through a restart.

import { appendFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { RaftLogStore } from '../../src/plugins/raft/adapters/log-store.js';
import { Raft } from '../../src/plugins/raft/core/raft.js';
import type { Entry, Snapshot } from '../../src/plugins/raft/core/types.js';
import { withTempDir } from '../helpers/kernel.js';

function command(index: number, term: number, text = `c${index}`): Entry {
  return { index, term, kind: 'command', data: Buffer.from(text) };
}

function texts(entries: readonly Entry[]): string[] {
  return entries.map((entry) => `${entry.index}/${entry.term}:${Buffer.from(entry.data).toString()}`);
}

test('hard state and entries survive a reopen; a later run replaces the tail from its first index', async (t) => {
  await withTempDir(async (dir) => {
    const store = RaftLogStore.open(dir);
    t.deepEqual(store.state(), { hardState: { term: 0, vote: 0, commit: 0 }, snapshot: undefined, entries: [] });
    await store.save({ hardState: { term: 1, vote: 2, commit: 0 }, entries: [1, 2, 3, 4, 5].map((index) => command(index, 1)) });
    await store.save({
      hardState: { term: 2, vote: 3, commit: 3 },
      entries: [command(4, 2, 'x4'), command(5, 2, 'x5'), command(6, 2, 'x6')],
    });
    store.close();
    const reopened = RaftLogStore.open(dir);
    t.deepEqual(reopened.state().hardState, { term: 2, vote: 3, commit: 3 });
    t.deepEqual(texts(reopened.state().entries), ['1/1:c1', '2/1:c2', '3/1:c3', '4/2:x4', '5/2:x5', '6/2:x6']);
    t.is(reopened.report.tornTail, undefined);
    reopened.close();
  });
});

test('membership and no-op entries round-trip', async (t) => {
  await withTempDir(async (dir) => {
    const store = RaftLogStore.open(dir);
    const entries: Entry[] = [
      { index: 1, term: 1, kind: 'noop', data: new Uint8Array(0) },
      { index: 2, term: 1, kind: 'membership', data: new Uint8Array(0), membership: { voters: [1, 2, 3], learners: [4] } },
    ];
    await store.save({ entries });
    store.close();
    const reopened = RaftLogStore.open(dir);
    t.deepEqual(
      reopened.state().entries.map((entry) => ({ ...entry, data: [...entry.data] })),
      entries.map((entry) => ({ ...entry, data: [...entry.data] })),
    );
    reopened.close();
  });
});

test('a torn tail is cut off and reported; saving after it works', async (t) => {
  await withTempDir(async (dir) => {
    const store = RaftLogStore.open(dir);
    await store.save({ hardState: { term: 1, vote: 1, commit: 0 }, entries: [command(1, 1), command(2, 1)] });
    store.close();
    const path = join(dir, 'raft.log');
    const before = statSync(path).size;
    // Half a record: a length that promises more bytes than follow.
    appendFileSync(path, Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5]));
    const reopened = RaftLogStore.open(dir);
    t.deepEqual(reopened.report.tornTail, { offset: before, reason: 'a record cut short' });
    t.is(statSync(path).size, before);
    t.deepEqual(texts(reopened.state().entries), ['1/1:c1', '2/1:c2']);
    await reopened.save({ entries: [command(3, 1)] });
    reopened.close();
    const again = RaftLogStore.open(dir);
    t.is(again.report.tornTail, undefined);
    t.deepEqual(texts(again.state().entries), ['1/1:c1', '2/1:c2', '3/1:c3']);
    again.close();
  });
});

test('a flipped bit in a record ends the replay before it', async (t) => {
  await withTempDir(async (dir) => {
    const store = RaftLogStore.open(dir);
    await store.save({ entries: [command(1, 1)] });
    await store.save({ entries: [command(2, 1)] });
    store.close();
    const path = join(dir, 'raft.log');
    const { openSync, readSync, writeSync, closeSync } = await import('node:fs');
    const fd = openSync(path, 'r+');
    const size = statSync(path).size;
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, size - 2);
    byte[0] = (byte[0] ?? 0) ^ 0x40;
    writeSync(fd, byte, 0, 1, size - 2);
    closeSync(fd);
    const reopened = RaftLogStore.open(dir);
    t.is(reopened.report.tornTail?.reason, 'checksum mismatch');
    t.deepEqual(texts(reopened.state().entries), ['1/1:c1']);
    reopened.close();
  });
});

test('a snapshot keeps the entries after it, or none when the log disagrees with it', async (t) => {
  await withTempDir(async (dir) => {
    const store = RaftLogStore.open(dir, { rewriteSlackBytes: 0 });
    await store.save({ entries: [1, 2, 3, 4, 5].map((index) => command(index, 1)) });
    const snapshot: Snapshot = { index: 3, term: 1, membership: { voters: [1], learners: [] }, data: Buffer.from('state@3') };
    store.saveSnapshot(snapshot);
    store.close();
    // rewriteSlackBytes 0: the snapshot also rewrote raft.log down to what it still needs.
    t.deepEqual(readdirSync(dir).sort(), ['raft.log', 'snapshot.bin']);
    const reopened = RaftLogStore.open(dir);
    const state = reopened.state();
    t.is(Buffer.from(state.snapshot?.data ?? []).toString(), 'state@3');
    t.deepEqual(texts(state.entries), ['4/1:c4', '5/1:c5']);
    // A snapshot from a leader whose log differs at its index replaces the whole log.
    await reopened.save({
      snapshot: { index: 4, term: 2, membership: { voters: [1], learners: [] }, data: Buffer.from('state@4') },
      entries: [],
    });
    reopened.close();
    const last = RaftLogStore.open(dir);
    t.is(last.state().snapshot?.index, 4);
    t.deepEqual(last.state().entries, []);
    last.close();
  });
});

test('a one-node Raft restarted from its store re-applies exactly what it had committed', async (t) => {
  await withTempDir(async (dir) => {
    const run = async (propose: string[]): Promise<string[]> => {
      const store = RaftLogStore.open(dir);
      const stored = store.state();
      const raft = new Raft(
        { id: 1, electionTicksMin: 10, electionTicksMax: 20, heartbeatTicks: 2, random: () => 0.5 },
        { ...stored, initialMembership: { voters: [1], learners: [] } },
      );
      const applied: string[] = [];
      const drain = async (): Promise<void> => {
        while (raft.hasReady()) {
          const ready = raft.ready();
          await store.save(ready);
          for (const entry of ready.committed) if (entry.kind === 'command') applied.push(Buffer.from(entry.data).toString());
          raft.advance(ready);
        }
      };
      await drain();
      for (let tick = 0; tick < 40 && raft.status().role !== 'leader'; tick++) {
        raft.tick();
        await drain();
      }
      t.is(raft.status().role, 'leader');
      for (const text of propose) raft.propose(Buffer.from(text));
      await drain();
      store.close();
      return applied;
    };
    t.deepEqual(await run(['a', 'b']), ['a', 'b']);
    // The restart applies a and b again (the state machine is rebuilt from the log), then c.
    t.deepEqual(await run(['c']), ['a', 'b', 'c']);
  });
});
