/**
 * The host side of the NAT, the DNS forwarder and published ports, as an interface with two
 * implementations:
 *
 *   SystemHostStack  real host sockets: node:net, node:dgram and the addon's batched datagram
 *                    sockets (what the daemon uses; the addon is loaded on first use only)
 *   MemoryOutside    an in-memory "outside": hosts on documentation addresses with TCP and UDP
 *                    servers and clients a test scripts, driven by the virtual clock, needing
 *                    neither the addon nor a network (src/outside/)
 *
 * The socket shapes are the subsets of Node's own (net.Socket, net.Server, dgram.Socket) that
 * usernet uses, so the system implementation hands out Node's objects unchanged and costs nothing.
 */
import dgram from 'node:dgram';

/** Where a datagram came from (dgram's RemoteInfo). */
export interface HostRemoteInfo {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
  size: number;
}

/** The part of dgram.Socket that usernet uses. */
export interface HostDatagramSocket {
  bind(options: { address?: string; port?: number; exclusive?: boolean }, callback?: () => void): void;
  connect(port: number, address: string, callback?: () => void): void;
  /** On a connected socket. */
  send(msg: Uint8Array, callback?: (err: Error | null, bytes: number) => void): void;
  send(msg: Uint8Array, port: number, address: string, callback?: (err: Error | null, bytes: number) => void): void;
  address(): { address: string; family: string; port: number };
  close(callback?: () => void): void;
  unref(): void;
  on(event: 'message', listener: (msg: Buffer, rinfo: HostRemoteInfo) => void): void;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): void;
  on(event: 'listening' | 'connect' | 'close', listener: () => void): void;
  once(event: 'message', listener: (msg: Buffer, rinfo: HostRemoteInfo) => void): void;
  once(event: 'error', listener: (err: NodeJS.ErrnoException) => void): void;
  once(event: 'listening' | 'connect' | 'close', listener: () => void): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a listener given to on() or once(), of any of their types
  off(event: string, listener: (...args: any[]) => void): void;
}

export interface HostDatagramOptions {
  type: 'udp4' | 'udp6';
  ipv6Only?: boolean;
}

/**
 * The host's sockets. (The TCP and NAT-datagram members are added by the NAT's host-side work;
 * the datagram socket above is what the DNS forwarder and published UDP ports use.)
 */
export interface HostStack {
  /** "system" for real host sockets, "memory" for an in-memory outside. */
  readonly kind: 'system' | 'memory';
  createDatagramSocket(options: HostDatagramOptions): HostDatagramSocket;
}

/** Real host sockets. */
export class SystemHostStack implements HostStack {
  readonly kind = 'system' as const;
  createDatagramSocket(options: HostDatagramOptions): HostDatagramSocket {
    return dgram.createSocket(options);
  }
}

/** The stack every component uses when it is given none. */
export const systemHostStack: HostStack = new SystemHostStack();
