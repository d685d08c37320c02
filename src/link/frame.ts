/**
 * A frame in flight through the switch: where it is (buffer, offsets) and its offload state.
 * One Frame object per port is re-pointed at each frame read; it is lent to the switch and the
 * egress ports for the duration of one call, never kept.
 */
import { VnetHeader } from '../packet/virtio-net.js';

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
