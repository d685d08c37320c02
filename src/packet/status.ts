/**
 * Result codes of the packet views' `bind()`: a number, not an exception, because malformed
 * input is normal on the data path and is counted, not thrown. 0 means the header is valid.
 * Plain numeric constants (not a TypeScript enum) so they inline and survive per-file transpiling.
 */
export const ParseStatus = {
  OK: 0,
  /** Fewer bytes than the fixed header needs. */
  TRUNCATED: 1,
  /** A version field that is not the one this view decodes (IPv4 view on an IPv6 packet...). */
  BAD_VERSION: 2,
  /** A header length field (IPv4 IHL, TCP data offset) below the minimum or beyond the buffer. */
  BAD_HEADER_LENGTH: 3,
  /** A total/payload length field that disagrees with the bytes present. */
  BAD_LENGTH: 4,
  /** Hardware/protocol sizes or types that this codec does not handle. */
  UNSUPPORTED: 5,
  /** Offload metadata (virtio-net header) inconsistent with the frame. */
  BAD_OFFLOAD: 6,
} as const;
export type ParseStatus = (typeof ParseStatus)[keyof typeof ParseStatus];

const NAMES = ['ok', 'truncated', 'bad_version', 'bad_header_length', 'bad_length', 'unsupported', 'bad_offload'];

/** Stable lower-case name of a ParseStatus, for counters and messages. */
export function parseStatusName(status: number): string {
  return NAMES[status] ?? `status_${status}`;
}
