// The per-key lock shared by the segment store and GET's reader: one holder per key, waiters in
// arrival order, a free key taken synchronously, nothing kept for keys nobody holds.

import test from 'ava';
import { KeyedLock } from '../../src/node/keyed-lock.js';

test('a free key is taken synchronously; a held one is not, and is free again after release', (t) => {
  const lock = new KeyedLock();
  const release = lock.tryAcquire('a');
  t.is(typeof release, 'function');
  t.is(lock.tryAcquire('a'), undefined, 'held');
  t.is(typeof lock.tryAcquire('b'), 'function', 'other keys are independent');
  release?.();
  t.false(lock.isHeld('a'));
  const again = lock.tryAcquire('a');
  t.is(typeof again, 'function');
  again?.();
});

test('waiters get the key one at a time, in arrival order; a second release call changes nothing', async (t) => {
  const lock = new KeyedLock();
  const first = lock.tryAcquire('k') as () => void;
  const order: string[] = [];
  const holders = ['w1', 'w2', 'w3'].map(async (name) => {
    const release = await lock.acquire('k');
    order.push(`${name} in`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    order.push(`${name} out`);
    release();
    release();
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  t.deepEqual(order, [], 'nobody gets in while the first holder has it');
  first();
  first();
  await Promise.all(holders);
  t.deepEqual(order, ['w1 in', 'w1 out', 'w2 in', 'w2 out', 'w3 in', 'w3 out']);
  t.false(lock.isHeld('k'), 'nothing kept once the last holder released');
});

test('run() releases the key when its work throws', async (t) => {
  const lock = new KeyedLock();
  await t.throwsAsync(
    lock.run('k', async () => {
      throw new Error('boom');
    }),
    { message: 'boom' },
  );
  t.false(lock.isHeld('k'));
  t.is(await lock.run('k', async () => 7), 7);
});
