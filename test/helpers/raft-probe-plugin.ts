// A custom plugin for the three-process Raft test (test/integration/raft-cluster.test.ts), loaded
// by its path from the cluster config: it registers a state machine with the node's Consensus,
// proposes one command every 100 ms through it (a follower forwards to the leader), and logs
//   "probe applied"   { index, command }  for every command applied, replayed ones included;
//   "probe committed" { command }         when its own proposal has committed and applied here;
//   "probe proposal failed" { command, error } when one did not (no leader at the moment).
// Commands are `<pid>-<n>`, so every process's are distinct.

import { CONSENSUS } from '../../src/contracts/tokens.js';
import type { Plugin } from '../../src/kernel/plugin.js';

const PROPOSE_EVERY_MS = 100;
let timer: NodeJS.Timeout | undefined;

const probe: Plugin = {
  manifest: {
    name: 'raft-probe',
    description: 'test only: proposes a command every 100 ms and logs what is applied',
    provides: [],
    requires: ['consensus'],
  },
  register() {
    // Nothing to bind: the probe only uses Consensus.
  },
  start(scope) {
    const consensus = scope.resolve(CONSENSUS);
    const decoder = new TextDecoder();
    let applied: string[] = [];
    consensus.register({
      apply(command, index) {
        const text = decoder.decode(command);
        applied.push(text);
        scope.log.info({ index, command: text }, 'probe applied');
        return applied.length;
      },
      snapshot: () => Buffer.from(JSON.stringify(applied)),
      restore(data) {
        applied = JSON.parse(decoder.decode(data)) as string[];
        scope.log.info({ count: applied.length }, 'probe restored');
      },
    });
    let next = 0;
    timer = setInterval(() => {
      const command = `${process.pid}-${next++}`;
      consensus.propose(Buffer.from(command)).then(
        () => scope.log.info({ command }, 'probe committed'),
        (error: Error) => scope.log.info({ command, error: error.message }, 'probe proposal failed'),
      );
    }, PROPOSE_EVERY_MS);
  },
  stop() {
    clearInterval(timer);
  },
};

export default probe;
