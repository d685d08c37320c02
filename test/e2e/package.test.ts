/**
 * usernet as a dependency, checked the way a user gets it: `npm pack` the project, then install
 * the tarball into a scratch project of its own and use it there — with the scratch project's own
 * vitest and with `node --test` — in three ways:
 *
 *   (a) a normal install: the install script builds the addon, which loads;
 *   (b) `--ignore-scripts`: no addon; `import('usernet')` still works, the in-memory examples
 *       pass, and a TAP port fails with UsernetError ERR_NATIVE_NOT_BUILT saying how to build it;
 *   (c) a normal install with no compiler or make on the PATH: the install still succeeds, the
 *       build's failure is kept in build/addon-build.log, `npm rebuild usernet` prints the one
 *       warning (and still exits 0), and the library works as in (b).
 *
 * No registry is ever reached: every npm command runs --offline against a copy of the cache that
 * `npm ci` filled (so the user's cache is not written), with its proxies pointed at a closed port
 * so that anything that still tried the network would fail at once (and the sandbox has no route
 * out anyway). One thing differs from a user's first install: the scratch project starts with a
 * package-lock.json that pins vitest, lru-cache, pino and their dependencies to the repo's own
 * package-lock.json. npm resolves a dependency new to a project from the registry's full
 * metadata, while `npm ci` over a lockfile caches only the abbreviated metadata it needs, so
 * without a lockfile an offline install finds nothing to resolve from. With one, npm installs
 * exactly what the repo was tested with, and usernet itself is still added by
 * `npm install <tarball>`, as a user adds it.
 *
 * Uses dist/ as `npm test` just built it (npm pack --ignore-scripts: no second tsc run).
 * The examples are the files in test/package/fixtures: every *.test.mjs runs with vitest, every
 * *.node-test.mjs with node --test.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT, cleanup, requireSandbox, rootTempDir, run, type RunResult } from './harness.js';

requireSandbox();

const FIXTURES = join(PROJECT, 'test', 'package', 'fixtures');
const PKG = JSON.parse(readFileSync(join(PROJECT, 'package.json'), 'utf8')) as { name: string; version: string; dependencies: Record<string, string> };
const LOCK = JSON.parse(readFileSync(join(PROJECT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
/** What the scratch project installs from the cache besides usernet (its own test runner). */
const DEV_DEPS = ['vitest'];
const NPM_TIMEOUT_MS = 90_000;
/** A port nothing listens on: npm's proxies, so a request that escapes --offline fails at once. */
const NOWHERE = 'http://127.0.0.1:9';

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

/** Finds a program on a PATH; its real path (a pyenv shim is resolved by asking Python). */
function which(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return realpathSync(join(dir, name));
  }
  return null;
}

/** PATH without any node_modules/.bin (npm test put the repo's on it: vitest, tsc, node-gyp). */
function userPath(): string {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((d) => d && !d.split('/').includes('node_modules'))
    .join(delimiter);
}

/**
 * The environment a user's shell would give npm: no npm_* variables from the `npm test` this runs
 * under (npm_config_local_prefix would point the scratch npm at the repo), no VITEST* variables.
 */
function npmEnv(cache: string | undefined, path: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    HOME: process.env.HOME ?? '/root',
    PATH: path,
    LANG: 'C.UTF-8',
    NO_COLOR: '1',
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    npm_config_proxy: NOWHERE,
    npm_config_https_proxy: NOWHERE,
  };
  if (cache !== undefined) env.npm_config_cache = cache;
  // The Node headers the repo's own build used (node-gyp would otherwise download them).
  const gypi = join(PROJECT, 'build', 'config.gypi');
  const nodedir = existsSync(gypi) ? /"nodedir": "([^"]+)"/.exec(readFileSync(gypi, 'utf8'))?.[1] : undefined;
  if (nodedir && existsSync(nodedir)) env.npm_config_nodedir = nodedir;
  return env;
}

/** The lockfile entries of `names` and everything they depend on (the repo's lock is flat). */
function lockClosure(names: string[]): Record<string, LockEntry> {
  const out: Record<string, LockEntry> = {};
  const queue = [...names];
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const key = `node_modules/${name}`;
    if (out[key]) continue;
    const entry = LOCK.packages[key];
    if (!entry) continue; // an optional or peer dependency the repo does not install
    out[key] = entry;
    queue.push(...Object.keys({ ...entry.dependencies, ...entry.optionalDependencies }));
  }
  return out;
}

function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

function describeRun(what: string, r: RunResult): string {
  return `${what}: exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

async function ok(what: string, argv: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  const r = await run(argv, { cwd, env, timeoutMs: NPM_TIMEOUT_MS });
  if (r.code !== 0) throw new Error(describeRun(what, r));
  return r;
}

describe('usernet from its npm pack tarball, in a scratch project', () => {
  let work: string;
  let tarball: string;
  let cache: string;
  const npm = which('npm') ?? 'npm';

  beforeAll(async () => {
    expect(existsSync(join(PROJECT, 'dist', 'src', 'index.js')), 'dist/ is built (npm test builds it first)').toBe(true);
    work = rootTempDir('usernet-package-');
    // The cache npm ci filled, as the npm of this machine's user names it.
    const cacheRoot = (await ok('npm config get cache', [npm, 'config', 'get', 'cache'], work, npmEnv(undefined, userPath()))).stdout.trim();
    const cacache = join(cacheRoot, '_cacache');
    if (!existsSync(cacache)) throw new Error(`no npm cache at ${cacache}: run npm ci first (it fills the cache this test installs from)`);
    cache = join(work, 'npm-cache');
    cpSync(cacache, join(cache, '_cacache'), { recursive: true });
    const env = npmEnv(cache, userPath());
    const packed = await ok('npm pack', [npm, 'pack', '--ignore-scripts', '--json', '--pack-destination', work], PROJECT, env);
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = join(work, info.filename);
    const files = info.files.map((f) => f.path);
    // What the install needs, and nothing of the repo's own (sources, tests, benches, maps).
    for (const f of ['package.json', 'LICENSE', 'binding.gyp', 'scripts/build-addon.mjs', 'dist/src/index.js', 'dist/src/index.d.ts', 'src/native/usernet_native.c', 'bin/usernet.js']) {
      expect(files, `the tarball holds ${f}`).toContain(f);
    }
    expect(files.filter((f) => /^(test|bench|docs|docker)\/|\.map$|\.ts$(?<!\.d\.ts)|^src\/(?!native\/[^/]+\.[ch]$)/.test(f))).toEqual([]);
  }, 60_000);

  afterAll(cleanup);

  /** A scratch project with the lockfile described above, usernet installed from the tarball. */
  async function scratchProject(name: string, installArgs: string[], path: string): Promise<{ dir: string; install: RunResult; env: NodeJS.ProcessEnv }> {
    const dir = join(work, name);
    mkdirSync(dir);
    const devDependencies = Object.fromEntries(DEV_DEPS.map((d) => [d, LOCK.packages[`node_modules/${d}`].version as string]));
    const manifest = { name: `scratch-${name}`, version: '1.0.0', private: true, type: 'module', devDependencies };
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const lock = {
      name: manifest.name,
      version: manifest.version,
      lockfileVersion: 3,
      requires: true,
      packages: { '': { name: manifest.name, version: manifest.version, devDependencies }, ...lockClosure([...Object.keys(PKG.dependencies), ...DEV_DEPS]) },
    };
    writeFileSync(join(dir, 'package-lock.json'), `${JSON.stringify(lock, null, 2)}\n`);
    for (const f of readdirSync(FIXTURES)) cpSync(join(FIXTURES, f), join(dir, f));
    const env = npmEnv(cache, path);
    const install = await ok(`npm install ${installArgs.join(' ')} (${name})`, [npm, 'install', '--offline', '--no-audit', '--no-fund', ...installArgs, tarball], dir, env);
    const installed = JSON.parse(readFileSync(join(dir, 'node_modules', 'usernet', 'package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe(PKG.version);
    return { dir, install, env };
  }

  /** Runs every example in the scratch project: its own vitest, then node --test. */
  async function runExamples(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
    const vitestFiles = readdirSync(dir).filter((f) => f.endsWith('.test.mjs'));
    const nodeFiles = readdirSync(dir).filter((f) => f.endsWith('.node-test.mjs'));
    expect(vitestFiles.length + nodeFiles.length).toBeGreaterThan(0);
    if (vitestFiles.length > 0) {
      const r = await ok('vitest run (the scratch project\'s own)', [process.execPath, join(dir, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...vitestFiles], dir, env);
      expect(stripAnsi(r.stdout)).toMatch(new RegExp(`Test Files\\s+${vitestFiles.length} passed`));
    }
    if (nodeFiles.length > 0) {
      const r = await ok('node --test', [process.execPath, '--test', ...nodeFiles], dir, env);
      expect(r.stdout).toMatch(/^# fail 0$/m);
      expect(r.stdout).not.toMatch(/^# pass 0$/m);
    }
  }

  /** In a project without the addon: the import works, a TAP port says what is missing. */
  async function expectAddonMissing(dir: string, env: NodeJS.ProcessEnv): Promise<string> {
    expect(existsSync(join(dir, 'node_modules', 'usernet', 'build', 'Release', 'usernet_native.node'))).toBe(false);
    const r = await ok('addon-missing.mjs', [process.execPath, 'addon-missing.mjs'], dir, env);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { imported: boolean; code: string | null; name: string | null; message: string | null; isUsernetError?: boolean };
    expect(out.imported, out.message ?? '').toBe(true);
    expect(out).toMatchObject({ code: 'ERR_NATIVE_NOT_BUILT', name: 'UsernetError', isUsernetError: true });
    expect(out.message).toContain('npm rebuild usernet');
    expect(out.message).toContain('python3, make and a C compiler');
    return out.message as string;
  }

  it('(a) installs normally: the addon is built and loads, the examples pass', async () => {
    const { dir, env } = await scratchProject('normal', [], userPath());
    const addon = join(dir, 'node_modules', 'usernet', 'build', 'Release', 'usernet_native.node');
    expect(existsSync(addon), 'the install script built the addon').toBe(true);
    expect(existsSync(join(dir, 'node_modules', 'usernet', 'build', 'addon-build.log'))).toBe(false);
    await ok('loading the addon', [process.execPath, '-e', `require(${JSON.stringify(addon)})`], dir, env);
    await runExamples(dir, env);
  });

  it('(b) installs with --ignore-scripts: no addon, import works, a TAP port fails with ERR_NATIVE_NOT_BUILT', async () => {
    const { dir, env } = await scratchProject('ignore-scripts', ['--ignore-scripts'], userPath());
    expect(existsSync(join(dir, 'node_modules', 'usernet', 'build'))).toBe(false);
    await expectAddonMissing(dir, env);
    await runExamples(dir, env);
  });

  it('(c) installs with no compiler or make on the PATH: the install succeeds with the warning', async () => {
    // A PATH of node, npm, sh (npm runs scripts with it) and python3 (so that node-gyp gets as far
    // as the compiler), and nothing else: no cc, gcc, g++, c++, make.
    const bin = join(work, 'no-cc-bin');
    mkdirSync(bin);
    const python = which('python3') ? (await run(['python3', '-c', 'import sys; print(sys.executable)'], { env: { PATH: userPath() } })).stdout.trim() : '';
    const tools: Record<string, string | null> = { node: process.execPath, npm: which('npm'), sh: realpathSync('/bin/sh'), python3: python || null };
    for (const [name, target] of Object.entries(tools)) if (target) symlinkSync(target, join(bin, name));
    for (const missing of ['cc', 'gcc', 'g++', 'c++', 'make']) expect(which(missing, bin)).toBeNull();

    const { dir, env, install } = await scratchProject('no-compiler', [], bin);
    const log = join(dir, 'node_modules', 'usernet', 'build', 'addon-build.log');
    expect(existsSync(log), `${log} keeps node-gyp's output\n${describeRun('npm install', install)}`).toBe(true);
    // Without python3 node-gyp stops before it looks for make (CI has it: scripts/deps.sh).
    const reason = python ? 'not found: make' : 'Could not find any Python installation to use';
    expect(readFileSync(log, 'utf8').split('\n')[0]).toBe(`node-gyp rebuild failed: ${reason}`);
    const message = await expectAddonMissing(dir, env);
    expect(message).toContain(log);

    // npm hides a successful install script's output; --foreground-scripts shows the warning.
    const rebuild = await ok('npm rebuild usernet', [npm, 'rebuild', 'usernet', '--foreground-scripts'], dir, env);
    const warning = rebuild.stderr.split('\n').filter((l) => l.startsWith('usernet: '));
    expect(warning[0]).toBe(`usernet: warning: the native addon was not built (node-gyp rebuild failed: ${reason}).`);
    expect(warning.join('\n')).toContain('the library still works without it');
    expect(warning.join('\n')).toContain('TAP ports');
    expect(warning.join('\n')).toContain('run "npm rebuild usernet" in your project');
    await runExamples(dir, env);
  });
});
