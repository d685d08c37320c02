/**
 * The start-time check of --outbound-addr (src/nat/outbound-address.ts), shared by the daemon and
 * usernet-slirp4netns: a UDP socket bound to the address, on port 0, sends nothing.
 */
import { describe, expect, it } from 'vitest';
import { checkOutboundAddress } from '../../../src/nat/outbound-address.js';
import { SystemError, UsernetError } from '../../../src/errors.js';

async function rejection(p: Promise<unknown>): Promise<UsernetError> {
  try {
    await p;
  } catch (err) {
    return err as UsernetError;
  }
  throw new Error('expected a rejection');
}

describe('checkOutboundAddress', () => {
  it('accepts an address of this host', async () => {
    await expect(checkOutboundAddress('127.0.0.1')).resolves.toBeUndefined();
  });

  it('refuses one the host does not have, with EADDRNOTAVAIL and a one-line message', async () => {
    const err = await rejection(checkOutboundAddress('203.0.113.9'));
    expect(err).toBeInstanceOf(SystemError);
    expect(err.code).toBe('EADDRNOTAVAIL');
    expect(err.message).toBe('--outbound-addr 203.0.113.9 is not an address of this host (EADDRNOTAVAIL)');
  });

  it('names what the user gave when it was an interface', async () => {
    const err = await rejection(checkOutboundAddress('203.0.113.9', 'eth9'));
    expect(err.message).toBe('--outbound-addr eth9: 203.0.113.9 is not an address of this host (EADDRNOTAVAIL)');
  });

  it('never looks a name up', async () => {
    const err = await rejection(checkOutboundAddress('localhost'));
    expect(err.code).toBe('ERR_INVALID_ARGUMENT');
  });
});
