// A history checker for message-streaming runs under faults: record every PUT (which producer
// sent it, and whether it was acknowledged, refused, or got no answer) and every entry a GET
// delivered or a FETCH found at a position; check() reports what a user would call a bug:
// - lost: an acknowledged PUT that no read found (once the reads covered the whole log);
// - phantom: an entry read that no producer ever sent;
// - duplicated: an entry the log holds twice (FETCH found it at two positions), or that GETs
//   delivered more often than the allowed replays (replies in flight when a node failed);
// - reordered: two acknowledged PUTs of one producer that the log (FETCH positions), or the
//   GETs, hold in the other order than they were sent;
// - changed: a position FETCH read once answered with another entry later (a read entry was
//   taken back: the split-brain symptom).
// A refused PUT (a retriable error: it was not written) must not be read either: that counts as
// phantom too. An unsure PUT (no answer) may be read once or not at all.
//
// Payloads identify entries, so producers must send distinct payloads.

export type PutOutcome = 'acked' | 'refused' | 'unsure';

export interface Position {
  readonly segment: number;
  readonly offset: number;
}

interface Sent {
  readonly producer: string;
  /** The PUT's place among its producer's PUTs. */
  readonly sequence: number;
  outcome: PutOutcome | undefined;
}

export interface CheckOptions {
  /** The reads covered every entry the log holds (a final drain or FETCH pass): unread acknowledged entries are lost. */
  readonly complete: boolean;
  /** How many GET deliveries beyond the first of an entry are allowed in all (replies in flight at a failure). Default 0. */
  readonly getReplays?: number;
}

export interface Report {
  readonly lost: readonly string[];
  readonly phantom: readonly string[];
  readonly duplicated: readonly string[];
  readonly reordered: readonly string[];
  readonly changed: readonly string[];
  /** Counts, for the test's log. */
  readonly counts: {
    readonly acked: number;
    readonly refused: number;
    readonly unsure: number;
    readonly gets: number;
    readonly fetched: number;
  };
}

/** Nothing wrong in `report`. */
export function clean(report: Report): boolean {
  return report.lost.length + report.phantom.length + report.duplicated.length + report.reordered.length + report.changed.length === 0;
}

/** One line per kind of problem (at most `shown` examples each), or `no problems`. */
export function describeReport(report: Report, shown = 5): string {
  const { acked, refused, unsure, gets, fetched } = report.counts;
  const lines = [`${acked} PUTs acknowledged, ${refused} refused, ${unsure} unsure; ${gets} GET deliveries, ${fetched} entries fetched`];
  for (const kind of ['lost', 'phantom', 'duplicated', 'reordered', 'changed'] as const) {
    const list = report[kind];
    if (list.length > 0) lines.push(`${kind}: ${list.length} (${list.slice(0, shown).join('; ')}${list.length > shown ? '; ...' : ''})`);
  }
  if (clean(report)) lines.push('no problems');
  return lines.join('\n');
}

export class History {
  private readonly sent = new Map<string, Sent>();
  private readonly sequences = new Map<string, number>();
  /** GET deliveries in the order the test saw them. */
  private readonly gets: string[] = [];
  /** Where FETCH found each entry (keyed by position, so that fetching the same place again adds nothing). */
  private readonly found = new Map<string, { readonly payload: string; readonly position: Position }>();
  /** Positions that answered with another entry than before. */
  private readonly changes: string[] = [];

  /** A PUT of `payload` by `producer` is about to be sent; settle it with the returned function. */
  put(producer: string, payload: string): (outcome: PutOutcome) => void {
    if (this.sent.has(payload)) throw new Error(`payload ${payload} sent twice: the checker needs distinct payloads`);
    const sequence = this.sequences.get(producer) ?? 0;
    this.sequences.set(producer, sequence + 1);
    const record: Sent = { producer, sequence, outcome: undefined };
    this.sent.set(payload, record);
    return (outcome) => {
      record.outcome = outcome;
    };
  }

  /** A GET delivered `payload`. */
  got(payload: string): void {
    this.gets.push(payload);
  }

  /** FETCH found `payload` at `position`. */
  fetched(payload: string, position: Position): void {
    const key = `${position.segment}/${position.offset}`;
    const before = this.found.get(key);
    if (before === undefined) this.found.set(key, { payload, position });
    else if (before.payload !== payload) this.changes.push(`${at(position)} read as ${before.payload}, later as ${payload}`);
  }

  check(options: CheckOptions): Report {
    const lost: string[] = [];
    const phantom: string[] = [];
    const duplicated: string[] = [];
    const reordered: string[] = [];
    const outcome = (payload: string) => this.sent.get(payload)?.outcome;
    let [acked, refused, unsure] = [0, 0, 0];
    for (const record of this.sent.values()) {
      if (record.outcome === 'acked') acked += 1;
      else if (record.outcome === 'refused') refused += 1;
      else unsure += 1; // no outcome recorded: the test stopped waiting, so it is unsure
    }

    // Entries read that were never written.
    const readPayloads = new Set([...this.gets, ...[...this.found.values()].map((entry) => entry.payload)]);
    for (const payload of readPayloads) {
      if (!this.sent.has(payload)) phantom.push(`${payload} was read but never sent`);
      else if (outcome(payload) === 'refused') phantom.push(`${payload} was read but its PUT was refused`);
    }

    // Positions in the log, and entries held twice.
    const places = new Map<string, Position[]>();
    for (const { payload, position } of this.found.values()) {
      const list = places.get(payload);
      if (list === undefined) places.set(payload, [position]);
      else list.push(position);
    }
    for (const [payload, list] of places) {
      if (list.length > 1) duplicated.push(`${payload} is in the log ${list.length} times (${list.map(at).join(', ')})`);
    }
    const deliveries = new Map<string, number>();
    for (const payload of this.gets) deliveries.set(payload, (deliveries.get(payload) ?? 0) + 1);
    let replays = 0;
    for (const count of deliveries.values()) replays += count - 1;
    if (replays > (options.getReplays ?? 0)) {
      const twice = [...deliveries].filter(([, count]) => count > 1);
      for (const [payload, count] of twice) duplicated.push(`${payload} delivered ${count} times by GET`);
    }

    // Acknowledged entries that no read found.
    if (options.complete) {
      for (const [payload, record] of this.sent) {
        if (record.outcome === 'acked' && !readPayloads.has(payload)) lost.push(`${payload} (${record.producer} #${record.sequence})`);
      }
    }

    // Per producer: acknowledged entries in send order, in the log and in the GETs.
    const first = (list: readonly Position[]): Position => list.reduce((a, b) => (compare(a, b) <= 0 ? a : b));
    const inLog = [...places]
      .filter(([payload]) => outcome(payload) === 'acked')
      .map(([payload, list]) => ({ payload, position: first(list) }))
      .sort((a, b) => compare(a.position, b.position));
    this.orderOf(
      inLog.map((entry) => entry.payload),
      'log',
      reordered,
    );
    const firstDeliveries = this.gets.filter((payload, index) => outcome(payload) === 'acked' && this.gets.indexOf(payload) === index);
    this.orderOf(firstDeliveries, 'GETs', reordered);

    return {
      lost,
      phantom,
      duplicated,
      reordered,
      changed: [...this.changes],
      counts: { acked, refused, unsure, gets: this.gets.length, fetched: this.found.size },
    };
  }

  /** Reports each place where `sequence` (payloads in read order) has a producer's PUT before one it sent earlier. */
  private orderOf(sequence: readonly string[], where: string, reordered: string[]): void {
    const last = new Map<string, { readonly payload: string; readonly sequence: number }>();
    for (const payload of sequence) {
      const record = this.sent.get(payload);
      if (record === undefined) continue;
      const before = last.get(record.producer);
      if (before !== undefined && before.sequence > record.sequence) {
        reordered.push(
          `${where}: ${record.producer}'s ${payload} (#${record.sequence}) comes after ${before.payload} (#${before.sequence})`,
        );
        continue;
      }
      last.set(record.producer, { payload, sequence: record.sequence });
    }
  }
}

function compare(a: Position, b: Position): number {
  return a.segment - b.segment || a.offset - b.offset;
}

function at(position: Position): string {
  return `segment ${position.segment} offset ${position.offset}`;
}
