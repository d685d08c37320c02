/**
 * The gateway → NAT path for TCP, per segment from a container: Switch.input() of a frame from a
 * container port (offloads, partial checksum, as a container kernel sends), the gateway's parse,
 * Nat.route(), conntrack, TcpNat and the flow's TcpFlow — on a real flow, connected through the
 * NAT's default (system) host stack to a server on 127.0.0.1.
 *
 *  - a pure ACK on an established flow (what a download's ACK stream costs): no host I/O, no answer
 *  - a 1448-byte data segment the NAT already has (a retransmission): the NAT answers with an ACK,
 *    made while the switch forwards, so it goes through the switch's deferral (the egress queue)
 *    to the container's port — the path of every ACK the NAT sends for an upload
 *
 * New data is not measured here: it ends in a host socket write (a syscall), which the e2e NAT
 * benchmark measures. Only APIs that exist before and after the egress queue are used, so the same
 * file measures both.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { GatewayPort } from '../../src/gateway/gateway.js';
import { Frame } from '../../src/link/frame.js';
import { Port } from '../../src/link/port.js';
import { Nat } from '../../src/nat/nat.js';
import { Switch } from '../../src/switch/switch.js';
import { consume, runSuite } from './common.js';

const log = pino({ level: 'silent' }, new Writable({ write: (_c, _e, cb) => cb() }));
const GW = 0x0a000202;
const C_IP = 0x0a000264;
const C_MAC = 0x02000000000a;
const C_PORT = 40000;

/** The container's interface: takes what the switch sends, remembers the NAT's SYN-ACK. */
class ContainerPort extends Port {
  frames = 0;
  synAckSeq = -1;
  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    this.frames++;
    const e = off + 10;
    const tcp = e + 14 + 20;
    if (len >= 10 + 14 + 20 + 20 && buf[e + 23] === 6 && buf[tcp + 13] === 0x12) {
      this.synAckSeq = ((buf[tcp + 4] << 24) | (buf[tcp + 5] << 16) | (buf[tcp + 6] << 8) | buf[tcp + 7]) >>> 0;
    }
    return len;
  }
  protected writeLink2(_b1: Uint8Array, _o1: number, l1: number, _b2: Uint8Array, _o2: number, l2: number): number {
    this.frames++;
    return l1 + l2;
  }
  close(): void {}
}

const sw = new Switch();
const gw = new GatewayPort({ name: 'gateway', ip: GW, dnsIp: GW + 1, subnet: 0x0a000200, prefix: 24, mtu: 1500, dhcp: null, dns: null, log }).plug(sw);
const nat = new Nat({ log });
nat.addNetwork(gw, { name: 'default', gateway: GW, dns: GW + 1, network: 0x0a000200, prefix: 24, disableHostLoopback: false, dnsUpstreams: () => [] });
const container = new ContainerPort({ name: 'c', kind: 'container', offloads: true, mtu: 1500 });
sw.addPort(container);

let received = 0;
const server = net.createServer((s) => {
  s.on('data', (d: Buffer) => (received += d.length));
  s.on('error', () => {}); // the NAT resets the connection when it closes
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const serverPort = (server.address() as net.AddressInfo).port;

/** A TCP segment from the container to the gateway address (the host's loopback), with a virtio-net header asking for checksum offload. */
function segment(flags: number, seq: number, ack: number, payload: number): { buf: Buffer; frame: Frame } {
  const buf = Buffer.alloc(10 + 14 + 20 + 20 + payload, 0x61);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf.fill(0, 0, 10 + 14 + 40);
  dv.setUint8(0, 1); // VIRTIO_NET_HDR_F_NEEDS_CSUM
  dv.setUint16(6, 14 + 20, true); // csum_start
  dv.setUint16(8, 16, true); // csum_offset
  const e = 10;
  dv.setUint16(e, Math.floor(gw.mac / 2 ** 32));
  dv.setUint32(e + 2, gw.mac % 2 ** 32);
  dv.setUint16(e + 6, Math.floor(C_MAC / 2 ** 32));
  dv.setUint32(e + 8, C_MAC % 2 ** 32);
  dv.setUint16(e + 12, 0x0800);
  const ip = e + 14;
  dv.setUint8(ip, 0x45);
  dv.setUint16(ip + 2, 40 + payload);
  dv.setUint16(ip + 6, 0x4000);
  dv.setUint8(ip + 8, 64);
  dv.setUint8(ip + 9, 6);
  dv.setUint32(ip + 12, C_IP);
  dv.setUint32(ip + 16, GW);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += dv.getUint16(ip + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  dv.setUint16(ip + 10, ~sum & 0xffff);
  const tcp = ip + 20;
  dv.setUint16(tcp, C_PORT);
  dv.setUint16(tcp + 2, serverPort);
  dv.setUint32(tcp + 4, seq >>> 0);
  dv.setUint32(tcp + 8, ack >>> 0);
  dv.setUint8(tcp + 12, 5 << 4);
  dv.setUint8(tcp + 13, flags);
  dv.setUint16(tcp + 14, 65535);
  const frame = new Frame();
  frame.buf = buf;
  frame.dv = dv;
  frame.vnetOff = 0;
  frame.off = 10;
  frame.len = buf.length - 10;
  if (frame.vnet.read(dv, 0, frame.len) !== 0) throw new Error('bad virtio-net header');
  return { buf, frame };
}

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`gateway-nat bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const ISN = 1000;
sw.input(container, segment(0x02, ISN, 0, 0).frame);
await until(() => container.synAckSeq >= 0, "the NAT's SYN-ACK");
const ourAck = (container.synAckSeq + 1) >>> 0;
sw.input(container, segment(0x10, ISN + 1, ourAck, 0).frame);
const data = segment(0x18, ISN + 1, ourAck, 1448);
sw.input(container, data.frame);
await until(() => received === 1448, 'the server to get the first 1448 bytes');

const pureAck = segment(0x10, ISN + 1 + 1448, ourAck, 0).frame;
const framesBefore = container.frames;
let retransmissions = 0;
runSuite('gateway → NAT, one TCP segment from a container (established flow to 127.0.0.1)', {
  'pure ACK (a download ACK): Switch → gateway → Nat.route → TcpFlow, no answer': () => {
    sw.input(container, pureAck);
    consume(container.frames);
  },
  'retransmitted 1448-byte segment: the NAT ACKs it through the switch deferral': () => {
    sw.input(container, data.frame);
    retransmissions++;
    consume(container.frames);
  },
});
// Every retransmission was answered (with an ACK), none lost in the deferral; pure ACKs got no answer.
if (container.frames - framesBefore !== retransmissions) throw new Error(`gateway-nat bench: ${retransmissions} retransmissions got ${container.frames - framesBefore} answers`);
nat.close();
gw.close();
server.close();
