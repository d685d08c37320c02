/**
 * `usernet daemon --outbound-addr IP` with an address this host does not have refuses to start —
 * one line, exit 1, no pid file, no control socket — instead of starting and then failing every
 * outbound connection; with an address the host has, it starts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, Daemon, Outside, asUser, cleanup, requireSandbox, run, userTempDir } from './harness.js';

requireSandbox();

describe('daemon --outbound-addr', () => {
  afterAll(async () => {
    await cleanup();
  });

  it('refuses an address that is not one of this host’s: one line, exit 1, nothing left behind', async () => {
    const dir = userTempDir();
    const socket = join(dir, 'usernet.sock');
    const stateDir = join(dir, 'state');
    const r = await run(asUser([process.execPath, CLI, 'daemon', '--socket', socket, '--state-dir', stateDir, '--outbound-addr', '203.0.113.9']), { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: --outbound-addr 203.0.113.9 is not an address of this host (EADDRNOTAVAIL)\n');
    expect(r.stdout).toBe('');
    expect(existsSync(socket), 'no control socket').toBe(false);
    expect(existsSync(join(stateDir, 'daemon.pid')), 'no pid file').toBe(false);
    expect(existsSync(stateDir) ? readdirSync(stateDir) : [], 'nothing in the state directory').toEqual([]);
  });

  it('starts with an address the host has', async () => {
    await Outside.create(); // gives the host 198.51.100.1
    const d = await Daemon.start({ args: ['--outbound-addr', Outside.HOST] });
    expect((await d.cliOk(['status'])).length).toBeGreaterThan(0);
    await d.kill();
  });
});
