/**
 * An in-memory port: a switch port with no kernel behind it. Tests and library users build
 * topologies with it and drive the switch frame by frame: `inject()` puts a frame into the switch
 * as if it had arrived on the wire (runts included), and every frame the switch sends out of the
 * port arrives, copied, at `onFrame` (and in `received` when recording).
 */
import { VNET_HDR_LEN, VnetHeader, writeVnetHeader } from '../packet/virtio-net.js';
import { DROP_BAD_OFFLOAD } from './counters.js';
import { Frame } from './frame.js';
import { Port, type PortOptions } from './port.js';
import type { FrameSink } from './sink.js';

export interface ReceivedFrame {
  /** The Ethernet frame (a copy). */
  frame: Buffer;
  /** The virtio-net header that came with it (ports with offloads), else null. */
  vnet: VnetHeader | null;
}

export interface VnetFields {
  flags?: number;
  gsoType?: number;
  hdrLen?: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

export interface MemoryPortOptions extends PortOptions {
  /** Keep every received frame in `received` (default true). */
  record?: boolean;
}

export class MemoryPort extends Port {
  /** Called with a copy of every frame the switch sends out of this port. */
  onFrame: ((frame: ReceivedFrame) => void) | null = null;
  readonly received: ReceivedFrame[] = [];
  private readonly record: boolean;
  private sink: FrameSink | null = null;
  private readonly frame = new Frame();
  private readonly slab = Buffer.allocUnsafeSlow(65536 + 64);
  private readonly slabDv = new DataView(this.slab.buffer, this.slab.byteOffset, this.slab.byteLength);

  constructor(options: MemoryPortOptions) {
    super(options);
    this.record = options.record ?? true;
  }

  /** Plugs this port into `sink` (a switch, or anything implementing FrameSink). */
  plug(sink: FrameSink): this {
    sink.addPort(this);
    this.sink = sink;
    return this;
  }

  /**
   * Receives `frame` into the switch as if from the wire. With `vnet` (ports with offloads
   * only), the frame carries that virtio-net header.
   */
  inject(frame: Uint8Array, vnet?: VnetFields): void {
    const sink = this.sink;
    if (sink === null) throw new Error(`memory port ${this.name} is not plugged into a switch`);
    if (vnet && !this.offloads) throw new Error(`memory port ${this.name} has no offloads: it cannot take a virtio-net header`);
    if (frame.length + VNET_HDR_LEN > this.slab.length) throw new Error(`frame of ${frame.length} bytes is larger than a port can carry`);
    const f = this.frame;
    f.buf = this.slab;
    f.dv = this.slabDv;
    f.len = frame.length;
    if (this.offloads) {
      const v = vnet ?? {};
      writeVnetHeader(this.slabDv, 0, v.flags ?? 0, v.gsoType ?? 0, v.hdrLen ?? 0, v.gsoSize ?? 0, v.csumStart ?? 0, v.csumOffset ?? 0);
      f.vnetOff = 0;
      f.off = VNET_HDR_LEN;
      this.slab.set(frame, VNET_HDR_LEN);
      if (f.vnet.read(this.slabDv, 0, frame.length) !== 0) {
        this.counters[DROP_BAD_OFFLOAD]++;
        return;
      }
    } else {
      f.vnetOff = -1;
      f.off = 0;
      f.vnet.clear();
      this.slab.set(frame, 0);
    }
    // One injected frame is one batch: what it causes leaves before inject() returns.
    sink.beginBatch();
    try {
      sink.input(this, f);
    } finally {
      sink.endBatch();
    }
  }

  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    this.deliver(Buffer.from(buf.subarray(off, off + len)));
    return len;
  }

  protected writeLink2(b1: Uint8Array, o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number {
    this.deliver(Buffer.concat([b1.subarray(o1, o1 + l1), b2.subarray(o2, o2 + l2)]));
    return l1 + l2;
  }

  private deliver(unit: Buffer): void {
    let received: ReceivedFrame;
    if (this.offloads) {
      const vnet = new VnetHeader();
      vnet.read(new DataView(unit.buffer, unit.byteOffset, unit.length), 0, unit.length - VNET_HDR_LEN);
      received = { frame: unit.subarray(VNET_HDR_LEN), vnet };
    } else {
      received = { frame: unit, vnet: null };
    }
    if (this.record) this.received.push(received);
    this.onFrame?.(received);
  }

  close(): void {
    this.sink?.removePort(this);
    this.sink = null;
  }
}
