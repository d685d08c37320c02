import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import { SeededRandom } from '../../../src/platform/random.js';
import { ScriptedHost } from '../../../src/lab/scripted-host.js';
import { Recorder } from '../../../src/lab/recorder.js';
import { replayCapture } from '../../../src/lab/probe.js';
import { FrameProbe } from '../../../src/lab/probe.js';
import { readCapture, readPcapng } from '../../../src/packet/pcapng.js';
import { readPcap } from '../../../src/packet/pcap.js';
import { makeNetwork } from '../helpers/nat-rig.js';

function scene(format: 'pcap' | 'pcapng') {
  const clock = new VirtualClock();
  const net = makeNetwork({ name: 'default', subnet: '10.0.2.0/24' }, [], pino({ level: 'silent' }));
  const pa = new MemoryPort({ name: 'a', record: false }).plug(net.sw);
  const pb = new MemoryPort({ name: 'b', record: false }).plug(net.sw);
  const random = new SeededRandom(9);
  const a = new ScriptedHost(pa, { clock, random, address: '10.0.2.10/24', gateway: '10.0.2.2' });
  new ScriptedHost(pb, { clock, random, address: '10.0.2.11/24', gateway: '10.0.2.2' });
  const rec = new Recorder(clock, { format }).add(pa).add(pb);
  return { clock, net, pa, pb, a, rec };
}

describe('Recorder', () => {
  it('pcapng: one interface per port, both directions, timestamps from the clock', async () => {
    const { clock, net, a, rec } = scene('pcapng');
    clock.advance(1500);
    void a.ping('10.0.2.11');
    clock.advance(10);
    const file = readPcapng(rec.stop());
    expect(file.interfaces.map((i) => i.name)).toEqual(['a', 'b']);
    // a: ARP request in; b: ARP request out; b: reply in; a: reply out; then the echo both ways.
    expect(file.records.length).toBe(rec.frames);
    expect(file.records.length).toBeGreaterThanOrEqual(8);
    expect(file.records[0].timestampUs).toBe((Date.UTC(2026, 0, 1) + 1500) * 1000);
    await net.close();
  });

  it('pcap: what each port receives, readable by the classic reader; stop() detaches', async () => {
    const { clock, net, a, pa, rec } = scene('pcap');
    void a.ping('10.0.2.11');
    clock.advance(10);
    const n = rec.frames;
    const file = readPcap(rec.stop());
    expect(file.records.length).toBe(n);
    expect(file.linktype).toBe(1);
    expect(pa.taps.length).toBe(0);
    void a.ping('10.0.2.11');
    clock.advance(10);
    expect(rec.frames).toBe(n);
    expect(readCapture(rec.toBuffer()).records.length).toBe(n);
    await net.close();
  });

  it('replays a capture into a port, with its timing or at once', async () => {
    const { clock, net, a, pa, pb, rec } = scene('pcapng');
    void a.ping('10.0.2.11');
    clock.advance(700);
    void a.ping('10.0.2.11');
    clock.advance(10);
    const capture = rec.stop();
    // Replay what a sent (its port's inbound direction is frames from a) into a fresh port.
    const c = new MemoryPort({ name: 'c', record: false }).plug(net.sw);
    const probe = new FrameProbe(pb, clock, { direction: 'out' });
    const only = readPcapng(capture);
    const fromA = only.records.filter((r) => r.interfaceId === 0 && r.direction === "inbound").length;
    expect(only.records.filter((r) => r.interfaceId === 0 && r.direction === "outbound").length).toBeGreaterThan(0);
    const t0 = clock.now();
    const done = replayCapture(c, capture, clock, { interface: 'a' });
    clock.advance(1000);
    expect(await done).toBe(fromA);
    // The second echo request went out 700 ms after the first, as recorded.
    const echoes = probe.seen.filter((f) => f.icmp?.type === 8);
    expect(echoes.length).toBe(2);
    expect(echoes[1].at - echoes[0].at).toBeCloseTo(700, 0);
    expect(echoes[0].at).toBeGreaterThanOrEqual(t0);
    await expect(replayCapture(c, capture, clock, { interface: 'nope' })).rejects.toThrow(/no interface "nope"/);
    expect(await replayCapture(c, capture, clock, { timing: 'asap', interface: 1 })).toBeGreaterThan(0);
    void pa;
    await net.close();
  });

  it('refuses truncated and foreign files with ERR_BAD_PCAP', () => {
    const { rec } = scene('pcapng');
    const whole = rec.stop();
    expect(() => readCapture(whole.subarray(0, whole.length - 3))).toThrow(expect.objectContaining({ code: 'ERR_BAD_PCAP' }));
    expect(() => readCapture(Buffer.from('not a capture at all'))).toThrow(expect.objectContaining({ code: 'ERR_BAD_PCAP' }));
  });
});
