/**
 * `usernet capture` end to end: a real ping through real TAPs captured by the real CLI, stopped
 * with SIGINT right after the ping — every frame that crossed the port is in the file — and 20
 * capture clients that never read while a container moves data through the port: the daemon's
 * memory stays bounded (RSS from /proc/PID/status) and capture_overrun counts each missed frame
 * once, not once per session.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readPcap } from '../../src/packet/pcap.js';
import { CLI, Container, Daemon, asUser, cleanup, exited, ping, requireSandbox, rssBytes, runOk, tcpTransfer, track, userTempDir } from './harness.js';

requireSandbox();

const MiB = 1024 * 1024;

interface PortCounters {
  name: string;
  kind?: string;
  counters: { rx_frames: number; tx_frames: number; drops: Record<string, number> };
}

describe('usernet capture', () => {
  let daemon: Daemon;
  let a: Container;
  let b: Container;

  beforeAll(async () => {
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start();
    await daemon.attach(a, 'alpha', '10.0.2.11/24');
    await daemon.attach(b, 'beta', '10.0.2.12/24');
    // ARP resolved both ways, so the captured ping below is ICMP only.
    expect(await ping(a, '10.0.2.12', 1)).toBe(1);
  });

  afterAll(cleanup);

  it('on SIGINT writes every frame of a ping sent just before it, then exits 0', async () => {
    const file = join(userTempDir(), 'sigint.pcap');
    const since = daemon.logs.length;
    const argv = asUser([process.execPath, CLI, 'capture', '--port', 'alpha', '-w', file, '--socket', daemon.socket]);
    const cli = track(spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stderr = '';
    cli.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await daemon.waitForLog((l) => l.msg === 'capture started', 10_000, since);
    // Three echoes 10 ms apart: all six frames are still in the daemon's staging buffer (flushed
    // every 50 ms) when the signal comes.
    const r = await a.exec(['ping', '-c', '3', '-i', '0.01', '-W', '2', '10.0.2.12'], { timeoutMs: 20_000 });
    expect(r.stdout).toMatch(/3 received/);
    cli.kill('SIGINT');
    await exited(cli);
    expect(cli.exitCode).toBe(0);
    const pcap = readPcap(readFileSync(file));
    const fields = await runOk(['tshark', '-r', file, '-T', 'fields', '-e', 'icmp.type', '-e', 'icmp.seq']);
    const echoes = fields.split('\n').filter(Boolean);
    expect(echoes.filter((l) => l.startsWith('8\t')).length).toBe(3);
    expect(echoes.filter((l) => l.startsWith('0\t')).length).toBe(3);
    const ended = await daemon.waitForLog((l) => l.msg === 'capture ended', 10_000, since);
    expect(ended.frames).toBe(pcap.records.length);
    expect(ended.dropped).toBe(0);
    expect(stderr).toBe(`capture: ${pcap.records.length} frames (${readFileSync(file).length} bytes) written to ${file}\n`);
  });

  it('20 clients that never read: daemon memory stays bounded, capture_overrun counts each frame once', async () => {
    const since = daemon.logs.length;
    const logged = (msg: string): number => daemon.logs.slice(since).filter((l) => l.msg === msg).length;
    const before = (await daemon.containerPorts<PortCounters>()).find((p) => p.name === 'alpha') as PortCounters;
    const rssBefore = rssBytes(daemon.pid);
    const clients: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = connect(daemon.socket);
      s.on('error', () => {});
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      s.write(`${JSON.stringify({ id: 1, method: 'capture', params: { port: 'alpha' } })}\n`);
      // Reads the response line and nothing after it: the pcap stream is never consumed.
      await new Promise<void>((resolve) => s.once('data', () => resolve()));
      s.pause();
      clients.push(s);
    }
    await daemon.waitForLog((l) => l.msg === 'capture started' && logged('capture started') >= 20, 10_000, since);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(daemon.pid))), 100);
    try {
      const { sent, received } = await tcpTransfer(a, b, '10.0.2.12', 512 * MiB, 5002);
      expect(received).toBe(sent);
      expect(await ping(a, '10.0.2.12', 20)).toBe(20);
    } finally {
      clearInterval(sampler);
    }
    const after = (await daemon.containerPorts<PortCounters>()).find((p) => p.name === 'alpha') as PortCounters;
    const crossed = after.counters.rx_frames + after.counters.tx_frames - (before.counters.rx_frames + before.counters.tx_frames);
    const overrun = (after.counters.drops.capture_overrun ?? 0) - (before.counters.drops.capture_overrun ?? 0);
    for (const s of clients) s.destroy();
    await daemon.waitForLog((l) => l.msg === 'capture ended' && logged('capture ended') >= 20, 10_000, since);
    const sessions = daemon.logs.slice(since).filter((l) => l.msg === 'capture ended');
    process.stderr.write(`capture e2e: RSS before ${(rssBefore / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB with 20 stalled clients; ${crossed} frames crossed alpha, capture_overrun +${overrun}, per session dropped ${sessions.map((l) => l.dropped).join(',')}\n`);
    expect(overrun).toBeGreaterThan(0);
    // Once per frame: never more than the frames that crossed the port (it was 18x more).
    expect(overrun).toBeLessThanOrEqual(crossed);
    expect(sessions).toHaveLength(20);
    for (const l of sessions) {
      expect(l.dropped as number).toBeGreaterThan(0);
      expect(l.dropped as number).toBeLessThanOrEqual(overrun);
    }
    // 20 sessions of at most ~1.25 MiB each, plus slack for the heap's own growth (it was +178 MiB).
    expect(peak - rssBefore).toBeLessThanOrEqual(64 * MiB);
  });
});
