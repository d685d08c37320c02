/**
 * Offload adaptation between real kernels: a container with virtio-net offloads (it sends 64 KiB
 * TSO frames with partial checksums) talks to one without (which must get MTU-sized frames with
 * complete checksums, cut by usernet in software); and sizes judged against the egress port.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, cleanup, ping, requireSandbox, tcpTransfer } from './harness.js';

requireSandbox();

type Ports = Array<{ name: string; kind?: string; offloads: boolean; counters: { rx_frames: number; tx_frames: number; drops: Record<string, number> } }>;

describe('a port with offloads and a port without', () => {
  let daemon: Daemon;
  let fast: Container;
  let plain: Container;

  beforeAll(async () => {
    [fast, plain] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start();
    await daemon.attach(fast, 'fast', '10.0.2.11/24');
    await daemon.attach(plain, 'plain', '10.0.2.12/24', ['--offload=false']);
  });

  afterAll(cleanup);

  it('opens the second TAP without a virtio-net header', async () => {
    expect(await plain.execOk(['ip', '-d', 'link', 'show', 'eth0'])).toMatch(/vnet_hdr off/);
    expect(await fast.execOk(['ip', '-d', 'link', 'show', 'eth0'])).toMatch(/vnet_hdr on/);
    const ports = await daemon.containerPorts<Ports[number]>();
    expect(ports.map((p) => [p.name, p.offloads])).toEqual([
      ['fast', true],
      ['plain', false],
    ]);
  });

  it('segments TSO frames in software towards the plain port: 256 MiB arrive intact', async () => {
    const before = await daemon.containerPorts<Ports[number]>();
    const { sent, received } = await tcpTransfer(fast, plain, '10.0.2.12', 256 * 1024 * 1024, 5002);
    expect(sent).toMatch(/^268435456 [0-9a-f]{64}$/);
    expect(received).toBe(sent);
    const after = await daemon.containerPorts<Ports[number]>();
    const fastRx = after[0].counters.rx_frames - before[0].counters.rx_frames;
    const plainTx = after[1].counters.tx_frames - before[1].counters.tx_frames;
    // The sender's kernel handed over super-frames; the receiver got many more, smaller ones.
    expect(plainTx).toBeGreaterThan(fastRx * 2);
    expect(after[1].counters.drops.segmentation).toBe(0);
    // The receiving kernel saw no checksum errors.
    const snmp = await plain.execOk(['cat', '/proc/net/snmp']);
    const tcp = snmp.split('\n').filter((l) => l.startsWith('Tcp:'));
    const header = tcp[0].split(/\s+/);
    const values = tcp[1].split(/\s+/);
    expect(Number(values[header.indexOf('InCsumErrors')])).toBe(0);
  });

  it('carries the other direction with an empty virtio-net header: 64 MiB intact', async () => {
    const { sent, received } = await tcpTransfer(plain, fast, '10.0.2.11', 64 * 1024 * 1024, 5003);
    expect(received).toBe(sent);
  });
});

describe('sizes are judged against the egress port', () => {
  afterAll(cleanup);

  it('drops a frame too big for the receiving port and counts it there', async () => {
    const [big, small] = await Promise.all([Container.start(), Container.start()]);
    const daemon = await Daemon.start();
    await daemon.attach(big, 'big', '10.0.2.11/24', ['--mtu', '9000']);
    await daemon.attach(small, 'small', '10.0.2.12/24', ['--mtu', '1500']);
    expect(await ping(big, '10.0.2.12', 1)).toBe(1);
    // 4000 bytes of ICMP with DF: fits big's MTU, not small's.
    const r = await big.exec(['ping', '-c', '2', '-i', '0.2', '-W', '1', '-M', 'do', '-s', '4000', '10.0.2.12']);
    expect(r.stdout).toMatch(/0 received/);
    const ports = await daemon.containerPorts<Ports[number]>();
    expect(ports.find((p) => p.name === 'small')?.counters.drops.mtu_exceeded).toBe(2);
    // Within the smaller MTU everything passes.
    const ok = await big.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', '1400', '10.0.2.12']);
    expect(ok.stdout).toMatch(/2 received/);
  });
});
