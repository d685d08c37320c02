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
import { FAST_PATH_ECHOES, FAST_PATH_LAST_IP, FAST_PATH_LAST_MAC, Port, type PortOptions } from './port.js';
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

/** A gateway whose ICMP echo the TAP reader may answer natively (GatewayPort.echoTarget). */
export interface GatewayEchoTarget {
  mac: number;
  ip: number;
  dnsIp: number;
  /** The gateway port's FAST_PATH_* slots and counters, which the native answers count into. */
  fastPath: Float64Array;
  counters: Float64Array;
  /** The gateway's neighbour learning, for senders heard only through native answers. */
  learnNeighbour(ip: number, mac: number): void;
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
  private echoTarget: GatewayEchoTarget | null = null;
  private echoesSeen = 0;

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

  /**
   * Lets the reader answer ICMP echo requests to `gateway` itself, in native code, without
   * waking JavaScript (src/native/usernet_echo.c: the same reply, counters and IP IDs as the
   * gateway's own; frames it is unsure of still come here). It does so only while neither
   * port has a capture or a loss knob (FAST_PATH_OPEN). Both ports must be on the same switch;
   * null turns it off.
   */
  answerGatewayEcho(gateway: GatewayEchoTarget | null): void {
    if (this.reader === null) return;
    this.echoTarget = gateway;
    this.addon.readerFastEcho(
      this.reader,
      gateway === null
        ? null
        : {
            vnetHdrLen: this.vnetHdrLen,
            macHi: Math.floor(gateway.mac / 2 ** 32),
            macLo: gateway.mac >>> 0,
            ip: gateway.ip >>> 0,
            dnsIp: gateway.dnsIp >>> 0,
            portFastPath: this.fastPath,
            portCounters: this.counters,
            gatewayFastPath: gateway.fastPath,
            gatewayCounters: gateway.counters,
          },
    );
  }

  override takeBypassedSource(): number {
    const fp = this.fastPath;
    if (fp[FAST_PATH_ECHOES] === this.echoesSeen) return -1;
    this.echoesSeen = fp[FAST_PATH_ECHOES];
    this.echoTarget?.learnNeighbour(fp[FAST_PATH_LAST_IP], fp[FAST_PATH_LAST_MAC]);
    return fp[FAST_PATH_LAST_MAC];
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
    this.echoTarget = null;
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
