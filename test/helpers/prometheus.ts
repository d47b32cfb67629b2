// /metrics as a scraper reads it: a strict parser of the Prometheus text format (version 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/), written from the format's rules
// and independent of the prom-client code that writes it. It throws on what a scrape would
// reject: a malformed line, a bad name or escape, a sample before its family's TYPE, a family
// split in two, a histogram whose buckets go down or whose +Inf bucket is not its count.

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`, `x_count` for a histogram `x`). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly samples: readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Readonly<Record<string, readonly string[]>> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count', ''],
  counter: [''],
  gauge: [''],
  untyped: [''],
};

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value ${JSON.stringify(text)} in: ${line}`);
  return Number(text);
}

/** Parses `name{labels} value [timestamp]`. */
function parseSample(line: string): Sample {
  const nameEnd = line.search(/[{ ]/);
  if (nameEnd <= 0) throw new Error(`no value in: ${line}`);
  const name = line.slice(0, nameEnd);
  if (!METRIC_NAME.test(name)) throw new Error(`bad metric name ${JSON.stringify(name)}`);
  const labels: Record<string, string> = {};
  let at = nameEnd;
  if (line[at] === '{') {
    at += 1;
    while (line[at] !== '}') {
      const equals = line.indexOf('=', at);
      if (equals < 0) throw new Error(`bad labels in: ${line}`);
      const key = line.slice(at, equals);
      if (!LABEL_NAME.test(key)) throw new Error(`bad label name ${JSON.stringify(key)} in: ${line}`);
      if (line[equals + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
      let value = '';
      let index = equals + 2;
      for (;;) {
        const char = line[index];
        if (char === undefined) throw new Error(`unterminated label value in: ${line}`);
        if (char === '"') break;
        if (char === '\\') {
          const next = line[index + 1];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else throw new Error(`bad escape \\${next} in: ${line}`);
          index += 2;
        } else {
          value += char;
          index += 1;
        }
      }
      if (Object.hasOwn(labels, key)) throw new Error(`label ${key} twice in: ${line}`);
      labels[key] = value;
      at = index + 1;
      if (line[at] === ',') at += 1;
      else if (line[at] !== '}') throw new Error(`expected , or } in: ${line}`);
    }
    at += 1;
  }
  const rest = line.slice(at).trim().split(/ +/);
  if (line[at] !== ' ' || rest.length < 1 || rest.length > 2 || rest[0] === '') throw new Error(`bad sample line: ${line}`);
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) throw new Error(`bad timestamp in: ${line}`);
  return { name, labels, value: parseValue(rest[0] as string, line) };
}

/** The family a sample belongs to, given the families declared so far. */
function familyOf(sample: Sample, families: Map<string, { type: string }>): string | undefined {
  for (const [name, family] of families) {
    for (const suffix of SUFFIXES[family.type] ?? ['']) if (sample.name === `${name}${suffix}`) return name;
  }
  return undefined;
}

/** Parses an exposition; throws with the reason where it breaks the format. */
export function parsePrometheus(text: string): Map<string, Family> {
  const declared = new Map<string, { help: string; type: string; samples: Sample[] }>();
  const finished = new Set<string>();
  let current: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (match === null) continue; // a comment
      const [, kind, name = '', rest = ''] = match;
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      if (finished.has(name) || (current !== undefined && current !== name && declared.get(name)?.samples.length)) {
        throw new Error(`family ${name} is split: ${line}`);
      }
      if (current !== undefined && current !== name) finished.add(current);
      current = name;
      const family = declared.get(name) ?? { help: '', type: 'untyped', samples: [] };
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`bad type in: ${line}`);
        if (family.samples.length > 0) throw new Error(`TYPE after samples of ${name}`);
        family.type = rest;
      } else {
        family.help = rest.replace(/\\(n|\\)/g, (_, char: string) => (char === 'n' ? '\n' : '\\'));
      }
      declared.set(name, family);
      continue;
    }
    const sample = parseSample(line);
    const name = familyOf(sample, declared);
    if (name === undefined) throw new Error(`sample ${sample.name} has no TYPE before it`);
    if (name !== current || finished.has(name)) throw new Error(`family ${name} is split at: ${line}`);
    declared.get(name)?.samples.push(sample);
  }
  const families = new Map<string, Family>();
  for (const [name, family] of declared) {
    const type = family.type as Family['type'];
    if (type === 'histogram') checkHistogram(name, family.samples);
    families.set(name, { name, help: family.help, type, samples: family.samples });
  }
  return families;
}

function checkHistogram(name: string, samples: readonly Sample[]): void {
  const key = (labels: Readonly<Record<string, string>>) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([label]) => label !== 'le')
        .sort(([a], [b]) => a.localeCompare(b)),
    );
  const series = new Map<string, { buckets: [number, number][]; count?: number; sum?: number }>();
  for (const sample of samples) {
    const entry = series.get(key(sample.labels)) ?? { buckets: [] };
    series.set(key(sample.labels), entry);
    if (sample.name === `${name}_bucket`) {
      const le = sample.labels.le;
      if (le === undefined) throw new Error(`${name}_bucket without le`);
      entry.buckets.push([parseValue(le, `le="${le}"`), sample.value]);
    } else if (sample.name === `${name}_count`) entry.count = sample.value;
    else entry.sum = sample.value;
  }
  for (const [labels, { buckets, count, sum }] of series) {
    if (count === undefined || sum === undefined) throw new Error(`histogram ${name}${labels} lacks _count or _sum`);
    const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
    const last = sorted[sorted.length - 1];
    if (last === undefined || last[0] !== Infinity) throw new Error(`histogram ${name}${labels} has no +Inf bucket`);
    if (last[1] !== count) throw new Error(`histogram ${name}${labels}: +Inf bucket ${last[1]} is not its count ${count}`);
    for (let index = 1; index < sorted.length; index++) {
      if ((sorted[index]?.[1] ?? 0) < (sorted[index - 1]?.[1] ?? 0)) throw new Error(`histogram ${name}${labels}: buckets go down`);
    }
  }
}

/**
 * The value of family `name`'s samples whose labels include `labels`, summed (a histogram's:
 * its `_count`); 0 when none matches.
 */
export function sampleValue(families: Map<string, Family>, name: string, labels: Readonly<Record<string, string>> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric family ${name}`);
  const own = family.type === 'histogram' ? `${name}_count` : name;
  let total = 0;
  for (const sample of family.samples) {
    if (sample.name === own && Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) total += sample.value;
  }
  return total;
}

/** GET of `path` on an admin endpoint: status, content type and body. */
export async function adminGet(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  const reply = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: reply.status, type: reply.headers.get('content-type') ?? '', body: await reply.text() };
}
