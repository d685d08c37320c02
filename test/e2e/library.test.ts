/**
 * The library with real parts: a Lab on the system clock with real host sockets, a rootless
 * container's TAP attached to it next to a scripted container on a memory port. The container
 * pings the gateway and the scripted host, fetches a page from a server on the host's loopback
 * through the NAT (10.0.2.2), and the pcapng recorded from both ports reads in tshark with each
 * port as its own interface.
 */
import { createServer, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/lab/lab.js';
import type { LabNetwork } from '../../src/lab/lab.js';
import type { ScriptedHost } from '../../src/lab/scripted-host.js';
import { Container, cleanup, ping, requireSandbox, rootTempDir, runOk } from './harness.js';

requireSandbox();

describe('library: a Lab with a real TAP, real host sockets and a scripted container', () => {
  let lab: Lab;
  let net: LabNetwork;
  let c1: Container;
  let scripted: ScriptedHost;
  let server: Server;
  let port = 0;

  beforeAll(async () => {
    server = createServer((req, res) => res.end(`hello ${req.url}\n`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    lab = new Lab({ host: 'system' });
    net = lab.addNetwork();
    c1 = await Container.start();
    net.attachTap({ name: 'c1', pid: c1.pid });
    scripted = net.addHost('s1', { address: '10.0.2.50/24', gateway: '10.0.2.2' });
  });

  afterAll(async () => {
    await lab?.close();
    await c1?.stop();
    server?.close();
    await cleanup();
  });

  it('the container pings the gateway and the scripted host; the scripted host pings back', async () => {
    expect(await ping(c1, '10.0.2.2', 2)).toBe(2);
    expect(await ping(c1, '10.0.2.50', 2)).toBe(2);
    const rtt = await scripted.ping('10.0.2.100', { timeoutMs: 5000 });
    expect(rtt).toBeGreaterThanOrEqual(0);
    const fdb = net.fdb().map((e) => e.port);
    expect(fdb).toEqual(expect.arrayContaining(['c1', 's1']));
    expect(net.leases().some((l) => l.ip === '10.0.2.100' && l.kind === 'attachment')).toBe(true);
  });

  it('the container reaches the host loopback through the NAT, and the recording reads in tshark', async () => {
    const rec = lab.record({ format: 'pcapng' });
    const out = await c1.execOk(['curl', '-sS', '--max-time', '10', `http://10.0.2.2:${port}/lib`]);
    expect(out).toBe('hello /lib\n');
    expect(lab.conntrack().some((e) => e.proto === 'tcp' && e.original.dport === port)).toBe(true);
    const dir = rootTempDir();
    const file = join(dir, 'lab.pcapng');
    writeFileSync(file, rec.stop());
    const fields = await runOk(['tshark', '-r', file, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'tcp.dstport', '-Y', 'tcp.flags.syn == 1 && tcp.flags.ack == 0']);
    expect(fields.trim().split('\n')).toContain(`c1\t${port}`);
  });
});
