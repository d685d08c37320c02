/**
 * Podman 4 (Debian's) runs usernet-slirp4netns in place of slirp4netns, unchanged: rootless, with
 * the flags it always passes (--enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4
 * --netns-type=path …), a port published through the API (port_handler=slirp4netns), and the
 * program gone when the container ends. No image registry is reachable: the container's root is
 * a directory holding busybox-static (`--rootfs`).
 *
 * Two things of this machine kind are set up in the sandbox's own mount namespace first (see
 * ../shared/reference/slirp4netns-clients.md): crun refuses the hybrid cgroup layout, so
 * /sys/fs/cgroup/unified is unmounted (in the sandbox only) and Podman runs with cgroups
 * disabled. Podman reads the sandbox's /etc/resolv.conf (127.0.0.1) and is given --dns, so the
 * container never names a real resolver.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lines, Outside, PROJECT, asUser, cleanup, exited, processExit, requireSandbox, run, runOk, testUser, track } from './harness.js';

requireSandbox();

const SLIRP = join(PROJECT, 'bin', 'usernet-slirp4netns');

describe('Podman with usernet-slirp4netns', () => {
  let dir = '';
  let env: NodeJS.ProcessEnv = {};
  let out: Outside;
  const undo: Array<() => void> = [];

  beforeAll(async () => {
    out = await Outside.create();
    if (spawnSync('mountpoint', ['-q', '/sys/fs/cgroup/unified']).status === 0) await runOk(['umount', '/sys/fs/cgroup/unified']);
    const u = testUser();
    // Short: Podman's API socket path ($XDG_RUNTIME_DIR/libpod/tmp/<64 hex>.net) must fit sun_path.
    dir = mkdtempSync(join(tmpdir(), 'upm-'));
    undo.push(() => rmSync(dir, { recursive: true, force: true }));
    const home = join(dir, 'home');
    const conf = join(home, '.config', 'containers');
    const runtime = join(dir, 'r');
    const rootfs = join(dir, 'rootfs');
    for (const d of [conf, runtime, join(rootfs, 'bin'), ...['proc', 'sys', 'dev', 'etc', 'tmp'].map((x) => join(rootfs, x))]) mkdirSync(d, { recursive: true });
    copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
    chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
    for (const c of ['sh', 'nc', 'ip', 'echo', 'cat', 'httpd']) symlinkSync('busybox', join(rootfs, 'bin', c));
    mkdirSync(join(rootfs, 'www'));
    writeFileSync(join(rootfs, 'www', 'index.html'), 'served\n');
    writeFileSync(
      join(conf, 'containers.conf'),
      `[containers]\ncgroups = "disabled"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nnetwork_cmd_path = "${SLIRP}"\n`,
    );
    writeFileSync(join(conf, 'storage.conf'), '[storage]\ndriver = "vfs"\n');
    await runOk(['chown', '-R', `${u.uid}:${u.gid}`, dir]);
    chownSync(dir, u.uid, u.gid);
    chmodSync(runtime, 0o700);
    env = { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: runtime };
  });

  afterAll(async () => {
    // Podman's pause process (catatonit) outlives `podman run`: it goes with the test.
    spawnSync('pkill', ['-u', String(testUser().uid), '-x', 'catatonit']);
    for (const f of undo.reverse()) f();
    await cleanup();
  });

  it('runs a container on it: the TAP configured, a port published through the API, nothing left after', async () => {
    // busybox httpd binds its port before it daemonizes, so "listening" is printed only once the
    // port is open; the container then waits for a line on stdin, which the test sends at the end.
    const script = 'ip -4 addr show tap0; ip route; httpd -p 80 -h /www && echo listening; read done; echo container-done';
    const argv = asUser([
      'podman', 'run', '--rm', '-i', '--dns=10.0.2.3', '--network', 'slirp4netns:port_handler=slirp4netns', '-p', '18210:80',
      '--rootfs', join(dir, 'rootfs'), '/bin/sh', '-c', script,
    ]);
    const podman = track(spawn(argv[0] as string, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    podman.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    podman.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const lines = new Lines(podman);
    await Promise.race([
      lines.waitFor((l) => l === 'listening', 60_000),
      exited(podman).then(() => {
        throw new Error(`the container did not come up:\n${stdout}\n${stderr}`);
      }),
    ]);
    expect(stdout).toMatch(/default via 10\.0\.2\.2/);
    expect(stdout).toMatch(/inet 10\.0\.2\.100\/24/);
    // What Podman started: usernet-slirp4netns with Podman's usual flags.
    const cmdline = (await run(['pgrep', '-af', 'usernet-slirp4netns'])).stdout;
    expect(cmdline).toMatch(/--enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4/);
    const slirpPid = Number((await run(['pgrep', '-f', SLIRP])).stdout.trim().split('\n')[0]);
    // The published port, from the outside namespace.
    expect((await out.exec(['curl', '-sS', '-m', '10', `http://${Outside.HOST}:18210/`])).stdout).toBe('served\n');
    podman.stdin?.end('done\n');
    await exited(podman);
    expect(podman.exitCode, stderr).toBe(0);
    expect(stdout).toContain('container-done');
    // The container ended: Podman hung up the exit fd, and usernet-slirp4netns is gone with its forward.
    await processExit(slirpPid);
    expect((await run(['pgrep', '-f', SLIRP])).stdout).toBe('');
    expect((await run(['ss', '-Hltn', 'sport = :18210'])).stdout.trim()).toBe('');
  });
});
