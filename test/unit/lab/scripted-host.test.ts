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
        if (c.received.length === big.length) {
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
