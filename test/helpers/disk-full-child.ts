// A child process for the disk-full test, run inside `unshare -rm` by a shell that has mounted a
// small tmpfs on <dir>: it appends 64 KiB entries through <backend> until an append is refused,
// then reopens the log and prints one JSON line:
//   { acked, error: { code, message } | null, recovered, intact }
// `intact`: every acknowledged entry came back after the reopen with its exact bytes.
// Usage: node disk-full-child.js <dir> <backend>

import { pino } from 'pino';
import { type BackendName, Walrus } from '../../src/engine/walrus.js';

const [dir, backend] = process.argv.slice(2);
if (dir === undefined || backend === undefined) throw new Error('usage: disk-full-child <dir> <backend>');

const ENTRY_BYTES = 64 * 1024;
const LIMIT = 10_000; // far more than the test's file system holds
const payload = (index: number): Buffer => Buffer.alloc(ENTRY_BYTES, index % 251);
const logger = pino({ level: 'silent' });

const wal = await Walrus.open({ dataDir: dir, backend: backend as BackendName, fsync: 'none', logger });
let acked = 0;
let error: { code: string; message: string } | null = null;
for (; acked < LIMIT; acked++) {
  try {
    await wal.append('fill', payload(acked));
  } catch (caught) {
    const failure = caught as { code?: string; message: string };
    error = { code: failure.code ?? 'none', message: failure.message };
    break;
  }
}
// The disk is still full: closing may fail to write what it still holds; that is reported, not fatal.
await wal.close().catch(() => undefined);

const again = await Walrus.open({ dataDir: dir, backend: backend as BackendName, fsync: 'none', logger });
let recovered = 0;
let intact = true;
for (;;) {
  const batch = await again.readBatch('fill', { maxBytes: 16 * ENTRY_BYTES, startSeq: recovered });
  if (batch.length === 0) break;
  for (const entry of batch) {
    if (entry.seq !== recovered || (recovered < acked && !entry.data.equals(payload(recovered)))) intact = false;
    recovered += 1;
  }
}
if (recovered < acked) intact = false;
await again.close().catch(() => undefined);
process.stdout.write(`${JSON.stringify({ acked, error, recovered, intact })}\n`);
