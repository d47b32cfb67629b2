// Preloaded by ava before every test file (package.json, ava.require): applies the process-wide
// switches of the environment as the commands do at start, so that
// `WALRUS_DISABLE_NATIVE=1 npx ava ...` runs the engine on the zlib checksum path.

import { applyProcessSwitches } from '../../src/commands/process-switches.js';

applyProcessSwitches();
