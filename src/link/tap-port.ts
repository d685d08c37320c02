/**
 * A TAP port: a container's TAP device (opened by the native addon, usually inside the
 * container's namespaces) plugged into the switch.
 *
 * Reading: the addon polls the fd and reads frames in batches into this port's slab, then calls
 * `onBatch` once; each frame is decoded (virtio-net header first when offloads are on) into the
 * port's reused Frame and handed to the switch. Frames are lent: nothing here keeps a reference
 * to the slab after the callback. Writing: one write() (or writev()) per frame, synchronously.
 */
import { native, errnoName, type ReaderHandle } from '../native/addon.js';
import { ParseStatus } from '../packet/status.js';
import { DROP_BAD_OFFLOAD, DROP_INTERNAL, DROP_RUNT, RX_FRAMES } from './counters.js';
import { Frame } from './frame.js';
import { Port, type PortOptions } from './port.js';
import type { FrameSink } from './sink.js';

/** Room for the largest frame a TAP can hand over: 64 KiB GSO + VLAN tags + virtio-net header. */
export const TAP_MAX_FRAME = 65536 + 64;
const SLAB_SIZE = 2 * 1024 * 1024;
const BATCH_BUDGET = 256;

export interface TapPortOptions extends PortOptions {
  fd: number;
  /** 10 when the fd carries virtio-net headers, else 0. */
  vnetHdrLen: number;
  /** Interface name inside the container. */
  ifname: string;
}

export interface TapPortEvents {
  /** Reading failed for good (the device is gone): the port should be removed. */
  onFatalError?: (port: TapPort, message: string) => void;
  /** An unexpected exception while handling a frame (rate-limited by the caller). */
  onInternalError?: (port: TapPort, err: unknown) => void;
}

export class TapPort extends Port {
  readonly fd: number;
  readonly ifname: string;
  readonly vnetHdrLen: number;
  private readonly slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
  private readonly dv = new DataView(this.slab.buffer, this.slab.byteOffset, this.slab.byteLength);
  private readonly meta = new Int32Array(BATCH_BUDGET * 2);
  private readonly frame = new Frame();
  private reader: ReaderHandle | null = null;
  private sink: FrameSink | null = null;
  private closed = false;
  private closing: Promise<void> = Promise.resolve();
  private readonly events: TapPortEvents;
  private readonly addon = native();

  constructor(options: TapPortOptions, events: TapPortEvents = {}) {
    super({ ...options, offloads: options.vnetHdrLen > 0 });
    this.fd = options.fd;
    this.ifname = options.ifname;
    this.vnetHdrLen = options.vnetHdrLen;
    this.events = events;
    this.frame.buf = this.slab;
    this.frame.dv = this.dv;
  }

  /** Plugs into `sink` (a switch, or anything implementing FrameSink) and starts reading. */
  plug(sink: FrameSink): this {
    sink.addPort(this);
    this.sink = sink;
    this.reader = native().startReader(this.fd, this.slab, this.meta, TAP_MAX_FRAME, BATCH_BUDGET, this.onBatch, true);
    return this;
  }

  private readonly onBatch = (count: number, error: number): void => {
    const sink = this.sink;
    if (sink === null || this.closed) return;
    sink.beginBatch();
    const meta = this.meta;
    for (let i = 0; i < count; i++) {
      try {
        this.receive(sink, meta[2 * i], meta[2 * i + 1]);
      } catch (err) {
        this.counters[DROP_INTERNAL]++;
        this.events.onInternalError?.(this, err);
      }
    }
    try {
      // What the batch caused (the gateway's and NAT's answers) leaves now.
      sink.endBatch();
    } catch (err) {
      this.counters[DROP_INTERNAL]++;
      this.events.onInternalError?.(this, err);
    }
    if (error !== 0) this.events.onFatalError?.(this, `reading ${this.ifname} failed: ${errnoName(error)}`);
  };

  private receive(sink: FrameSink, off: number, len: number): void {
    const f = this.frame;
    const h = this.vnetHdrLen;
    if (h !== 0) {
      if (len < h) {
        this.counters[RX_FRAMES]++;
        this.counters[DROP_RUNT]++;
        return;
      }
      f.vnetOff = off;
      f.off = off + h;
      f.len = len - h;
      if (f.vnet.read(this.dv, off, f.len) !== ParseStatus.OK) {
        this.counters[RX_FRAMES]++;
        this.counters[DROP_BAD_OFFLOAD]++;
        return;
      }
    } else {
      f.vnetOff = -1;
      f.off = off;
      f.len = len;
    }
    sink.input(this, f);
  }

  protected writeLink(buf: Uint8Array, off: number, len: number): number {
    return this.addon.write(this.fd, buf, off, len);
  }

  protected writeLink2(b1: Uint8Array, o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number {
    return this.addon.writev(this.fd, b1, o1, l1, b2, o2, l2);
  }

  /**
   * Makes the TAP persistent or not. Persistent while attached, so the container keeps its
   * interface, addresses and routes while the daemon is down; cleared on detach.
   */
  setPersist(on: boolean): void {
    native().setPersist(this.fd, on);
  }

  /**
   * Unplugs and closes the fd. No frame callback runs after this returns; the promise resolves
   * once the fd is really closed (libuv releases it on its next turn).
   */
  close(): Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    this.sink?.removePort(this);
    this.sink = null;
    const reader = this.reader;
    this.reader = null;
    this.closing = new Promise<void>((resolve) => {
      if (reader !== null) this.addon.closeReader(reader, resolve);
      else {
        this.addon.closeFd(this.fd);
        resolve();
      }
    });
    return this.closing;
  }
}
