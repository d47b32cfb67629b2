// Engine workloads W1–W6 and the 1 GiB reopen (docs/performance.md), each measured side by side
// with its raw Node baseline in the same process run: for every repetition the baseline and the
// engine cases run back to back, and each figure is the median of the repetitions. Every case gets
// a fresh directory under os.tmpdir(); the run's directory is removed at the end, even on failure.
// The workloads are fixed-count runs (as in the reference), so they are timed with
// performance.now() rather than benchmark.js, whose adaptive cycles suit micro cases only.
//
// Every engine case runs once per backend (fd, mmap, uring: all that can run here, or the ones
// --backend names), in the same repetition as its baseline, so the table compares backends
// side by side under the same machine conditions.
//
//   npm run bench:engine [-- --smoke] [-- --backend fd,mmap,uring]

import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, fstatSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { pino } from 'pino';
import { resolveBackend } from '../src/engine/storage/select.js';
import { Walrus } from '../src/engine/walrus.js';
import { markdownTable } from './server.bench.js';

export type EngineBackend = 'fd' | 'mmap' | 'uring';

export interface EngineBenchOptions {
  /** Tiny sizes that finish in a few seconds (CI); the targets are then only indicative. */
  readonly smoke: boolean;
  /** Backends to compare; empty: every backend that can run here. */
  readonly backends: readonly EngineBackend[];
}

const ALL_BACKENDS: readonly EngineBackend[] = ['fd', 'mmap', 'uring'];

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
  /** Figure compared with the threshold; `fd`: ops/s against the fd backend's on the same row. */
  readonly kind: 'ratio' | 'rate' | 'time' | 'fd';
  readonly threshold: number;
}

interface RowSpec {
  readonly workload: string;
  /** An engine case, run on every backend (its case names end in ` [backend]`). */
  readonly engine: string;
  readonly baseline: string;
  /** The baseline is an engine case too, taken on the same backend. */
  readonly baselinePerBackend?: boolean;
  /** `engine` names a raw case (no backend): one figure for the row. */
  readonly shared?: boolean;
  /** A target every backend is held to. */
  readonly target?: Target;
  /** Targets for one backend only. */
  readonly only?: Partial<Record<EngineBackend, Target>>;
}

interface Group {
  readonly title: string;
  readonly cases: readonly Case[];
  readonly rows: readonly RowSpec[];
  /** Untimed, once per group (shared data such as the 1 GiB log). */
  prepare?(dir: string): Promise<void>;
}

interface Verdict {
  readonly backend: string;
  readonly target: Target;
  readonly met: boolean;
  readonly figure: string;
}

interface Cell {
  readonly backend: string;
  readonly engine: Sample;
  readonly ratio: number;
}

interface Row {
  readonly workload: string;
  readonly baselineName: string;
  /** Undefined when the baseline is per backend. */
  readonly baseline: Sample | undefined;
  readonly cells: readonly Cell[];
  readonly targets: readonly string[];
  readonly verdicts: readonly Verdict[];
}

const backendCase = (name: string, backend: string): string => `${name} [${backend}]`;

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

function toRow(spec: RowSpec, medians: Map<string, Sample>, backends: readonly EngineBackend[]): Row {
  const sample = (name: string): Sample => {
    const found = medians.get(name);
    if (found === undefined) throw new Error(`invariant: row ${spec.workload} names an unknown case ${name}`);
    return found;
  };
  const compare = (engine: Sample, baseline: Sample, kind: Target['kind'] | undefined): number =>
    kind === 'time' ? megabytesPerSecond(engine) / megabytesPerSecond(baseline) : opsPerSecond(engine) / opsPerSecond(baseline);
  const kind = spec.target?.kind;
  const cells: Cell[] = spec.shared
    ? [{ backend: 'raw', engine: sample(spec.engine), ratio: compare(sample(spec.engine), sample(spec.baseline), kind) }]
    : backends.map((backend) => {
        const engine = sample(backendCase(spec.engine, backend));
        const baseline = sample(spec.baselinePerBackend ? backendCase(spec.baseline, backend) : spec.baseline);
        return { backend, engine, ratio: compare(engine, baseline, kind) };
      });
  const fd = cells.find((cell) => cell.backend === 'fd');
  const judge = (cell: Cell, target: Target): Verdict | undefined => {
    switch (target.kind) {
      case 'ratio':
        return { backend: cell.backend, target, met: cell.ratio >= target.threshold, figure: `${cell.ratio.toFixed(2)}×` };
      case 'rate':
        return {
          backend: cell.backend,
          target,
          met: opsPerSecond(cell.engine) >= target.threshold,
          figure: `${formatRate(opsPerSecond(cell.engine))}/s`,
        };
      case 'time':
        return { backend: cell.backend, target, met: cell.engine.ms < target.threshold, figure: `${(cell.engine.ms / 1000).toFixed(2)} s` };
      case 'fd': {
        if (fd === undefined) return undefined; // fd not in this run: nothing to compare with
        const versus = opsPerSecond(cell.engine) / opsPerSecond(fd.engine);
        return { backend: cell.backend, target, met: versus >= target.threshold, figure: `${versus.toFixed(2)}× fd` };
      }
    }
  };
  const verdicts: Verdict[] = [];
  const targets: string[] = [];
  if (spec.target !== undefined) {
    targets.push(spec.shared ? spec.target.text : `each ${spec.target.text}`);
    for (const cell of cells) {
      const verdict = judge(cell, spec.target);
      if (verdict !== undefined) verdicts.push(verdict);
    }
  }
  for (const [backend, target] of Object.entries(spec.only ?? {}) as [EngineBackend, Target][]) {
    const cell = cells.find((candidate) => candidate.backend === backend);
    if (cell === undefined) continue;
    targets.push(`${backend} ${target.text}`);
    const verdict = judge(cell, target);
    if (verdict !== undefined) verdicts.push(verdict);
  }
  return {
    workload: spec.workload,
    baselineName: spec.baselinePerBackend ? `${spec.baseline} (same backend)` : spec.baseline,
    baseline: spec.baselinePerBackend ? undefined : sample(spec.baseline),
    cells,
    targets,
    verdicts,
  };
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

function groups(sizes: Sizes, backends: readonly EngineBackend[]): Group[] {
  const none = (backend: EngineBackend): EngineSettings => ({ backend, fsync: 'none' });
  const each = (backend: EngineBackend): EngineSettings => ({ backend, fsync: 'each' });
  const reads = (backend: EngineBackend): EngineSettings => ({ backend, fsync: 'none', consistency: W4_CONSISTENCY });
  /** One case per backend, named `name [backend]`. */
  const onEach = (name: string, make: (caseName: string, backend: EngineBackend) => Case): Case[] =>
    backends.map((backend) => make(backendCase(name, backend), backend));
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
  const w1Sequential = 'W1 engine, await each';
  const w1Pipelined = `W1 engine, ${W1_IN_FLIGHT} in flight`;
  const w2Sequential = 'W2 engine, await each';
  const w2Pipelined = `W2 engine, ${W1_IN_FLIGHT} in flight`;
  const w5Sequential = 'W5 engine, await each';
  const w5Pipelined = `W5 engine, ${W5_IN_FLIGHT} in flight`;
  return [
    {
      title: `W1: ${count(sizes.w1Appends)} appends of 256 B, one topic, fsync none`,
      cases: [
        rawWrites(w1Raw, sizes.w1Appends, ENTRY_BYTES, false),
        rawAwaitedWrites(w1Floor, sizes.w1Appends, ENTRY_BYTES),
        ...onEach(w1Sequential, (name, backend) => engineAppends(name, none(backend), sizes.w1Appends, ENTRY_BYTES, 1)),
        ...onEach(w1Pipelined, (name, backend) => engineAppends(name, none(backend), sizes.w1Appends, ENTRY_BYTES, W1_IN_FLIGHT)),
      ],
      rows: [
        {
          workload: 'W1 sequential (await each append)',
          engine: w1Sequential,
          baseline: w1Raw,
          target: ratio(0.5),
          only: { mmap: ratio(1.5) },
        },
        { workload: 'W1 floor: writeSync + await, no engine', engine: w1Floor, baseline: w1Raw, shared: true },
        { workload: `W1 pipelined (${W1_IN_FLIGHT} in flight)`, engine: w1Pipelined, baseline: w1Raw, target: ratio(2) },
      ],
    },
    {
      title: `W2: ${count(sizes.w2Appends)} appends of 4 KiB, fsync none`,
      cases: [
        rawWrites(w2Raw, sizes.w2Appends, W2_ENTRY_BYTES, false),
        ...onEach(w2Sequential, (name, backend) => engineAppends(name, none(backend), sizes.w2Appends, W2_ENTRY_BYTES, 1)),
        ...onEach(w2Pipelined, (name, backend) => engineAppends(name, none(backend), sizes.w2Appends, W2_ENTRY_BYTES, W1_IN_FLIGHT)),
      ],
      rows: [
        { workload: 'W2 4 KiB sequential (await each)', engine: w2Sequential, baseline: w2Raw },
        { workload: `W2 4 KiB pipelined (${W1_IN_FLIGHT} in flight)`, engine: w2Pipelined, baseline: w2Raw },
      ],
    },
    {
      title: `W3: ${count(sizes.w3Batches)} batches of ${W3_BATCH_ENTRIES} × 256 B (await each batch), fsync none`,
      cases: [
        rawWrites(w3Raw, w3Entries, ENTRY_BYTES, false),
        ...onEach('W3 engine appendBatch', (name, backend) =>
          engineBatches(name, none(backend), sizes.w3Batches, W3_BATCH_ENTRIES, ENTRY_BYTES),
        ),
      ],
      rows: [
        {
          workload: 'W3 batches of 100 × 256 B (entries/s)',
          engine: 'W3 engine appendBatch',
          baseline: w3Raw,
          target: ratio(4),
          only: { uring: versusFd(1) },
        },
      ],
    },
    {
      title: `W4: read back ${count(sizes.w4Reads)} × 256 B, consistency { atLeastOnce: 5000 }`,
      cases: [
        rawReads(w4Raw, sizes.w4Reads, ENTRY_BYTES),
        ...onEach('W4 engine readNext', (name, backend) => engineReads(name, reads(backend), sizes.w4Reads, ENTRY_BYTES, 'readNext')),
        ...onEach('W4 engine readBatch', (name, backend) => engineReads(name, reads(backend), sizes.w4Reads, ENTRY_BYTES, 'readBatch')),
      ],
      rows: [
        {
          workload: 'W4 readNext (await each)',
          engine: 'W4 engine readNext',
          baseline: w4Raw,
          target: rate(1_000_000),
          only: { mmap: versusFd(1), uring: versusFd(1) },
        },
        {
          workload: `W4 readBatch (≤ ${FILL_BATCH_ENTRIES} entries per call)`,
          engine: 'W4 engine readBatch',
          baseline: w4Raw,
          target: rate(1_000_000),
          only: { mmap: versusFd(1), uring: versusFd(1) },
        },
      ],
    },
    {
      title: `W5: ${count(sizes.w5Appends)} appends of 256 B, fsync each`,
      cases: [
        rawWrites(w5Raw, sizes.w5Appends, ENTRY_BYTES, true),
        ...onEach(w5Sequential, (name, backend) => engineAppends(name, each(backend), sizes.w5Appends, ENTRY_BYTES, 1)),
        ...onEach(w5Pipelined, (name, backend) => engineAppends(name, each(backend), sizes.w5Appends, ENTRY_BYTES, W5_IN_FLIGHT)),
      ],
      rows: [
        { workload: 'W5 fsync each, sequential', engine: w5Sequential, baseline: w5Raw, target: ratio(0.8) },
        {
          workload: `W5 fsync each, ${W5_IN_FLIGHT} in flight`,
          engine: w5Pipelined,
          baseline: w5Sequential,
          baselinePerBackend: true,
          target: ratio(20),
        },
      ],
    },
    {
      title: `W6: ${W6_PRODUCERS} async producers × ${count(sizes.w6AppendsPerProducer)} × 256 B, own topic each, one process, fsync none`,
      cases: [
        rawWrites(w6Raw, w6Entries, ENTRY_BYTES, false),
        ...onEach('W6 engine, 2 producers', (name, backend) =>
          engineProducers(name, none(backend), W6_PRODUCERS, sizes.w6AppendsPerProducer, ENTRY_BYTES),
        ),
      ],
      rows: [{ workload: 'W6 2 async producers, own topic each', engine: 'W6 engine, 2 producers', baseline: w6Raw }],
    },
    {
      title: `Reopen: Walrus.open after ${mib(sizes.reopenPayloadBytes)} of 256 B entries (${count(reopenEntries)} entries, page cache warm)`,
      async prepare(dir) {
        reopenDir = dir;
        // Written once through fd; every backend reads the same files (the format does not depend on it).
        const wal = await openWal(dir, none('fd'));
        await fill(wal, 'bench', reopenEntries, ENTRY_BYTES);
        await wal.close();
      },
      cases: [
        rawScan(scanRaw, reopenSource, reopenEntries, reopenRecordBytes),
        ...onEach('reopen engine', (name, backend) => engineReopen(name, none(backend), reopenSource, reopenEntries, reopenRecordBytes)),
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

function versusFd(threshold: number): Target {
  return { text: `≥ ${threshold} × fd`, kind: 'fd', threshold };
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

function verdicts(row: Row): string {
  if (row.verdicts.length === 0) return '—';
  return row.verdicts
    .map((verdict) => `${verdict.backend === 'raw' ? '' : `${verdict.backend} `}${verdict.met ? 'MET' : 'MISSED'} (${verdict.figure})`)
    .join('; ');
}

function table(rows: readonly Row[], backends: readonly EngineBackend[]): string {
  const header = [
    'workload',
    'baseline (same run)',
    'baseline ops/s',
    ...backends.flatMap((backend) => [`${backend} ops/s`, `${backend} ×`]),
    'target',
    'result',
  ];
  const lines = rows.map((row) => {
    const columns = backends.flatMap((backend) => {
      const cell = row.cells.find((candidate) => candidate.backend === backend);
      return cell === undefined ? ['—', '—'] : [formatRate(opsPerSecond(cell.engine)), `${cell.ratio.toFixed(2)}×`];
    });
    // A row without the engine (the floor) has one figure, for every backend alike: it goes in the result column.
    const raw = row.cells.find((candidate) => candidate.backend === 'raw');
    const result = raw === undefined ? verdicts(row) : `${formatRate(opsPerSecond(raw.engine))}/s, ${raw.ratio.toFixed(2)}× baseline`;
    return [
      row.workload,
      row.baselineName,
      row.baseline === undefined ? '—' : formatRate(opsPerSecond(row.baseline)),
      ...columns,
      row.targets.length === 0 ? '—' : row.targets.join('; '),
      result,
    ];
  });
  return markdownTable(header, lines);
}

/** The backends to compare: the ones asked for, or every one that can run here; each says why when it cannot. */
async function usableBackends(asked: readonly EngineBackend[], log: (line: string) => void): Promise<EngineBackend[] | undefined> {
  const usable: EngineBackend[] = [];
  for (const backend of asked.length === 0 ? ALL_BACKENDS : asked) {
    try {
      await resolveBackend(backend);
      usable.push(backend);
    } catch (error) {
      if (asked.length > 0) {
        console.error(`engine: ${(error as Error).message}`);
        return undefined;
      }
      log(`  backend ${backend} left out: ${(error as Error).message}`);
    }
  }
  return usable;
}

export async function runEngineBench(options: EngineBenchOptions): Promise<void> {
  const sizes = options.smoke ? SMOKE : FULL;
  const log = (line: string): void => console.log(line);
  log(`engine (${options.smoke ? 'smoke sizes: the targets are only indicative' : 'full sizes'})`);
  // A named backend that cannot run here fails now, with its reason, before any data is written.
  const backends = await usableBackends(options.backends, log);
  if (backends === undefined) {
    process.exitCode = 1;
    return;
  }
  log(`  backends, side by side: ${backends.join(', ')}`);
  log(`  node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown cpu'}), linux ${release()}`);
  log(`  temp dir: ${tmpdir()}; medians of ${sizes.repetitions} repetitions; MB = 10^6 bytes of payload`);
  log(`  load average at start: ${loadAverage()} (other processes on this machine skew every figure)`);
  const root = mkdtempSync(join(tmpdir(), 'walrus-bench-'));
  const rows: Row[] = [];
  try {
    const warmUps = options.smoke ? [] : groups(SMOKE, backends);
    for (const [index, group] of groups(sizes, backends).entries()) {
      log(`\n  ${group.title}`);
      // Untimed warm-up at smoke size, so the first repetition does not pay for the JIT.
      const warmUp = warmUps[index];
      if (warmUp !== undefined) await runGroup(root, warmUp, 1, () => undefined);
      const medians = await runGroup(root, group, sizes.repetitions, log);
      for (const spec of group.rows) rows.push(toRow(spec, medians, backends));
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  log(`\n  load average at end: ${loadAverage()}`);
  log(`\n${table(rows, backends)}`);
  const all = rows.flatMap((row) => row.verdicts);
  const missed = all.filter((verdict) => !verdict.met);
  log(`\n  targets: ${all.length - missed.length} met, ${missed.length} missed${options.smoke ? ' (smoke sizes: indicative only)' : ''}`);
  for (const verdict of missed) log(`    missed: ${verdict.backend} ${verdict.target.text} (${verdict.figure})`);
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
