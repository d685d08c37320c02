import { describe, it, expect } from 'vitest';
import { AddressPool, HOLD_ATTACHMENT, HOLD_LEASE } from '../../../src/gateway/address-pool.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { MAC_A, MAC_B, MAC_C, MAC_D } from '../helpers/frames.js';

const ip = parseIpv4;
const NOW = 1_700_000_000_000;
const HOUR = 3_600_000;

/** 10.0.2.0/24, gateway .2, DNS .3, range `first`-`last`. */
function pool(first = '10.0.2.100', last = '10.0.2.254'): AddressPool {
  return new AddressPool(ip('10.0.2.0'), 24, ip(first), ip(last), [ip('10.0.2.2'), ip('10.0.2.3')]);
}

describe('AddressPool: the subnet', () => {
  it('computes network and broadcast, also from an address that is not the network address', () => {
    const p = new AddressPool(ip('10.0.2.77'), 24, ip('10.0.2.100'), ip('10.0.2.254'), []);
    expect(p.network).toBe(ip('10.0.2.0'));
    expect(p.broadcast).toBe(ip('10.0.2.255'));
    const q = new AddressPool(ip('172.16.0.0'), 12, ip('172.16.0.100'), ip('172.31.255.254'), []);
    expect(q.network).toBe(ip('172.16.0.0'));
    expect(q.broadcast).toBe(ip('172.31.255.255'));
  });

  it('contains every address of the subnet, network and broadcast included, and nothing else', () => {
    const p = pool();
    for (const a of ['10.0.2.0', '10.0.2.1', '10.0.2.2', '10.0.2.128', '10.0.2.255']) expect(p.contains(ip(a)), a).toBe(true);
    for (const a of ['10.0.1.255', '10.0.3.0', '0.0.0.0', '255.255.255.255', '192.168.2.5']) expect(p.contains(ip(a)), a).toBe(false);
  });

  it('never calls network, broadcast, gateway or DNS usable; any other address of the subnet is', () => {
    const p = pool();
    for (const a of ['10.0.2.0', '10.0.2.255', '10.0.2.2', '10.0.2.3', '10.0.3.5']) expect(p.usable(ip(a)), a).toBe(false);
    // Usable does not mean "in the range": attachments may take any host address.
    for (const a of ['10.0.2.1', '10.0.2.4', '10.0.2.99', '10.0.2.100', '10.0.2.254']) expect(p.usable(ip(a)), a).toBe(true);
  });
});

describe('AddressPool: next()', () => {
  it('hands out the range lowest first', () => {
    const p = pool();
    expect(p.next(MAC_A, NOW)).toBe(ip('10.0.2.100'));
    // next() only proposes: nothing is held until hold().
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.100'));
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.101'));
    // A MAC gets back what it holds.
    expect(p.next(MAC_A, NOW)).toBe(ip('10.0.2.100'));
  });

  it('skips addresses held by others (leases and attachments) and the own addresses inside the range', () => {
    const p = new AddressPool(ip('10.0.2.0'), 24, ip('10.0.2.1'), ip('10.0.2.6'), [ip('10.0.2.2'), ip('10.0.2.3')]);
    p.hold(ip('10.0.2.1'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    p.hold(ip('10.0.2.4'), MAC_B, HOLD_LEASE, NOW + HOUR, true);
    expect(p.next(MAC_C, NOW)).toBe(ip('10.0.2.5'));
    p.hold(ip('10.0.2.5'), MAC_C, HOLD_LEASE, NOW + 60_000, false); // an offer counts as held too
    expect(p.next(MAC_D, NOW)).toBe(ip('10.0.2.6'));
  });

  it('skips a declined address until the decline expires', () => {
    const p = pool();
    p.decline(ip('10.0.2.100'), NOW + 600_000);
    expect(p.next(MAC_A, NOW)).toBe(ip('10.0.2.101'));
    expect(p.next(MAC_A, NOW + 599_999)).toBe(ip('10.0.2.101'));
    expect(p.next(MAC_A, NOW + 600_000)).toBe(ip('10.0.2.100'));
  });

  it('does not give a declined address to a client that asks for it by name', () => {
    const p = pool();
    p.decline(ip('10.0.2.100'), NOW + 600_000);
    expect(p.whyNot(ip('10.0.2.100'), MAC_A, NOW)).toMatch(/declined/);
    expect(p.whyNot(ip('10.0.2.100'), MAC_A, NOW + 600_000)).toBe('');
  });

  it('reuses an expired lease only when nothing else is free, the lowest such first', () => {
    const p = pool('10.0.2.100', '10.0.2.103');
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW - 1, true); // expired
    p.hold(ip('10.0.2.101'), MAC_B, HOLD_LEASE, NOW - 1, true); // expired
    p.hold(ip('10.0.2.102'), MAC_C, HOLD_LEASE, NOW + HOUR, true);
    // .103 was never used: it goes first, so A and B can still come back to theirs.
    expect(p.next(MAC_D, NOW)).toBe(ip('10.0.2.103'));
    p.hold(ip('10.0.2.103'), MAC_D, HOLD_LEASE, NOW + HOUR, true);
    const E = 0x02_00_00_00_00_ee;
    expect(p.next(E, NOW)).toBe(ip('10.0.2.100'));
    // The expired owners still find theirs.
    expect(p.next(MAC_A, NOW)).toBe(ip('10.0.2.100'));
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.101'));
    // A lease expiring exactly now is expired.
    const q = pool('10.0.2.100', '10.0.2.100');
    q.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW, true);
    expect(q.next(MAC_B, NOW)).toBe(ip('10.0.2.100'));
    expect(q.next(MAC_B, NOW - 1)).toBe(-1);
  });

  it('never reuses an attachment, whatever its expiry says', () => {
    const p = pool('10.0.2.100', '10.0.2.100');
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_ATTACHMENT, 0, true);
    expect(p.next(MAC_B, NOW)).toBe(-1);
  });

  it('returns -1 when the range is full', () => {
    const p = pool('10.0.2.100', '10.0.2.101');
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    p.hold(ip('10.0.2.101'), MAC_B, HOLD_ATTACHMENT, Infinity, true);
    expect(p.next(MAC_C, NOW)).toBe(-1);
    // A range made only of own addresses is always full.
    const q = new AddressPool(ip('10.0.2.0'), 24, ip('10.0.2.2'), ip('10.0.2.3'), [ip('10.0.2.2'), ip('10.0.2.3')]);
    expect(q.next(MAC_C, NOW)).toBe(-1);
  });
});

describe('AddressPool: hold()', () => {
  it('records the holding both ways', () => {
    const p = pool();
    const h = p.hold(ip('10.0.2.150'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    expect(h).toMatchObject({ ip: ip('10.0.2.150'), mac: MAC_A, kind: HOLD_ATTACHMENT, expiresAt: Infinity, bound: true });
    expect(p.holding(ip('10.0.2.150'))).toBe(h);
    expect(p.holdingOf(MAC_A)).toBe(h);
    expect(p.holdings()).toEqual([h]);
  });

  it('moves a MAC to its new address, freeing the old one', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    p.hold(ip('10.0.2.120'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    expect(p.holding(ip('10.0.2.100'))).toBeUndefined();
    expect(p.holdingOf(MAC_A)?.ip).toBe(ip('10.0.2.120'));
    expect(p.holdingOf(MAC_A)?.kind).toBe(HOLD_ATTACHMENT);
    expect(p.holdings()).toHaveLength(1);
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.100'));
  });

  it('re-holding the same address replaces the holding (kind, expiry, bound)', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + 60_000, false);
    const h = p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    expect(p.holdingOf(MAC_A)).toBe(h);
    expect(h.bound).toBe(true);
    expect(h.expiresAt).toBe(NOW + HOUR);
    expect(p.holdings()).toHaveLength(1);
  });

  it("takes over another MAC's expired lease on that address", () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW - 1, true);
    expect(p.whyNot(ip('10.0.2.100'), MAC_B, NOW)).toBe('');
    p.hold(ip('10.0.2.100'), MAC_B, HOLD_LEASE, NOW + HOUR, true);
    expect(p.holding(ip('10.0.2.100'))?.mac).toBe(MAC_B);
    expect(p.holdingOf(MAC_A)).toBeUndefined();
    expect(p.holdings()).toHaveLength(1);
  });

  it('clears a decline on the address it takes', () => {
    const p = pool('10.0.2.100', '10.0.2.101');
    p.decline(ip('10.0.2.100'), NOW + 600_000);
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    p.release(MAC_A);
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.100'));
  });
});

describe('AddressPool: whyNot()', () => {
  it('explains each refusal in one sentence', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    p.hold(ip('10.0.2.50'), MAC_B, HOLD_ATTACHMENT, Infinity, true);
    expect(p.whyNot(ip('10.0.3.1'), MAC_C, NOW)).toBe('10.0.3.1 is outside the subnet 10.0.2.0/24');
    expect(p.whyNot(ip('10.0.2.0'), MAC_C, NOW)).toBe('10.0.2.0 is the network address');
    expect(p.whyNot(ip('10.0.2.255'), MAC_C, NOW)).toBe('10.0.2.255 is the broadcast address');
    expect(p.whyNot(ip('10.0.2.2'), MAC_C, NOW)).toBe("10.0.2.2 is the network's own (gateway or DNS) address");
    expect(p.whyNot(ip('10.0.2.3'), MAC_C, NOW)).toBe("10.0.2.3 is the network's own (gateway or DNS) address");
    expect(p.whyNot(ip('10.0.2.100'), MAC_C, NOW)).toBe('10.0.2.100 is already in use');
    expect(p.whyNot(ip('10.0.2.50'), MAC_C, NOW)).toBe('10.0.2.50 is already in use');
  });

  it('has no objection to a free address, to what the MAC holds, or to an expired lease', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    p.hold(ip('10.0.2.101'), MAC_B, HOLD_LEASE, NOW - 1, true);
    p.hold(ip('10.0.2.50'), MAC_D, HOLD_ATTACHMENT, NOW - 1, true);
    expect(p.whyNot(ip('10.0.2.7'), MAC_C, NOW)).toBe('');
    expect(p.whyNot(ip('10.0.2.100'), MAC_A, NOW)).toBe('');
    expect(p.whyNot(ip('10.0.2.101'), MAC_C, NOW)).toBe('');
    expect(p.whyNot(ip('10.0.2.50'), MAC_D, NOW)).toBe('');
    // An attachment never expires, whatever its expiresAt.
    expect(p.whyNot(ip('10.0.2.50'), MAC_C, NOW)).toBe('10.0.2.50 is already in use');
  });
});

describe('AddressPool: release() and decline()', () => {
  it('frees what a MAC holds and returns the address, or -1', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    expect(p.release(MAC_A)).toBe(ip('10.0.2.100'));
    expect(p.holdingOf(MAC_A)).toBeUndefined();
    expect(p.holding(ip('10.0.2.100'))).toBeUndefined();
    expect(p.release(MAC_A)).toBe(-1);
    expect(p.release(MAC_B)).toBe(-1);
  });

  it('releases by kind: a lease release does not free an attachment, and the reverse', () => {
    const p = pool();
    p.hold(ip('10.0.2.50'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    p.hold(ip('10.0.2.100'), MAC_B, HOLD_LEASE, NOW + HOUR, true);
    expect(p.release(MAC_A, HOLD_LEASE)).toBe(-1);
    expect(p.holdingOf(MAC_A)?.ip).toBe(ip('10.0.2.50'));
    expect(p.release(MAC_B, HOLD_ATTACHMENT)).toBe(-1);
    expect(p.holdingOf(MAC_B)?.ip).toBe(ip('10.0.2.100'));
    expect(p.release(MAC_A, HOLD_ATTACHMENT)).toBe(ip('10.0.2.50'));
    expect(p.release(MAC_B, HOLD_LEASE)).toBe(ip('10.0.2.100'));
    expect(p.holdings()).toEqual([]);
  });

  it('decline drops a lease on the address and sets the address aside', () => {
    const p = pool('10.0.2.100', '10.0.2.101');
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_LEASE, NOW + HOUR, true);
    p.decline(ip('10.0.2.100'), NOW + 600_000);
    expect(p.holding(ip('10.0.2.100'))).toBeUndefined();
    expect(p.holdingOf(MAC_A)).toBeUndefined();
    expect(p.next(MAC_A, NOW)).toBe(ip('10.0.2.101'));
  });

  it('decline never drops an attachment', () => {
    const p = pool();
    p.hold(ip('10.0.2.100'), MAC_A, HOLD_ATTACHMENT, Infinity, true);
    p.decline(ip('10.0.2.100'), NOW + 600_000);
    expect(p.holdingOf(MAC_A)?.ip).toBe(ip('10.0.2.100'));
    expect(p.next(MAC_B, NOW)).toBe(ip('10.0.2.101'));
  });

  it('decline with every address set aside leaves the range full', () => {
    const p = pool('10.0.2.100', '10.0.2.101');
    p.decline(ip('10.0.2.100'), NOW + 1000);
    p.decline(ip('10.0.2.101'), NOW + 1000);
    expect(p.next(MAC_A, NOW)).toBe(-1);
    expect(p.next(MAC_A, NOW + 1000)).toBe(ip('10.0.2.100'));
  });
});
