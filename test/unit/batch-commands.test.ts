// Parsing of the batch commands (src/protocol/commands.ts; docs/protocol.md, "Batches"), and the
// client's producer against a fake client: batches by linger and by size, promises settled in
// send order, a batch's error for all its payloads, and back-pressure; the consumer reading by
// position (MFETCH with reads ahead, segment after segment) against the same fake.

import test from 'ava';
import { type BatchClient, Consumer, Producer } from '../../src/client/batching.js';
import { parseEntries } from '../../src/client/walrus-client.js';
import { ClientError } from '../../src/kernel/errors.js';
import { COMMAND_ERRORS, parseCommand, parseRequest } from '../../src/protocol/commands.js';

const body = (text: string): Buffer => Buffer.from(text, 'utf8');

test('MPUT: sizes on the first line, the payloads after its LF, as views of the body; not trimmed', (t) => {
  const parsed = parseRequest(body('MPUT orders 5 3 7\nfirstbigsecond '));
  if (!('op' in parsed) || parsed.op !== 'MPUT') return t.fail(JSON.stringify(parsed));
  t.is(parsed.topic, 'orders');
  t.deepEqual(
    parsed.batch.payloads.map((payload) => payload.toString('utf8')),
    ['first', 'big', 'second '],
  );
  // Multi-byte characters: sizes count bytes.
  const accents = parseRequest(body('MPUT t 2 4\néa€'));
  t.deepEqual('batch' in accents ? accents.batch.payloads.map((payload) => payload.toString('utf8')) : accents, ['é', 'a€']);
  // The text path (parseCommand) gives the same command.
  const text = parseCommand('MPUT orders 2 2\nabcd');
  t.deepEqual('batch' in text ? text.batch.payloads.map(String) : text, ['ab', 'cd']);
});

test('MPUT refusals: each with its own message', (t) => {
  const cases: [string, string][] = [
    ['MPUT', COMMAND_ERRORS.mputTopic],
    ['MPUT  3\nabc', COMMAND_ERRORS.mputTopic],
    ['MPUT t', COMMAND_ERRORS.mputSizes],
    ['MPUT t\nabc', COMMAND_ERRORS.mputSizes],
    ['MPUT t 3', COMMAND_ERRORS.mputSizes],
    ['MPUT t 0\n', COMMAND_ERRORS.mputSize],
    ['MPUT t x\nabc', COMMAND_ERRORS.mputSize],
    ['MPUT t 1  2\nabc', COMMAND_ERRORS.mputSize],
    ['MPUT t 4\nabc', COMMAND_ERRORS.mputBytes],
    ['MPUT t 2\nabc', COMMAND_ERRORS.mputBytes],
    ['MPUT t 1 2\néa', COMMAND_ERRORS.mputSplit],
    [`MPUT t ${Array(2001).fill('1').join(' ')}\n${'x'.repeat(2001)}`, COMMAND_ERRORS.mputCount],
  ];
  for (const [request, error] of cases) t.deepEqual(parseRequest(body(request)), { error }, JSON.stringify(request));
});

test('MGET and MFETCH: max from 1 to 2000; MFETCH needs a segment, an offset and a max', (t) => {
  t.deepEqual(parseCommand('MGET t 10'), { op: 'MGET', topic: 't', max: 10 });
  t.deepEqual(parseCommand('MGET t 2000'), { op: 'MGET', topic: 't', max: 2000 });
  t.deepEqual(parseCommand('MGET t 2001'), { error: COMMAND_ERRORS.mgetMax });
  t.deepEqual(parseCommand('MGET t 0'), { error: COMMAND_ERRORS.mgetMax });
  t.deepEqual(parseCommand('MGET t'), { error: COMMAND_ERRORS.mgetMax });
  t.deepEqual(parseCommand('MGET'), { error: COMMAND_ERRORS.mgetTopic });
  t.deepEqual(parseRequest(body('MFETCH t 2 5 100')), { op: 'MFETCH', topic: 't', segment: 2, offset: 5, max: 100 });
  t.deepEqual(parseCommand('MFETCH t 2 5'), { error: COMMAND_ERRORS.mfetchPosition });
  t.deepEqual(parseCommand('MFETCH t 0 5 1'), { error: COMMAND_ERRORS.mfetchSegment });
  t.deepEqual(parseCommand('MFETCH t 1 -1 1'), { error: COMMAND_ERRORS.mfetchOffset });
  t.deepEqual(parseCommand('MFETCH t 1 0 0'), { error: COMMAND_ERRORS.mfetchMax });
  t.deepEqual(parseCommand('MFETCH'), { error: COMMAND_ERRORS.mfetchTopic });
});

/** A BatchClient whose MPUTs the test answers by hand. */
class FakeClient implements BatchClient {
  readonly batches: { payloads: string[]; settle: (error?: Error) => void }[] = [];

  mput(_topic: string, payloads: readonly string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      this.batches.push({
        payloads: [...payloads],
        settle: (error) => (error === undefined ? resolve(payloads.length) : reject(error)),
      });
    });
  }

  mgets = 0;

  mget(): Promise<string[]> {
    this.mgets += 1;
    return Promise.resolve([]);
  }

  /** A topic's segments for MFETCH and STATE: entries by segment, and the sealed ones' counts. */
  readonly segments = new Map<number, string[]>();
  readonly sealed: Record<string, number> = {};
  /** Each MFETCH asked: `segment:offset`. */
  readonly fetches: string[] = [];
  /** At most this many entries a reply (a node's byte bound). */
  replyMax = Number.POSITIVE_INFINITY;
  /** Entries of sealed segments that are gone from the node (reclaimed), by segment. */
  readonly reclaimed = new Set<number>();

  mfetch(_topic: string, segment: number, offset: number, max: number): Promise<string[]> {
    this.fetches.push(`${segment}:${offset}`);
    if (this.reclaimed.has(segment)) return Promise.resolve([]);
    const entries = this.segments.get(segment) ?? [];
    return new Promise((resolve) => setTimeout(() => resolve(entries.slice(offset, offset + Math.min(max, this.replyMax))), 1));
  }

  state(): Promise<{ sealed_segments: Record<string, number> }> {
    return Promise.resolve({ sealed_segments: { ...this.sealed } });
  }

  /** Appends to the open segment (the highest), or seals it and opens the next. */
  append(...entries: string[]): void {
    const open = Math.max(1, ...this.segments.keys());
    const list = this.segments.get(open) ?? [];
    this.segments.set(open, list);
    list.push(...entries);
  }

  seal(): void {
    const open = Math.max(1, ...this.segments.keys());
    this.sealed[String(open)] = this.segments.get(open)?.length ?? 0;
    this.segments.set(open + 1, []);
  }
}

const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));

test('the producer gathers what is sent within lingerMs into one MPUT, and starts another when one is full', async (t) => {
  const client = new FakeClient();
  const producer = new Producer(client, { topic: 't', lingerMs: 5, batchEntriesMax: 3 });
  const sends = ['a', 'b', 'c', 'd', 'e'].map((payload) => producer.send(payload));
  // Three make a full batch, sent at once; the other two wait for the linger.
  t.deepEqual(
    client.batches.map((batch) => batch.payloads),
    [['a', 'b', 'c']],
  );
  await tick(20);
  t.deepEqual(
    client.batches.map((batch) => batch.payloads),
    [
      ['a', 'b', 'c'],
      ['d', 'e'],
    ],
  );
  const order: string[] = [];
  sends.forEach((send, index) => void send.then(() => order.push(String(index))));
  client.batches[0]?.settle();
  client.batches[1]?.settle();
  await Promise.all(sends);
  t.deepEqual(order, ['0', '1', '2', '3', '4']);
});

test("a batch's error rejects each of its payloads; other batches are not affected; flush waits for every batch", async (t) => {
  const client = new FakeClient();
  const producer = new Producer(client, { topic: 't', lingerMs: 0, batchEntriesMax: 2 });
  const sends = ['a', 'b', 'c'].map((payload) =>
    producer.send(payload).then(
      () => 'ok',
      (error: Error) => error.message,
    ),
  );
  await tick();
  t.is(client.batches.length, 2);
  let flushed = false;
  const flushing = producer.flush().then(() => {
    flushed = true;
  });
  client.batches[0]?.settle(new Error('segment full'));
  await tick();
  t.false(flushed, 'a batch is still out');
  client.batches[1]?.settle();
  await flushing;
  t.deepEqual(await Promise.all(sends), ['segment full', 'segment full', 'ok']);
});

test('back-pressure: beyond pendingMax unacknowledged payloads, send() queues them and they go out, in order, as room frees', async (t) => {
  const client = new FakeClient();
  const producer = new Producer(client, { topic: 't', lingerMs: 0, batchEntriesMax: 2, pendingMax: 2 });
  const sends = ['a', 'b', 'c', 'd', 'e'].map((payload) => producer.send(payload));
  await tick();
  t.deepEqual(
    client.batches.map((batch) => batch.payloads),
    [['a', 'b']],
    'only two may be out',
  );
  client.batches[0]?.settle();
  await tick();
  await tick();
  t.deepEqual(
    client.batches.map((batch) => batch.payloads),
    [
      ['a', 'b'],
      ['c', 'd'],
    ],
  );
  client.batches[1]?.settle();
  await tick();
  await tick();
  t.deepEqual(client.batches[2]?.payloads, ['e']);
  client.batches[2]?.settle();
  await Promise.all(sends);
});

test('the producer refuses what it cannot send: an empty payload, one larger than a batch, options out of range, a send after close', async (t) => {
  const client = new FakeClient();
  const producer = new Producer(client, { topic: 't', batchBytesMax: 100 });
  await t.throwsAsync(producer.send(''), { instanceOf: ClientError, message: /non-empty string/ });
  await t.throwsAsync(producer.send('x'.repeat(200)), { instanceOf: ClientError, message: /does not fit a batch of at most 100 bytes/ });
  t.throws(() => new Producer(client, { topic: 't', lingerMs: -1 }), { instanceOf: ClientError, message: /lingerMs must be an integer/ });
  t.throws(() => new Producer(client, { topic: 't', batchEntriesMax: 5000 }), { instanceOf: ClientError });
  t.throws(() => new Producer(client, { topic: 'has space' }), { instanceOf: ClientError });
  await producer.close();
  await t.throwsAsync(producer.send('late'), { instanceOf: ClientError, message: /was closed/ });
});

test('a consumer by position reads every segment in order with reads ahead, drops the reads a short reply made wrong, and consumes nothing', async (t) => {
  const client = new FakeClient();
  client.append('a', 'b', 'c', 'd', 'e');
  client.seal();
  client.append('f', 'g', 'h');
  const consumer = new Consumer(client, { topic: 't', from: 'start', maxEntries: 2, readAhead: 3, pollMs: 5 });
  const got: string[] = [];
  for await (const entry of consumer) {
    got.push(entry);
    if (got.length === 8) break;
  }
  t.deepEqual(got, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
  t.deepEqual(consumer.position, { segment: 2, offset: 3 });
  // Three reads out from the start; 1:4 came back short (one entry), so 1:6 was wrong and dropped,
  // and the next read asks where that short reply ended.
  t.deepEqual(client.fetches.slice(0, 4), ['1:0', '1:2', '1:4', '1:6']);
  t.true(client.fetches.includes('1:5'), 'asked again where the short reply ended');
  t.true(client.fetches.includes('2:0'), 'went on with segment 2 once STATE said 1 was sealed with 5');
  t.is(client.mgets, 0, 'nothing consumed: no MGET');
});

test('a consumer by position resumes from its position, waits at the log end for new entries, and reads replies cut short by a byte bound', async (t) => {
  const client = new FakeClient();
  client.append('a', 'b', 'c', 'd');
  client.replyMax = 3;
  const first = new Consumer(client, { topic: 't', from: 'start', maxEntries: 4, pollMs: 5 });
  const got: string[] = [];
  for await (const entry of first) {
    got.push(entry);
    if (got.length === 2) break;
  }
  t.deepEqual(first.position, { segment: 1, offset: 2 }, 'after the last entry handed out, not the end of its batch');
  const second = new Consumer(client, { topic: 't', from: first.position, maxEntries: 4, pollMs: 5 });
  setTimeout(() => client.append('e', 'f', 'g'), 30);
  for await (const batch of second.batches()) {
    got.push(...batch);
    t.true(batch.length <= 3);
    if (got.length === 7) break;
  }
  t.deepEqual(got, ['a', 'b', 'c', 'd', 'e', 'f', 'g']);
  t.deepEqual(second.position, { segment: 1, offset: 7 });
});

test('a consumer by position that reaches reclaimed entries of a sealed segment fails with GONE, naming them', async (t) => {
  const client = new FakeClient();
  client.append('a', 'b', 'c');
  client.seal();
  client.reclaimed.add(1);
  const consumer = new Consumer(client, { topic: 't', from: 'start', pollMs: 5 });
  const error = await t.throwsAsync(async () => {
    for await (const _ of consumer) t.fail('no entry should come');
  });
  t.is((error as ClientError).code, 'GONE');
  t.regex(error?.message ?? '', /entries 0 to 2 of segment 1 of t are no longer on the node/);
});

test('a consumer refuses options it cannot honour: readAhead above 1 on the shared position, a bad from, readAhead out of range', (t) => {
  const client = new FakeClient();
  t.throws(() => new Consumer(client, { topic: 't', readAhead: 2 }), { message: /readAhead 2 needs from/ });
  t.notThrows(() => new Consumer(client, { topic: 't', readAhead: 1 }));
  t.throws(() => new Consumer(client, { topic: 't', from: { segment: 0, offset: 0 } }), { message: /segment of 1 or more/ });
  t.throws(() => new Consumer(client, { topic: 't', from: { segment: 1, offset: -1 } }), { message: /from.offset must be/ });
  t.throws(() => new Consumer(client, { topic: 't', from: 'start', readAhead: 9 }), {
    message: /readAhead must be an integer from 1 to 8/,
  });
  t.is(new Consumer(client, { topic: 't' }).position, undefined);
});

test('a batch reply read in pieces gives the entries it gives whole, however it is cut', (t) => {
  const replies = ['OK 3 5 0 7\nfirstsecond!', 'OK 2 2 4\néa€', 'OK 1 4\n😀', 'EMPTY'].map((text) => Buffer.from(text, 'utf8'));
  for (const reply of replies) {
    const whole = parseEntries('MGET', [reply]);
    for (let first = 1; first < reply.length; first++) {
      for (const second of [first + 1, first + 2]) {
        const parts = [reply.subarray(0, first), reply.subarray(first, second), reply.subarray(second)].filter((part) => part.length > 0);
        t.deepEqual(parseEntries('MGET', parts), whole, `${reply.toString('utf8')} cut at ${first}, ${second}`);
      }
    }
  }
  t.deepEqual(parseEntries('MFETCH', [Buffer.from('OK 2 2 4\néa€', 'utf8')]), ['é', 'a€']);
  // Sizes that do not add up are refused, cut or not.
  for (const parts of [[Buffer.from('OK 1 5\nabc')], [Buffer.from('OK 1 2\na'), Buffer.from('bc')]]) {
    t.throws(() => parseEntries('MGET', parts), { instanceOf: ClientError, message: /sizes do not add up/ });
  }
});
