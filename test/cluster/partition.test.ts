// Network partitions and process faults against replicated segments (replication.factor 3, acks
// quorum, commitTimeoutMs 1500; failover.timeoutMs 1500; lease.ttlMs 500; fsync each), on three
// real nodes inside a private network namespace with nftables cutting the links between them
// (test/helpers/netns.ts). Each scenario runs in its own `unshare -rn` child
// (test/helpers/netns-partition-child.ts), which prints one JSON report; this file judges it:
//
// 1. split-brain (the original's partition_test.py): the open segment's leader L is cut off from
//    both peers (its clients still reach it); a PUT through L must not answer OK; the majority
//    fails the segment over and takes a PUT; after the heal every node's FETCH of every position
//    and a GET drain through L hold the two acknowledged entries exactly once and never L's.
// 1b. get-split, the GET side of the same split: five entries acknowledged and not consumed, L
//    cut off; GETs through L once lease.ttlMs has passed, GETs through the majority once it has
//    failed over, a drain through both after the heal: each entry delivered exactly once in all
//    (one cluster-wide consumption position: a cut-off node must not hand out entries the
//    majority hands out again).
// 2. isolate: the same cut under load (two writers through the majority, one through L): L
//    acknowledges nothing from cut + lease.ttlMs on, the majority's writes resume (the gap is
//    measured), and after the heal the history checker (test/helpers/history.ts) finds nothing
//    lost, phantom, doubled, reordered or changed, and none of L's split-brain entries is readable.
// 3. oneway-out / oneway-in: only L's packets to its peers dropped, or only theirs to L, under
//    the same load; after the heal the checker finds nothing (whether a failover happened, and
//    the gap, are logged).
// 4. random: four producers (through nodes 1, 2, 3, 1) and two consumers (GET through nodes 2
//    and 3) for WALRUS_FAULT_SECONDS (default 15) while a seeded fault loop, every 2-4 s, does
//    one of: kill -9 of a random node then restart, SIGSTOP for 1-3 s then SIGCONT, isolate for
//    1-3 s then heal, a one-way cut (its packets out, or in) for 1-3 s then heal; one node at a
//    time. Then everything is healed and restarted, drained and fetched; the checker allows as
//    many GET replays as GETs were in flight when a fault began or ended (a reply in flight when
//    the topology changes may be delivered and not yet recorded as consumed where the next GET
//    looks); the log also names each replay neither of whose deliveries was such a GET.
//
// The full-length fault run (60 s), and a replay of a failing one by its seed (printed in the
// test's log and in the report):
//
//   npm run build && WALRUS_FAULT_SECONDS=60 npx ava test/cluster/partition.test.ts --match '*random faults*' --timeout=5m --verbose
//   npm run build && WALRUS_FAULT_SEED=<seed> npx ava test/cluster/partition.test.ts --match '*random faults*' --verbose
//
// A scenario whose checks fail leaves its report, the child's stderr, every node's log (each run
// of it) and the whole history (history.jsonl: every PUT and GET delivery with its times and
// position) under /tmp/partition-findings/<scenario>-<time>/. Where unshare cannot make the
// namespaces, or nft is missing, the tests are skipped and their titles say why.

import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { withTempDir } from '../helpers/kernel.js';
import { type NetnsOutcome, netNamespaceProblem, runInNetNamespace } from '../helpers/namespaces.js';
import type { PartitionReport } from '../helpers/netns-partition-child.js';

const CHILD = resolve('build/test/helpers/netns-partition-child.js');
const FINDINGS = '/tmp/partition-findings';
/** lease.ttlMs of the scenarios' config (netns-partition-child.ts). */
const TTL_MS = 500;

const FAULT_SECONDS = Number(process.env.WALRUS_FAULT_SECONDS ?? 15);
if (!Number.isFinite(FAULT_SECONDS) || FAULT_SECONDS < 1)
  throw new Error(`WALRUS_FAULT_SECONDS must be a positive number, got ${process.env.WALRUS_FAULT_SECONDS}`);
const FAULT_SEED =
  process.env.WALRUS_FAULT_SEED !== undefined && process.env.WALRUS_FAULT_SEED !== ''
    ? Number(process.env.WALRUS_FAULT_SEED) >>> 0
    : (Math.random() * 2 ** 32) >>> 0;

const unavailable = netNamespaceProblem();

type Outcome = NetnsOutcome;

/** Runs one scenario in `unshare -rn`, bounded. */
function runScenario(args: readonly string[], dir: string, deadlineMs: number): Promise<Outcome> {
  return runInNetNamespace(CHILD, args, dir, deadlineMs);
}

/** A check of the report: what is expected, and whether it held. */
type Check = readonly [what: string, held: boolean];

/** The checks every scenario's read-back must pass. */
function readBackChecks(report: PartitionReport, getReplaysAllowed: number): Check[] {
  const history = report.history;
  const deliveries = report.deliveries;
  const fetchProblems = (report.fetchPasses ?? []).flatMap((pass) => pass.problems.map((problem) => `via ${pass.via}: ${problem}`));
  return [
    [
      `all three nodes' STATE agreed before the read-back: ${JSON.stringify(report.statesAgreed?.states)}`,
      report.statesAgreed?.agreed === true,
    ],
    [
      `FETCH through every node matches the seals: ${fetchProblems.slice(0, 10).join('; ')}`,
      report.fetchPasses?.length === 3 && fetchProblems.length === 0,
    ],
    ['the GET drain reached EMPTY', report.drainComplete === true],
    [
      `the history checker finds nothing: ${history?.text}\n${JSON.stringify(history)}`,
      history !== undefined && Object.values(history.totals).every((n) => n === 0),
    ],
    ['some PUTs were acknowledged', (history?.counts.acked ?? 0) > 0],
    [`no GET delivered an entry the log does not hold: ${deliveries?.notInLog.join('; ')}`, deliveries?.totals.notInLog === 0],
    [`GETs delivered in log order: ${deliveries?.outOfOrder.join('; ')}`, deliveries?.totals.outOfOrder === 0],
    [
      `GET replays (${deliveries?.totals.replays}) within the allowance (${getReplaysAllowed}); not from a GET in flight at a fault: ${deliveries?.totals.unexplainedReplays}: ${deliveries?.replays.join('; ')}`,
      deliveries !== undefined && deliveries.totals.replays <= getReplaysAllowed,
    ],
    [`no node exited on its own: ${JSON.stringify(report.unexpectedExits)}`, report.unexpectedExits.length === 0],
  ];
}

/** Runs `scenario`, judges its report with `judge`, and keeps the evidence of a failure under FINDINGS. */
async function scenarioTest(
  t: ExecutionContext,
  scenario: string,
  deadlineMs: number,
  judge: (report: PartitionReport) => Check[],
  describe: (report: PartitionReport) => string[],
  extraArgs: readonly string[] = [],
): Promise<void> {
  t.timeout(deadlineMs + 30_000);
  await withTempDir(async (dir) => {
    const run = await runScenario([scenario, dir, String(deadlineMs), ...extraArgs], dir, deadlineMs);
    const line = run.stdout.trim().split('\n').pop() ?? '';
    let report: PartitionReport | undefined;
    try {
      report = JSON.parse(line) as PartitionReport;
    } catch {
      report = undefined;
    }
    const checks: Check[] =
      report === undefined
        ? [
            [
              `a report (the scenario exited ${run.code ?? run.signal})\nstdout:\n${run.stdout.slice(-4_000)}\nstderr:\n${run.stderr.slice(-4_000)}`,
              false,
            ],
          ]
        : [
            [
              `the scenario ran to its end: ${report.error ?? ''}\n${report.problems ?? ''}`,
              report.error === undefined && report.ok && run.code === 0,
            ],
            ...judge(report),
          ];
    if (report !== undefined) {
      for (const text of describe(report)) t.log(text);
      t.log(`steps:\n  ${report.events.join('\n  ')}`);
    }
    const failed = checks.filter(([, held]) => !held);
    if (failed.length > 0) {
      const where = join(FINDINGS, `${scenario}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      await mkdir(where, { recursive: true });
      await writeFile(join(where, 'report.json'), `${line}\n`);
      await writeFile(join(where, 'child-stderr.txt'), run.stderr);
      await writeFile(join(where, 'failed-checks.txt'), failed.map(([what]) => what).join('\n\n'));
      await cp(join(dir, 'logs'), join(where, 'logs'), { recursive: true }).catch(() => undefined);
      await cp(join(dir, 'history.jsonl'), join(where, 'history.jsonl')).catch(() => undefined);
      t.log(`evidence kept under ${where}`);
    }
    for (const [what, held] of checks) t.true(held, what);
  });
}

function fmt(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? 'never' : `${Math.round(ms)} ms`;
}

const titles = {
  split:
    "partition (partition_test.py): the open segment's leader cut off from both peers refuses a PUT, the majority fails over and takes one, and after the heal every node and a GET drain hold exactly the acknowledged entries, never the cut-off leader's",
  getSplit:
    "partition, GET side: the open segment's leader cut off from both peers and the majority after its failover do not both deliver an entry (each acknowledged entry is delivered exactly once in all)",
  isolate:
    "partition under load: the segment leader cut off by nftables acknowledges nothing after cut + lease.ttlMs, the majority's writes resume, and after the heal nothing is lost, phantom, doubled or readable from the split brain",
  oneway: (direction: 'out' | 'in') =>
    `one-way partition under load (${direction === 'out' ? "only the segment leader's packets to its peers" : "only the peers' packets to the segment leader"} dropped): writes resume and after the heal the checker finds nothing`,
  random:
    'random faults under load (kill -9 and restart, SIGSTOP, isolation, one-way cuts; one node at a time; seeded): after everything is back the checker finds nothing beyond one GET replay per GET in flight when a fault began or ended',
};

if (unavailable !== undefined) {
  for (const title of [titles.split, titles.getSplit, titles.isolate, titles.oneway('out'), titles.oneway('in'), titles.random]) {
    test.skip(`${title} (skipped: ${unavailable})`, (t) => t.pass());
  }
} else {
  test.serial(titles.split, async (t) => {
    await scenarioTest(
      t,
      'split-brain',
      60_000,
      (report) => {
        const split = report.split;
        if (split === undefined) return [['the report has the split-brain measurements', false]];
        const perNode = Object.entries(split.fetchCounts ?? {});
        const drained = split.drained ?? [];
        const times = (payload: string) => drained.filter((entry) => entry === payload).length;
        return [
          ['PUT before-split answered OK', split.before.ok],
          [
            `PUT split-brain-write through the cut-off leader ${split.leader} did not answer OK (${split.split?.error})`,
            split.split !== undefined && !split.split.ok,
          ],
          [
            `FETCH through the cut-off leader during the split never showed split-brain-write: ${JSON.stringify(split.fetchThroughLeaderDuringSplit)}`,
            !(split.fetchThroughLeaderDuringSplit ?? []).includes('split-brain-write'),
          ],
          [
            `the majority's STATE showed a new open segment led by another node within 10 s (${fmt(split.failoverMs)}, leader ${split.newLeader})`,
            split.failoverMs !== null && split.failoverMs !== undefined && split.newLeader !== split.leader,
          ],
          [
            `PUT during-split-new through a majority node answered OK (${split.duringSplitNew?.error ?? 'OK'})`,
            split.duringSplitNew?.ok === true,
          ],
          [
            `PUT split-brain-write-2 through the cut-off leader after the failover did not answer OK (${split.split2?.error})`,
            split.split2 !== undefined && !split.split2.ok,
          ],
          [
            `after the heal the once cut-off node caught up with the new segment (${fmt(split.healCaughtUpMs)})`,
            split.healCaughtUpMs !== null && split.healCaughtUpMs !== undefined,
          ],
          [
            `FETCH through every node found before-split and during-split-new exactly once and neither split-brain write: ${JSON.stringify(split.fetchCounts)}`,
            perNode.length === 3 &&
              perNode.every(
                ([, counts]) =>
                  counts['before-split'] === 1 &&
                  counts['during-split-new'] === 1 &&
                  counts['split-brain-write'] === 0 &&
                  counts['split-brain-write-2'] === 0,
              ),
          ],
          [
            `the GET drain through the once cut-off node delivered before-split and during-split-new once each and neither split-brain write: ${JSON.stringify(drained)}`,
            times('before-split') === 1 &&
              times('during-split-new') === 1 &&
              times('split-brain-write') === 0 &&
              times('split-brain-write-2') === 0,
          ],
          ...readBackChecks(report, 0),
        ];
      },
      (report) => {
        const split = report.split;
        return [
          `segment leader ${split?.leader} (Raft leader ${split?.raftLeader}); PUT through it during the split: ${split?.split?.error} after ${split?.split?.tookMs} ms; ` +
            `failover after ${fmt(split?.failoverMs)} (segment ${split?.newSegment} led by ${split?.newLeader}); during-split-new: ${split?.duringSplitNew?.ok ? 'OK' : split?.duringSplitNew?.error}; ` +
            `a second PUT through the cut-off node: ${split?.split2?.error} after ${split?.split2?.tookMs} ms; heal: leader agreed after ${fmt(split?.healAgreeMs)}, caught up after ${fmt(split?.healCaughtUpMs)}`,
          `FETCH counts per node ${JSON.stringify(split?.fetchCounts)}; GET drain ${JSON.stringify(split?.drained)}; ${report.history?.text.replace('\n', '; ')}`,
        ];
      },
    );
  });

  test.serial(titles.getSplit, async (t) => {
    await scenarioTest(
      t,
      'get-split',
      60_000,
      (report) => {
        const split = report.getSplit;
        if (split === undefined) return [['the report has the GET split measurements', false]];
        const deliveries = split.deliveries ?? {};
        return [
          [`the majority failed the segment over (${fmt(split.failoverMs)})`, split.failoverMs !== null && split.failoverMs !== undefined],
          [
            `each acknowledged entry was delivered exactly once by all the GETs together: ${JSON.stringify(deliveries)} ` +
              `(through the cut-off node ${split.leader} during the split: ${JSON.stringify(split.duringSplitThroughLeader)}; ` +
              `through the majority after its failover: ${JSON.stringify(split.duringSplitThroughMajority)}; after the heal: ` +
              `${JSON.stringify(split.afterHealThroughLeader)} / ${JSON.stringify(split.afterHealThroughMajority)})`,
            split.payloads.every((payload) => deliveries[payload] === 1),
          ],
          [`no node exited on its own: ${JSON.stringify(report.unexpectedExits)}`, report.unexpectedExits.length === 0],
        ];
      },
      (report) => {
        const split = report.getSplit;
        return [
          `segment leader ${split?.leader} (Raft leader ${split?.raftLeader}); GETs through it ${TTL_MS * 2} ms into the cut: ${JSON.stringify(split?.duringSplitThroughLeader)}; ` +
            `failover after ${fmt(split?.failoverMs)}; GETs through the majority: ${JSON.stringify(split?.duringSplitThroughMajority)}; ` +
            `after the heal: ${JSON.stringify(split?.afterHealThroughLeader)} / ${JSON.stringify(split?.afterHealThroughMajority)}; deliveries ${JSON.stringify(split?.deliveries)}`,
        ];
      },
    );
  });

  const loadChecks = (report: PartitionReport, cutOff: 'both' | 'oneway'): Check[] => {
    const phase = report.phases?.[0];
    if (phase === undefined) return [['the report has the cut measurements', false]];
    return [
      ...(cutOff === 'both'
        ? ([
            [
              `the majority failed the segment over during the cut (${JSON.stringify(phase.failover)})`,
              phase.failover !== null && phase.failover !== undefined && phase.failover.newLeader !== report.segmentLeaderAtStart,
            ],
            [
              `no split-brain entry (a PUT through the cut-off node during the cut, not acknowledged) is readable: ${phase.leaderEntriesReadable?.join('; ')}`,
              phase.leaderEntriesReadable?.length === 0,
            ],
          ] as Check[])
        : []),
      [
        `the majority's writes resumed during the cut (${fmt(phase.majorityResumeMs)})`,
        phase.majorityResumeMs !== null && phase.majorityResumeMs !== undefined,
      ],
      [
        `no PUT through the cut-off node answered OK after cut + lease.ttlMs (${TTL_MS} ms) and before the heal: ${phase.leaderAcksAfterTtl?.join('; ')}`,
        phase.leaderAcksAfterTtl?.length === 0,
      ],
      [
        `writes through the once cut-off node resumed after the heal (${fmt(phase.leaderResumeAfterHealMs)})`,
        phase.leaderResumeAfterHealMs !== null && phase.leaderResumeAfterHealMs !== undefined,
      ],
      ...readBackChecks(report, 0),
    ];
  };
  const loadDescription = (report: PartitionReport): string[] => {
    const phase = report.phases?.[0];
    return [
      `segment leader ${report.segmentLeaderAtStart}, Raft leader ${report.raftLeaderAtStart}; cut ${phase?.cutsInForce.join(' ')}; ` +
        `failover: ${phase?.failover === null ? 'none during the cut' : `after ${fmt(phase?.failover?.afterMs)}, segment ${phase?.failover?.segment} led by ${phase?.failover?.newLeader}`}; ` +
        `majority writes resumed ${fmt(phase?.majorityResumeMs)} after the cut, longest stretch without an acknowledgement ${fmt(phase?.majorityGapMs)} (around the cut's instant: ${fmt(phase?.gapAroundCutMs)})`,
      `through the cut-off node during the cut: ${JSON.stringify(phase?.leaderFailuresDuringCut)}; OK during the cut: ${phase?.leaderAcksDuringCut?.length}, after cut + ttl: ${phase?.leaderAcksAfterTtl?.length}; ` +
        `its PUTs: ${phase?.leaderPutsDuringCut?.join('; ')}`,
      `heal: leader agreed after ${fmt(phase?.healAgreeMs)}, the cut-off node's STATE caught up after ${fmt(phase?.healCaughtUpMs)}, its writes resumed after ${fmt(phase?.leaderResumeAfterHealMs)}; dropped ${JSON.stringify(phase?.dropped)}`,
      `writers ${JSON.stringify(report.writers)}`,
      `${report.history?.text.replace('\n', '; ')}; segments ${JSON.stringify(report.fetchPasses?.[0]?.counts)}`,
    ];
  };

  test.serial(titles.isolate, async (t) => {
    await scenarioTest(t, 'isolate', 90_000, (report) => loadChecks(report, 'both'), loadDescription);
  });

  for (const direction of ['out', 'in'] as const) {
    test.serial(titles.oneway(direction), async (t) => {
      await scenarioTest(t, `oneway-${direction}`, 90_000, (report) => loadChecks(report, 'oneway'), loadDescription);
    });
  }

  test.serial(titles.random, async (t) => {
    t.log(
      `seed ${FAULT_SEED}, ${FAULT_SECONDS} s of faults (replay: WALRUS_FAULT_SEED=${FAULT_SEED} WALRUS_FAULT_SECONDS=${FAULT_SECONDS})`,
    );
    await scenarioTest(
      t,
      'random',
      FAULT_SECONDS * 1_000 + 100_000,
      (report) => [
        [`at least one fault ran (${report.faults?.length ?? 0})`, (report.faults?.length ?? 0) > 0],
        [
          `every fault ran and ended: ${JSON.stringify(report.faults?.filter((fault) => fault.error !== undefined))}`,
          (report.faults ?? []).every((fault) => fault.error === undefined),
        ],
        [
          `writes resumed once everything was back (${fmt(report.recovery?.firstAckMs)})`,
          report.recovery?.firstAckMs !== null && report.recovery?.firstAckMs !== undefined,
        ],
        ...readBackChecks(report, report.getReplaysAllowed ?? 0),
      ],
      (report) => [
        `seed ${report.seed}; faults: ${(report.faults ?? [])
          .map(
            (fault) =>
              `${fault.kind} node ${fault.node} at ${fault.at} ms for ${fault.durationMs} ms (segment leader ${fault.segmentLeader}, Raft leader ${fault.raftLeader}; GETs in flight at its start ${fault.inFlightGets.length}, at its end ${fault.inFlightAtEnd.length}; longest stretch without an acknowledgement ${fmt(fault.gapMs)})`,
          )
          .join('; ')}`,
        `GET replays ${report.deliveries?.totals.replays} (allowed ${report.getReplaysAllowed}), ${report.deliveries?.totals.unexplainedReplays} of them not from a GET in flight at a fault: ${report.deliveries?.unexplainedReplays.slice(0, 5).join('; ')}; recovery: leader agreed after ${fmt(report.recovery?.agreeMs)}, first acknowledgement after ${fmt(report.recovery?.firstAckMs)}`,
        `writers ${JSON.stringify(report.writers)}`,
        `readers ${JSON.stringify(report.readers)}`,
        `${report.history?.text.replace('\n', '; ')}; segments ${JSON.stringify(report.fetchPasses?.[0]?.counts)} sealed ${JSON.stringify(report.fetchPasses?.[0]?.sealed)}`,
      ],
      [String(FAULT_SEED), String(FAULT_SECONDS)],
    );
  });
}
