/**
 * The learning switch: the forwarding decision for every frame, between any kind of port.
 *
 *   ingress port ──input()──▶ runt? bad source? reserved destination?  ── drop, counted
 *                               │ learn the source MAC on the ingress port
 *                               ▼
 *                     destination group bit set, or unknown?  ── flood: every port but ingress
 *                               │ known
 *                               ▼
 *                     learned on the ingress port?  ── drop (never reflected back)
 *                               │
 *                               ▼
 *              --icc=false and container→container?  ── drop
 *                               │
 *                     fits the egress port's MTU?  ── drop on the egress port if not
 *                               ▼
 *                       egress.transmit(frame)   (offload adaptation happens there)
 *
 * Every EtherType (IPv4, IPv6, ARP, anything) is switched the same way. Time comes from an
 * injected Clock (platform/clock.ts) read once per batch (`beginBatch()`), so tests walk through
 * ageing on a VirtualClock. Ports reach the switch only through the FrameSink interface
 * (link/sink.ts), which it implements.
 */
import { ETH_HLEN } from '../packet/ethernet.js';
import { readMac } from '../packet/mac.js';
import { VNET_GSO_NONE, VNET_GSO_UDP_L4, VNET_GSO_ECN } from '../packet/virtio-net.js';
import {
  DROP_BAD_SRC,
  DROP_FILTERED,
  DROP_ICC,
  DROP_MTU,
  DROP_RESERVED,
  DROP_RUNT,
  DROP_SPOOFED,
  RX_BYTES,
  RX_FLOODED,
  RX_FRAMES,
  RX_UNICAST,
} from '../link/counters.js';
import { Frame } from '../link/frame.js';
import { DIRECTION_RX, PortKind, type Port } from '../link/port.js';
import type { FrameSink } from '../link/sink.js';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { Fdb, LEARN_SPOOFED, type FdbOptions } from './fdb.js';
import { EgressQueue, EGRESS_DEFAULT_MAX_BYTES, type EgressPlace, type EgressQueueOptions } from './egress-queue.js';

/** Slack for one 802.1Q tag on top of MTU + Ethernet header, as the Linux bridge allows. */
const VLAN_SLACK = 4;

export interface SwitchOptions extends FdbOptions {
  /** Inter-container communication (Docker's --icc). Default true. */
  icc?: boolean;
  /** Time for learning, ageing and its sweep timer. Default the system clock. */
  clock?: Clock;
  /** The egress queue's slab size and memory bound (egress-queue.ts). */
  egress?: EgressQueueOptions;
  /**
   * Inside a batch, once this many bytes of answers wait, they leave before the next frame is
   * forwarded instead of at the end of the batch: a long batch cannot fill the queue. Default
   * an eighth of the queue's bound (1 MiB).
   */
  egressDrainBytes?: number;
}

export class Switch implements FrameSink {
  readonly fdb: Fdb;
  icc: boolean;
  /** Plugged ports, dense, in plug order (the flood list). */
  ports: Port[] = [];
  private readonly clock: Clock;
  private now = 0;
  private nextPortId = 1;
  private sweepTimer: Timer | null = null;
  private depth = 0;
  private inBatch = false;
  /** Frames sent into the switch while it was forwarding: they leave at the drain point. */
  readonly egress: EgressQueue;
  private readonly egressDrainBytes: number;
  /** The frame object entries of the egress queue are lent through. */
  private readonly queued = new Frame();

  constructor(options: SwitchOptions = {}) {
    this.fdb = new Fdb(options);
    this.icc = options.icc ?? true;
    this.clock = options.clock ?? systemClock;
    this.now = this.clock.now();
    this.egress = new EgressQueue(options.egress);
    this.egressDrainBytes = options.egressDrainBytes ?? (options.egress?.maxBytes ?? EGRESS_DEFAULT_MAX_BYTES) / 8;
  }

  /** Plugs a port in; its name must be unique on this switch. */
  addPort(port: Port): void {
    if (port.id !== -1) throw new Error(`port ${port.name} is already plugged in`);
    if (this.ports.some((p) => p.name === port.name)) throw new Error(`a port named ${port.name} already exists`);
    port.id = this.nextPortId++;
    this.ports = [...this.ports, port];
  }

  /** Unplugs a port and forgets what was learned on it. */
  removePort(port: Port): void {
    if (!this.ports.includes(port)) return;
    this.ports = this.ports.filter((p) => p !== port);
    this.fdb.flushPort(port);
    this.egress.forgetPort(port);
    port.id = -1;
  }

  getPort(name: string): Port | undefined {
    return this.ports.find((p) => p.name === name);
  }

  /** Reads the clock once for the frames that follow (one batch read from a port). */
  beginBatch(): void {
    this.now = this.clock.now();
    this.inBatch = true;
  }

  /** The batch is over: what it made ports send leaves now (the drain point). */
  endBatch(): void {
    this.inBatch = false;
    this.drain();
  }

  /** The clock time of the current batch. */
  get time(): number {
    return this.now;
  }

  /** Starts the periodic sweep of aged-out MAC entries (a clock timer: it never keeps Node alive). */
  startAgeing(intervalMs = Math.min(1000, Math.max(100, this.fdb.ageingTimeMs / 4))): void {
    if (this.sweepTimer) return;
    this.sweepTimer = this.clock.setInterval(() => this.sweep(), intervalMs);
  }

  /**
   * Ages out MAC entries; first re-learns the sources of frames that native code answered
   * without the switch since the last sweep (a container that only pings the gateway stays
   * known, as it would on a bridge).
   */
  sweep(): void {
    const now = this.clock.now();
    for (const p of this.ports) {
      const mac = p.takeBypassedSource();
      if (mac > 0) this.fdb.learn(mac, p, now);
    }
    this.fdb.sweep(now);
  }

  stopAgeing(): void {
    this.clock.clear(this.sweepTimer);
    this.sweepTimer = null;
  }

  /**
   * The forwarding decision for one frame received on `ingress`. The frame is lent.
   *
   * A frame sent while the switch is forwarding — a port answering the frame being delivered to
   * it, as the gateway does with ARP, DHCP, ping and (through the NAT) TCP — is not forwarded
   * inside that delivery: it is copied into the egress queue and leaves at the drain point, after
   * the batch (`endBatch()`), or right after this frame when no batch is open (a frame from a
   * timer or a host socket). So deliveries never nest, every delivery sees the switch settled,
   * and frames keep the order they were sent in. A frame sent when the switch is idle is forwarded
   * at once, without a copy.
   */
  input(ingress: Port, f: Frame): void {
    if (this.depth !== 0) {
      this.egress.push(ingress, f);
      return;
    }
    // A long batch whose answers pile up sends them before going on, so the queue stays small.
    const egress = this.egress;
    if (egress.length !== 0 && egress.bytesInUse >= this.egressDrainBytes) this.drain();
    this.depth = 1;
    try {
      this.forward(ingress, f);
    } finally {
      this.depth = 0;
    }
    // (Nothing to drain on the common path: one read, no call.)
    if (!this.inBatch && egress.length !== 0) this.drain();
  }

  /**
   * While the switch is forwarding, points `place` at room for a unit of up to `maxUnit` bytes at
   * the end of the egress queue and returns true: a frame built there and sent into the switch
   * next is queued without being copied. False when the switch is idle (a frame sent now is
   * forwarded at once, from wherever it was built) or the queue is full.
   */
  /** True while the switch is forwarding: a frame sent into it now waits in the egress queue (copied). */
  get forwarding(): boolean {
    return this.depth !== 0;
  }

  reserveEgress(maxUnit: number, place: EgressPlace): boolean {
    return this.depth !== 0 && this.egress.reserve(maxUnit, place);
  }

  /**
   * The drain point: forwards every frame waiting in the egress queue, oldest first, including
   * those sent while it runs (ports answering them), until the queue is empty. This is where the
   * frames the gateway and the NAT produced leave; a later delay or trace stage hooks in here.
   * A no-op while the switch is forwarding (the outer call drains).
   */
  drain(): void {
    if (this.depth !== 0 || this.egress.length === 0) return;
    this.depth = 1;
    try {
      const f = this.queued;
      for (let port = this.egress.next(f); port !== null; port = this.egress.next(f)) {
        if (port.id !== -1) this.forward(port, f);
      }
    } finally {
      this.depth = 0;
    }
  }

  private forward(ingress: Port, f: Frame): void {
    const c = ingress.counters;
    c[RX_FRAMES]++;
    c[RX_BYTES] += f.len;
    if (ingress.taps.length !== 0) ingress.tapFrame(DIRECTION_RX, f);
    if (f.len < ETH_HLEN) {
      c[DROP_RUNT]++;
      return;
    }
    const buf = f.buf;
    const o = f.off;
    // Source: a group address or all zeros is never a station (802.1D 7.8; Linux drops them).
    if ((buf[o + 6] & 1) !== 0) {
      c[DROP_BAD_SRC]++;
      return;
    }
    const src = readMac(f.dv, o + 6);
    if (src === 0) {
      c[DROP_BAD_SRC]++;
      return;
    }
    const dstGroup = (buf[o] & 1) !== 0;
    // 01:80:C2:00:00:01-0F (PAUSE, LACP, 802.1X, LLDP...) are link-local: never relayed.
    if (dstGroup && buf[o] === 0x01 && buf[o + 1] === 0x80 && buf[o + 2] === 0xc2 && buf[o + 3] === 0 && buf[o + 4] === 0) {
      const last = buf[o + 5];
      if (last >= 1 && last <= 15) {
        c[DROP_RESERVED]++;
        return;
      }
    }
    if (this.fdb.learn(src, ingress, this.now) === LEARN_SPOOFED) {
      c[DROP_SPOOFED]++;
      return;
    }
    if (!dstGroup) {
      const egress = this.fdb.lookup(readMac(f.dv, o), this.now);
      if (egress !== null) {
        if (egress === ingress) {
          c[DROP_FILTERED]++;
          return;
        }
        if (!this.icc && ingress.kind === PortKind.CONTAINER && egress.kind === PortKind.CONTAINER) {
          c[DROP_ICC]++;
          return;
        }
        c[RX_UNICAST]++;
        if (fitsMtu(f, egress)) egress.transmit(f);
        else egress.counters[DROP_MTU]++;
        return;
      }
    }
    this.flood(ingress, f);
  }

  private flood(ingress: Port, f: Frame): void {
    ingress.counters[RX_FLOODED]++;
    const ports = this.ports;
    const iccBlocked = !this.icc && ingress.kind === PortKind.CONTAINER;
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i];
      if (p === ingress) continue;
      // A flood that --icc=false keeps from a container is counted on that container's port.
      if (iccBlocked && p.kind === PortKind.CONTAINER) p.counters[DROP_ICC]++;
      else if (fitsMtu(f, p)) p.transmit(f);
      else p.counters[DROP_MTU]++;
    }
  }
}

/**
 * Judged against the egress port: a plain frame fits if its Ethernet payload is within the MTU
 * (plus one VLAN tag of slack); a GSO frame fits if each segment it stands for does (L3 + L4
 * headers + gso_size), since it is cut into those segments before any wire sees it.
 */
export function fitsMtu(f: Frame, egress: Port): boolean {
  const v = f.vnet;
  if (f.vnetOff < 0 || v.gsoType === VNET_GSO_NONE) return f.len <= egress.mtu + ETH_HLEN + VLAN_SLACK;
  const l4 = f.off + v.csumStart;
  const l4HeaderLength = (v.gsoType & ~VNET_GSO_ECN) === VNET_GSO_UDP_L4 ? 8 : (f.buf[l4 + 12] >> 4) * 4;
  // csumStart counts from the Ethernet header; the MTU counts from the L3 header.
  return v.csumStart - ETH_HLEN + l4HeaderLength + v.gsoSize <= egress.mtu + VLAN_SLACK;
}
