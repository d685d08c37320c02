/**
 * A frame in flight through the switch: where it is (buffer, offsets) and its offload state.
 * One Frame object per port is re-pointed at each frame read; it is lent to the switch and the
 * egress ports for the duration of one call, never kept.
 */
import { completeChecksum } from '../packet/offload.js';
import { VNET_F_NEEDS_CSUM, VnetHeader } from '../packet/virtio-net.js';

const EMPTY = Buffer.alloc(0);

export class Frame {
  buf: Buffer = EMPTY;
  dv: DataView = new DataView(EMPTY.buffer, EMPTY.byteOffset, 0);
  /** Offset of the Ethernet header. */
  off = 0;
  /** Length from the Ethernet header to the end of the frame. */
  len = 0;
  /** Offset of the virtio-net header right before the frame, or -1 when the frame has none. */
  vnetOff = -1;
  /** The decoded virtio-net header (all zero when vnetOff < 0). */
  readonly vnet = new VnetHeader();
}

/**
 * Copies `f` to `out` at `at` as it would be on a wire: a partial checksum (virtio-net
 * NEEDS_CSUM) is completed in the copy, never in the lent frame. For captures and probes; GSO
 * frames are copied whole, as tcpdump on a host with TSO shows them. `outDv` views `out`.
 */
export function copyWireFrame(f: Frame, out: Uint8Array, outDv: DataView, at: number): void {
  out.set(f.buf.subarray(f.off, f.off + f.len), at);
  if (f.vnetOff >= 0 && (f.vnet.flags & VNET_F_NEEDS_CSUM) !== 0) completeChecksum(outDv, at, f.len, f.vnet.csumStart, f.vnet.csumOffset);
}
