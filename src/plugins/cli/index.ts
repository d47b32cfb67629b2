// cli: the `walrus` command line. It is the front end that boots kernels, so it is not in a
// node's default plugin list; if listed, it binds the table of `walrus` subcommands under the
// `commands` capability (the same table the command line is built from).

import type { CommandInfo } from '../../contracts/services.js';
import { COMMANDS } from '../../contracts/tokens.js';
import type { Plugin } from '../../kernel/plugin.js';
import { CAPABILITIES } from '../../kernel/tokens.js';

export const WALRUS_COMMANDS: readonly CommandInfo[] = [
  { name: 'start', summary: 'run a Walrus node (a single node on the embedded default without --config)' },
  { name: 'cluster start', summary: 'run N nodes on this machine as one cluster, until Ctrl-C (for trying Walrus and for tests)' },
  { name: 'cluster remove', summary: 'take a member out of a running cluster (its topics move to the other nodes)' },
  { name: 'plugins', summary: 'list every known plugin with its status: loaded, available, or unavailable and why' },
  { name: 'config print', summary: 'show the effective configuration and where each value came from' },
];

export const cliPlugin: Plugin = {
  manifest: {
    name: 'cli',
    description: 'the walrus command line (front end: boots kernels rather than running inside one)',
    provides: [CAPABILITIES.commands],
    requires: [],
  },
  probe: () => ({ ok: true, reason: 'front end: runs as the walrus command, not inside a node' }),
  register(scope) {
    scope.provide(COMMANDS, () => WALRUS_COMMANDS);
  },
};
