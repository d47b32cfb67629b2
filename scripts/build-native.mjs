#!/usr/bin/env node
// Builds the optional native addon (native/binding.gyp -> native/build/Release/walrus_native.node)
// as the package's install script. It must never fail an install: without a compiler, Python or
// Node's headers the engine keeps using zlib.crc32 and the mmap and io_uring backends report the
// reason (so `auto` picks fd), and every failure ends here with one line saying why, the reason
// in native/build/unavailable.txt, and exit code 0.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const buildDir = path.join(nativeDir, 'build');
const addon = path.join(buildDir, 'Release', 'walrus_native.node');
const unavailable = path.join(buildDir, 'unavailable.txt');
const FALLBACK = 'the engine falls back to zlib.crc32 and storage to the fd backend';

function fail(reason, output) {
  if (output) {
    const lines = output.trimEnd().split('\n');
    console.log(lines.slice(-20).join('\n'));
  }
  // A stale binary beside unavailable.txt would contradict it (and may predate the sources).
  rmSync(addon, { force: true });
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(unavailable, `${reason}\n`);
  } catch {
    // Nowhere to write the reason: the message below still says it.
  }
  console.log(`walrus: native addon not built (${reason}); ${FALLBACK}.`);
  process.exit(0);
}

/** The first path of `name` on PATH, or undefined (an absolute or relative path is checked as is). */
function which(name) {
  if (name.includes('/') || name.includes(path.sep)) return isFile(name) ? name : undefined;
  const exts = process.platform === 'win32' ? (process.env.PATHEXT ?? '.EXE').split(';') : [''];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const ext of exts) {
      const candidate = path.join(dir || '.', name + ext);
      if (isFile(candidate)) return candidate;
    }
  }
  return undefined;
}

function isFile(p) {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The program word of a command such as CC="ccache gcc" (ccache then needs gcc too, but that is node-gyp's to report). */
const program = (command) => command.trim().split(/\s+/)[0];

/** npm sets npm_config_node_gyp for lifecycle scripts; run by hand, use the node-gyp bundled with npm next to this node. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), // Windows layout
  ];
  return candidates.find((c) => c && isFile(c));
}

/**
 * Headers for node-gyp without the network: npm passes its `nodedir` setting down as
 * npm_config_nodedir, which node-gyp reads itself. Run by hand, use the headers installed with
 * this node (<prefix>/include/node, e.g. /usr/include/node) when they are there; otherwise
 * node-gyp looks in its cache and, failing that, tries to download them.
 */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return isFile(path.join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function main() {
  if (process.env.WALRUS_SKIP_NATIVE === '1') fail('WALRUS_SKIP_NATIVE=1');
  if (process.platform === 'win32') fail('the addon is only built on Unix-like systems');

  // Cheap checks first, for a clear reason instead of a compiler's error spew.
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) fail("npm's bundled node-gyp was not found");
  if (!which('make')) fail('make was not found on PATH');
  const cc = program(process.env.CC || 'cc');
  if (!which(cc)) fail(`no C compiler: ${cc} was not found${cc.includes('/') ? '' : ' on PATH'}`);
  const cxx = program(process.env.CXX || 'g++'); // gyp's Makefiles link with $(CXX)
  if (!which(cxx)) fail(`no C++ compiler to link with: ${cxx} was not found${cxx.includes('/') ? '' : ' on PATH'}`);

  const run = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory', nativeDir, ...nodedirArgs()], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 10 * 60 * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
  if (run.error) fail(`node-gyp could not run: ${run.error.message}`, output);
  if (run.status !== 0) fail(`node-gyp failed: ${explain(output)}`, output);
  if (!existsSync(addon)) fail('node-gyp succeeded but produced no walrus_native.node', output);

  // Load it once, so a binary that builds but cannot load (wrong headers, say) counts as a failure.
  let native;
  try {
    native = createRequire(import.meta.url)(addon);
    if (native.crc32(Buffer.from('123456789')) !== 0xcbf43926) throw new Error('wrong CRC-32 of "123456789"');
  } catch (err) {
    fail(`the built addon does not work: ${err.message.split('\n')[0]}`, output);
  }
  rmSync(unavailable, { force: true });
  console.log(`walrus: native addon built (${path.relative(root, addon)}, ${native.hasPclmul ? 'PCLMULQDQ' : 'portable table'} CRC-32).`);
}

/** One line from node-gyp's output that says what went wrong. */
function explain(output) {
  const lines = output.split('\n').map((l) => l.trim());
  const patterns = [
    /fatal error: .*/, // a missing header, e.g. node_api.h
    /error: .*/, // the compiler's first error
    /^gyp: .*/, // gyp itself, e.g. common.gypi not found under nodedir
    /gyp ERR! stack Error: .*/,
    /gyp ERR! .*/,
  ];
  for (const pattern of patterns) {
    for (const line of lines) {
      const match = line.match(pattern);
      if (match) return match[0].replace(/^gyp ERR! (stack )?/, '').slice(0, 200);
    }
  }
  return 'see the output above';
}

try {
  main();
} catch (err) {
  fail(`unexpected error: ${err?.message ?? err}`); // still never fail the install
}
