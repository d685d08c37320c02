/**
 * The NAT's per-datagram costs that involve no socket:
 *
 *  - Nat.route() of a 1514-byte UDP frame to a destination it drops unsent (240.0.0.1, reserved):
 *    everything route() does before choosing a socket, including the one read of the flags word
 *    that sends fragments to reassembly — what every non-fragmented datagram pays for it.
 *  - Reassembling an 8 KiB datagram from its 6 fragments (MTU 1500): Ipv4Reassembler (slots with
 *    reused buffers, numeric matching, a run list) against a naive one (string keys, a Buffer per
 *    fragment, sort and concat when the last arrives).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { GatewayPort } from '../../src/gateway/gateway.js';
import { Ipv4Reassembler, REASM_COMPLETE } from '../../src/nat/ipv4-reassembly.js';
import { Nat } from '../../src/nat/nat.js';
import { Ipv4View } from '../../src/packet/ipv4.js';
import { consume, runSuite } from './common.js';

const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
const GW = 0x0a000202;
const gw = new GatewayPort({ name: 'gw', ip: GW, dnsIp: GW + 1, subnet: 0x0a000200, prefix: 24, mtu: 1500, dhcp: null, dns: null, log });
const nat = new Nat({ log });
nat.addNetwork(gw, { name: 'default', gateway: GW, dns: GW + 1, network: 0x0a000200, prefix: 24, disableHostLoopback: false, dnsUpstreams: () => [] });

/** An Ethernet + IPv4 + UDP frame of `payload` bytes to `dst`. */
function udpFrame(dst: number, payload: number): Buffer {
  const f = Buffer.alloc(14 + 20 + 8 + payload, 0x5a);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + 8 + payload, 16);
  f.writeUInt16BE(0x1234, 18);
  f.writeUInt16BE(0, 20);
  f[22] = 64;
  f[23] = 17;
  f.writeUInt32BE(0x0a000264, 26);
  f.writeUInt32BE(dst, 30);
  f.writeUInt16BE(40000, 34);
  f.writeUInt16BE(5000, 36);
  f.writeUInt16BE(8 + payload, 38);
  f.writeUInt16BE(0, 40);
  return f;
}

const frame = udpFrame(0xf0000001, 1472);
const frameDv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
const ip = new Ipv4View();

// Six fragments of an 8 KiB datagram (IP packets, no Ethernet header), the way a kernel cuts them.
const whole = udpFrame(0xc6336402, 8192).subarray(14);
const fragments: Buffer[] = [];
for (let at = 0; at < whole.length - 20; at += 1480) {
  const n = Math.min(1480, whole.length - 20 - at);
  const f = Buffer.concat([whole.subarray(0, 20), whole.subarray(20 + at, 20 + at + n)]);
  f.writeUInt16BE(20 + n, 2);
  f.writeUInt16BE((at + n < whole.length - 20 ? 0x2000 : 0) | (at / 8), 6);
  fragments.push(f);
}
const fragmentDvs = fragments.map((f) => new DataView(f.buffer, f.byteOffset, f.byteLength));
const reassembler = new Ipv4Reassembler();
let now = 0;

/** What a first attempt looks like: a string key, the fragments kept as copies, sorted and concatenated. */
class NaiveReassembler {
  private readonly pending = new Map<string, { parts: Array<{ off: number; data: Buffer }>; total: number; header: Buffer | null }>();
  input(b: Buffer): Buffer | null {
    const key = `${b.readUInt32BE(12)}:${b.readUInt32BE(16)}:${b[9]}:${b.readUInt16BE(4)}`;
    let p = this.pending.get(key);
    if (!p) {
      p = { parts: [], total: -1, header: null };
      this.pending.set(key, p);
    }
    const ff = b.readUInt16BE(6);
    const off = (ff & 0x1fff) * 8;
    const data = Buffer.from(b.subarray(20, b.readUInt16BE(2)));
    p.parts.push({ off, data });
    if (off === 0) p.header = Buffer.from(b.subarray(0, 20));
    if ((ff & 0x2000) === 0) p.total = off + data.length;
    const have = p.parts.reduce((s, x) => s + x.data.length, 0);
    if (p.total < 0 || have !== p.total || p.header === null) return null;
    this.pending.delete(key);
    p.parts.sort((x, y) => x.off - y.off);
    return Buffer.concat([p.header, ...p.parts.map((x) => x.data)]);
  }
}
const naive = new NaiveReassembler();

runSuite('NAT, per datagram (no socket)', {
  'Nat.route: 1514-byte UDP frame to a reserved destination (dropped unsent)': () => {
    ip.bind(frameDv, 14, frame.length - 14);
    consume(nat.route(gw, frame, frameDv, ip, 0x020000000001, null) ? 1 : 0);
  },
  'reassemble an 8 KiB datagram from 6 fragments: Ipv4Reassembler': () => {
    let done = 0;
    for (let i = 0; i < fragments.length; i++) {
      ip.bind(fragmentDvs[i], 0, fragments[i].length);
      if (reassembler.input(fragments[i], ip, now) === REASM_COMPLETE) done += reassembler.outLen;
    }
    now += 0.001;
    consume(done);
  },
  'reassemble an 8 KiB datagram from 6 fragments: naive (string keys, copies, concat)': () => {
    let done = 0;
    for (const f of fragments) {
      const d = naive.input(f);
      if (d) done += d.length;
    }
    consume(done);
  },
});
nat.close();
gw.close();
