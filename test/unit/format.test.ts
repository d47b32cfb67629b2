// The record layout module (src/engine/format.ts): what its writers put at each byte is what
// docs/format.md says, its readers decode what its writers wrote, and the batch writer the
// append path uses lays out exactly the bytes of one writeRecordFields call per entry.

import { randomBytes } from 'node:crypto';
import test from 'ava';
import {
  FORMAT_VERSION,
  RECORD_HEADER_BYTES,
  RecordKind,
  readRecordHeader,
  recordMatches,
  writeEntryRecords,
  writeRecordFields,
} from '../../src/engine/format.js';

const viewOf = (buffer: Buffer): DataView => new DataView(buffer.buffer, buffer.byteOffset, buffer.length);

test('writeRecordFields puts each field where docs/format.md says, little-endian', (t) => {
  const buffer = Buffer.alloc(RECORD_HEADER_BYTES + 8, 0xee);
  const seq = 2 ** 40 + 5;
  writeRecordFields(viewOf(buffer), 4, RecordKind.cursor, 0x01020304, 0, seq, 7, 6);
  const header = buffer.subarray(4, 4 + RECORD_HEADER_BYTES);
  t.is(header.subarray(0, 4).toString('latin1'), 'WREC');
  t.deepEqual([...header.subarray(4, 8)], [0xee, 0xee, 0xee, 0xee], 'the CRC is left to the sealer');
  t.is(header[8], FORMAT_VERSION);
  t.is(header[9], 3);
  t.is(header.readUInt16LE(10), 0, 'flags');
  t.is(header.readUInt32LE(12), 0x01020304);
  t.is(header.readUInt32LE(16), 0);
  t.is(header.readUInt32LE(20), 5);
  t.is(header.readUInt32LE(24), 2 ** 8);
  t.is(header.readUInt16LE(28), 7);
  t.is(header.readUInt16LE(30), 6);
  t.is(buffer[3], 0xee, 'nothing before the header is touched');
  t.is(buffer[4 + RECORD_HEADER_BYTES], 0xee, 'nothing after it either');
  t.throws(() => writeRecordFields(viewOf(buffer), 9, RecordKind.entry, 1, 0, 0, 1, 0), { instanceOf: RangeError });
});

test('readRecordHeader and recordMatches read back what writeRecordFields wrote, and refuse what is off', (t) => {
  const buffer = Buffer.alloc(RECORD_HEADER_BYTES);
  const view = viewOf(buffer);
  const seq = 2 ** 52 + 3;
  writeRecordFields(view, 0, RecordKind.entry, 9, 1000, seq, 40_000, 39_999);
  t.deepEqual(readRecordHeader(view, 0), {
    ok: true,
    header: { kind: RecordKind.entry, topicId: 9, payloadBytes: 1000, seq, batchSize: 40_000, batchIndex: 39_999 },
  });
  t.true(recordMatches(view, 0, RecordKind.entry, 9, seq, 1000));
  t.false(recordMatches(view, 0, RecordKind.entry, 9, seq + 1, 1000));
  t.false(recordMatches(view, 0, RecordKind.topic, 9, seq, 1000));
  // [byte offset, bytes written there, the reason readRecordHeader gives]
  const damage: [number, number[], string][] = [
    [0, [0], 'no record magic'],
    [8, [2], 'record format version 2'],
    [9, [4], 'unknown record kind 4'],
    [30, [0x40, 0x9c], 'bad batch position 40000/40000'], // batchIndex 40000 = batchSize
  ];
  for (const [offset, bytes, reason] of damage) {
    const damaged = Buffer.from(buffer);
    damaged.set(bytes, offset);
    t.deepEqual(readRecordHeader(viewOf(damaged), 0), { ok: false, reason });
  }
});

test('writeEntryRecords lays out a batch exactly as one writeRecordFields per entry followed by its payload', (t) => {
  const payloads = [0, 1, 31, 32, 33, 300].map((length) => randomBytes(length));
  const firstSeq = 2 ** 32 - 2; // the batch crosses into the seq's high word
  const total = payloads.reduce((sum, payload) => sum + RECORD_HEADER_BYTES + payload.length, 0);
  const batch = Buffer.alloc(total + 10);
  const end = writeEntryRecords(viewOf(batch), batch, 10, 7, firstSeq, payloads);
  t.is(end, total + 10);
  const single = Buffer.alloc(total + 10);
  let at = 10;
  for (const [index, payload] of payloads.entries()) {
    writeRecordFields(viewOf(single), at, RecordKind.entry, 7, payload.length, firstSeq + index, payloads.length, index);
    single.set(payload, at + RECORD_HEADER_BYTES);
    at += RECORD_HEADER_BYTES + payload.length;
  }
  t.true(batch.equals(single));
});
