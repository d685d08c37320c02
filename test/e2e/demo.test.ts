/**
 * The quick start's first command, as a new user runs it: `usernet demo` as an unprivileged user
 * completes every step — two rootless containers ping each other and the gateway, a published
 * port is fetched from the host's loopback — and leaves no process or temporary directory behind.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, asUser, cleanup, requireSandbox, run } from './harness.js';

requireSandbox();

describe('usernet demo', () => {
  afterAll(cleanup);

  it('runs every step as an unprivileged user and cleans up after itself', async () => {
    const demoDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith('usernet-demo-'));
    const before = demoDirs();
    const r = await run(asUser([process.execPath, CLI, 'demo']), { timeoutMs: 90_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('3 packets transmitted, 3 received');
    expect(r.stdout).toContain('2 packets transmitted, 2 received');
    // The published port: fetched from 127.0.0.1, the container saw the gateway; conntrack shows the DNAT.
    expect(r.stdout).toMatch(/^80\/tcp -> 127\.0\.0\.1:\d+$/m);
    expect(r.stdout).toMatch(/^hello from beta \(10\.0\.2\.101:80\); you are 10\.0\.2\.2:\d+$/m);
    expect(r.stdout).toMatch(/^tcp {6}6 \d+ \w+ src=127\.0\.0\.1 dst=127\.0\.0\.1 sport=\d+ dport=\d+ src=10\.0\.2\.101 dst=10\.0\.2\.2 sport=80 /m);
    expect(r.stdout).toMatch(/^Done\./m);
    expect(demoDirs()).toEqual(before);
    const left = await run(['pgrep', '-f', `${CLI} daemon --state-dir ${tmpdir()}/usernet-demo-`]);
    expect(left.stdout).toBe('');
  });
});
