/**
 * Two rootless containers on one usernet switch: attach by PID, ping, the MAC table, 1 GiB of TCP
 * with matching checksums, a pcap capture that tshark reads cleanly, and detach leaving no fd.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, Container, Daemon, cleanup, ping, requireSandbox, run, runOk, tcpTransfer, userTempDir, asUser } from './harness.js';
import { readPcap } from '../../src/packet/pcap.js';

requireSandbox();

describe('two rootless containers on the switch', () => {
  let daemon: Daemon;
  let a: Container;
  let b: Container;

  beforeAll(async () => {
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start();
    expect(await daemon.attach(a, 'alpha', '10.0.2.11/24')).toBe('alpha');
    expect(await daemon.attach(b, 'beta', '10.0.2.12/24')).toBe('beta');
  });

  afterAll(cleanup);

  it('runs the daemon as the unprivileged user', () => {
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))?.[1]);
    expect(uid).toBeGreaterThan(0);
    expect(statSync(daemon.socket).mode & 0o777).toBe(0o600);
  });

  it('creates a configured, persistent TAP with offloads in each container', async () => {
    const link = await a.link();
    expect(link.linkinfo?.info_kind).toBe('tun');
    expect(link.mtu).toBe(1500);
    expect(link.flags).toContain('UP');
    // Docker's convention: 02:42 + the address.
    expect(link.address).toBe('02:42:0a:00:02:0b');
    const details = await a.execOk(['ip', '-d', 'link', 'show', 'eth0']);
    expect(details).toMatch(/tun type tap pi off vnet_hdr on persist on/);
    expect(await a.execOk(['ip', '-4', 'addr', 'show', 'eth0'])).toContain('10.0.2.11/24');
  });

  it('lets the containers ping each other', async () => {
    expect(await ping(a, '10.0.2.12')).toBe(3);
    expect(await ping(b, '10.0.2.11')).toBe(3);
  });

  it('lists both MACs on the right ports in `usernet fdb`', async () => {
    const macA = (await a.link()).address;
    const macB = (await b.link()).address;
    const text = await daemon.cliOk(['fdb']);
    expect(text).toMatch(new RegExp(`^${macA} dev alpha master default age [0-9.]+s$`, 'm'));
    expect(text).toMatch(new RegExp(`^${macB} dev beta master default age [0-9.]+s$`, 'm'));
    const json = await daemon.cliJson<Array<{ mac: string; port: string }>>(['fdb']);
    expect(json).toEqual(expect.arrayContaining([expect.objectContaining({ mac: macA, port: 'alpha' }), expect.objectContaining({ mac: macB, port: 'beta' })]));
  });

  it('shows ports with counters', async () => {
    const ports = await daemon.containerPorts<{ name: string; state: string; offloads: boolean; counters: { rx_frames: number; tx_frames: number } } & { kind?: string }>();
    expect(ports.map((p) => p.name).sort()).toEqual(['alpha', 'beta']);
    for (const p of ports) {
      expect(p.state).toBe('up');
      expect(p.offloads).toBe(true);
      expect(p.counters.rx_frames).toBeGreaterThan(0);
      expect(p.counters.tx_frames).toBeGreaterThan(0);
    }
    expect(await daemon.cliOk(["ports"])).toMatch(/^NAME\s+NETWORK\s+STATE\s+IFNAME/);
  });

  it('moves 1 GiB of TCP between them with the same sha256 at both ends', async () => {
    const { sent, received } = await tcpTransfer(a, b, '10.0.2.12', 1024 * 1024 * 1024, 5001);
    expect(sent).toMatch(/^1073741824 [0-9a-f]{64}$/);
    expect(received).toBe(sent);
  });

  it('captures a ping to a pcap file that tshark reads without malformed packets', async () => {
    const dir = userTempDir();
    const file = join(dir, 'ping.pcap');
    // 6 frames: 3 echo requests out of alpha, 3 replies in (ARP is cached by now; if not, the
    // count still ends the capture and the check below looks for the ICMP).
    const capture = daemon.cli(['capture', '--port', 'alpha', '-w', file, '-c', '6']);
    await daemon.waitForLog((l) => l.msg === 'capture started', 10_000, 0);
    expect(await ping(a, '10.0.2.12')).toBe(3);
    const r = await capture;
    expect(r.code).toBe(0);
    const pcap = readPcap(readFileSync(file));
    expect(pcap.linktype).toBe(1);
    expect(pcap.records.length).toBe(6);
    const fields = await runOk(['tshark', '-r', file, '-T', 'fields', '-e', 'icmp.type', '-e', '_ws.malformed', '-e', '_ws.expert.severity']);
    const icmpTypes = fields.split('\n').filter(Boolean).map((l) => l.split('\t')[0]);
    expect(icmpTypes.filter((t) => t === '8').length).toBeGreaterThanOrEqual(2);
    expect(icmpTypes.filter((t) => t === '0').length).toBeGreaterThanOrEqual(2);
    const expert = await run(['tshark', '-r', file, '-z', 'expert,error', '-q']);
    expect(expert.stdout).not.toMatch(/Malformed/i);
    expect(fields).not.toMatch(/\t1\b/); // no _ws.malformed
  });

  it('detach removes the TAP from the container and leaves no fd in the daemon', async () => {
    expect(daemon.tunFds().map((f) => f.iff).sort()).toEqual(['eth0', 'eth0']);
    await daemon.cliOk(['detach', 'beta']);
    expect(daemon.tunFds().length).toBe(1);
    const r = await b.exec(['ip', 'link', 'show', 'eth0']);
    expect(r.code).not.toBe(0);
    const ports = await daemon.containerPorts<{ name: string } & { kind?: string }>();
    expect(ports.map((p) => p.name)).toEqual(['alpha']);
    // The state file no longer has it either.
    const state = JSON.parse(readFileSync(join(daemon.stateDir, 'state.json'), 'utf8')) as { attachments: Array<{ name: string }> };
    expect(state.attachments.map((x) => x.name)).toEqual(['alpha']);
  });

  it('refuses what it cannot do with a clear one-line error', async () => {
    const dup = await daemon.cli(['attach', '--pid', String(a.pid), '--name', 'again']);
    expect(dup.code).toBe(1);
    expect(dup.stderr.trim()).toBe('usernet: eth0 in that container is already attached as port alpha');
    const taken = await daemon.cli(['attach', '--pid', String(b.pid), '--name', 'alpha']);
    expect(taken.stderr.trim()).toBe('usernet: a port named alpha already exists');
    const nopid = await daemon.cli(['attach', '--pid', '999999']);
    expect(nopid.stderr.trim()).toBe('usernet: no process with PID 999999');
    const badFlag = await daemon.cli(['attach', '--pid', String(b.pid), '--frobnicate']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr.trim()).toBe('usernet: attach: unknown option --frobnicate (see usernet attach --help)');
    const badMtu = await daemon.cli(['attach', '--pid', String(b.pid), '--mtu', '70000']);
    expect(badMtu.code).toBe(2);
    const badMac = await daemon.cli(['attach', '--pid', String(b.pid), '--mac', 'zz']);
    expect(badMac.code).toBe(2);
    expect(badMac.stderr.trim()).toBe('usernet: attach: invalid MAC address "zz" (expected six hex bytes like 02:42:0a:00:02:64)');
    const badIp = await daemon.cli(['attach', '--pid', String(b.pid), '--configure', '--ip', '10.0.9.300/24']);
    expect(badIp.code).toBe(2);
    const nodetach = await daemon.cli(['detach', 'nosuch']);
    expect(nodetach.stderr.trim()).toBe('usernet: no port named nosuch (see usernet ports)');
    // Someone else's container: root's namespace is not the test user's to enter.
    const rootful = await Container.start({ rootless: false });
    const foreign = await daemon.cli(['attach', '--pid', String(rootful.pid)]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toMatch(/EPERM|permission|not allowed/i);
    expect(foreign.stderr.trim().split('\n').length).toBe(1);
    // And the daemon is still fine.
    expect(await ping(a, '10.0.2.11', 1)).toBe(1);
    expect(existsSync(daemon.socket)).toBe(true);
  });

  it('a second daemon on the same socket refuses to start', async () => {
    const r = await run(asUser([process.execPath, CLI, 'daemon', '--socket', daemon.socket, '--state-dir', join(daemon.dir, 'other-state')]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('another usernet daemon is already listening on');
  });
});
