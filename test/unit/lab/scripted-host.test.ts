import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import { SeededRandom } from '../../../src/platform/random.js';
import { ScriptedHost } from '../../../src/lab/scripted-host.js';
import { FrameProbe } from '../../../src/lab/probe.js';
import { makeNetwork } from '../helpers/nat-rig.js';
import type { Network } from '../../../src/gateway/network.js';

/** Runs the virtual clock until `p` settles (or `maxMs` of virtual time passes). */
async function run<T>(clock: VirtualClock, p: Promise<T>, maxMs = 30_000): Promise<T> {
  let done = false;
  const q = p.finally(() => {
    done = true;
  });
  const end = clock.now() + maxMs;
  while (!done) {
    for (let i = 0; i < 5 && !done; i++) await null;
    if (done) break;
    if (clock.nextDue > end) throw new Error(`still pending after ${maxMs} ms of virtual time`);
    clock.step();
  }
  return q;
}

describe('ScriptedHost against a real gateway', () => {
  const nets: Network[] = [];
  afterEach(async () => {
    for (const n of nets.splice(0)) await n.close();
  });

  it('gets a lease, answers ARP, pings the gateway and a neighbour', async () => {
    const clock = new VirtualClock();
    const random = new SeededRandom(1);
    const net = makeNetwork({ name: 'default', subnet: '10.0.2.0/24' }, [], pino({ level: 'silent' }));
    nets.push(net);
    const pa = new MemoryPort({ name: 'a', record: false }).plug(net.sw);
    const pb = new MemoryPort({ name: 'b', record: false }).plug(net.sw);
    const a = new ScriptedHost(pa, { clock, random });
    const b = new ScriptedHost(pb, { clock, random });
    const probe = new FrameProbe(pa, clock, { direction: 'in' });
    const lease = await run(clock, a.dhcp());
    expect(lease).toMatchObject({ ip: '10.0.2.100', prefix: 24, router: '10.0.2.2', dns: ['10.0.2.3'] });
    expect(probe.expect((f) => f.dhcp?.messageType === 1).summary).toContain('DHCP DISCOVER');
    expect(probe.expect((f) => f.dhcp?.messageType === 3).summary).toContain('DHCP REQUEST');
    const lb = await run(clock, b.dhcp());
    expect(lb.ip).toBe('10.0.2.101');
    const rtt = await run(clock, a.ping('10.0.2.2'));
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(probe.expect((f) => f.arp?.op === 'request').arp?.targetIp).toBe('10.0.2.2');
    expect(probe.expect((f) => f.icmp?.type === 8).ipv4?.dst).toBe('10.0.2.2');
    await run(clock, a.ping('10.0.2.101'));
    probe.ignore((f) => f.arp !== undefined);
    expect(probe.expect((f) => f.icmp?.type === 8).ipv4?.dst).toBe('10.0.2.101');
    probe.expectNothing({ withinMs: 100 });
    expect(() => probe.expect((f) => f.icmp?.type === 8, { withinMs: 50 })).toThrow(/no matching frame within 50 ms; nothing queued/);
  });

  it('TCP between two scripted hosts: data both ways, FIN both ways', async () => {
    const clock = new VirtualClock();
    const random = new SeededRandom(2);
    const net = makeNetwork({ name: 'default', subnet: '10.0.2.0/24' }, [], pino({ level: 'silent' }));
    nets.push(net);
    const a = new ScriptedHost(new MemoryPort({ name: 'a', record: false }).plug(net.sw), { clock, random, address: '10.0.2.10/24', gateway: '10.0.2.2' });
    const b = new ScriptedHost(new MemoryPort({ name: 'b', record: false }).plug(net.sw), { clock, random, address: '10.0.2.11/24', gateway: '10.0.2.2' });
    const big = Buffer.alloc(200_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    b.listen(7, (c) => {
      c.onData = () => {
        if (c.receivedLength === big.length) {
          c.write(Buffer.from('got it'));
          c.end();
        }
      };
    });
    const c = await run(clock, a.connect('10.0.2.11', 7));
    c.write(big);
    const reply = await run(clock, c.readToEnd());
    expect(reply.toString()).toBe('got it');
    c.end();
    await run(clock, c.closed());
    expect(c.state).toBe('CLOSED');
  });

  it('a connection to a closed port is refused', async () => {
    const clock = new VirtualClock();
    const random = new SeededRandom(3);
    const net = makeNetwork({ name: 'default', subnet: '10.0.2.0/24' }, [], pino({ level: 'silent' }));
    nets.push(net);
    const a = new ScriptedHost(new MemoryPort({ name: 'a', record: false }).plug(net.sw), { clock, random, address: '10.0.2.10/24' });
    new ScriptedHost(new MemoryPort({ name: 'b', record: false }).plug(net.sw), { clock, random, address: '10.0.2.11/24' });
    await expect(run(clock, a.connect('10.0.2.11', 9))).rejects.toThrow(/refused \(reset\)/);
  });
});

describe('ScriptedHost through the NAT (a Lab)', () => {
  it('sends many MSS worth through the NAT with every byte in order, both ways, and closes cleanly', async () => {
    const { Lab } = await import('../../../src/lab/lab.js');
    const lab = new Lab({ seed: 11 });
    const srv = lab.world.host('203.0.113.10').listenTcp(80, (s) => s.on('data', (d: Buffer) => s.write(d)));
    const c1 = lab.addNetwork().addHost('c1');
    await lab.run(c1.dhcp());
    const conn = await lab.run(c1.connect('203.0.113.10', 80));
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 11)) & 0xff;
    conn.write(payload);
    await lab.run(conn.readBytes(payload.length));
    expect(srv.connections[0].received().equals(payload)).toBe(true);
    expect(conn.received.equals(payload)).toBe(true);
    conn.end();
    srv.connections[0].end();
    await lab.run(conn.closed());
    expect(lab.conntrack().map((e) => e.state)).toEqual(['TIME_WAIT']);
    await lab.close();
  });

  it('an ICMP port unreachable ends a udpRequest, a refused or unreachable connect says which', async () => {
    const { Lab } = await import('../../../src/lab/lab.js');
    const lab = new Lab({ seed: 12, outside: { unreachable: 'EHOSTUNREACH', unreachableAfterMs: 500 } });
    lab.world.host('203.0.113.10');
    const c1 = lab.addNetwork().addHost('c1');
    await lab.run(c1.dhcp());
    await expect(lab.run(c1.udpRequest('203.0.113.10', 9999, 'anyone?', { timeoutMs: 10_000 }))).rejects.toThrow(/203\.0\.113\.10:9999 answered ICMP port unreachable/);
    await expect(lab.run(c1.connect('203.0.113.10', 81))).rejects.toThrow(expect.objectContaining({ code: 'ERR_SCRIPTED_REFUSED', message: expect.stringContaining('refused (reset)') }));
    await expect(lab.run(c1.connect('203.0.113.77', 80))).rejects.toThrow(/answered ICMP host unreachable/);
    expect(() => c1.sendUdp('203.0.113.10', 70_000, 'x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => c1.connect('203.0.113.10', 0)).toThrow(/not a port number/);
    await lab.close();
    expect(() => lab.addNetwork()).toThrow(expect.objectContaining({ code: 'ERR_LAB_CLOSED' }));
  });

  it('refuses bad lab inputs with coded errors', async () => {
    const { Lab } = await import('../../../src/lab/lab.js');
    expect(() => new Lab({ seed: Number('') + NaN })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => new Lab({ dnsUpstreams: ['nonsense'] })).toThrow(/invalid DNS upstream "nonsense"/);
    const lab = new Lab();
    const net = lab.addNetwork();
    const c1 = net.addHost('c1');
    await expect(net.publish(c1, '8080:80')).rejects.toThrow(/c1 has no address yet/);
    await expect(net.publish('web', '8080:80')).rejects.toThrow(/"web" is not an IPv4 address/);
    const [published] = await lab.run(net.publish('10.0.2.50', '127.0.0.1:8080:80'));
    expect(JSON.parse(JSON.stringify(published))).toMatchObject({ mapping: { proto: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80 }, target: { network: 'default', container: 'default/10.0.2.50' }, listening: true });
    expect(() => net.addHost('c1')).toThrow(expect.objectContaining({ code: 'ERR_NAME_IN_USE' }));
    expect(() => lab.world.host('x')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    await lab.close();
  });
});

describe('the NAT builds its answers in the egress queue', () => {
  it('a 2 MB download limited by the container window is copied once (into the frame), not again by the queue', async () => {
    const { Lab } = await import('../../../src/lab/lab.js');
    const lab = new Lab({ seed: 13 });
    const body = Buffer.alloc(2_000_000, 0x61);
    lab.world.host('203.0.113.10').listenTcp(80, (s) => s.on('data', () => s.end(body)));
    const net = lab.addNetwork();
    const c1 = net.addHost('c1');
    await lab.run(c1.dhcp());
    const conn = await lab.run(c1.connect('203.0.113.10', 80));
    const egress = net.network.sw.egress.stats;
    const before = { ...egress };
    conn.write('GET\n');
    const got = await lab.run(conn.readToEnd());
    expect(got.equals(body)).toBe(true);
    // The data segments the container's ACKs let out were built in place in the queue.
    expect(egress.inPlace - before.inPlace).toBeGreaterThan(20);
    expect(egress.copiedBytes - before.copiedBytes).toBeLessThan(body.length / 20);
    await lab.close();
  });
});

describe('DNS through the gateway, to an outside server', () => {
  it('resolves through 10.0.2.3 and the forwarder; NXDOMAIN and no-server are clear errors', async () => {
    const { Lab } = await import('../../../src/lab/lab.js');
    const lab = new Lab({ seed: 14, dnsUpstreams: ['203.0.113.53'] });
    const server = lab.world.host('203.0.113.53').serveDns({ 'www.example.org': ['203.0.113.10', '203.0.113.11'] });
    const c1 = lab.addNetwork().addHost('c1');
    await expect(c1.resolve('www.example.org')).rejects.toThrow(/no DNS server/);
    await lab.run(c1.dhcp());
    expect(await lab.run(c1.resolve('WWW.example.org'))).toEqual(['203.0.113.10', '203.0.113.11']);
    await expect(lab.run(c1.resolve('nowhere.example.org'))).rejects.toThrow(/answered NXDOMAIN for nowhere\.example\.org/);
    expect(server.received.length).toBe(2);
    await expect(c1.resolve('bad..name')).rejects.toThrow(/is not a DNS name/);
    await lab.close();
  });

  it('the DNS message codec reads back what it writes', async () => {
    const { writeDnsQuery, readDnsMessage, buildDnsResponse, DNS_TYPE_A, DNS_FLAG_QR } = await import('../../../src/packet/dns.js');
    const q = Buffer.alloc(300);
    const n = writeDnsQuery(q, 0, 0xbeef, 'a.b.example', DNS_TYPE_A);
    const m = readDnsMessage(q, 0, n);
    expect(m).toMatchObject({ id: 0xbeef, rcode: 0, questions: [{ name: 'a.b.example', type: 1, class: 1 }], answers: [] });
    const r = buildDnsResponse(m!, 0, [{ name: 'a.b.example', type: DNS_TYPE_A, ttl: 30, data: Uint8Array.of(192, 0, 2, 1) }]);
    const back = readDnsMessage(r, 0, r.length)!;
    expect(back.flags & DNS_FLAG_QR).toBe(DNS_FLAG_QR);
    expect(back.answers.map((a) => ({ ...a, data: [...a.data] }))).toEqual([{ name: 'a.b.example', type: 1, class: 1, ttl: 30, data: [192, 0, 2, 1] }]);
    expect(readDnsMessage(r, 0, r.length - 1)).toBeNull();
  });
});
