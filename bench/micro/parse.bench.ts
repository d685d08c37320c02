/**
 * Frame parsing: the reusable views of src/packet (one DataView over the slab, re-bound per
 * frame) against the naive way (a Buffer view per frame and Buffer#readUInt*). Reads what the
 * switch and a NAT need from 256 frames in one slab: MACs, EtherType, IPv4 addresses, protocol,
 * ports, sequence numbers, flags, window.
 */
import { EthernetView } from '../../src/packet/ethernet.js';
import { Ipv4View } from '../../src/packet/ipv4.js';
import { TcpView } from '../../src/packet/tcp.js';
import { VnetHeader } from '../../src/packet/virtio-net.js';
import { consume, runSuite, writeTcpFrame } from './common.js';

const FRAMES = 256;
const slab = Buffer.alloc(FRAMES * 1600);
const dv = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
const offsets: number[] = [];
const lengths: number[] = [];
for (let i = 0; i < FRAMES; i++) {
  const off = i * 1600;
  offsets.push(off);
  lengths.push(writeTcpFrame(slab, off, 0x020000000002 + i, 0x020000000001, 1448));
}

const vnet = new VnetHeader();
const eth = new EthernetView();
const ip4 = new Ipv4View();
const tcp = new TcpView();

runSuite('parse 256 Ethernet/IPv4/TCP frames', {
  'views (src/packet)': () => {
    let acc = 0;
    for (let i = 0; i < FRAMES; i++) {
      const off = offsets[i];
      const len = lengths[i];
      vnet.read(dv, off, len - 10);
      if (eth.bind(slab, dv, off + 10, len - 10) !== 0) continue;
      acc += eth.dst + eth.src;
      if (ip4.bind(dv, eth.payloadOffset, eth.payloadLength) !== 0) continue;
      acc += ip4.src + ip4.dst + ip4.protocol;
      if (tcp.bind(dv, ip4.payloadOffset, ip4.payloadLength) !== 0) continue;
      acc += tcp.srcPort + tcp.dstPort + tcp.seq + tcp.ack + tcp.flags + tcp.window;
    }
    consume(acc);
  },
  'naive (Buffer view + readUInt per frame)': () => {
    let acc = 0;
    for (let i = 0; i < FRAMES; i++) {
      const frame = slab.subarray(offsets[i] + 10, offsets[i] + lengths[i]);
      acc += parseInt(frame.toString('hex', 0, 6), 16) + parseInt(frame.toString('hex', 6, 12), 16);
      if (frame.readUInt16BE(12) !== 0x0800) continue;
      const ip = frame.subarray(14);
      const ihl = (ip.readUInt8(0) & 15) * 4;
      acc += ip.readUInt32BE(12) + ip.readUInt32BE(16) + ip.readUInt8(9);
      const t = ip.subarray(ihl);
      acc += t.readUInt16BE(0) + t.readUInt16BE(2) + t.readUInt32BE(4) + t.readUInt32BE(8) + t.readUInt8(13) + t.readUInt16BE(14);
    }
    consume(acc);
  },
});
