/**
 * The words the NAT uses for why a flow ended, in one place: tests and the API compare these
 * constants, never string literals. The texts are what `usernet conntrack -L`, the removal
 * counters, the logs and the API JSON print; they must not change.
 */

/** Why a TCP flow ended (TcpFlow.closeReason); it becomes its conntrack entry's removal reason. */
export const TcpCloseReason = {
  /** Both sides finished normally. */
  Closed: 'closed',
  ResetByContainer: 'reset by the container',
  /** A published port's SYN was answered with a RST. */
  RefusedByContainer: 'refused by the container',
  /** A published port's SYN was never answered. */
  ContainerDidNotAnswer: 'the container did not answer',
  /** Retransmissions to the container ran out. */
  ContainerStoppedAnswering: 'the container stopped answering',
  /** The host socket closed under the flow without an error. */
  HostSocketClosed: 'host socket closed',
} as const;
export type TcpCloseReasonText = (typeof TcpCloseReason)[keyof typeof TcpCloseReason];

/** Reasons with a detail after them: `host socket: ECONNRESET`, `connect failed: ETIMEDOUT`. */
export const TCP_CLOSE_HOST_SOCKET_PREFIX = 'host socket: ';
export const TCP_CLOSE_CONNECT_FAILED_PREFIX = 'connect failed: ';

/** Why a conntrack entry left the table (the `reason` given to onRemove and counted by prefix). */
export const RemovalReason = {
  Timeout: 'timeout',
  Evicted: 'evicted',
  /** A new connection on the tuple of one in TIME_WAIT. */
  Replaced: 'replaced',
  Flush: 'flush',
  ContainerGone: 'container gone',
  Removed: 'removed',
  NetworkRemoved: 'network removed',
  DaemonStopping: 'daemon stopping',
  Unpublished: 'unpublished',
  PublishFailed: 'publish failed',
} as const;
export type RemovalReasonText = (typeof RemovalReason)[keyof typeof RemovalReason];
