// An example custom plugin: writes this process's PID to a file when the node starts and
// removes it when the node stops, so service managers and scripts can find the node.
// Load it by listing its path in the config; a relative path resolves against the folder of the
// config file, so from config/my-node.yaml in this repository:
//
//   plugins: [storage-fd, raft, ../examples/plugins/pidfile.js]
//   pidfile:
//     path: ./walrus.pid
//
// It imports from 'walrus', so a copy of it must live where 'walrus' resolves: inside this
// repository, or in a project that has walrus installed as a dependency.
// A plugin is a plain object; `s` builds its config section with defaults and validation.

import { rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { s, token } from 'walrus';

/** The capability this plugin provides: where the PID file lives. */
export const PID_FILE = token('pid-file');

export default {
  manifest: {
    name: 'pidfile',
    description: 'writes the node PID to a file while the node runs',
    provides: ['pid-file'],
    requires: [],
  },
  config: {
    key: 'pidfile',
    schema: s.object({
      path: s.string({ default: 'walrus.pid', minLength: 1, description: 'Where to write the PID (relative to the working directory).' }),
    }),
  },
  register(scope, config) {
    scope.provide(PID_FILE, () => ({ path: resolve(config.path) }));
  },
  async start(scope) {
    const { path } = scope.resolve(PID_FILE);
    await writeFile(path, `${process.pid}\n`, { flag: 'wx' }).catch((error) => {
      if (error.code === 'EEXIST') throw new Error(`${path} exists: another node may be running; remove it if not`);
      throw error;
    });
    scope.log.info({ path }, 'pid file written');
  },
  async stop(scope) {
    await rm(scope.resolve(PID_FILE).path, { force: true });
  },
};
