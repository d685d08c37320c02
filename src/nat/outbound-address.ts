/**
 * `--outbound-addr`: the host address the NAT's sockets are bound to. If it is not an address of
 * this host, every connection fails at bind (EADDRNOTAVAIL) and every datagram is dropped — so it
 * is checked once, when the daemon (or usernet-slirp4netns) starts, by binding a UDP socket to it
 * as slirp4netns does: a one-line error at start instead of failures connection by connection.
 * A UDP bind sends nothing and needs no privilege (port 0).
 */
import { createSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { InvalidArgumentError, SystemError } from '../errors.js';

/**
 * Resolves if `address` (an IPv4 literal) can be bound on this host; otherwise rejects with a
 * SystemError coded by the kernel's answer (EADDRNOTAVAIL: not an address of this host).
 * `given` is what the user wrote, when that was not the address itself (an interface name).
 */
export function checkOutboundAddress(address: string, given = address): Promise<void> {
  // Never a name: bind() would look it up.
  if (!isIPv4(address)) return Promise.reject(new InvalidArgumentError(`--outbound-addr ${given}: not an IPv4 address`));
  return new Promise<void>((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.close();
      const code = err.code ?? 'EINVAL';
      const what = given === address ? `--outbound-addr ${address}` : `--outbound-addr ${given}: ${address}`;
      const why = code === 'EADDRNOTAVAIL' ? 'is not an address of this host' : `cannot be used (${err.message})`;
      reject(new SystemError(code, typeof err.errno === 'number' ? Math.abs(err.errno) : 0, 'bind', `${what} ${why} (${code})`));
    });
    s.bind(0, address, () => s.close(() => resolve()));
  });
}
