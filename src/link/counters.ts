/**
 * Per-port counters: one Float64Array per port, indexed by constants, so counting a frame is an
 * array increment (no objects, no strings). Names are for the API and the CLI.
 */
export const RX_FRAMES = 0;
export const RX_BYTES = 1;
export const TX_FRAMES = 2;
export const TX_BYTES = 3;
/** Frames received on this port that were flooded (broadcast, multicast, unknown unicast). */
export const RX_FLOODED = 4;
/** Shorter than an Ethernet header. */
export const DROP_RUNT = 5;
/** Source MAC is multicast/broadcast or all zeros. */
export const DROP_BAD_SRC = 6;
/** Destination is a reserved 802.1D address 01:80:C2:00:00:01-0F. */
export const DROP_RESERVED = 7;
/** Destination was learned on the ingress port itself: never sent back out. */
export const DROP_FILTERED = 8;
/** Source MAC belongs to a static entry on another port (e.g. the gateway's MAC). */
export const DROP_SPOOFED = 9;
/**
 * Container-to-container frame with inter-container communication disabled: counted on the
 * ingress port for unicast (the frame is dropped), on each container port a flood skipped.
 */
export const DROP_ICC = 10;
/** Inconsistent virtio-net header (bad checksum position, unknown GSO type). */
export const DROP_BAD_OFFLOAD = 11;
/** An unexpected exception while handling the frame (a bug; logged, rate-limited). */
export const DROP_INTERNAL = 12;
/** Too big for this (egress) port's MTU. */
export const DROP_MTU = 13;
/** The container's link is down (EIO on write). */
export const DROP_LINK_DOWN = 14;
/** The kernel had no room (EAGAIN/ENOBUFS on write). */
export const DROP_QUEUE_FULL = 15;
/** Any other write error. */
export const DROP_TX_ERROR = 16;
/** A frame that could not be segmented or checksummed in software for this port. */
export const DROP_SEGMENTATION = 17;
/**
 * Frames of this port that a capture session could not keep up with (its client reads too
 * slowly): counted once per frame, however many sessions missed it; each session reports its
 * own count when it ends.
 */
export const DROP_CAPTURE = 18;
/** Frames received on this port that went to one known port (unicast forwarding). */
export const RX_UNICAST = 19;
/** Frames dropped on purpose by the port's loss knob (testing retransmission). */
export const DROP_INJECTED = 20;
export const COUNTER_COUNT = 21;

/** Drop reasons by counter index, as shown by `usernet ports`. */
export const DROP_NAMES: ReadonlyArray<readonly [number, string]> = [
  [DROP_RUNT, 'runt'],
  [DROP_BAD_SRC, 'bad_src_mac'],
  [DROP_RESERVED, 'reserved_dst'],
  [DROP_FILTERED, 'same_port'],
  [DROP_SPOOFED, 'spoofed_src'],
  [DROP_ICC, 'icc_blocked'],
  [DROP_BAD_OFFLOAD, 'bad_offload'],
  [DROP_INTERNAL, 'internal_error'],
  [DROP_MTU, 'mtu_exceeded'],
  [DROP_LINK_DOWN, 'link_down'],
  [DROP_QUEUE_FULL, 'queue_full'],
  [DROP_TX_ERROR, 'tx_error'],
  [DROP_SEGMENTATION, 'segmentation'],
  [DROP_CAPTURE, 'capture_overrun'],
  [DROP_INJECTED, 'injected_loss'],
];

export interface PortCountersSnapshot {
  rx_frames: number;
  rx_bytes: number;
  tx_frames: number;
  tx_bytes: number;
  rx_flooded: number;
  rx_unicast: number;
  drops: Record<string, number>;
  drops_total: number;
}

export function snapshotCounters(c: Float64Array): PortCountersSnapshot {
  const drops: Record<string, number> = {};
  let total = 0;
  for (const [i, name] of DROP_NAMES) {
    drops[name] = c[i];
    total += c[i];
  }
  return { rx_frames: c[RX_FRAMES], rx_bytes: c[RX_BYTES], tx_frames: c[TX_FRAMES], tx_bytes: c[TX_BYTES], rx_flooded: c[RX_FLOODED], rx_unicast: c[RX_UNICAST], drops, drops_total: total };
}
