// RepeatLimiter (src/kernel/repeats.ts): a warning that repeats is logged once per window, and the
// next one logged says how many were held back.

import test from 'ava';
import { RepeatLimiter } from '../../src/kernel/repeats.js';

test('a repeated message is let through once per window, and the next one counts those held back; other messages are apart', (t) => {
  let now = 0;
  const limiter = new RepeatLimiter(5_000, () => now);
  t.deepEqual(limiter.take('etcd down'), { log: true, heldBack: 0 });
  for (let step = 0; step < 9; step++) {
    now += 500;
    t.deepEqual(limiter.take('etcd down'), { log: false, heldBack: 0 });
  }
  t.deepEqual(limiter.take('watch failed'), { log: true, heldBack: 0 }, 'another message has its own window');
  now = 5_000;
  t.deepEqual(limiter.take('etcd down'), { log: true, heldBack: 9 });
  now = 20_000;
  t.deepEqual(limiter.take('etcd down'), { log: true, heldBack: 0 }, 'nothing was held back since');
});

test('a window that is not positive is refused', (t) => {
  t.throws(() => new RepeatLimiter(0), { instanceOf: RangeError });
});
