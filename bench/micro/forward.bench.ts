/**
 * The whole forwarding decision: Switch.input() for known unicast between two ports with
 * offloads (the TAP-to-TAP case: the frame goes out untouched), for a broadcast flooded to
 * three ports, and towards a port without offloads that needs its checksum completed. Ports
 * here discard what they are given, so this measures the switch, not the kernel.
 */
import { Frame } from '../../src/link/frame.js';
import { Port } from '../../src/link/port.js';
import { VirtualClock } from '../../src/platform/clock.js';
import { Switch } from '../../src/switch/switch.js';
import { VNET_F_NEEDS_CSUM } from '../../src/packet/virtio-net.js';
import { consume, runSuite, writeTcpFrame } from './common.js';

class NullPort extends Port {
  bytes = 0;
  protected writeLink(_b: Uint8Array, _o: number, len: number): number {
    this.bytes += len;
    return len;
  }
  protected writeLink2(_b1: Uint8Array, _o1: number, l1: number, _b2: Uint8Array, _o2: number, l2: number): number {
    this.bytes += l1 + l2;
    return l1 + l2;
  }
  close(): void {}
}

const A = 0x020000000001;
const B = 0x020000000002;
const sw = new Switch({ clock: new VirtualClock() });
const pa = new NullPort({ name: 'a', offloads: true });
const pb = new NullPort({ name: 'b', offloads: true });
const pc = new NullPort({ name: 'c', offloads: true });
const pd = new NullPort({ name: 'd', offloads: false });
for (const p of [pa, pb, pc, pd]) sw.addPort(p);

const slab = Buffer.alloc(4096);
const dv = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
const len = writeTcpFrame(slab, 0, B, A, 1448) - 10;
const frame = new Frame();
frame.buf = slab;
frame.dv = dv;
frame.vnetOff = 0;
frame.off = 10;
frame.len = len;
frame.vnet.read(dv, 0, len);

// Learn B on port b, and a MAC on port d for the checksum case.
const learn = (port: Port, src: number): void => {
  const f = new Frame();
  const b = Buffer.alloc(64);
  writeTcpFrame(b, 0, 0xffffffffffff, src, 0);
  f.buf = b;
  f.dv = new DataView(b.buffer, b.byteOffset, b.length);
  f.vnetOff = 0;
  f.off = 10;
  f.len = 54;
  f.vnet.read(f.dv, 0, 54);
  sw.input(port, f);
};
learn(pb, B);
const D = 0x020000000004;
learn(pd, D);

const bcast = Buffer.from(slab);
bcast.fill(0xff, 10, 16);
const bframe = new Frame();
bframe.buf = bcast;
bframe.dv = new DataView(bcast.buffer, bcast.byteOffset, bcast.length);
bframe.vnetOff = 0;
bframe.off = 10;
bframe.len = len;
bframe.vnet.read(bframe.dv, 0, len);

const csum = Buffer.from(slab);
csum.writeUIntBE(D, 10, 6);
const cdv = new DataView(csum.buffer, csum.byteOffset, csum.length);
cdv.setUint8(0, VNET_F_NEEDS_CSUM);
cdv.setUint16(6, 34, true);
cdv.setUint16(8, 16, true);
const cframe = new Frame();
cframe.buf = csum;
cframe.dv = cdv;
cframe.vnetOff = 0;
cframe.off = 10;
cframe.len = len;
cframe.vnet.read(cdv, 0, len);

runSuite('Switch.input, one 1514-byte frame', {
  'known unicast, offload -> offload (pass-through)': () => {
    sw.input(pa, frame);
    consume(pb.bytes);
  },
  'broadcast flooded to 3 ports': () => {
    sw.input(pa, bframe);
    consume(pc.bytes);
  },
  'unicast to a port without offloads (checksum completed in JS)': () => {
    sw.input(pa, cframe);
    consume(pd.bytes);
  },
});
