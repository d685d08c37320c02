/**
 * A switch port: where frames enter the switch and where they leave it.
 *
 * Ingress: a port hands each frame it receives to the FrameSink it is plugged into (`sink.ts`:
 * the switch, or a recorder or test) with `sink.input(port, frame)`, inside a beginBatch/endBatch.
 * Egress: the switch calls `transmit(frame)`, and the port adapts the frame to what its link can
 * take. Ports with offloads (a TAP with IFF_VNET_HDR, or a memory port created with
 * `offloads: true`) take virtio-net headers, partial checksums and 64 KiB GSO frames as they are:
 * a TAP-to-TAP frame is written in one piece, header included, without being touched. Towards a
 * port without offloads, partial checksums are completed and GSO frames are segmented here, in
 * software, into a per-port scratch buffer (never in the lent ingress buffer, which other egress
 * ports of a flood still read).
 */
import { segmentGso, completeChecksum, type SegmentSink } from '../packet/offload.js';
import { ParseStatus } from '../packet/status.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../packet/virtio-net.js';
import {
  COUNTER_COUNT,
  DROP_CAPTURE,
  DROP_INJECTED,
  DROP_LINK_DOWN,
  DROP_QUEUE_FULL,
  DROP_SEGMENTATION,
  DROP_TX_ERROR,
  TX_BYTES,
  TX_FRAMES,
} from './counters.js';
import type { Frame } from './frame.js';
import { systemRandom, type Random } from '../platform/random.js';

export const PortKind = {
  /** A container's interface. */
  CONTAINER: 'container',
  /** The network's own gateway (later issues). */
  GATEWAY: 'gateway',
  /** Anything else plugged in by a library user. */
  OTHER: 'other',
} as const;
export type PortKind = (typeof PortKind)[keyof typeof PortKind];

export const DIRECTION_RX = 0;
export const DIRECTION_TX = 1;

/**
 * Slots of a port's `fastPath` array: what native code that answers some frames without JS
 * (the TAP reader answering the gateway's echo, src/native/usernet_echo.c) reads and counts
 * into. The numbers are mirrored in src/native/usernet_native.c.
 */
/** 1 while nothing but the switch must see the port's frames (no capture tap, no loss knob). */
export const FAST_PATH_OPEN = 0;
/** The port's MTU. */
export const FAST_PATH_MTU = 1;
/** Echo requests answered natively: from this (TAP) port, or by this (gateway) port. */
export const FAST_PATH_ECHOES = 2;
/** The source MAC and IPv4 address of the last one (for the switch's and gateway's learning). */
export const FAST_PATH_LAST_MAC = 3;
export const FAST_PATH_LAST_IP = 4;
/** The gateway's IPv4 identification counter, shared by its JS and native replies. */
export const FAST_PATH_IP_ID = 5;
export const FAST_PATH_SLOTS = 6;

/** Something watching the frames of a port (a pcap capture). Must copy what it keeps. */
export interface FrameTap {
  /**
   * One frame crossing the port (lent). Returns false when the tap had to drop it (it cannot
   * keep up): the port counts that frame once in DROP_CAPTURE, however many taps dropped it.
   */
  onFrame(port: Port, direction: number, frame: Frame): boolean;
}

const ERRNO_EIO = -5;
const ERRNO_EAGAIN = -11;
const ERRNO_ENOBUFS = -105;

/** Zero virtio-net header put in front of frames that have none, towards offload ports. */
const EMPTY_VNET_HDR = Buffer.alloc(VNET_HDR_LEN);

/** Largest frame a port may be asked to segment into: 64 KiB of payload plus headers. */
const SCRATCH_SIZE = 65536 + 256;

export interface PortOptions {
  name: string;
  kind?: PortKind;
  mtu?: number;
  offloads?: boolean;
  /** The source of the loss draws (`lossRate`). Default the system's; a test gives a SeededRandom. */
  random?: Random;
}

export abstract class Port implements SegmentSink {
  /** Assigned by the switch; -1 while unplugged. */
  id = -1;
  readonly name: string;
  readonly kind: PortKind;
  /** Whether this port's link takes virtio-net headers (partial checksums, GSO frames). */
  readonly offloads: boolean;
  readonly counters = new Float64Array(COUNTER_COUNT);
  /** Shared with native code that answers frames without JS (FAST_PATH_*). */
  readonly fastPath = new Float64Array(FAST_PATH_SLOTS);
  private tapList: readonly FrameTap[] = Object.freeze([]);
  private loss = 0;
  private linkMtu: number;
  private readonly random: Random;
  private scratch: Buffer | null = null;
  private scratchDv: DataView | null = null;

  constructor(options: PortOptions) {
    this.name = options.name;
    this.kind = options.kind ?? PortKind.CONTAINER;
    this.linkMtu = options.mtu ?? 1500;
    this.offloads = options.offloads ?? false;
    this.random = options.random ?? systemRandom;
    this.fastPath[FAST_PATH_MTU] = this.linkMtu;
    this.fastPath[FAST_PATH_OPEN] = 1;
  }

  /** Largest L3 packet this port's link takes (Ethernet payload). */
  get mtu(): number {
    return this.linkMtu;
  }
  set mtu(value: number) {
    this.linkMtu = value;
    this.fastPath[FAST_PATH_MTU] = value;
  }

  /** Frame taps (captures) watching this port; empty on the fast path. Assign a new array to change. */
  get taps(): readonly FrameTap[] {
    return this.tapList;
  }
  set taps(value: readonly FrameTap[]) {
    this.tapList = Object.freeze([...value]);
    this.updateFastPath();
  }

  /**
   * Probability (0..1) of dropping each frame sent out of this port, on purpose: a knob for
   * testing how the TCP endpoints recover from loss (`usernet ports set NAME --tx-loss P`).
   */
  get lossRate(): number {
    return this.loss;
  }
  set lossRate(value: number) {
    this.loss = value;
    this.updateFastPath();
  }

  /**
   * Called by the switch before each ageing sweep: if native code answered frames of this port
   * without the switch since the last call, the source MAC to learn again (so that a container
   * heard only through them does not age out), else -1. Ports without such code: always -1.
   */
  takeBypassedSource(): number {
    return -1;
  }

  /** Native answers may bypass this port only while nothing else must see its frames. */
  private updateFastPath(): void {
    this.fastPath[FAST_PATH_OPEN] = this.tapList.length === 0 && this.loss === 0 ? 1 : 0;
  }

  /**
   * Writes one complete link-layer unit (with the virtio-net header first when this port has
   * offloads). Returns the bytes written or a negative errno.
   */
  protected abstract writeLink(buf: Uint8Array, off: number, len: number): number;
  /** As writeLink, from two pieces (a header built elsewhere, then the frame). */
  protected abstract writeLink2(b1: Uint8Array, o1: number, l1: number, b2: Uint8Array, o2: number, l2: number): number;
  /** Unplugs and releases the port's resources (resolves once they are released). */
  abstract close(): void | Promise<void>;

  /** Sends a frame out of this port, adapting offloads to what the link takes. */
  transmit(f: Frame): void {
    if (this.loss !== 0 && this.random.float() < this.loss) {
      this.counters[DROP_INJECTED]++;
      return;
    }
    if (this.tapList.length !== 0) this.tapFrame(DIRECTION_TX, f);
    if (this.offloads) {
      if (f.vnetOff >= 0) this.account(this.writeLink(f.buf, f.vnetOff, f.len + VNET_HDR_LEN), f.len);
      else this.account(this.writeLink2(EMPTY_VNET_HDR, 0, VNET_HDR_LEN, f.buf, f.off, f.len), f.len);
      return;
    }
    if (f.vnetOff < 0 || (f.vnet.gsoType === VNET_GSO_NONE && (f.vnet.flags & VNET_F_NEEDS_CSUM) === 0)) {
      this.account(this.writeLink(f.buf, f.off, f.len), f.len);
      return;
    }
    this.softwareOffload(f);
  }

  /** SegmentSink: one software segment (or checksummed copy) ready to go out. */
  segment(buf: Uint8Array, off: number, len: number): void {
    this.account(this.writeLink(buf, off, len), len);
  }

  private softwareOffload(f: Frame): void {
    if (this.scratch === null) {
      this.scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE);
      this.scratchDv = new DataView(this.scratch.buffer, this.scratch.byteOffset, SCRATCH_SIZE);
    }
    const scratch = this.scratch;
    const dv = this.scratchDv as DataView;
    if (f.vnet.gsoType === VNET_GSO_NONE) {
      if (f.len > SCRATCH_SIZE) {
        this.counters[DROP_SEGMENTATION]++;
        return;
      }
      scratch.set(f.buf.subarray(f.off, f.off + f.len), 0);
      if (completeChecksum(dv, 0, f.len, f.vnet.csumStart, f.vnet.csumOffset) !== ParseStatus.OK) {
        this.counters[DROP_SEGMENTATION]++;
        return;
      }
      this.account(this.writeLink(scratch, 0, f.len), f.len);
      return;
    }
    if (segmentGso(f.buf, f.dv, f.off, f.len, f.vnet, scratch, dv, this) !== ParseStatus.OK) {
      this.counters[DROP_SEGMENTATION]++;
    }
  }

  private account(result: number, frameLen: number): void {
    const c = this.counters;
    if (result >= 0) {
      c[TX_FRAMES]++;
      c[TX_BYTES] += frameLen;
    } else if (result === ERRNO_EIO) {
      c[DROP_LINK_DOWN]++;
    } else if (result === ERRNO_EAGAIN || result === ERRNO_ENOBUFS) {
      c[DROP_QUEUE_FULL]++;
    } else {
      c[DROP_TX_ERROR]++;
    }
  }

  /**
   * Hands a frame to every tap; a tap that throws is removed rather than breaking forwarding.
   * A frame that one or more taps dropped is counted once (DROP_CAPTURE counts frames of this
   * port that some capture missed, not capture sessions times frames).
   */
  tapFrame(direction: number, f: Frame): void {
    let dropped = false;
    for (const tap of this.tapList) {
      try {
        if (!tap.onFrame(this, direction, f)) dropped = true;
      } catch {
        this.taps = this.tapList.filter((t) => t !== tap);
      }
    }
    if (dropped) this.counters[DROP_CAPTURE]++;
  }
}
