// Link faults between real nodes, with nftables in a private network namespace. The scenario
// (test/helpers/netns-leader-child.ts) runs entirely inside `unshare -rn`: three nodes on
// 127.0.0.1..3 of the namespace's own loopback, the test driver's client connections from
// 127.0.0.100 (test/helpers/netns.ts). It cuts the Raft leader off from the other two nodes and
// heals the cut; this test checks its JSON report. With WALRUS_TEST_CONSENSUS=etcd the metadata
// is in an etcd inside the namespace, the leader is the etcd leader key's holder and the cut
// takes it off etcd too (.ci/run runs it both ways):
// - before the cut all three name one leader, and every connection leaves from the address the
//   nftables rules expect (so the rules cut exactly node-to-node traffic);
// - with the leader cut off, the other two name another leader within 10 s, the cut dropped
//   packets, and the cut-off node still answers METRICS on its own address (clients are not cut);
// - after the heal all three name one leader again within 10 s, and no node exited on its own.
// Where unshare cannot make the namespaces, or nft is missing, the test is skipped and its title
// says why.

import { resolve } from 'node:path';
import test from 'ava';
import { withTempDir } from '../helpers/kernel.js';
import { type NetnsOutcome, netNamespaceProblem, runInNetNamespace } from '../helpers/namespaces.js';
import type { Report } from '../helpers/netns-leader-child.js';

const CHILD = resolve('build/test/helpers/netns-leader-child.js');
/** The scenario's own deadline; this test stops it (SIGTERM, then SIGKILL) a little after. */
const SCENARIO_MS = 25_000;

const unavailable = netNamespaceProblem();

/** Runs the scenario in `unshare -rn`, bounded. */
function runScenario(dir: string): Promise<NetnsOutcome> {
  return runInNetNamespace(CHILD, [dir, String(SCENARIO_MS)], dir, SCENARIO_MS);
}

const title =
  'a Raft leader cut off by nftables loses leadership to the other two, still answers its client, and after the heal all three agree';
if (unavailable !== undefined) {
  test.skip(`${title} (skipped: ${unavailable})`, (t) => t.pass());
} else {
  test(title, async (t) => {
    t.timeout(SCENARIO_MS + 20_000);
    await withTempDir(async (dir) => {
      const run = await runScenario(dir);
      const line = run.stdout.trim().split('\n').pop() ?? '';
      let report: Report | undefined;
      try {
        report = JSON.parse(line) as Report;
      } catch {
        report = undefined;
      }
      if (report === undefined) {
        t.fail(`no report; the scenario exited ${run.code ?? run.signal}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
        return;
      }
      t.log(
        `consensus ${report.consensus}: start ${report.startMs} ms, first leader ${report.initialLeader} after ${report.initialAgreeMs} ms; ` +
          `cut off ${report.isolated}: new leader ${report.newLeader} after ${report.electionMs} ms, ` +
          `the cut-off one stepped down after ${report.stepDownMs} ms; healed: leader ${report.healedLeader} after ${report.healMs} ms; ` +
          `dropped ${JSON.stringify(report.dropped)}; total ${report.totalMs} ms`,
      );
      const context = `${report.error ?? ''}\nreport: ${JSON.stringify(report)}\nstderr:\n${run.stderr}`;
      t.is(report.error, undefined, context);
      t.true(report.ok, context);
      t.is(run.code, 0, context);

      // The namespace was private: only lo, inside a user namespace; the node addresses were reached from the driver's.
      t.deepEqual(report.namespace?.interfaces, ['lo']);
      t.deepEqual(report.namespace?.reached, {
        '127.0.0.1': '127.0.0.100',
        '127.0.0.2': '127.0.0.100',
        '127.0.0.3': '127.0.0.100',
        '127.0.0.100': '127.0.0.100',
      });

      // Every connection left from where the rules expect, before the cut and after the heal.
      t.deepEqual(report.sources?.wrong, [], context);
      if (report.consensus === 'etcd') {
        // The metadata goes through etcd: each node holds a connection to it; node-to-node ones come with data.
        t.true((report.sources?.nodeToEtcd ?? 0) >= 3, `node connections to etcd before the cut: ${report.sources?.nodeToEtcd}`);
      } else {
        t.true((report.sources?.nodeToNode ?? 0) >= 2, `node-to-node connections before the cut: ${report.sources?.nodeToNode}`);
      }
      t.true((report.sources?.clientConnections ?? 0) >= 3, `client connections before the cut: ${report.sources?.clientConnections}`);
      t.deepEqual(report.sourcesAfterHeal?.wrong, [], context);

      // The cut: the leader from both others, both ways, and it did drop packets.
      const isolated = report.isolated as number;
      t.is(isolated, report.initialLeader ?? -1);
      const others = [1, 2, 3].filter((id) => id !== isolated);
      const peers = [...others.map(String), ...(report.consensus === 'etcd' ? ['etcd'] : [])];
      t.deepEqual(report.cutsInForce, peers.flatMap((peer) => [`${peer}>${isolated}`, `${isolated}>${peer}`]).sort());
      const dropped = Object.values(report.dropped ?? {}).reduce((sum, packets) => sum + packets, 0);
      t.true(dropped > 0, `packets dropped by the cut: ${JSON.stringify(report.dropped)}`);

      // The other two named another leader, one of them, within the bound.
      t.true(others.includes(report.newLeader as number), `new leader ${report.newLeader}, others ${others.join(', ')}`);
      t.true((report.electionMs ?? Number.POSITIVE_INFINITY) < 10_000);
      for (const id of others) t.is(report.othersViews?.[id]?.leader, report.newLeader);

      // The cut-off node still answered its client on its own address.
      t.is(report.isolatedAnswered, true, context);
      t.truthy(report.isolatedView);

      // Healed: all three agree on one leader.
      t.truthy(report.healedLeader);
      t.true((report.healMs ?? Number.POSITIVE_INFINITY) < 10_000);
      for (const id of [1, 2, 3]) t.is(report.healedViews?.[id]?.leader, report.healedLeader);
      t.deepEqual(report.unexpectedExits, [], context);
    });
  });
}
