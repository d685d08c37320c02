/**
 * Resets do not overtake data, through the NAT and through published ports, both ways: one end
 * sends 1 MiB and then resets (it closes with unread input, as a server that stops reading does);
 * the other end, which reads nothing until that reset has happened, must read every byte and
 * then get ECONNRESET — what it would get through the kernel. Both ends are python
 * (test/fixtures/tcp-reset.py), which reads straight from the kernel. The sender waits until
 * usernet has acknowledged every byte before it resets, so whatever the reader misses was lost
 * by usernet.
 *
 * Hosts: a rootless container (10.0.2.100, published 8090 → 90 and 8091 → 91) and the outside
 * namespace (198.51.100.2; the host is 198.51.100.1).
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, FIXTURES, Lines, Outside, PYTHON, cleanup, requireSandbox, startUntil } from './harness.js';

requireSandbox();

const FIXTURE = join(FIXTURES, 'tcp-reset.py');
const BYTES = 1024 * 1024;
const py = (...args: string[]): string[] => [PYTHON, '-u', FIXTURE, ...args];

interface TcpStats {
  tcp: Record<string, number>;
}

/** A reader that waits for "go" on stdin before it reads (its stdin is a pipe). */
async function reader(argv: string[], ready: string): Promise<{ child: ChildProcess; lines: Lines }> {
  const child = await startUntil(argv, (l) => l === ready, { stdio: ['pipe', 'pipe', 'pipe'] });
  return { child, lines: new Lines(child) };
}

describe('a reset after data, through usernet', () => {
  let daemon: Daemon;
  let out: Outside;
  let c: Container;

  beforeAll(async () => {
    out = await Outside.create();
    c = await Container.start();
    daemon = await Daemon.start();
    await daemon.cliOk(['attach', '--pid', String(c.pid), '--name', 'c', '--configure', '-p', '8090:90', '-p', '8091:91']);
  });

  afterAll(async () => {
    await cleanup();
  });

  async function stats(): Promise<Record<string, number>> {
    return (JSON.parse(await daemon.cliOk(['status', '--json'])) as TcpStats).tcp;
  }

  it('outbound: the container sends 1 MiB and resets; the outside server reads all of it, then ECONNRESET', async () => {
    const recv = await reader(out.argv(py('read-after', 'listen', '198.51.100.2', '7600')), 'ready');
    const sender = await startUntil(c.nsenter(py('send-reset', 'connect', '198.51.100.2', '7600', String(BYTES))), (l) => l === 'connected');
    const sent = await new Lines(sender).waitFor((l) => l.startsWith('reset ') || l.startsWith('error '), 60_000);
    expect(sent).toMatch(/^reset 1048576 [0-9a-f]{64}$/);
    recv.child.stdin?.write('go\n');
    const got = await recv.lines.waitFor((l) => /^\d+ /.test(l) || l.startsWith('error '), 60_000);
    expect(got).toBe(`${sent.slice('reset '.length)} reset`);
    expect((await stats()).resetDrainTimeoutsToHost).toBe(0);
  });

  it('outbound: the outside server sends 1 MiB and resets; the container reads all of it, then ECONNRESET', async () => {
    const sender = await out.startUntil(py('send-reset', 'listen', '198.51.100.2', '7601', String(BYTES)), (l) => l === 'ready');
    const recv = await reader(c.nsenter(py('read-after', 'connect', '198.51.100.2', '7601')), 'greeted');
    const sent = await new Lines(sender).waitFor((l) => l.startsWith('reset ') || l.startsWith('error '), 60_000);
    expect(sent).toMatch(/^reset 1048576 [0-9a-f]{64}$/);
    recv.child.stdin?.write('go\n');
    const got = await recv.lines.waitFor((l) => /^\d+ /.test(l) || l.startsWith('error '), 60_000);
    expect(got).toBe(`${sent.slice('reset '.length)} reset`);
    expect((await stats()).resetDrainTimeoutsToContainer).toBe(0);
  });

  it('published port: the container server sends 1 MiB and resets; the outside client reads all of it, then ECONNRESET', async () => {
    const sender = await c.startUntil(py('send-reset', 'listen', '0.0.0.0', '90', String(BYTES)), (l) => l === 'ready');
    const recv = await reader(out.argv(py('read-after', 'connect', Outside.HOST, '8090')), 'greeted');
    const sent = await new Lines(sender).waitFor((l) => l.startsWith('reset ') || l.startsWith('error '), 60_000);
    expect(sent).toMatch(/^reset 1048576 [0-9a-f]{64}$/);
    recv.child.stdin?.write('go\n');
    const got = await recv.lines.waitFor((l) => /^\d+ /.test(l) || l.startsWith('error '), 60_000);
    expect(got).toBe(`${sent.slice('reset '.length)} reset`);
    expect((await stats()).resetDrainTimeoutsToHost).toBe(0);
  });

  it('published port: the outside client sends 1 MiB and resets; the container server reads all of it, then ECONNRESET', async () => {
    const recv = await reader(c.nsenter(py('read-after', 'listen', '0.0.0.0', '91')), 'ready');
    const sender = await out.startUntil(py('send-reset', 'connect', Outside.HOST, '8091', String(BYTES)), (l) => l === 'connected');
    const sent = await new Lines(sender).waitFor((l) => l.startsWith('reset ') || l.startsWith('error '), 60_000);
    expect(sent).toMatch(/^reset 1048576 [0-9a-f]{64}$/);
    recv.child.stdin?.write('go\n');
    const got = await recv.lines.waitFor((l) => /^\d+ /.test(l) || l.startsWith('error '), 60_000);
    expect(got).toBe(`${sent.slice('reset '.length)} reset`);
    expect((await stats()).resetDrainTimeoutsToContainer).toBe(0);
  });
});
