// The client protocol codec without sockets: frame layout, reassembly of frames split at any
// byte, the length limits (65536 accepted, 0 and 65537 break the decoder), UTF-8 handling, the
// command grammar of the original (cluster.md §1.3, §1.5) plus FETCH, and reply classification.

import { isUtf8 } from 'node:buffer';
import test from 'ava';
import fc from 'fast-check';
import { limits } from '../../src/kernel/limits.js';
import {
  COMMAND_ERRORS,
  type Command,
  type CommandError,
  isCommandError,
  parseCommand,
  parseRequest,
  parseRequestParts,
} from '../../src/protocol/commands.js';
import { type DecodedFrame, encodeFrame, FrameDecoder, isUtf8Parts } from '../../src/protocol/frames.js';
import { EMPTY, err, fetched, OK, okPayload, parseFetchReply, parseReply, ReplyFormatError } from '../../src/protocol/replies.js';

/** Pushes each chunk and collects every frame that becomes available. */
function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): DecodedFrame[] {
  const frames: DecodedFrame[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) frames.push(frame);
  }
  return frames;
}

function rawFrame(body: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32LE(body.length, 0);
  return Buffer.concat([header, body]);
}

const requestDecoder = (): FrameDecoder => new FrameDecoder({ maxFrameBytes: limits.frameBytesMax });

// --- frames ----------------------------------------------------------------------------------

test('encodeFrame writes a u32 little-endian byte length, then the UTF-8 body', (t) => {
  t.deepEqual([...encodeFrame('PUT t x')], [7, 0, 0, 0, ...Buffer.from('PUT t x')]);
  // Length counts bytes, not characters: é is 2 bytes, 😀 is 4.
  const frame = encodeFrame('é😀');
  t.deepEqual([...frame.subarray(0, 4)], [6, 0, 0, 0]);
  t.is(frame.subarray(4).toString('utf8'), 'é😀');
  const big = encodeFrame('a'.repeat(0x10203));
  t.deepEqual([...big.subarray(0, 4)], [0x03, 0x02, 0x01, 0x00]);
  t.is(big.length, 4 + 0x10203);
});

test('frames fed one byte at a time decode to the same texts', (t) => {
  const texts = ['REGISTER logs', 'PUT logs héllo wörld', 'GET logs', 'x'];
  const stream = Buffer.concat(texts.map(encodeFrame));
  const decoder = requestDecoder();
  const bytes = [...stream].map((byte) => Buffer.from([byte]));
  t.deepEqual(
    decodeAll(decoder, bytes),
    texts.map((text) => ({ kind: 'text', text })),
  );
  t.is(decoder.bufferedBytes, 0);
});

test('a multi-frame buffer split at every possible point decodes the same', (t) => {
  const texts = ['REGISTER a', 'PUT a 1 2 3', 'é', 'STATE a'];
  const stream = Buffer.concat(texts.map(encodeFrame));
  const expected = texts.map((text) => ({ kind: 'text', text }));
  for (let split = 0; split <= stream.length; split += 1) {
    const decoder = requestDecoder();
    t.deepEqual(decodeAll(decoder, [stream.subarray(0, split), stream.subarray(split)]), expected, `split at ${split}`);
    t.is(decoder.bufferedBytes, 0);
  }
  // Three pieces too, so a frame can span a middle piece entirely.
  for (let a = 0; a <= stream.length; a += 3) {
    for (let b = a; b <= stream.length; b += 5) {
      const pieces = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)];
      t.deepEqual(decodeAll(requestDecoder(), pieces), expected, `split at ${a} and ${b}`);
    }
  }
});

test('next() waits for the whole frame and reports buffered bytes', (t) => {
  const decoder = requestDecoder();
  const frame = encodeFrame('GET topic');
  decoder.push(frame.subarray(0, 3));
  t.is(decoder.next(), undefined);
  t.is(decoder.bufferedBytes, 3);
  decoder.push(frame.subarray(3, 8));
  t.is(decoder.next(), undefined);
  t.is(decoder.bufferedBytes, 8);
  decoder.push(frame.subarray(8));
  t.deepEqual(decoder.next(), { kind: 'text', text: 'GET topic' });
  t.is(decoder.next(), undefined);
  t.is(decoder.bufferedBytes, 0);
});

test('nextBodyBytes() tells the next body length once its prefix is in, split or not, without consuming', (t) => {
  const decoder = requestDecoder();
  const frames = Buffer.concat([encodeFrame('GET topic'), encodeFrame('STATE t')]);
  t.is(decoder.nextBodyBytes(), undefined);
  decoder.push(frames.subarray(0, 2));
  t.is(decoder.nextBodyBytes(), undefined);
  decoder.push(frames.subarray(2, 6));
  t.is(decoder.nextBodyBytes(), 'GET topic'.length);
  t.is(decoder.bufferedBytes, 6);
  decoder.push(frames.subarray(6, 15));
  t.deepEqual(decoder.next(), { kind: 'text', text: 'GET topic' });
  // The second prefix now spans two chunks.
  t.is(decoder.nextBodyBytes(), undefined);
  decoder.push(frames.subarray(15));
  t.is(decoder.nextBodyBytes(), 'STATE t'.length);
  t.deepEqual(decoder.next(), { kind: 'text', text: 'STATE t' });
  t.is(decoder.nextBodyBytes(), undefined);
});

test('a body of exactly frameBytesMax (65536) bytes is accepted', (t) => {
  t.is(limits.frameBytesMax, 65_536);
  const text = `PUT t ${'x'.repeat(65_536 - 6)}`;
  const decoder = requestDecoder();
  t.deepEqual(decodeAll(decoder, [encodeFrame(text), encodeFrame('GET t')]), [
    { kind: 'text', text },
    { kind: 'text', text: 'GET t' },
  ]);
  t.false(decoder.broken);
});

test('a length of 65537 breaks the decoder before the body arrives', (t) => {
  const decoder = requestDecoder();
  decoder.push(encodeFrame('GET a'));
  const header = Buffer.alloc(4);
  header.writeUInt32LE(65_537, 0);
  decoder.push(header);
  t.deepEqual(decoder.next(), { kind: 'text', text: 'GET a' });
  t.deepEqual(decoder.next(), { kind: 'invalid-length', length: 65_537 });
  t.true(decoder.broken);
  t.is(decoder.bufferedBytes, 0);
  // Nothing decodes any more, not even a valid frame: the stream cannot be resynchronised.
  decoder.push(encodeFrame('GET b'));
  t.is(decoder.next(), undefined);
  t.is(decoder.bufferedBytes, 0);
});

test('a length of 0 breaks the decoder', (t) => {
  const decoder = requestDecoder();
  decoder.push(Buffer.concat([Buffer.alloc(4), encodeFrame('GET a')]));
  t.deepEqual(decoder.next(), { kind: 'invalid-length', length: 0 });
  t.true(decoder.broken);
  t.is(decoder.next(), undefined);
});

test('a length prefix split across chunks is still checked', (t) => {
  const decoder = requestDecoder();
  const header = Buffer.alloc(4);
  header.writeUInt32LE(0xffff_ffff, 0);
  t.deepEqual(decodeAll(decoder, [header.subarray(0, 1), header.subarray(1, 3), header.subarray(3)]), [
    { kind: 'invalid-length', length: 0xffff_ffff },
  ]);
});

test('a body that is not UTF-8 gives invalid-utf8 and the next frame still decodes', (t) => {
  const bad = [Buffer.from([0xff]), Buffer.from([0x50, 0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xf0, 0x9f, 0x98])];
  for (const body of bad) {
    const stream = Buffer.concat([rawFrame(body), encodeFrame('GET t')]);
    const decoder = requestDecoder();
    t.deepEqual(decodeAll(decoder, [stream]), [{ kind: 'invalid-utf8' }, { kind: 'text', text: 'GET t' }], body.toString('hex'));
    t.false(decoder.broken);
  }
  // A multi-byte character split across chunks is fine: bodies are decoded whole.
  const stream = encodeFrame('PUT t 😀');
  t.deepEqual(decodeAll(requestDecoder(), [stream.subarray(0, stream.length - 2), stream.subarray(stream.length - 2)]), [
    { kind: 'text', text: 'PUT t 😀' },
  ]);
});

test('a leading byte order mark is kept in the text', (t) => {
  const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('GET t')]);
  const [frame] = decodeAll(requestDecoder(), [rawFrame(body)]);
  t.deepEqual(frame, { kind: 'text', text: '\uFEFFGET t' });
  // ...so the op is not GET, as in the original.
  t.deepEqual(parseCommand('\uFEFFGET t'), { error: 'unknown command' });
});

test('many frames in one chunk all come out, in order', (t) => {
  const texts = Array.from({ length: 5000 }, (_, i) => `PUT t payload-${i}`);
  const decoder = requestDecoder();
  const frames = decodeAll(decoder, [Buffer.concat(texts.map(encodeFrame))]);
  t.deepEqual(
    frames.map((frame) => (frame.kind === 'text' ? frame.text : frame.kind)),
    texts,
  );
});

test('without a cap, a large reply decodes, even from many small chunks', (t) => {
  const text = `{"big":"${'y'.repeat(3 * 1024 * 1024)}"}`;
  const stream = encodeFrame(text);
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += 1000) chunks.push(stream.subarray(at, at + 1000));
  const decoder = new FrameDecoder();
  const frames = decodeAll(decoder, chunks);
  t.is(frames.length, 1);
  t.true(frames[0]?.kind === 'text' && frames[0].text === text);
  // A request decoder refuses the same frame.
  t.deepEqual(decodeAll(requestDecoder(), [stream]), [{ kind: 'invalid-length', length: stream.length - 4 }]);
});

test('maxFrameBytes must be a positive integer', (t) => {
  t.throws(() => new FrameDecoder({ maxFrameBytes: 0 }), { instanceOf: RangeError });
  t.throws(() => new FrameDecoder({ maxFrameBytes: 1.5 }), { instanceOf: RangeError });
  t.notThrows(() => new FrameDecoder({ maxFrameBytes: 1 }));
});

// --- commands --------------------------------------------------------------------------------

test('the five commands of the original parse', (t) => {
  t.deepEqual(parseCommand('REGISTER logs'), { op: 'REGISTER', topic: 'logs' });
  t.deepEqual(parseCommand('PUT logs hello'), { op: 'PUT', topic: 'logs', payload: 'hello' });
  t.deepEqual(parseCommand('GET logs'), { op: 'GET', topic: 'logs' });
  t.deepEqual(parseCommand('STATE logs'), { op: 'STATE', topic: 'logs' });
  t.deepEqual(parseCommand('METRICS'), { op: 'METRICS' });
});

test('trailing spaces, tabs, CRs and LFs are trimmed; leading whitespace is not', (t) => {
  t.deepEqual(parseCommand('PUT logs hello \t\r\n'), { op: 'PUT', topic: 'logs', payload: 'hello' });
  t.deepEqual(parseCommand('GET logs\r\n'), { op: 'GET', topic: 'logs' });
  t.deepEqual(parseCommand('METRICS\n'), { op: 'METRICS' });
  t.deepEqual(parseCommand(' PUT a b'), { error: COMMAND_ERRORS.unknownCommand });
  t.deepEqual(parseCommand('\tGET a'), { error: COMMAND_ERRORS.unknownCommand });
  // Only those four: other whitespace stays part of the text.
  t.deepEqual(parseCommand('GET logs\u00a0'), { op: 'GET', topic: 'logs\u00a0' });
  t.deepEqual(parseCommand('GET logs\v'), { op: 'GET', topic: 'logs\v' });
  // Whitespace inside the payload is kept, trimming applies to its end only.
  t.deepEqual(parseCommand('PUT t  a\tb \n'), { op: 'PUT', topic: 't', payload: ' a\tb' });
});

test('the payload is everything after the second space, verbatim, quotes included', (t) => {
  t.deepEqual(parseCommand('PUT logs hello world  again'), { op: 'PUT', topic: 'logs', payload: 'hello world  again' });
  t.deepEqual(parseCommand('PUT logs "hello world"'), { op: 'PUT', topic: 'logs', payload: '"hello world"' });
  t.deepEqual(parseCommand('PUT logs {"a": 1}'), { op: 'PUT', topic: 'logs', payload: '{"a": 1}' });
  t.deepEqual(parseCommand('PUT t\ta b'), { op: 'PUT', topic: 't\ta', payload: 'b' });
});

test('ops are case-sensitive', (t) => {
  for (const text of ['put t x', 'Get t', 'register t', 'metrics', 'State t', 'fetch t 1 0']) {
    t.deepEqual(parseCommand(text), { error: 'unknown command' }, text);
  }
});

test('unknown and empty commands', (t) => {
  for (const text of ['', ' ', '\r\n', 'DELETE t', 'PUTX t x', 'GET\tt', 'METRICS\tx']) {
    t.deepEqual(parseCommand(text), { error: 'unknown command' }, JSON.stringify(text));
  }
});

test('extra tokens are ignored', (t) => {
  t.deepEqual(parseCommand('REGISTER a b'), { op: 'REGISTER', topic: 'a' });
  t.deepEqual(parseCommand('GET t junk'), { op: 'GET', topic: 't' });
  t.deepEqual(parseCommand('STATE t junk more'), { op: 'STATE', topic: 't' });
  t.deepEqual(parseCommand('METRICS x'), { op: 'METRICS' });
  t.deepEqual(parseCommand('FETCH t 2 5 junk'), { op: 'FETCH', topic: 't', segment: 2, offset: 5 });
});

test('every missing-argument error has the text of the original', (t) => {
  const cases: [string, string][] = [
    ['REGISTER', 'REGISTER requires a topic'],
    ['REGISTER ', 'REGISTER requires a topic'],
    ['PUT', 'PUT requires a topic'],
    ['PUT t', 'PUT requires a payload'],
    ['PUT t   ', 'PUT requires a payload'],
    ['PUT t \r\n', 'PUT requires a payload'],
    ['GET', 'GET requires a topic'],
    ['GET \n', 'GET requires a topic'],
    ['STATE', 'STATE requires a topic'],
  ];
  for (const [text, error] of cases) {
    const parsed = parseCommand(text);
    t.deepEqual(parsed, { error }, JSON.stringify(text));
    t.true(isCommandError(parsed));
  }
  t.false(isCommandError(parseCommand('METRICS')));
});

test('an empty topic (two spaces) counts as missing (deviation from the original)', (t) => {
  t.deepEqual(parseCommand('REGISTER  a'), { error: 'REGISTER requires a topic' });
  t.deepEqual(parseCommand('PUT  t x'), { error: 'PUT requires a topic' });
  t.deepEqual(parseCommand('GET  t'), { error: 'GET requires a topic' });
  t.deepEqual(parseCommand('STATE  t'), { error: 'STATE requires a topic' });
  t.deepEqual(parseCommand('FETCH  1 0'), { error: 'FETCH requires a topic' });
});

test('FETCH takes a topic, a positive segment and a non-negative offset', (t) => {
  t.deepEqual(parseCommand('FETCH logs 1 0'), { op: 'FETCH', topic: 'logs', segment: 1, offset: 0 });
  t.deepEqual(parseCommand('FETCH logs 12 345\n'), { op: 'FETCH', topic: 'logs', segment: 12, offset: 345 });
  t.deepEqual(parseCommand('FETCH logs 007 010'), { op: 'FETCH', topic: 'logs', segment: 7, offset: 10 });
  t.deepEqual(parseCommand(`FETCH logs ${Number.MAX_SAFE_INTEGER} ${Number.MAX_SAFE_INTEGER}`), {
    op: 'FETCH',
    topic: 'logs',
    segment: Number.MAX_SAFE_INTEGER,
    offset: Number.MAX_SAFE_INTEGER,
  });
  const cases: [string, string][] = [
    ['FETCH', 'FETCH requires a topic'],
    ['FETCH ', 'FETCH requires a topic'],
    ['FETCH logs', 'FETCH requires a segment and an offset'],
    ['FETCH logs 1', 'FETCH requires a segment and an offset'],
    ['FETCH logs 1 ', 'FETCH requires a segment and an offset'],
    ['FETCH logs 0 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs -1 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs +1 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs 1.0 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs 1e3 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs x 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs  1 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs 9007199254740992 0', 'FETCH segment must be a positive integer'],
    ['FETCH logs 1 -1', 'FETCH offset must be a non-negative integer'],
    ['FETCH logs 1 0x1', 'FETCH offset must be a non-negative integer'],
    ['FETCH logs 1 ١', 'FETCH offset must be a non-negative integer'],
    ['FETCH logs 1  0', 'FETCH offset must be a non-negative integer'],
    ['FETCH logs 1 99999999999999999999', 'FETCH offset must be a non-negative integer'],
  ];
  for (const [text, error] of cases) t.deepEqual(parseCommand(text), { error }, JSON.stringify(text));
});

// --- replies ---------------------------------------------------------------------------------

/** A parse result with a PUT payload as text, to compare the byte and text parsers. */
function asText(parsed: Command | CommandError): Command | CommandError {
  if (isCommandError(parsed) || parsed.op !== 'PUT' || typeof parsed.payload === 'string') return parsed;
  return { ...parsed, payload: parsed.payload.toString('utf8') };
}

test('parseRequest (bytes) gives what parseCommand gives for the same text; a PUT payload is a view of the body', (t) => {
  const cases = [
    'PUT t x',
    'PUT t  two  spaces ',
    'PUT  t x',
    'PUT t',
    'PUT t   ',
    'PUT ',
    'PUT',
    'PUT\tt x',
    'PUT é ünïcødé 😀 payload\r\n',
    'put t x',
    ' PUT t x',
    'GET t',
    'FETCH t 1 0',
    '\uFEFFPUT t x',
  ];
  for (const text of cases) t.deepEqual(asText(parseRequest(Buffer.from(text, 'utf8'))), parseCommand(text), JSON.stringify(text));
  const body = Buffer.from('PUT topic payload bytes', 'utf8');
  const parsed = parseRequest(body);
  if (isCommandError(parsed) || parsed.op !== 'PUT' || typeof parsed.payload === 'string') return t.fail('expected a PUT with bytes');
  t.is(parsed.payload.buffer, body.buffer, 'no copy of the payload');
  // Random texts built from the characters that matter to the rules.
  const piece = fc.constantFrom('PUT', 'GET', 'FETCH', ' ', '  ', '\t', '\r', '\n', 'a', 'é', '😀', '1', '0', 'x y');
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
      const text = pieces.join('');
      t.deepEqual(asText(parseRequest(Buffer.from(text, 'utf8'))), parseCommand(text));
    }),
    { numRuns: 2000 },
  );
});

test('nextBody hands out the bytes of each frame; buffer.isUtf8 agrees with the decoder on what is UTF-8', (t) => {
  const bodies = [
    Buffer.from('PUT t x'),
    Buffer.from([0xc3, 0x28]),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from('é😀'),
    Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  ];
  const stream = Buffer.concat(bodies.map((body) => Buffer.concat([Buffer.from(Uint32Array.of(body.length).buffer), body])));
  const raw = new FrameDecoder({ maxFrameBytes: 100 });
  const text = new FrameDecoder({ maxFrameBytes: 100 });
  raw.push(stream);
  text.push(stream);
  for (const body of bodies) {
    const frame = raw.nextBody();
    if (frame?.kind !== 'body') return t.fail('expected a body');
    t.deepEqual(frame.body, body);
    t.is(isUtf8(frame.body), text.next()?.kind === 'text', `UTF-8 check of ${body.toString('hex')}`);
  }
  t.is(raw.nextBody(), undefined);
});

/** `bytes` cut at `cuts` (positions, any order, duplicates and ends dropped): the non-empty pieces. */
function cutAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))]
    .filter((cut) => cut > 0 && cut < bytes.length)
    .sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    parts.push(bytes.subarray(from, point));
    from = point;
  }
  return parts;
}

/** Bytes that are mostly UTF-8 of 1 to 4 bytes a character, with stray and truncated sequences mixed in. */
const utf8ish = fc
  .array(
    fc.oneof(
      fc.constantFrom('a', 'é', '€', '😀', ' ').map((text) => Buffer.from(text, 'utf8')),
      fc
        .constantFrom([0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xed, 0xa0, 0x80], [0xff], [0xc0, 0xaf])
        .map((bytes) => Buffer.from(bytes)),
    ),
    { maxLength: 40 },
  )
  .map((pieces) => Buffer.concat(pieces));

test('isUtf8Parts says what buffer.isUtf8 says of the parts joined, however the bytes are cut', (t) => {
  fc.assert(
    fc.property(utf8ish, fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
      const parts = cutAt(bytes, cuts);
      if (parts.length === 0) return;
      t.is(isUtf8Parts(parts), isUtf8(bytes), `${bytes.toString('hex')} cut at ${parts.map((part) => part.length).join('+')}`);
    }),
    { numRuns: 5000 },
  );
  // Characters split 1+3, 2+2, 3+1 between parts of at least 4 bytes (no joined fallback).
  const smile = Buffer.from('abcd😀efgh', 'utf8');
  for (const cut of [5, 6, 7]) t.true(isUtf8Parts(cutAt(smile, [cut])), `split at ${cut}`);
  t.false(isUtf8Parts([Buffer.from('abcd\xf0\x9f', 'latin1'), Buffer.from('efgh')]));
});

test('nextBodyParts hands out each frame as views of the chunks it came in, in one part when it came in one', (t) => {
  const bodies = ['MPUT t 3 4\nabcdefg', 'GET t', 'x'.repeat(300)];
  const stream = Buffer.concat(bodies.map((body) => encodeFrame(body)));
  fc.assert(
    fc.property(fc.array(fc.nat(), { maxLength: 8 }), (cuts) => {
      const decoder = new FrameDecoder({ maxFrameBytes: 1000 });
      const got: string[] = [];
      for (const chunk of cutAt(stream, cuts)) {
        decoder.push(chunk);
        for (let frame = decoder.nextBodyParts(); frame !== undefined; frame = decoder.nextBodyParts()) {
          if (frame.kind !== 'parts') return t.fail('expected parts');
          t.is(
            frame.parts.reduce((sum, part) => sum + part.length, 0),
            frame.length,
          );
          t.true(frame.parts.every((part) => part.length > 0));
          got.push(Buffer.concat(frame.parts).toString('utf8'));
        }
      }
      t.deepEqual(got, bodies);
      t.is(decoder.bufferedBytes, 0);
    }),
    { numRuns: 500 },
  );
  const whole = new FrameDecoder();
  whole.push(stream);
  const first = whole.nextBodyParts();
  t.is(first?.kind === 'parts' ? first.parts.length : 0, 1);
  // An invalid length breaks the decoder as nextBody() does.
  const broken = new FrameDecoder({ maxFrameBytes: 4 });
  broken.push(encodeFrame('too long'));
  t.deepEqual(broken.nextBodyParts(), { kind: 'invalid-length', length: 8 });
  t.true(broken.broken);
});

test('parseRequestParts gives what parseRequest gives for the parts joined, however the body is cut', (t) => {
  const bodies = [
    'MPUT orders 5 3 7\nfirstbigsecond ',
    'MPUT t 2 4 1\néa€z',
    'MPUT t 2 4\néa€z',
    'MPUT t 3 1\néa',
    'MPUT t 1\nab',
    'MPUT  1\na',
    'PUT t some payload',
    'GET t  ',
    'MFETCH t 2 5 100',
  ].map((text) => Buffer.from(text, 'utf8'));
  const plain = (parsed: Command | CommandError): unknown =>
    'batch' in parsed
      ? { op: parsed.op, topic: parsed.topic, payloads: parsed.batch.payloads.map((payload) => Buffer.from(payload).toString('hex')) }
      : asText(parsed);
  for (const body of bodies) {
    const expected = plain(parseRequest(body));
    for (let first = 1; first < body.length; first++) {
      for (const second of [first + 1, first + 2, body.length]) {
        const parts = cutAt(body, [first, second]);
        t.deepEqual(plain(parseRequestParts(parts, body.length)), expected, `${body.toString('utf8')} cut at ${first}, ${second}`);
      }
    }
  }
  // The payloads of an MPUT are views of the chunks, but for one that spans two.
  const body = Buffer.from('MPUT t 4 4 4\naaaabbbbcccc');
  const parts = cutAt(body, [13 + 6]);
  const parsed = parseRequestParts(parts, body.length);
  if (!('batch' in parsed)) return t.fail(JSON.stringify(parsed));
  const { payloads } = parsed.batch;
  t.is(payloads[0]?.buffer, body.buffer);
  t.is(payloads[2]?.buffer, body.buffer);
  t.is(Buffer.from(payloads[1] as Uint8Array).toString(), 'bbbb');
});

test('reply builders produce the texts of the original', (t) => {
  t.is(OK, 'OK');
  t.is(EMPTY, 'EMPTY');
  t.is(okPayload('hello world'), 'OK hello world');
  t.is(err('unknown topic logs'), 'ERR unknown topic logs');
  t.is(err(COMMAND_ERRORS.putPayload), 'ERR PUT requires a payload');
  t.is(fetched(4, 'a b'), 'OK 4 a b');
});

test('parseReply classifies every reply shape', (t) => {
  t.deepEqual(parseReply('OK'), { kind: 'ok' });
  t.deepEqual(parseReply('OK hello world'), { kind: 'value', value: 'hello world' });
  t.deepEqual(parseReply('OK  x'), { kind: 'value', value: ' x' });
  t.deepEqual(parseReply('OK {"a":1}'), { kind: 'value', value: '{"a":1}' });
  t.deepEqual(parseReply('EMPTY'), { kind: 'empty' });
  t.deepEqual(parseReply('ERR unknown topic x'), { kind: 'error', message: 'unknown topic x' });
  t.deepEqual(parseReply('ERR'), { kind: 'error', message: '' });
  t.deepEqual(parseReply('{"current_segment":2,"sealed_segments":{"1":0}}'), {
    kind: 'json',
    value: { current_segment: 2, sealed_segments: { '1': 0 } },
  });
  t.deepEqual(parseReply('{\n  "id": 1\n}'), { kind: 'json', value: { id: 1 } });
  t.deepEqual(parseReply('{not json'), { kind: 'raw', text: '{not json' });
  for (const text of ['OKAY', 'ok', 'EMPTY ', 'ERRx', 'hello', '']) t.deepEqual(parseReply(text), { kind: 'raw', text }, text);
});

test('parseFetchReply reads OK <next> <payload> and EMPTY, and refuses the rest', (t) => {
  t.deepEqual(parseFetchReply('OK 1 hello'), { nextOffset: 1, payload: 'hello' });
  t.deepEqual(parseFetchReply('OK 42 a b  c'), { nextOffset: 42, payload: 'a b  c' });
  t.deepEqual(parseFetchReply(fetched(7, 'x')), { nextOffset: 7, payload: 'x' });
  t.is(parseFetchReply('EMPTY'), null);
  for (const text of ['OK', 'OK 5', 'OK x y', 'OK -1 y', 'ERR unknown topic t', 'hello', 'OK  y']) {
    const error = t.throws(() => parseFetchReply(text), { instanceOf: ReplyFormatError }, text);
    t.is(error?.text, text);
  }
});
