/**
 * `usernet demo`: the quick start in one command, for an unprivileged user.
 *
 * Two rootless "containers" (processes in their own user + network namespaces, made with
 * `unshare --user --map-root-user --net`), a daemon on a temporary socket, both attached with
 * addresses from the default network (10.0.2.0/24: gateway .2, DNS .3, containers from .100),
 * a ping from one to the other and to the gateway, a published port (an HTTP server in one
 * container, fetched from the host's loopback), the port counters and the MAC table, then
 * everything removed. Every command is printed as it runs, so the demo doubles as a
 * walkthrough. Packets never leave the two namespaces it made.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../native/addon.js';
import { UsernetError } from '../errors.js';

const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Finds `cmd` on PATH (no shell involved). */
function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // next
    }
  }
  return false;
}

/** Quotes an argument for a POSIX shell when it needs it, so printed commands can be pasted. */
function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function commandLine(argv: string[]): string {
  return argv.map(shellQuote).join(' ');
}

/** Checks what the demo needs and fails with the one-line fix. */
function preflight(): void {
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    throw new UsernetError('ERR_NO_TUN', 'cannot open /dev/net/tun as this user; distributions ship it mode 0666. Fix: sudo chmod 0666 /dev/net/tun (or sudo modprobe tun if it is missing)');
  }
  for (const [cmd, pkg] of [['unshare', 'util-linux'], ['nsenter', 'util-linux'], ['ip', 'iproute2'], ['ping', 'iputils-ping']]) {
    if (!onPath(cmd)) {
      throw new UsernetError('ERR_MISSING_TOOL', `the demo needs "${cmd}", which is not on your PATH. Fix: sudo apt-get install -y ${pkg} (or add its directory to PATH)`);
    }
  }
  const probe = spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    throw new UsernetError(
      'ERR_NO_USERNS',
      `user namespaces are not available to this user (${(probe.stderr || '').trim().split('\n')[0] || `exit ${probe.status}`}). Fix: sudo sysctl -w user.max_user_namespaces=15000 (on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0; on old Debian kernels kernel.unprivileged_userns_clone=1)`,
    );
  }
}

/** Starts `cmd` and resolves once a stdout/stderr line matches `ready`. */
function startAndWait(cmd: string, args: string[], ready: (line: string) => boolean, stream: 'stdout' | 'stderr', env?: NodeJS.ProcessEnv, timeoutMs = 15000): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    const lines: string[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new UsernetError('ERR_DEMO', `${cmd} did not become ready within ${timeoutMs / 1000} s:\n${lines.join('\n')}`));
    }, timeoutMs);
    const rl = createInterface({ input: child[stream] as NodeJS.ReadableStream });
    rl.on('line', (line) => {
      lines.push(line);
      if (ready(line)) {
        clearTimeout(timer);
        rl.removeAllListeners('line');
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      // One line: the last thing it said (for the daemon, its own one-line error).
      const last = lines.filter((l) => l.trim() !== '').pop() ?? `exit ${code}`;
      reject(new UsernetError('ERR_DEMO', `${cmd === process.execPath ? 'the daemon' : cmd} did not start: ${last.replace(/^usernet: /, '')}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function run(cmd: string, args: string[], show = true, env?: NodeJS.ProcessEnv): string {
  if (show) say(bold(`$ ${commandLine([cmd, ...args])}`));
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trimEnd();
  if (show && output) say(output);
  if (r.status !== 0) {
    const why = output.split('\n').filter((l) => l.trim() !== '').pop() ?? `exit ${r.status}`;
    throw new UsernetError('ERR_DEMO', `"${commandLine([cmd, ...args])}" failed: ${why.replace(/^usernet: /, '')}`);
  }
  return output;
}

/** The web server in beta: answers every request with the client address it sees. */
const DEMO_SERVER_JS = [
  'require("node:http").createServer((req, res) => res.end(`hello from beta (10.0.2.101:80); you are ${req.socket.remoteAddress}:${req.socket.remotePort}\\n`))',
  '.listen(80, "0.0.0.0", () => console.log("listening on 80"));',
].join('');

export async function runDemo(): Promise<number> {
  preflight();
  const root = projectRoot();
  const cli = join(root, 'bin', 'usernet.js');
  const dir = mkdtempSync(join(tmpdir(), 'usernet-demo-'));
  const socket = join(dir, 'usernet.sock');
  const children: ChildProcess[] = [];
  // The CLI finds the daemon through USERNET_SOCKET, so the commands printed are exactly those run.
  const cliEnv = { ...process.env, USERNET_SOCKET: socket };
  const usernet = (...args: string[]): string => run(process.execPath, [cli, ...args], false, cliEnv);
  const show = (label: string, args: string[]): string => {
    say(bold(`$ usernet ${commandLine(args)}`));
    const text = usernet(...args);
    if (text) say(text);
    return label;
  };
  let daemon: ChildProcess | null = null;
  const cleanup = async (): Promise<void> => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // The demo ends only once its daemon has: nothing of it outlives the command.
    const d = daemon;
    if (d && d.exitCode === null && d.signalCode === null) {
      const gone = new Promise<void>((resolve) => d.once('exit', () => resolve()));
      d.kill('SIGTERM');
      const timer = setTimeout(() => d.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    say(`usernet demo, as ${process.getuid?.() === 0 ? 'root (any user can do the same)' : `uid ${process.getuid?.()}, no root needed`}\n`);
    say('1. Two rootless containers: processes in their own user + network namespaces.');
    const holder = ['--user', '--map-root-user', '--net', 'sh', '-c', 'echo ready; exec sleep 3600'];
    const alpha = await startAndWait('unshare', holder, (l) => l === 'ready', 'stdout');
    children.push(alpha);
    const beta = await startAndWait('unshare', holder, (l) => l === 'ready', 'stdout');
    children.push(beta);
    say(bold(`$ ${commandLine(['unshare', ...holder])} &`));
    say(`   alpha: pid ${alpha.pid}`);
    say(bold(`$ ${commandLine(['unshare', ...holder])} &`));
    say(`   beta: pid ${beta.pid}\n`);

    say('2. The daemon: a learning switch in this process tree, controlled over a UNIX socket.');
    say(bold(`$ export USERNET_SOCKET=${shellQuote(socket)}`));
    say(bold(`$ usernet daemon --state-dir ${shellQuote(join(dir, 'state'))} &`));
    daemon = await startAndWait(process.execPath, [cli, 'daemon', '--state-dir', join(dir, 'state')], (l) => l.includes('"msg":"listening"'), 'stderr', cliEnv);
    say('   listening\n');

    say('3. Give each container a TAP port (eth0, created inside its namespace) on the default network:');
    say('   the next free address, a default route via the gateway 10.0.2.2, MTU, link up.');
    show('alpha', ['attach', '--pid', String(alpha.pid), '--name', 'alpha', '--configure']);
    show('beta', ['attach', '--pid', String(beta.pid), '--name', 'beta', '--configure']);
    const enter = (pid: number | undefined, ...cmd: string[]): string =>
      run('nsenter', ['--target', String(pid), '--user', '--net', '--preserve-credentials', ...cmd]);
    enter(alpha.pid, 'ip', '-4', 'addr', 'show', 'eth0');
    say('');

    say('4. alpha pings beta: ARP is flooded, the reply is switched by MAC, then ICMP both ways;');
    say('   then the gateway, which answers ARP and ping for its addresses itself.');
    enter(alpha.pid, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.0.2.101');
    enter(alpha.pid, 'ping', '-c', '2', '-i', '0.2', '-W', '2', '10.0.2.2');
    say('');

    say('5. Publish a port, like "docker run -p": beta serves HTTP on its port 80, published on the');
    say("   host's 127.0.0.1 at any free port. The server answers with the address it sees: a client on");
    say("   the host's loopback appears as the gateway 10.0.2.2 (any other client as its own address).");
    const server = [
      'nsenter', '--target', String(beta.pid), '--user', '--net', '--preserve-credentials',
      process.execPath, '-e', DEMO_SERVER_JS,
    ];
    say(bold(`$ ${commandLine(server)} &`));
    const web = await startAndWait(server[0] as string, server.slice(1), (l) => l === 'listening on 80', 'stdout');
    children.push(web);
    say('   listening on 80');
    show('', ['publish', 'beta', '127.0.0.1::80']);
    const listed = JSON.parse(usernet('publish', '--list', 'beta', '--json')) as Array<{ hostPort: number }>;
    const url = `http://127.0.0.1:${listed[0]?.hostPort}/`;
    if (onPath('curl')) run('curl', ['-sS', '--max-time', '5', url]);
    else run(process.execPath, ['-e', `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => process.stdout.write(t))`]);
    show('', ['conntrack', '-L', '-p', 'tcp']);
    say('');

    say('6. What the switch saw: ports with their counters, and the MAC table it learned.');
    show('', ['ports']);
    say('');
    show('', ['fdb']);
    say('');

    say('7. Clean up: detach (the TAPs disappear from the containers, with their published ports), stop everything.');
    show('', ['detach', 'alpha']);
    show('', ['detach', 'beta']);
    say('\nDone. Next: "sudo npm test" runs the test suite; docs/cli.md lists every command.');
    return 0;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
