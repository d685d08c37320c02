#!/usr/bin/env node
// test/run.mjs: the test runner behind `npm test`. Plain Node, no dependencies but vitest's CLI.
//
//   not root             → unit tests only; the end-to-end tests are reported as not run
//   root, outside        → re-run this script inside test/sandbox/netsandbox.sh (private network
//                          namespace with blackhole default routes: no test packet can leave)
//   root, in the sandbox → prepare the rootless-test user, /dev/net/tun and a project path that
//                          user can read, then run every vitest project
//
// Extra arguments go to vitest (`npm test -- test/unit/foo.test.ts`). The last line printed is
// always `N passed, N failed`; CI and people read it, so a crash or an interrupted run counts
// as a failure there, never as a pass.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, appendFileSync, chmodSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const PROJECT = resolve(dirname(SELF), '..');
const SANDBOX = join(PROJECT, 'test/sandbox/netsandbox.sh');
const TEST_USER = 'usernet-test';
const TUN = '/dev/net/tun';
// Where the project is bind-mounted when TEST_USER cannot reach it where it is (e.g. /root/...).
const ALT_ROOT = '/mnt';
const ALT_PROJECT = '/mnt/usernet-project';
// The sandboxed run writes its summary line here, so the outer run can tell whether it got that
// far and print an honest failure line if it did not.
const SUMMARY_ENV = 'USERNET_RUNNER_SUMMARY';
// After an interrupt, how long vitest gets to stop before its process group is killed.
const INTERRUPT_GRACE_MS = 15_000;
// A second signal this soon after the first is the same Ctrl-C delivered twice (npm forwards
// SIGINT to its child as well as the terminal sending it), not a request to hurry up.
const REPEAT_SIGNAL_MS = 2_000;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

const userArgs = process.argv.slice(2);

function log(message) {
  console.log(`run.mjs: ${message}`);
}

function exitCodeFor(code, signal) {
  if (signal) return 128 + (SIGNAL_NUMBERS[signal] ?? 1);
  return code ?? 1;
}

/** Run a command to completion; throw with its stderr if it fails. Returns its stdout. */
function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function succeeds(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** Print the summary (last line `N passed, N failed`) and tell the outer run we got here. */
function printSummary({ passed, failed, skipped = 0, skippedDetail = '', notes = [] }) {
  for (const note of notes) log(note);
  if (skipped > 0) console.log(`${skipped} skipped${skippedDetail ? ` (${skippedDetail})` : ''}`);
  const line = `${passed} passed, ${failed} failed`;
  console.log(line);
  const file = process.env[SUMMARY_ENV];
  if (file) writeFileSync(file, `${line}\n`);
}

function isWritable(path) {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function countTestFiles(dir) {
  if (!existsSync(dir)) return 0;
  return readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.test.ts')).length;
}

// ---------------------------------------------------------------------------------------------
// Running a child with signals forwarded

/**
 * Spawn a child in its own process group with signals forwarded to it, and wait for it.
 * Its own group, so that a Ctrl-C reaches it exactly once (from us) and so that whatever the
 * tests leave running can be found and killed afterwards. stdin is not passed on: a background
 * process group reading the terminal would stop, and nothing here needs input.
 * Resolves to { code, signal, interrupted } where interrupted is the first signal we forwarded.
 */
function runForwardingSignals(cmd, args, options, { killGroup }) {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { ...options, stdio: ['ignore', 'inherit', 'inherit'], detached: true });
    const target = killGroup ? -child.pid : child.pid;
    let interrupted = null;
    let interruptedAt = 0;
    let graceTimer = null;

    const kill = (sig) => {
      try {
        process.kill(target, sig);
      } catch {
        // already gone
      }
    };
    const onSignal = (sig) => {
      if (!interrupted) {
        interrupted = sig;
        interruptedAt = Date.now();
        log(`${sig}: stopping the test run`);
        kill(sig);
        graceTimer = setTimeout(() => {
          log(`still running ${INTERRUPT_GRACE_MS / 1000} s after ${sig}; killing it`);
          kill('SIGKILL');
        }, INTERRUPT_GRACE_MS);
        graceTimer.unref();
      } else if (Date.now() - interruptedAt > REPEAT_SIGNAL_MS) {
        log(`${sig} again: killing the test run`);
        kill('SIGKILL');
      }
    };
    for (const sig of SIGNALS) process.on(sig, onSignal);

    const done = (code, signal) => {
      for (const sig of SIGNALS) process.off(sig, onSignal);
      if (graceTimer) clearTimeout(graceTimer);
      resolvePromise({ code, signal, interrupted, pid: child.pid });
    };
    child.on('error', (err) => {
      log(`cannot start ${cmd}: ${err.message}`);
      done(127, null);
    });
    child.on('close', done);
  });
}

/** Kill whatever is left in a process group once its leader has exited (leaked test daemons). */
async function reapProcessGroup(pgid) {
  if (!pgid) return; // never started
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  log('processes started by the tests were still running after vitest exited; terminating them');
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return;
  }
  for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

// ---------------------------------------------------------------------------------------------
// vitest

/**
 * Run `vitest run` in cwd with the default and json reporters and count the results.
 * Failed = failed tests + test files that failed outside any test (import error, failing
 * beforeAll/afterAll); a vitest exit status that no failed test explains, a missing report and
 * an interrupt each count as one more failure.
 */
async function runVitest(cwd, vitestArgs, env) {
  const vitest = join(cwd, 'node_modules/vitest/vitest.mjs');
  if (!existsSync(vitest)) {
    return { passed: 0, failed: 1, skipped: 0, notes: [`vitest is not installed in ${cwd}/node_modules; run npm ci first`] };
  }
  const reportDir = mkdtempSync(join(tmpdir(), 'usernet-vitest-'));
  const reportFile = join(reportDir, 'report.json');
  try {
    const args = [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${reportFile}`];
    // Vite bundles vitest.config.ts into node_modules/.vite-temp, which fails when someone else
    // owns the clone (a root-owned checkout run by a normal user); the runner loader writes nothing.
    if (!isWritable(join(cwd, 'node_modules'))) args.push('--configLoader', 'runner');
    args.push(...vitestArgs);
    const result = await runForwardingSignals(process.execPath, args, { cwd, env }, { killGroup: true });
    await reapProcessGroup(result.pid);

    const notes = [];
    let report = null;
    try {
      report = JSON.parse(readFileSync(reportFile, 'utf8'));
    } catch {
      // no report: vitest crashed, was killed, or never got to run tests
    }
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    if (report) {
      passed = report.numPassedTests;
      failed = report.numFailedTests;
      skipped = report.numPendingTests + report.numTodoTests;
      const brokenFiles = report.testResults.filter(
        (file) => file.status === 'failed' && !file.assertionResults.some((t) => t.status === 'failed'),
      );
      for (const file of brokenFiles) notes.push(`test file failed outside any test: ${file.name}${file.message ? ` (${file.message.split('\n')[0]})` : ''}`);
      failed += brokenFiles.length;
    }
    const status = exitCodeFor(result.code, result.signal);
    if (result.interrupted) {
      notes.push(`run interrupted by ${result.interrupted}: counted as a failure`);
      failed += 1;
    } else if (!report) {
      notes.push(`vitest wrote no report (status ${status}: it crashed or was killed before the end of the run)`);
      failed += 1;
    } else if (status !== 0 && failed === 0) {
      notes.push(`vitest exited with status ${status} without a failing test (unhandled error, no test files, or a crash): counted as a failure`);
      failed += 1;
    }
    return { passed, failed, skipped, notes, interrupted: result.interrupted };
  } finally {
    rmSync(reportDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The three modes

async function runUnprivileged() {
  const e2eFiles = countTestFiles(join(PROJECT, 'test/e2e'));
  // --passWithNoTests: a filter that only names e2e files leaves nothing to run here, and that
  // is "nothing run", not a unit-test failure.
  const r = await runVitest(PROJECT, ['--project', 'unit', '--passWithNoTests', ...userArgs], process.env);
  const notes = [
    ...r.notes,
    `the end-to-end tests were NOT run: they need root to build their network sandbox (run npm test as root); ${e2eFiles} e2e test file(s) skipped`,
  ];
  const details = [];
  if (r.skipped > 0) details.push(`${r.skipped} unit test(s) skipped or todo`);
  if (e2eFiles > 0) details.push(`${e2eFiles} e2e test file(s) not run: need root`);
  printSummary({ passed: r.passed, failed: r.failed, skipped: r.skipped + e2eFiles, skippedDetail: details.join(', '), notes });
  process.exitCode = r.interrupted ? 130 : r.failed > 0 ? 1 : 0;
}

async function reexecInSandbox() {
  const dir = mkdtempSync(join(tmpdir(), 'usernet-run-'));
  const summaryFile = join(dir, 'summary');
  try {
    const env = { ...process.env, [SUMMARY_ENV]: summaryFile };
    // bash, not the script directly: a checkout without the executable bit still works. The
    // sandbox chain (unshare → bash → node) execs all the way, so the child PID is the inner run.
    const result = await runForwardingSignals('bash', [SANDBOX, process.execPath, SELF, ...userArgs], { env }, { killGroup: false });
    const status = exitCodeFor(result.code, result.signal);
    const summarised = existsSync(summaryFile) && readFileSync(summaryFile, 'utf8').trim() !== '';
    if (!summarised) {
      printSummary({
        passed: 0,
        failed: 1,
        notes: [`the sandboxed test run ended (status ${status}) before reporting any results; see the messages above`],
      });
      process.exitCode = status === 0 ? 1 : status;
    } else {
      process.exitCode = status;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Refuse to run the e2e tests unless this really is the private, blackholed sandbox. */
function assertSandboxed() {
  for (const ns of ['net', 'mnt']) {
    let init;
    try {
      init = readlinkSync(`/proc/1/ns/${ns}`);
    } catch {
      continue; // PID 1 belongs to another container runtime user: the checks below still apply
    }
    if (readlinkSync(`/proc/self/ns/${ns}`) === init) {
      throw new Error(`USERNET_SANDBOX=1 but this process shares PID 1's ${ns} namespace; refusing to run (start the tests with npm test)`);
    }
  }
  const routes = run('ip', ['-4', 'route', 'show', 'default']).trim();
  if (!/^blackhole default\b/.test(routes) || routes.includes('\n')) {
    throw new Error(`the sandbox's default route is not a blackhole (${JSON.stringify(routes)}); refusing to run`);
  }
  const nameservers = readFileSync('/etc/resolv.conf', 'utf8').match(/^\s*nameserver\s+\S+/gm) ?? [];
  if (nameservers.length !== 1 || nameservers[0].trim().split(/\s+/)[1] !== '127.0.0.1') {
    throw new Error('the sandbox\'s /etc/resolv.conf does not point at 127.0.0.1 only; refusing to run');
  }
}

function ensureTestUser() {
  if (!succeeds('id', ['-u', TEST_USER])) {
    log(`creating the unprivileged user ${TEST_USER} for the rootless tests`);
    // If a group of that name already exists, join it instead of failing on --user-group.
    const group = succeeds('getent', ['group', TEST_USER]) ? ['--gid', TEST_USER] : ['--user-group'];
    run('useradd', ['--system', ...group, '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', TEST_USER]);
  }
  // rootlesskit (driving usernet-slirp4netns in the tests) maps subordinate ids with newuidmap,
  // as for any user that useradd makes on a distribution: give the test user a range too.
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // absent: created below
    }
    if (!text.split('\n').some((l) => l.startsWith(`${TEST_USER}:`))) {
      appendFileSync(file, `${text && !text.endsWith('\n') ? '\n' : ''}${TEST_USER}:1879048192:65536\n`);
      log(`gave ${TEST_USER} subordinate ids in ${file} (for rootlesskit's newuidmap)`);
    }
  }
  return { uid: Number(run('id', ['-u', TEST_USER]).trim()), gid: Number(run('id', ['-g', TEST_USER]).trim()) };
}

function ensureTun() {
  let st = null;
  try {
    st = statSync(TUN);
  } catch {
    // missing: handled below
  }
  if (!st) {
    // The tun module is built into Debian's kernel; a minimal container may just lack the node.
    try {
      mkdirSync(dirname(TUN), { recursive: true });
      run('mknod', ['-m', '0666', TUN, 'c', '10', '200']);
      log(`${TUN} was missing; created it (char 10:200, mode 0666)`);
    } catch (err) {
      log(`warning: ${TUN} is missing and could not be created (${err.message}); TAP tests will fail`);
    }
    return;
  }
  const mode = st.mode & 0o777;
  if (mode !== 0o666) {
    chmodSync(TUN, 0o666);
    log(`made ${TUN} mode 0666 (was 0${mode.toString(8)}): distributions ship it so, and the rootless tests open it as ${TEST_USER}`);
  }
}

/** Can TEST_USER read package.json and enter dist/, build/ and node_modules/ under dir? */
function testUserCanRead(dir) {
  const script = 'cd "$1" && test -r package.json || exit 1; for d in dist build node_modules; do [ ! -e "$d" ] || { [ -x "$d" ] && [ -r "$d" ]; } || exit 1; done';
  return succeeds('setpriv', ['--reuid', TEST_USER, '--regid', TEST_USER, '--clear-groups', 'sh', '-c', script, 'sh', dir]);
}

/**
 * The project path the rootless tests use. If TEST_USER cannot reach the clone where it is (a
 * clone under /root, mode 0700), bind-mount it at a path it can reach. Our mount namespace is
 * private, so the tmpfs on /mnt and the bind mount vanish with the sandbox and nobody outside
 * sees them.
 */
function projectDirForTestUser() {
  if (testUserCanRead(PROJECT)) return PROJECT;
  log(`${TEST_USER} cannot read ${PROJECT} (a parent directory is closed to it?); bind-mounting the project at ${ALT_PROJECT}`);
  mkdirSync(ALT_ROOT, { recursive: true });
  run('mount', ['-t', 'tmpfs', '-o', 'mode=755', 'usernet-project', ALT_ROOT]);
  mkdirSync(ALT_PROJECT);
  run('mount', ['--bind', PROJECT, ALT_PROJECT]);
  if (!testUserCanRead(ALT_PROJECT)) {
    log(`warning: ${TEST_USER} cannot read ${ALT_PROJECT} either: the files themselves are not readable to others (umask?); rootless tests will fail`);
  }
  return ALT_PROJECT;
}

async function runInSandbox() {
  let projectDir;
  let env;
  try {
    assertSandboxed();
    const { uid, gid } = ensureTestUser();
    ensureTun();
    projectDir = projectDirForTestUser();
    env = {
      ...process.env,
      USERNET_PROJECT_DIR: projectDir,
      USERNET_TEST_USER: TEST_USER,
      USERNET_TEST_UID: String(uid),
      USERNET_TEST_GID: String(gid),
    };
    delete env[SUMMARY_ENV];
  } catch (err) {
    printSummary({ passed: 0, failed: 1, notes: [`cannot prepare the end-to-end test environment: ${err.message}`] });
    process.exitCode = 1;
    return;
  }
  // Paths given relative to the project work unchanged (vitest runs in projectDir); absolute
  // ones into the original clone are moved to where the tests now see it.
  const args = userArgs.map((a) => (a.startsWith(`${PROJECT}/`) ? projectDir + a.slice(PROJECT.length) : a));
  const r = await runVitest(projectDir, args, env);
  // The install script only warns when the addon cannot be built (a user's install must not fail
  // for want of a compiler); the e2e tests need it, so its absence is a failure here, said once.
  const addon = join(projectDir, 'build/Release/usernet_native.node');
  if (!existsSync(addon)) {
    r.notes.push(`the native addon is not built (${addon} is missing; see build/addon-build.log): the e2e tests cannot work without it; run npm ci or npm rebuild with python3, make and a C compiler installed`);
    r.failed += 1;
  }
  printSummary({ ...r, skippedDetail: 'skipped or todo' });
  process.exitCode = r.interrupted ? 130 : r.failed > 0 ? 1 : 0;
}

if (process.getuid() !== 0) await runUnprivileged();
else if (process.env.USERNET_SANDBOX !== '1') await reexecInSandbox();
else await runInSandbox();
