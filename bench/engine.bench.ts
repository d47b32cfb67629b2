// Engine workloads W1–W6 and the 1 GiB reopen (docs/performance.md), each measured side by side
// with its raw Node baseline in the same process run: for every repetition the baseline and the
// engine cases run back to back, and each figure is the median of the repetitions. Every case gets
// a fresh directory under os.tmpdir(); the run's directory is removed at the end, even on failure.
// The workloads are fixed-count runs (as in the reference), so they are timed with
// performance.now() rather than benchmark.js, whose adaptive cycles suit micro cases only.
//
//   npm run bench:engine [-- --smoke] [-- --backend fd|mmap|uring]

import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, fstatSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { pino } from 'pino';
import { resolveBackend } from '../src/engine/backends.js';
import { Walrus } from '../src/engine/walrus.js';

export type EngineBackend = 'fd' | 'mmap' | 'uring';

export interface EngineBenchOptions {
  /** Tiny sizes that finish in a few seconds (CI); the targets are then only indicative. */
  readonly smoke: boolean;
  readonly backend: EngineBackend;
}

interface Sizes {
  readonly w1Appends: number;
  readonly w2Appends: number;
  readonly w3Batches: number;
  readonly w4Reads: number;
  readonly w5Appends: number;
  readonly w6AppendsPerProducer: number;
  readonly reopenPayloadBytes: number;
  readonly repetitions: number;
}

/** The reference's sizes (docs/performance.md). */
const FULL: Sizes = {
  w1Appends: 1_000_000,
  w2Appends: 200_000,
  w3Batches: 10_000,
  w4Reads: 1_000_000,
  w5Appends: 5_000,
  w6AppendsPerProducer: 500_000,
  reopenPayloadBytes: 1024 * 1024 * 1024,
  // Five: on this VM single runs drift by 10-50 %, and a median of three still swings.
  repetitions: 5,
};

const SMOKE: Sizes = {
  w1Appends: 20_000,
  w2Appends: 5_000,
  w3Batches: 200,
  w4Reads: 20_000,
  w5Appends: 640,
  w6AppendsPerProducer: 10_000,
  reopenPayloadBytes: 8 * 1024 * 1024,
  repetitions: 3,
};

const ENTRY_BYTES = 256;
const W2_ENTRY_BYTES = 4096;
const W3_BATCH_ENTRIES = 100;
const W1_IN_FLIGHT = 1024;
const W5_IN_FLIGHT = 64;
const W6_PRODUCERS = 2;
const W4_CONSISTENCY = { atLeastOnce: 5000 } as const;
/** Entries per appendBatch when filling a log for the read and reopen cases (the batch limit). */
const FILL_BATCH_ENTRIES = 2000;
const RECORD_HEADER_BYTES = 32;
const RAW_READ_CHUNK_BYTES = 4 * 1024 * 1024;

const silent = pino({ level: 'silent' });

// --- measurement -----------------------------------------------------------------------------

interface Sample {
  readonly ops: number;
  readonly bytes: number;
  readonly ms: number;
}

interface Trial {
  /** The timed part. */
  run(): Promise<void> | void;
  /** Untimed: checks the result and releases what the set-up took. */
  tearDown(): Promise<void> | void;
}

interface Case {
  readonly name: string;
  readonly ops: number;
  /** Bytes the MB/s column counts: payload bytes, except for the reopen rows (record bytes scanned). */
  readonly bytes: number;
  /** Untimed set-up in a fresh directory. */
  setUp(dir: string): Promise<Trial>;
}

interface Target {
  readonly text: string;
  /** Figure compared with the threshold. */
  readonly kind: 'ratio' | 'rate' | 'time';
  readonly threshold: number;
}

interface RowSpec {
  readonly workload: string;
  readonly engine: string;
  readonly baseline: string;
  readonly target?: Target;
}

interface Group {
  readonly title: string;
  readonly cases: readonly Case[];
  readonly rows: readonly RowSpec[];
  /** Untimed, once per group (shared data such as the 1 GiB log). */
  prepare?(dir: string): Promise<void>;
}

interface Row {
  readonly workload: string;
  readonly engine: Sample;
  readonly baselineName: string;
  readonly baseline: Sample;
  readonly ratio: number;
  readonly target: Target | undefined;
  readonly met: boolean | undefined;
}

function opsPerSecond(sample: Sample): number {
  return (sample.ops * 1000) / sample.ms;
}

function megabytesPerSecond(sample: Sample): number {
  return sample.bytes / 1e6 / (sample.ms / 1000);
}

async function measureOnce(root: string, bench: Case): Promise<Sample> {
  const dir = mkdtempSync(join(root, 'case-'));
  try {
    const trial = await bench.setUp(dir);
    const started = performance.now();
    await trial.run();
    const ms = performance.now() - started;
    await trial.tearDown();
    return { ops: bench.ops, bytes: bench.bytes, ms };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(samples: Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.ms - b.ms);
  const middle = sorted[Math.floor(sorted.length / 2)];
  if (middle === undefined) throw new Error('invariant: no samples');
  return middle;
}

/** Runs every case of the group back to back, `repetitions` times; returns each case's median. */
async function measureGroup(root: string, group: Group, repetitions: number, log: (line: string) => void): Promise<Map<string, Sample>> {
  const samples = new Map<string, Sample[]>(group.cases.map((bench) => [bench.name, []]));
  for (let repetition = 1; repetition <= repetitions; repetition++) {
    for (const bench of group.cases) {
      const sample = await measureOnce(root, bench);
      samples.get(bench.name)?.push(sample);
      log(
        `    #${repetition} ${bench.name.padEnd(48)} ${formatRate(opsPerSecond(sample)).padStart(12)} ops/s  ${(sample.ms / 1000).toFixed(3)} s`,
      );
    }
  }
  return new Map([...samples].map(([name, list]) => [name, median(list)]));
}

function toRow(spec: RowSpec, medians: Map<string, Sample>): Row {
  const engine = medians.get(spec.engine);
  const baseline = medians.get(spec.baseline);
  if (engine === undefined || baseline === undefined) throw new Error(`invariant: row ${spec.workload} names an unknown case`);
  const ratio =
    spec.target?.kind === 'time'
      ? megabytesPerSecond(engine) / megabytesPerSecond(baseline)
      : opsPerSecond(engine) / opsPerSecond(baseline);
  let met: boolean | undefined;
  if (spec.target?.kind === 'ratio') met = ratio >= spec.target.threshold;
  if (spec.target?.kind === 'rate') met = opsPerSecond(engine) >= spec.target.threshold;
  if (spec.target?.kind === 'time') met = engine.ms < spec.target.threshold;
  return { workload: spec.workload, engine, baselineName: spec.baseline, baseline, ratio, target: spec.target, met };
}

// --- raw Node baselines ----------------------------------------------------------------------

/** One positional fs.writeSync per entry, optionally with an fdatasync after each. */
function rawWrites(name: string, count: number, entryBytes: number, syncEach: boolean): Case {
  const payload = randomBytes(entryBytes);
  return {
    name,
    ops: count,
    bytes: count * entryBytes,
    async setUp(dir) {
      const fd = openSync(join(dir, 'raw.bin'), 'w+');
      return {
        run() {
          for (let index = 0; index < count; index++) {
            writeSync(fd, payload, 0, entryBytes, index * entryBytes);
            if (syncEach) fdatasyncSync(fd);
          }
        },
        tearDown() {
          // Untimed: leave no dirty pages behind to slow the next case down.
          fdatasyncSync(fd);
          if (fstatSync(fd).size !== count * entryBytes) throw new Error(`${name}: short file`);
          closeSync(fd);
        },
      };
    },
  };
}

/**
 * The floor of an awaited append in Node: per entry one positional fs.writeSync of a record's
 * size (header + payload), then an `await` of a settled promise and the microtask an engine needs
 * to notice the end of a tick. No engine work at all: what W1 sequential could reach at best.
 */
function rawAwaitedWrites(name: string, count: number, entryBytes: number): Case {
  const record = randomBytes(RECORD_HEADER_BYTES + entryBytes);
  const settled = Promise.resolve();
  return {
    name,
    ops: count,
    bytes: count * entryBytes,
    async setUp(dir) {
      const fd = openSync(join(dir, 'raw.bin'), 'w+');
      let tickMarked = false;
      const endTick = (): void => {
        tickMarked = false;
      };
      const write = (index: number): Promise<void> => {
        if (!tickMarked) {
          tickMarked = true;
          void settled.then(endTick);
        }
        writeSync(fd, record, 0, record.length, index * record.length);
        return settled;
      };
      return {
        async run() {
          for (let index = 0; index < count; index++) await write(index);
        },
        tearDown() {
          fdatasyncSync(fd);
          if (fstatSync(fd).size !== count * record.length) throw new Error(`${name}: short file`);
          closeSync(fd);
        },
      };
    },
  };
}

/** One positional fs.readSync of `entryBytes` per entry from a file written (untimed) beforehand. */
function rawReads(name: string, count: number, entryBytes: number): Case {
  return {
    name,
    ops: count,
    bytes: count * entryBytes,
    async setUp(dir) {
      const fd = openSync(join(dir, 'raw.bin'), 'w+');
      const chunk = randomBytes(entryBytes * FILL_BATCH_ENTRIES);
      for (let written = 0; written < count; written += FILL_BATCH_ENTRIES) {
        const entries = Math.min(FILL_BATCH_ENTRIES, count - written);
        writeSync(fd, chunk, 0, entries * entryBytes, written * entryBytes);
      }
      fdatasyncSync(fd);
      const buffer = Buffer.allocUnsafe(entryBytes);
      return {
        run() {
          for (let index = 0; index < count; index++) {
            if (readSync(fd, buffer, 0, entryBytes, index * entryBytes) !== entryBytes) throw new Error(`${name}: short read`);
          }
        },
        tearDown() {
          closeSync(fd);
        },
      };
    },
  };
}

/**
 * Sequential fs.readSync of the data files in 4 MiB chunks plus crc32 of each chunk: the floor of a
 * recovery scan. Counted in the same entries as the engine's reopen, so the ops/s columns compare.
 */
function rawScan(name: string, source: () => string, entries: number, bytes: number): Case {
  return {
    name,
    ops: entries,
    bytes,
    async setUp() {
      const dir = source();
      const files = readdirSync(dir)
        .filter((file) => file.endsWith('.wal'))
        .sort();
      const chunk = Buffer.allocUnsafe(RAW_READ_CHUNK_BYTES);
      let scanned = 0;
      return {
        run() {
          let remaining = bytes;
          for (const file of files) {
            const fd = openSync(join(dir, file), 'r');
            try {
              let position = 0;
              while (remaining > 0) {
                const count = readSync(fd, chunk, 0, Math.min(chunk.length, remaining), position);
                if (count === 0) break;
                crc32(chunk.subarray(0, count));
                position += count;
                remaining -= count;
              }
            } finally {
              closeSync(fd);
            }
          }
          scanned = bytes - remaining;
        },
        tearDown() {
          if (scanned !== bytes) throw new Error(`${name}: scanned ${scanned} of ${bytes} bytes`);
        },
      };
    },
  };
}

// --- engine cases ----------------------------------------------------------------------------

interface EngineSettings {
  readonly backend: EngineBackend;
  readonly fsync: 'each' | 'none';
  readonly consistency?: 'strict' | { readonly atLeastOnce: number };
}

function openWal(dataDir: string, settings: EngineSettings): Promise<Walrus> {
  return Walrus.open({
    dataDir,
    backend: settings.backend,
    fsync: settings.fsync,
    consistency: settings.consistency ?? 'strict',
    logger: silent,
  });
}

/** Runs `count` operations keeping `width` of them in flight (width 1: await each). */
async function inFlight(count: number, width: number, operation: () => Promise<void>): Promise<void> {
  let started = 0;
  const lane = async (): Promise<void> => {
    while (started < count) {
      started += 1;
      await operation();
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane));
}

function engineAppends(name: string, settings: EngineSettings, count: number, entryBytes: number, width: number): Case {
  const payload = randomBytes(entryBytes);
  const topic = 'bench';
  return {
    name,
    ops: count,
    bytes: count * entryBytes,
    async setUp(dir) {
      const wal = await openWal(dir, settings);
      return {
        run: () => inFlight(count, width, () => wal.append(topic, payload)),
        async tearDown() {
          const pending = wal.pendingCount(topic);
          await wal.close();
          if (pending !== count) throw new Error(`${name}: ${pending} entries readable, expected ${count}`);
        },
      };
    },
  };
}

function engineBatches(name: string, settings: EngineSettings, batches: number, batchEntries: number, entryBytes: number): Case {
  const batch = Array.from({ length: batchEntries }, () => randomBytes(entryBytes));
  const topic = 'bench';
  return {
    name,
    ops: batches * batchEntries,
    bytes: batches * batchEntries * entryBytes,
    async setUp(dir) {
      const wal = await openWal(dir, settings);
      return {
        async run() {
          for (let index = 0; index < batches; index++) await wal.appendBatch(topic, batch);
        },
        async tearDown() {
          const pending = wal.pendingCount(topic);
          await wal.close();
          if (pending !== batches * batchEntries)
            throw new Error(`${name}: ${pending} entries readable, expected ${batches * batchEntries}`);
        },
      };
    },
  };
}

/** `producers` async loops in this one process, each awaiting its own appends to its own topic. */
function engineProducers(name: string, settings: EngineSettings, producers: number, perProducer: number, entryBytes: number): Case {
  const payloads = Array.from({ length: producers }, () => randomBytes(entryBytes));
  return {
    name,
    ops: producers * perProducer,
    bytes: producers * perProducer * entryBytes,
    async setUp(dir) {
      const wal = await openWal(dir, settings);
      const topics = payloads.map((_, index) => `producer_${index}`);
      return {
        async run() {
          await Promise.all(
            topics.map(async (topic, index) => {
              const payload = payloads[index] as Buffer;
              for (let count = 0; count < perProducer; count++) await wal.append(topic, payload);
            }),
          );
        },
        async tearDown() {
          const pending = topics.map((topic) => wal.pendingCount(topic));
          await wal.close();
          if (pending.some((count) => count !== perProducer)) throw new Error(`${name}: readable entries ${pending.join(', ')}`);
        },
      };
    },
  };
}

async function fill(wal: Walrus, topic: string, count: number, entryBytes: number): Promise<void> {
  const full = Array.from({ length: FILL_BATCH_ENTRIES }, () => randomBytes(entryBytes));
  for (let written = 0; written < count; written += FILL_BATCH_ENTRIES) {
    const entries = Math.min(FILL_BATCH_ENTRIES, count - written);
    await wal.appendBatch(topic, entries === FILL_BATCH_ENTRIES ? full : full.slice(0, entries));
  }
}

function engineReads(name: string, settings: EngineSettings, count: number, entryBytes: number, method: 'readNext' | 'readBatch'): Case {
  const topic = 'bench';
  return {
    name,
    ops: count,
    bytes: count * entryBytes,
    async setUp(dir) {
      const wal = await openWal(dir, settings);
      await fill(wal, topic, count, entryBytes);
      await wal.flush();
      let read = 0;
      return {
        async run() {
          if (method === 'readNext') {
            for (; read < count; read++) {
              if ((await wal.readNext(topic)) === null) throw new Error(`${name}: log ended at ${read}`);
            }
            return;
          }
          while (read < count) {
            const entries = await wal.readBatch(topic, { maxBytes: FILL_BATCH_ENTRIES * entryBytes });
            if (entries.length === 0) throw new Error(`${name}: log ended at ${read}`);
            read += entries.length;
          }
        },
        async tearDown() {
          const pending = wal.pendingCount(topic);
          await wal.close();
          if (read !== count || pending !== 0) throw new Error(`${name}: read ${read} of ${count}, ${pending} left`);
        },
      };
    },
  };
}

/** Times Walrus.open (recovery) on a log filled once for the group. */
function engineReopen(name: string, settings: EngineSettings, source: () => string, entries: number, recordBytes: number): Case {
  return {
    name,
    ops: entries,
    bytes: recordBytes,
    async setUp() {
      let wal: Walrus | undefined;
      return {
        async run() {
          wal = await openWal(source(), settings);
        },
        async tearDown() {
          if (wal === undefined) throw new Error(`${name}: did not open`);
          const recovered = wal.recovery.entriesRecovered;
          await wal.close();
          if (recovered !== entries) throw new Error(`${name}: recovered ${recovered} entries, expected ${entries}`);
        },
      };
    },
  };
}

// --- the workloads ---------------------------------------------------------------------------

function groups(sizes: Sizes, backend: EngineBackend): Group[] {
  const none: EngineSettings = { backend, fsync: 'none' };
  const each: EngineSettings = { backend, fsync: 'each' };
  const reads: EngineSettings = { backend, fsync: 'none', consistency: W4_CONSISTENCY };
  const w3Entries = sizes.w3Batches * W3_BATCH_ENTRIES;
  const w6Entries = sizes.w6AppendsPerProducer * W6_PRODUCERS;
  const reopenEntries = Math.floor(sizes.reopenPayloadBytes / ENTRY_BYTES);
  const reopenRecordBytes = reopenEntries * (RECORD_HEADER_BYTES + ENTRY_BYTES);
  let reopenDir = '';
  const reopenSource = (): string => reopenDir;
  const w1Raw = `raw writeSync 256 B × ${count(sizes.w1Appends)}`;
  const w1Floor = `floor: writeSync 288 B + await × ${count(sizes.w1Appends)}`;
  const w2Raw = `raw writeSync 4 KiB × ${count(sizes.w2Appends)}`;
  const w3Raw = `raw writeSync 256 B × ${count(w3Entries)}`;
  const w4Raw = `raw readSync 256 B × ${count(sizes.w4Reads)}`;
  const w5Raw = `raw writeSync+fdatasync 256 B × ${count(sizes.w5Appends)}`;
  const w6Raw = `raw writeSync 256 B × ${count(w6Entries)}`;
  const scanRaw = `raw readSync 4 MiB + crc32, ${mib(reopenRecordBytes)}`;
  const w5Sequential = 'W5 engine, await each';
  return [
    {
      title: `W1: ${count(sizes.w1Appends)} appends of 256 B, one topic, fsync none`,
      cases: [
        rawWrites(w1Raw, sizes.w1Appends, ENTRY_BYTES, false),
        rawAwaitedWrites(w1Floor, sizes.w1Appends, ENTRY_BYTES),
        engineAppends('W1 engine, await each', none, sizes.w1Appends, ENTRY_BYTES, 1),
        engineAppends(`W1 engine, ${W1_IN_FLIGHT} in flight`, none, sizes.w1Appends, ENTRY_BYTES, W1_IN_FLIGHT),
      ],
      rows: [
        { workload: 'W1 sequential (await each append)', engine: 'W1 engine, await each', baseline: w1Raw, target: ratio(0.5) },
        { workload: 'W1 floor: writeSync + await, no engine', engine: w1Floor, baseline: w1Raw },
        {
          workload: `W1 pipelined (${W1_IN_FLIGHT} in flight)`,
          engine: `W1 engine, ${W1_IN_FLIGHT} in flight`,
          baseline: w1Raw,
          target: ratio(2),
        },
      ],
    },
    {
      title: `W2: ${count(sizes.w2Appends)} appends of 4 KiB, fsync none`,
      cases: [
        rawWrites(w2Raw, sizes.w2Appends, W2_ENTRY_BYTES, false),
        engineAppends('W2 engine, await each', none, sizes.w2Appends, W2_ENTRY_BYTES, 1),
        engineAppends(`W2 engine, ${W1_IN_FLIGHT} in flight`, none, sizes.w2Appends, W2_ENTRY_BYTES, W1_IN_FLIGHT),
      ],
      rows: [
        { workload: 'W2 4 KiB sequential (await each)', engine: 'W2 engine, await each', baseline: w2Raw },
        { workload: `W2 4 KiB pipelined (${W1_IN_FLIGHT} in flight)`, engine: `W2 engine, ${W1_IN_FLIGHT} in flight`, baseline: w2Raw },
      ],
    },
    {
      title: `W3: ${count(sizes.w3Batches)} batches of ${W3_BATCH_ENTRIES} × 256 B (await each batch), fsync none`,
      cases: [
        rawWrites(w3Raw, w3Entries, ENTRY_BYTES, false),
        engineBatches('W3 engine appendBatch', none, sizes.w3Batches, W3_BATCH_ENTRIES, ENTRY_BYTES),
      ],
      rows: [{ workload: 'W3 batches of 100 × 256 B (entries/s)', engine: 'W3 engine appendBatch', baseline: w3Raw, target: ratio(4) }],
    },
    {
      title: `W4: read back ${count(sizes.w4Reads)} × 256 B, consistency { atLeastOnce: 5000 }`,
      cases: [
        rawReads(w4Raw, sizes.w4Reads, ENTRY_BYTES),
        engineReads('W4 engine readNext', reads, sizes.w4Reads, ENTRY_BYTES, 'readNext'),
        engineReads('W4 engine readBatch', reads, sizes.w4Reads, ENTRY_BYTES, 'readBatch'),
      ],
      rows: [
        { workload: 'W4 readNext (await each)', engine: 'W4 engine readNext', baseline: w4Raw, target: rate(1_000_000) },
        {
          workload: `W4 readBatch (≤ ${FILL_BATCH_ENTRIES} entries per call)`,
          engine: 'W4 engine readBatch',
          baseline: w4Raw,
          target: rate(1_000_000),
        },
      ],
    },
    {
      title: `W5: ${count(sizes.w5Appends)} appends of 256 B, fsync each`,
      cases: [
        rawWrites(w5Raw, sizes.w5Appends, ENTRY_BYTES, true),
        engineAppends(w5Sequential, each, sizes.w5Appends, ENTRY_BYTES, 1),
        engineAppends(`W5 engine, ${W5_IN_FLIGHT} in flight`, each, sizes.w5Appends, ENTRY_BYTES, W5_IN_FLIGHT),
      ],
      rows: [
        { workload: 'W5 fsync each, sequential', engine: w5Sequential, baseline: w5Raw, target: ratio(0.8) },
        {
          workload: `W5 fsync each, ${W5_IN_FLIGHT} in flight`,
          engine: `W5 engine, ${W5_IN_FLIGHT} in flight`,
          baseline: w5Sequential,
          target: ratio(20),
        },
      ],
    },
    {
      title: `W6: ${W6_PRODUCERS} async producers × ${count(sizes.w6AppendsPerProducer)} × 256 B, own topic each, one process, fsync none`,
      cases: [
        rawWrites(w6Raw, w6Entries, ENTRY_BYTES, false),
        engineProducers('W6 engine, 2 producers', none, W6_PRODUCERS, sizes.w6AppendsPerProducer, ENTRY_BYTES),
      ],
      rows: [{ workload: 'W6 2 async producers, own topic each', engine: 'W6 engine, 2 producers', baseline: w6Raw }],
    },
    {
      title: `Reopen: Walrus.open after ${mib(sizes.reopenPayloadBytes)} of 256 B entries (${count(reopenEntries)} entries, page cache warm)`,
      async prepare(dir) {
        reopenDir = dir;
        const wal = await openWal(dir, none);
        await fill(wal, 'bench', reopenEntries, ENTRY_BYTES);
        await wal.close();
      },
      cases: [
        rawScan(scanRaw, reopenSource, reopenEntries, reopenRecordBytes),
        engineReopen('reopen engine', none, reopenSource, reopenEntries, reopenRecordBytes),
      ],
      rows: [
        {
          workload: `Reopen after ${mib(sizes.reopenPayloadBytes)} of 256 B`,
          engine: 'reopen engine',
          baseline: scanRaw,
          target: time(2000),
        },
      ],
    },
  ];
}

function ratio(threshold: number): Target {
  return { text: `≥ ${threshold} × baseline`, kind: 'ratio', threshold };
}

function rate(threshold: number): Target {
  return { text: `≥ ${threshold.toLocaleString('en-US')} ops/s`, kind: 'rate', threshold };
}

function time(thresholdMs: number): Target {
  return { text: `< ${thresholdMs / 1000} s`, kind: 'time', threshold: thresholdMs };
}

// --- output ----------------------------------------------------------------------------------

function count(value: number): string {
  return value.toLocaleString('en-US');
}

function mib(bytes: number): string {
  return bytes >= 1024 ** 3
    ? `${(bytes / 1024 ** 3).toFixed(bytes % 1024 ** 3 === 0 ? 0 : 2)} GiB`
    : `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

function loadAverage(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function verdict(row: Row): string {
  if (row.target === undefined || row.met === undefined) return '—';
  const word = row.met ? 'MET' : 'MISSED';
  if (row.target.kind === 'ratio') return `${word} (${row.ratio.toFixed(2)}×)`;
  if (row.target.kind === 'rate') return `${word} (${formatRate(opsPerSecond(row.engine))}/s)`;
  return `${word} (${(row.engine.ms / 1000).toFixed(2)} s)`;
}

function table(rows: readonly Row[]): string {
  const header = [
    'workload',
    'engine ops/s',
    'engine MB/s',
    'engine s',
    'baseline (same run)',
    'baseline ops/s',
    'baseline MB/s',
    'ratio',
    'target',
    'result',
  ];
  const lines = rows.map((row) => [
    row.workload,
    formatRate(opsPerSecond(row.engine)),
    megabytesPerSecond(row.engine).toFixed(1),
    (row.engine.ms / 1000).toFixed(3),
    row.baselineName,
    formatRate(opsPerSecond(row.baseline)),
    megabytesPerSecond(row.baseline).toFixed(1),
    `${row.ratio.toFixed(2)}×`,
    row.target?.text ?? '—',
    verdict(row),
  ]);
  const all = [header, ...lines];
  const widths = header.map((_, column) => Math.max(...all.map((cells) => (cells[column] ?? '').length)));
  const render = (cells: string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [render(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...lines.map(render)].join('\n');
}

export async function runEngineBench(options: EngineBenchOptions): Promise<void> {
  const sizes = options.smoke ? SMOKE : FULL;
  const log = (line: string): void => console.log(line);
  // A backend that cannot run here fails now, with its reason, before any data is written.
  let backendName: string;
  try {
    backendName = (await resolveBackend(options.backend)).name;
  } catch (error) {
    console.error(`engine: ${(error as Error).message}`);
    process.exitCode = 1;
    return;
  }
  log(`engine (${options.smoke ? 'smoke sizes: the targets are only indicative' : 'full sizes'})`);
  log(`  backend: ${backendName}`);
  log(`  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), linux ${release()}`);
  log(`  temp dir: ${tmpdir()}; medians of ${sizes.repetitions} repetitions; MB = 10^6 bytes of payload`);
  log(`  load average at start: ${loadAverage()} (other processes on this machine skew every figure)`);
  const root = mkdtempSync(join(tmpdir(), 'walrus-bench-'));
  const rows: Row[] = [];
  try {
    const warmUps = options.smoke ? [] : groups(SMOKE, options.backend);
    for (const [index, group] of groups(sizes, options.backend).entries()) {
      log(`\n  ${group.title}`);
      // Untimed warm-up at smoke size, so the first repetition does not pay for the JIT.
      const warmUp = warmUps[index];
      if (warmUp !== undefined) await runGroup(root, warmUp, 1, () => undefined);
      const medians = await runGroup(root, group, sizes.repetitions, log);
      for (const spec of group.rows) rows.push(toRow(spec, medians));
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  log(`\n  load average at end: ${loadAverage()}`);
  log(`\n${table(rows)}`);
  const missed = rows.filter((row) => row.met === false).length;
  const met = rows.filter((row) => row.met === true).length;
  log(`\n  targets: ${met} met, ${missed} missed${options.smoke ? ' (smoke sizes: indicative only)' : ''}`);
}

async function runGroup(root: string, group: Group, repetitions: number, log: (line: string) => void): Promise<Map<string, Sample>> {
  const dir = mkdtempSync(join(root, 'group-'));
  try {
    await group.prepare?.(dir);
    return await measureGroup(root, group, repetitions, log);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
