#!/usr/bin/env node
// scripts/build-addon.mjs: package.json's "install" script. Builds the native addon
// (binding.gyp: build/Release/usernet_native.node and the usernet-slirp4netns launcher) with
// node-gyp, and never fails the install for want of a compiler: the library's in-memory half
// (switch, memory ports, codecs) needs no addon, and a whole `npm install` failing because one
// package could not compile helps nobody.
//
// On failure it prints one warning (stderr, and the terminal when there is one: npm shows an
// install script's output only when it fails or with --foreground-scripts), keeps node-gyp's
// output in build/addon-build.log, which the addon's loader names in its ERR_NATIVE_NOT_BUILT
// error, and exits 0. USERNET_REQUIRE_ADDON=1 makes a failed build fail the install instead
// (for images and packagers who would rather stop there). The repo's own CI does not depend on
// that: scripts/build.sh loads the addon after `npm ci`, and test/run.mjs checks it is there
// before the sandboxed tests, so a missing addon fails CI loudly either way.
//
// Plain Node, no dependencies: it runs before anything else of the package is usable.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Where a failed build's output goes; src/native/addon.ts names the same file. */
const LOG = join(ROOT, 'build', 'addon-build.log');
/** Keep at most this much of node-gyp's output (its tail holds the error). */
const LOG_LIMIT = 256 * 1024;

/** npm passes its bundled node-gyp as npm_config_node_gyp; otherwise one on PATH. */
function nodeGypCommand() {
  const bundled = process.env.npm_config_node_gyp;
  if (bundled && existsSync(bundled)) return [process.execPath, [bundled, 'rebuild']];
  return ['node-gyp', ['rebuild']];
}

function build() {
  return new Promise((resolvePromise) => {
    const [cmd, args] = nodeGypCommand();
    let output = '';
    const keep = (chunk) => {
      output += chunk;
      if (output.length > 2 * LOG_LIMIT) output = output.slice(-LOG_LIMIT);
    };
    let child;
    try {
      child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolvePromise({ ok: false, reason: `cannot start ${cmd}: ${err.message}`, output });
      return;
    }
    child.stdout.setEncoding('utf8').on('data', (d) => {
      process.stdout.write(d);
      keep(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      process.stderr.write(d);
      keep(d);
    });
    child.on('error', (err) => resolvePromise({ ok: false, reason: `cannot start ${cmd}: ${err.message}`, output }));
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise({ ok: true, output });
      else resolvePromise({ ok: false, reason: reasonFrom(output) ?? `node-gyp rebuild exited with ${signal ?? `status ${code}`}`, output });
    });
  });
}

/** The line of node-gyp's output that says what went wrong, if one can be picked out. */
function reasonFrom(output) {
  const lines = output.split('\n').map((l) => l.trim());
  const patterns = [
    /Could not find any Python installation to use/,
    /not found: (?:make|cc|gcc|g\+\+|c\+\+)\b.*/,
    /(?:\S+: )?(?:command )?not found.*/,
    /fatal error: .*/,
    /error: .*/,
    /gyp ERR! stack Error: (.*)/,
  ];
  for (const pattern of patterns) {
    for (const line of lines) {
      const m = pattern.exec(line);
      if (m) return (m[1] ?? m[0]).replace(/^gyp ERR! (?:stack |find Python )?/, '').trim();
    }
  }
  return undefined;
}

/** In a project that depends on usernet, or in a checkout of usernet itself. */
function howToRebuild() {
  return ROOT.split(/[\\/]/).includes('node_modules') ? 'run "npm rebuild usernet" in your project' : `run "npm rebuild" (or "npm ci") in ${ROOT}`;
}

function warningText(reason) {
  return [
    `usernet: warning: the native addon was not built (node-gyp rebuild failed: ${reason}).`,
    'usernet: the library still works without it: the switch, in-memory ports and packet codecs need no addon.',
    'usernet: what needs it: TAP ports (real containers), real host sockets (the NAT, published ports) and the daemon;',
    'usernet: they throw a UsernetError with code ERR_NATIVE_NOT_BUILT until it is built.',
    'usernet: to build it later: install python3, make and a C compiler (Debian: apt-get install python3 make g++),',
    `usernet: then ${howToRebuild()}. node-gyp's output: ${LOG}`,
    '',
  ].join('\n');
}

/**
 * Also to the terminal when stderr is not it: npm hides a dependency's install script output
 * when the script succeeds (a project's own scripts, as in `npm ci` in a checkout, it shows).
 */
function tellTerminal(text) {
  if (process.stderr.isTTY) return;
  let fd;
  try {
    fd = openSync('/dev/tty', 'w');
    writeSync(fd, text);
  } catch {
    // no controlling terminal (CI, a pipe): stderr is all there is
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const result = await build();
if (result.ok) {
  rmSync(LOG, { force: true });
  process.exit(0);
}
try {
  mkdirSync(dirname(LOG), { recursive: true });
  writeFileSync(LOG, `node-gyp rebuild failed: ${result.reason}\n\n${result.output.slice(-LOG_LIMIT)}`);
} catch {
  // a read-only package directory: the warning still says what happened
}
const text = warningText(result.reason);
process.stderr.write(`\n${text}`);
tellTerminal(`\n${text}`);
process.exit(process.env.USERNET_REQUIRE_ADDON === '1' ? 1 : 0);
