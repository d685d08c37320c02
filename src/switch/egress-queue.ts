/**
 * The switch's egress queue: frames that ports (the gateway, and the NAT through it) send into the
 * switch while it is busy forwarding — an ARP reply, an ACK for an uploaded segment, a data segment
 * the container's window just let out. They are not forwarded re-entrantly, inside the delivery
 * that caused them; they wait here and leave at the switch's drain point, after the batch
 * (smoltcp's `dispatch` after `process`), in the order they were sent.
 *
 *   push(port, frame) ── one copy into the current slab ──▶ [ slab 0 | slab 1 | … ]  (bump, 16-byte aligned)
 *   reserve(n, place) ── or: build the frame right there, then push() takes it without a copy
 *   next(frame)       ── the oldest entry, lent out of its slab (no copy) ──▶ switch.forward()
 *   empty again       ── every slab is reused from its start
 *
 * Memory: slabs of `slabSize` bytes (each big enough for the largest frame, a 64 KiB GSO frame
 * with its virtio-net header) are allocated only when the ones there are full, kept for reuse,
 * and never more than `maxBytes` in all; a frame that does not fit then is dropped and counted
 * (`stats.dropped`), as a full device queue drops. Entry metadata lives in one Int32Array that
 * doubles when needed. Nothing is allocated per frame once the queue has grown to its working size.
 */
import type { Frame } from '../link/frame.js';
import type { Port } from '../link/port.js';
import { VNET_HDR_LEN } from '../packet/virtio-net.js';

/** The largest unit a port may send: 64 KiB of payload plus headers, after a virtio-net header. */
export const EGRESS_MAX_UNIT = VNET_HDR_LEN + 65536 + 256;
export const EGRESS_DEFAULT_SLAB_SIZE = 256 * 1024;
export const EGRESS_DEFAULT_MAX_BYTES = 8 * 1024 * 1024;
const ALIGN = 16;
const INITIAL_ENTRIES = 64;
/** Int32s per entry: slab index, offset of the unit, frame length (from the Ethernet header), 1 if a virtio-net header leads. */
const STRIDE = 4;

export interface EgressQueueOptions {
  /** Bytes per slab (at least EGRESS_MAX_UNIT). Default 256 KiB. */
  slabSize?: number;
  /** Most slab memory the queue may hold; beyond, frames are dropped. Default 8 MiB. */
  maxBytes?: number;
}

/** Where a frame may be built: a buffer, its DataView, the offset to start at. */
export class EgressPlace {
  buf: Buffer = Buffer.alloc(0);
  dv: DataView = new DataView(new ArrayBuffer(0));
  off = 0;
}

export interface EgressQueueStats {
  /** Frames taken in (each copied once into a slab, or built in place there). */
  queued: number;
  /** Of those, frames built in place (reserve()), so not copied at all. */
  inPlace: number;
  /** Bytes copied into slabs (virtio-net headers included). */
  copiedBytes: number;
  /** Frames refused because the queue was at maxBytes (or larger than a slab). */
  dropped: number;
  /** Frames handed out by next(). */
  sent: number;
  /** Most entries waiting at once. */
  maxDepth: number;
}

export class EgressQueue {
  readonly stats: EgressQueueStats = { queued: 0, inPlace: 0, copiedBytes: 0, dropped: 0, sent: 0, maxDepth: 0 };
  readonly slabSize: number;
  readonly maxBytes: number;
  private readonly slabs: Buffer[] = [];
  private readonly slabDvs: DataView[] = [];
  private meta = new Int32Array(INITIAL_ENTRIES * STRIDE);
  private ports: Array<Port | null> = new Array<Port | null>(INITIAL_ENTRIES).fill(null);
  private head = 0;
  private tail = 0;
  private slab = 0;
  private slabOff = 0;
  /** Bytes of slab space taken by waiting entries (from slab 0 up to the write position). */
  private used = 0;

  constructor(options: EgressQueueOptions = {}) {
    const size = Math.max(EGRESS_MAX_UNIT, options.slabSize ?? EGRESS_DEFAULT_SLAB_SIZE);
    this.slabSize = (size + ALIGN - 1) & ~(ALIGN - 1);
    this.maxBytes = Math.max(this.slabSize, options.maxBytes ?? EGRESS_DEFAULT_MAX_BYTES);
  }

  /** Frames waiting. */
  get length(): number {
    return this.tail - this.head;
  }

  /** Slab bytes in use by waiting frames (what the switch's early drain watches). */
  get bytesInUse(): number {
    return this.used;
  }

  /** Slab memory allocated (never more than maxBytes). */
  get allocatedBytes(): number {
    return this.slabs.length * this.slabSize;
  }

  /**
   * Room for a unit of up to `maxUnit` bytes (virtio-net header included) at the end of the
   * queue: `place` is pointed at it. A frame built there and pushed next is queued without a copy.
   * The room is only lent until the next push() (anyone's). False when the queue is full.
   */
  reserve(maxUnit: number, place: EgressPlace): boolean {
    if (maxUnit > this.slabSize || !this.makeRoom(maxUnit)) return false;
    place.buf = this.slabs[this.slab];
    place.dv = this.slabDvs[this.slab];
    place.off = this.slabOff;
    return true;
  }

  /**
   * Adds `f` (sent by `port`) to the end of the queue: copied into a slab, or taken as it is when
   * it was built at the place reserve() gave. False, counted, when it does not fit.
   */
  push(port: Port, f: Frame): boolean {
    const hasVnet = f.vnetOff >= 0;
    const start = hasVnet ? f.vnetOff : f.off;
    const unit = (hasVnet ? VNET_HDR_LEN : 0) + f.len;
    const inPlace = this.slabs.length !== 0 && f.buf === this.slabs[this.slab] && start === this.slabOff && start + unit <= this.slabSize;
    if (!inPlace && (unit > this.slabSize || !this.makeRoom(unit))) {
      this.stats.dropped++;
      return false;
    }
    const at = this.slabOff;
    if (inPlace) this.stats.inPlace++;
    else {
      // A virtio-net header sits right before its frame in every producer's buffer (TAP slabs,
      // the NAT's output): one contiguous copy takes both.
      this.slabs[this.slab].set(f.buf.subarray(start, f.off + f.len), at);
      this.stats.copiedBytes += unit;
    }
    this.slabOff = at + ((unit + ALIGN - 1) & ~(ALIGN - 1));
    this.used += this.slabOff - at;
    if (this.tail === this.ports.length) this.growEntries();
    const m = this.tail * STRIDE;
    this.meta[m] = this.slab;
    this.meta[m + 1] = at;
    this.meta[m + 2] = f.len;
    this.meta[m + 3] = hasVnet ? 1 : 0;
    this.ports[this.tail] = port;
    this.tail++;
    this.stats.queued++;
    if (this.tail - this.head > this.stats.maxDepth) this.stats.maxDepth = this.tail - this.head;
    return true;
  }

  /**
   * Points `out` at the oldest waiting frame (lent from its slab until the queue is empty again)
   * and returns the port that sent it; null when nothing waits, and then every slab is free for
   * reuse. Frames pushed while the caller forwards one are handed out after it, in order.
   */
  next(out: Frame): Port | null {
    // Entries of a port unplugged meanwhile were forgotten (null): skip them.
    while (this.head !== this.tail && this.ports[this.head] === null) this.head++;
    if (this.head === this.tail) {
      this.reset();
      return null;
    }
    const i = this.head++;
    const m = i * STRIDE;
    const slab = this.meta[m];
    const at = this.meta[m + 1];
    const len = this.meta[m + 2];
    const port = this.ports[i] as Port;
    this.ports[i] = null;
    out.buf = this.slabs[slab];
    out.dv = this.slabDvs[slab];
    out.len = len;
    if (this.meta[m + 3] === 1) {
      out.vnetOff = at;
      out.off = at + VNET_HDR_LEN;
      // It was a valid header when pushed; decoding it again is a few reads.
      out.vnet.read(out.dv, at, len);
    } else {
      out.vnetOff = -1;
      out.off = at;
      out.vnet.clear();
    }
    this.stats.sent++;
    return port;
  }

  /** Forgets the frames waiting from `port` (it was unplugged): they are skipped, never sent. */
  forgetPort(port: Port): void {
    for (let i = this.head; i < this.tail; i++) if (this.ports[i] === port) this.ports[i] = null;
  }

  /** Makes the write position one where `unit` bytes fit (a new slab if it must). */
  private makeRoom(unit: number): boolean {
    if (this.slabs.length === 0) return this.addSlab();
    if (this.slabOff + unit <= this.slabSize) return true;
    // The rest of this slab stays unused until the queue empties; count it as used.
    this.used += this.slabSize - this.slabOff;
    if (this.slab + 1 === this.slabs.length && !this.addSlab()) {
      this.used -= this.slabSize - this.slabOff;
      return false;
    }
    this.slab++;
    this.slabOff = 0;
    return true;
  }

  private addSlab(): boolean {
    if ((this.slabs.length + 1) * this.slabSize > this.maxBytes) return false;
    const b = Buffer.allocUnsafeSlow(this.slabSize);
    this.slabs.push(b);
    this.slabDvs.push(new DataView(b.buffer, b.byteOffset, b.byteLength));
    return true;
  }

  private growEntries(): void {
    const n = this.ports.length * 2;
    const meta = new Int32Array(n * STRIDE);
    meta.set(this.meta);
    this.meta = meta;
    const ports = new Array<Port | null>(n).fill(null);
    for (let i = 0; i < this.tail; i++) ports[i] = this.ports[i];
    this.ports = ports;
  }

  private reset(): void {
    this.head = 0;
    this.tail = 0;
    this.slab = 0;
    this.slabOff = 0;
    this.used = 0;
  }
}
