/**
 * The gateway's echo answered natively in the TAP reader (src/native/usernet_echo.c) against the
 * gateway's own answer in JS (src/gateway/gateway.ts): for random echo requests, and for them
 * with any header byte changed, the native answer is either "not mine" (the frame untouched, so
 * the JS path sees it as it was) or exactly the bytes the JS gateway sends, IP ID included. And
 * a plain echo request within the MTU is always answered natively, so the fast path is real.
 */
import fc from 'fast-check';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { GatewayPort } from '../../../src/gateway/gateway.js';
import { MemoryPort } from '../../../src/link/memory-port.js';
import { FAST_PATH_ECHOES, FAST_PATH_IP_ID, FAST_PATH_MTU, FAST_PATH_OPEN, type FrameTap } from '../../../src/link/port.js';
import { native } from '../../../src/native/addon.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { parseMac } from '../../../src/packet/mac.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import { Switch } from '../../../src/switch/switch.js';
import { macBytes, naiveChecksum } from '../helpers/frames.js';
import { check } from '../property/fc.js';

const GW = parseIpv4('10.0.2.2');
const DNS = parseIpv4('10.0.2.3');
const GW_MAC = parseMac('52:55:0a:00:02:02');
const VNET = 10;
const MTU = 1500;

interface EchoCase {
  srcMac: number;
  src: number;
  toDns: boolean;
  tos: number;
  id: number;
  flags: number;
  ttl: number;
  rest: number;
  payload: Uint8Array;
  padding: number;
  goodIcmpChecksum: boolean;
}

function echoRequest(c: EchoCase): Buffer {
  const icmp = Buffer.alloc(8 + c.payload.length);
  icmp[0] = 8;
  icmp.writeUInt32BE(c.rest >>> 0, 4);
  Buffer.from(c.payload).copy(icmp, 8);
  icmp.writeUInt16BE(c.goodIcmpChecksum ? naiveChecksum(icmp) : 0x1234, 2);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip[1] = c.tos;
  ip.writeUInt16BE(20 + icmp.length, 2);
  ip.writeUInt16BE(c.id, 4);
  ip.writeUInt16BE(c.flags, 6);
  ip[8] = c.ttl;
  ip[9] = 1;
  ip.writeUInt32BE(c.src >>> 0, 12);
  ip.writeUInt32BE(c.toDns ? DNS : GW, 16);
  ip.writeUInt16BE(naiveChecksum(ip), 10);
  const eth = Buffer.alloc(14);
  macBytes(GW_MAC).copy(eth, 0);
  macBytes(c.srcMac).copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, icmp, Buffer.alloc(c.padding, 0xee)]);
}

const echoCase: fc.Arbitrary<EchoCase> = fc.record({
  // Unicast, not zero, not the gateway's.
  srcMac: fc.integer({ min: 1, max: 2 ** 40 - 1 }).map((n) => n * 256 + 2).filter((m) => m !== GW_MAC),
  src: fc.integer({ min: 0, max: 0xffffffff }),
  toDns: fc.boolean(),
  tos: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.constantFrom(0, 0x4000),
  ttl: fc.integer({ min: 1, max: 255 }),
  rest: fc.integer({ min: 0, max: 0xffffffff }),
  payload: fc.uint8Array({ minLength: 0, maxLength: MTU - 28 }),
  padding: fc.integer({ min: 0, max: 20 }),
  goodIcmpChecksum: fc.boolean(),
});

/** A change to one byte of the Ethernet, IPv4 or ICMP header (or none). */
const mutation = fc.option(fc.record({ at: fc.integer({ min: 0, max: 14 + 20 + 8 - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { freq: 3 });

function rig(offloads: boolean): { sw: Switch; gw: GatewayPort; c: MemoryPort } {
  const clock = new VirtualClock({ start: 1_000_000 });
  const sw = new Switch({ clock });
  const c = new MemoryPort({ name: 'c', kind: 'container', offloads, mtu: MTU }).plug(sw);
  const gw = new GatewayPort({ name: 'gateway', ip: GW, dnsIp: DNS, subnet: parseIpv4('10.0.2.0'), prefix: 24, mtu: MTU, dhcp: null, dns: null, log: pino({ level: 'silent' }), clock }).plug(sw);
  return { sw, gw, c };
}

function nativeAnswer(frame: Buffer, vnetHdrLen: number, gw: GatewayPort, portMtu: number): { n: number; unit: Buffer } {
  const unit = Buffer.concat([Buffer.alloc(vnetHdrLen), frame]);
  const id = (gw.fastPath[FAST_PATH_IP_ID] + 1) & 0xffff;
  const n = native().echoAnswer(unit, 0, unit.length, vnetHdrLen, Math.floor(GW_MAC / 2 ** 32), GW_MAC >>> 0, GW, DNS, gw.mtu + 18, portMtu + 18, id);
  return { n, unit };
}

describe('native gateway echo (usernet_echo.c) against the JS gateway', () => {
  for (const offloads of [false, true]) {
    const h = offloads ? VNET : 0;
    it(`answers exactly as the gateway does, or leaves the frame alone (${offloads ? 'with' : 'without'} a virtio-net header)`, () => {
      check(
        fc.property(echoCase, mutation, (c, m) => {
          const frame = echoRequest(c);
          const unchanged = m === null || frame[m.at] === m.value;
          if (m !== null) frame[m.at] = m.value;
          const r = rig(offloads);
          // Some JS state first, so the shared IP ID is not at its start.
          r.gw.fastPath[FAST_PATH_IP_ID] = c.id;
          const { n, unit } = nativeAnswer(frame, h, r.gw, MTU);
          r.c.inject(frame);
          const js = r.c.received.map((x) => Buffer.from(x.frame));
          if (n === 0) {
            expect(unit.subarray(h).equals(frame)).toBe(true);
            // Unchanged plain requests within the MTU are the fast path's whole point.
            if (unchanged) expect(js.length === 1 && js[0][34] === 0).toBe(false);
            return;
          }
          expect(js.length).toBe(1);
          expect(unit.subarray(0, h).equals(Buffer.alloc(h))).toBe(true);
          expect(unit.subarray(h, n).toString('hex')).toBe(js[0].toString('hex'));
        }),
        300,
      );
    });
  }

  it('declines what needs the JS path: a virtio-net header with work in it, IP options, fragments, VLAN tags, a bad header checksum, too big for either MTU', () => {
    const base: EchoCase = { srcMac: parseMac('02:00:00:00:00:01'), src: parseIpv4('10.0.2.100'), toDns: false, tos: 0, id: 7, flags: 0x4000, ttl: 64, rest: 0x00010001, payload: Buffer.alloc(56, 1), padding: 0, goodIcmpChecksum: true };
    const { gw } = rig(true);
    const answer = (frame: Buffer, vnet: Buffer | null, portMtu = MTU): number => {
      const unit = vnet ? Buffer.concat([vnet, frame]) : Buffer.from(frame);
      const before = Buffer.from(unit);
      const n = native().echoAnswer(unit, 0, unit.length, vnet ? VNET : 0, Math.floor(GW_MAC / 2 ** 32), GW_MAC >>> 0, GW, DNS, gw.mtu + 18, portMtu + 18, 1);
      if (n === 0) expect(unit.equals(before)).toBe(true);
      return n;
    };
    const plain = echoRequest(base);
    expect(answer(plain, null)).toBe(plain.length);
    expect(answer(plain, Buffer.alloc(VNET))).toBe(VNET + plain.length);
    expect(answer(plain, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe(0); // NEEDS_CSUM
    expect(answer(plain, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe(0); // GSO
    const withOptions = echoRequest(base);
    withOptions[14] = 0x46;
    expect(answer(withOptions, null)).toBe(0);
    expect(answer(echoRequest({ ...base, flags: 0x2000 }), null)).toBe(0); // MF
    expect(answer(echoRequest({ ...base, flags: 0x0001 }), null)).toBe(0); // an offset
    const tagged = Buffer.concat([plain.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x05]), plain.subarray(12)]);
    expect(answer(tagged, null)).toBe(0);
    const badSum = echoRequest(base);
    badSum[24] ^= 0xff;
    expect(answer(badSum, null)).toBe(0);
    expect(answer(echoRequest({ ...base, payload: Buffer.alloc(MTU - 28 + 5) }), null)).toBe(0); // beyond the container's MTU + slack
    expect(answer(echoRequest({ ...base, payload: Buffer.alloc(1000) }), null, 576)).toBe(0);
    expect(answer(echoRequest({ ...base, srcMac: GW_MAC }), null)).toBe(0); // spoofed: the switch drops it
    const short = echoRequest(base).subarray(0, 14 + 20 + 4);
    expect(answer(short, null)).toBe(0);
  });
});

describe('what keeps the native answers honest: port state and learning', () => {
  it('opens a port to native answers only while it has no capture tap and no loss knob, and mirrors its MTU', () => {
    const { c, gw } = rig(false);
    expect(c.fastPath[FAST_PATH_OPEN]).toBe(1);
    expect(c.fastPath[FAST_PATH_MTU]).toBe(MTU);
    const tap = { onFrame: () => true };
    c.taps = [...c.taps, tap];
    expect(c.fastPath[FAST_PATH_OPEN]).toBe(0);
    expect(() => (c.taps as FrameTap[]).push(tap)).toThrow(TypeError); // a change that would bypass the flag
    c.lossRate = 0.5;
    c.taps = [];
    expect(c.fastPath[FAST_PATH_OPEN]).toBe(0);
    c.lossRate = 0;
    expect(c.fastPath[FAST_PATH_OPEN]).toBe(1);
    c.mtu = 9000;
    expect(c.fastPath[FAST_PATH_MTU]).toBe(9000);
    expect(gw.fastPath[FAST_PATH_OPEN]).toBe(1);
    gw.close();
    expect(gw.fastPath[FAST_PATH_OPEN]).toBe(0);
  });

  it('counts native replies in the gateway stats, and the switch re-learns a source heard only through them', () => {
    const clock = new VirtualClock({ start: 1_000_000 });
    const sw = new Switch({ clock, ageingTimeMs: 10_000 });
    const mac = parseMac('02:00:00:00:00:07');
    let bypassed = -1;
    class NativeAnswered extends MemoryPort {
      override takeBypassedSource(): number {
        const m = bypassed;
        bypassed = -1;
        return m;
      }
    }
    const c = new NativeAnswered({ name: 'c', kind: 'container' }).plug(sw);
    const gw = new GatewayPort({ name: 'gateway', ip: GW, dnsIp: DNS, subnet: parseIpv4('10.0.2.0'), prefix: 24, mtu: MTU, dhcp: null, dns: null, log: pino({ level: 'silent' }), clock }).plug(sw);
    c.inject(echoRequest({ srcMac: mac, src: parseIpv4('10.0.2.100'), toDns: false, tos: 0, id: 1, flags: 0x4000, ttl: 64, rest: 1, payload: Buffer.alloc(8), padding: 0, goodIcmpChecksum: true }));
    expect(gw.stats.icmp_echo_replies).toBe(1);
    gw.fastPath[FAST_PATH_ECHOES] += 4; // as the reader counts
    expect(gw.stats.icmp_echo_replies).toBe(5);
    expect(gw.stats.icmp_echo_replies_in_reader).toBe(4);
    expect(JSON.parse(JSON.stringify(gw.stats)).icmp_echo_replies).toBe(5);
    gw.stats.icmp_echo_replies++;
    expect(gw.stats.icmp_echo_replies).toBe(6);
    // Twenty seconds of native-only traffic, a sweep a second: the entry never ages out.
    for (let s = 0; s < 20; s++) {
      clock.advance(1000);
      bypassed = mac;
      sw.sweep();
    }
    expect(sw.fdb.lookup(mac, clock.now())).toBe(c);
    // Without it, the entry ages out as on a bridge.
    for (let s = 0; s < 11; s++) {
      clock.advance(1000);
      sw.sweep();
    }
    expect(sw.fdb.lookup(mac, clock.now())).toBe(null);
  });
});
