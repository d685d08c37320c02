import { describe, it, expect } from 'vitest';
import { AddressPool, HOLD_ATTACHMENT, HOLD_LEASE } from '../../../src/gateway/address-pool.js';
import { DhcpServer, type DhcpServerConfig } from '../../../src/gateway/dhcp-server.js';
import { VirtualClock } from '../../../src/platform/clock.js';
import {
  BOOTREPLY,
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  DHCP_FLAG_BROADCAST,
  DHCP_OPT_BROADCAST,
  DHCP_OPT_DNS,
  DHCP_OPT_DOMAIN_NAME,
  DHCP_OPT_DOMAIN_SEARCH,
  DHCP_OPT_LEASE_TIME,
  DHCP_OPT_MESSAGE,
  DHCP_OPT_MTU,
  DHCP_OPT_REBINDING_TIME,
  DHCP_OPT_RENEWAL_TIME,
  DHCP_OPT_ROUTER,
  DHCP_OPT_SERVER_ID,
  DHCP_OPT_SUBNET_MASK,
  DhcpMessage,
  decodeSearchList,
  writeDhcpRequest,
  type DhcpRequestFields,
} from '../../../src/packet/dhcp.js';
import { BROADCAST_MAC } from '../../../src/packet/mac.js';
import { ParseStatus } from '../../../src/packet/status.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';
import { MAC_A, MAC_B, MAC_C, MAC_D, MAC_E, dvOf } from '../helpers/frames.js';

const ip = parseIpv4;
const GW = ip('10.0.2.2');
const DNS = ip('10.0.2.3');
const OTHER_SERVER = ip('10.0.2.9');
const START = 1_700_000_000_000;
const LEASE_SEC = 3600;

interface Rig {
  server: DhcpServer;
  pool: AddressPool;
  /** The server's clock; its wall time starts at START. */
  clock: VirtualClock;
  changes: { count: number };
  /** Sends a client message; returns the parsed reply or null when the server stayed silent. */
  send(f: Partial<DhcpRequestFields> & { messageType: number; chaddr: number }): DhcpMessage | null;
  /** Sends raw bytes; returns the reply length. */
  raw(bytes: Uint8Array, at?: number): number;
}

function rig(options: { first?: string; last?: string; config?: Partial<DhcpServerConfig> } = {}): Rig {
  const clock = new VirtualClock({ wallTimeAtZero: START });
  const pool = new AddressPool(ip('10.0.2.0'), 24, ip(options.first ?? '10.0.2.100'), ip(options.last ?? '10.0.2.254'), [GW, DNS]);
  const config: DhcpServerConfig = {
    serverIp: GW,
    prefix: 24,
    router: GW,
    dnsServers: [DNS],
    searchList: ['example.com', 'corp.example.org'],
    mtu: 1500,
    leaseTimeSec: LEASE_SEC,
    ...options.config,
  };
  const server = new DhcpServer(config, pool, clock);
  const changes = { count: 0 };
  server.onLeasesChanged = () => changes.count++;
  const out = new Uint8Array(1500);
  let xid = 0x1000;
  const raw = (bytes: Uint8Array, at = 0): number => server.handle(dvOf(bytes), at, bytes.length - at, out);
  return {
    server,
    pool,
    clock,
    changes,
    raw,
    send(f) {
      const buf = new Uint8Array(1024);
      const len = writeDhcpRequest(buf, 0, { xid: xid++, ...f });
      const n = raw(buf.subarray(0, len));
      if (n === 0) return null;
      const m = new DhcpMessage();
      // A copy: the server reuses its output buffer.
      expect(m.bind(dvOf(out.slice(0, n)), 0, n)).toBe(ParseStatus.OK);
      return m;
    },
  };
}

function u32(b: Uint8Array | null): number {
  expect(b).not.toBeNull();
  expect(b!.length).toBe(4);
  return dvOf(b!).getUint32(0);
}

/** DISCOVER then REQUEST (SELECTING): the address bound. */
function bindLease(r: Rig, mac: number): number {
  const offer = r.send({ messageType: DHCPDISCOVER, chaddr: mac });
  expect(offer?.messageType).toBe(DHCPOFFER);
  const ack = r.send({ messageType: DHCPREQUEST, chaddr: mac, serverId: GW, requestedIp: offer!.yiaddr });
  expect(ack?.messageType).toBe(DHCPACK);
  return ack!.yiaddr;
}

describe('DhcpServer: DISCOVER → OFFER', () => {
  it('offers the next free address with every option a client needs', () => {
    const r = rig();
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A, xid: 0xdeadbeef, flags: DHCP_FLAG_BROADCAST })!;
    expect(m).not.toBeNull();
    expect(m.op).toBe(BOOTREPLY);
    expect(m.messageType).toBe(DHCPOFFER);
    expect(m.xid).toBe(0xdeadbeef);
    expect(m.flags).toBe(DHCP_FLAG_BROADCAST);
    expect(m.chaddr).toBe(MAC_A);
    expect(m.yiaddr).toBe(ip('10.0.2.100'));
    expect(m.ciaddr).toBe(0);
    expect(m.giaddr).toBe(0);
    expect(m.len).toBeGreaterThanOrEqual(300);
    expect(u32(m.option(DHCP_OPT_SUBNET_MASK))).toBe(ip('255.255.255.0'));
    expect(u32(m.option(DHCP_OPT_ROUTER))).toBe(GW);
    expect(u32(m.option(DHCP_OPT_DNS))).toBe(DNS);
    expect(Buffer.from(m.option(DHCP_OPT_DOMAIN_NAME)!).toString('latin1')).toBe('example.com');
    expect(decodeSearchList(m.option(DHCP_OPT_DOMAIN_SEARCH)!)).toEqual(['example.com', 'corp.example.org']);
    expect(dvOf(m.option(DHCP_OPT_MTU)!).getUint16(0)).toBe(1500);
    expect(m.option(DHCP_OPT_MTU)!.length).toBe(2);
    expect(u32(m.option(DHCP_OPT_BROADCAST))).toBe(ip('10.0.2.255'));
    expect(u32(m.option(DHCP_OPT_LEASE_TIME))).toBe(3600);
    expect(m.leaseTime).toBe(3600);
    expect(u32(m.option(DHCP_OPT_SERVER_ID))).toBe(GW);
    expect(m.serverId).toBe(GW);
    expect(u32(m.option(DHCP_OPT_RENEWAL_TIME))).toBe(1800);
    expect(u32(m.option(DHCP_OPT_REBINDING_TIME))).toBe(3150);
    expect(r.server.stats).toMatchObject({ discover: 1, offer: 1, ack: 0, nak: 0, ignored: 0, malformed: 0 });
  });

  it('holds the offer briefly, unbound, and does not report it as a lease change', () => {
    const r = rig();
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A });
    const h = r.pool.holdingOf(MAC_A)!;
    expect(h).toMatchObject({ ip: ip('10.0.2.100'), kind: HOLD_LEASE, bound: false, expiresAt: START + 60_000 });
    expect(r.changes.count).toBe(0);
    // The next client gets the next address, the same client the same one.
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B })!.yiaddr).toBe(ip('10.0.2.101'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!.yiaddr).toBe(ip('10.0.2.100'));
    expect(r.changes.count).toBe(0);
  });

  it("offers an attached container its attachment's address, and leaves the attachment as it is", () => {
    const r = rig();
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })!;
    expect(m.yiaddr).toBe(ip('10.0.2.42'));
    expect(r.pool.holdingOf(MAC_C)).toMatchObject({ ip: ip('10.0.2.42'), kind: HOLD_ATTACHMENT, expiresAt: Infinity });
    // Even when it asks for another address.
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C, requestedIp: ip('10.0.2.150') })!.yiaddr).toBe(ip('10.0.2.42'));
    // And binding keeps it an attachment.
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_C, serverId: GW, requestedIp: ip('10.0.2.42') })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(ip('10.0.2.42'));
    expect(r.pool.holdingOf(MAC_C)?.kind).toBe(HOLD_ATTACHMENT);
    expect(r.changes.count).toBe(0);
  });

  it('offers a requested address when it is in the range and free, else the next free one', () => {
    const r = rig();
    r.pool.hold(ip('10.0.2.150'), MAC_E, HOLD_LEASE, START + 3_600_000, true);
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A, requestedIp: ip('10.0.2.120') })!.yiaddr).toBe(ip('10.0.2.120'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B, requestedIp: ip('10.0.2.150') })!.yiaddr).toBe(ip('10.0.2.100'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C, requestedIp: ip('10.0.2.50') })!.yiaddr).toBe(ip('10.0.2.101')); // outside the range
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_D, requestedIp: ip('192.168.1.7') })!.yiaddr).toBe(ip('10.0.2.102'));
  });

  it('stays silent when the range is exhausted', () => {
    const r = rig({ first: '10.0.2.100', last: '10.0.2.101' });
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!.yiaddr).toBe(ip('10.0.2.100'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B })!.yiaddr).toBe(ip('10.0.2.101'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })).toBeNull();
    expect(r.server.stats).toMatchObject({ discover: 3, offer: 2, ignored: 1 });
    expect(r.pool.holdingOf(MAC_C)).toBeUndefined();
    // Once an offer times out, its address may go to someone else.
    r.clock.advance(60_000);
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })!.yiaddr).toBe(ip('10.0.2.100'));
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
  });

  it('leaves out option 6 when DNS is disabled, and 15/119 without a search list', () => {
    const r = rig({ config: { dnsServers: [], searchList: [] } });
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!;
    expect(m.messageType).toBe(DHCPOFFER);
    expect(m.option(DHCP_OPT_DNS)).toBeNull();
    expect(m.option(DHCP_OPT_DOMAIN_NAME)).toBeNull();
    expect(m.option(DHCP_OPT_DOMAIN_SEARCH)).toBeNull();
    expect(u32(m.option(DHCP_OPT_ROUTER))).toBe(GW);
  });

  it('reads the search list when it replies (it may change under a running server)', () => {
    const r = rig();
    let list = ['a.example'];
    r.server.config = { ...r.server.config, get searchList() { return list; } };
    expect(decodeSearchList(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!.option(DHCP_OPT_DOMAIN_SEARCH)!)).toEqual(['a.example']);
    list = ['b.example', 'c.example'];
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!;
    expect(decodeSearchList(m.option(DHCP_OPT_DOMAIN_SEARCH)!)).toEqual(['b.example', 'c.example']);
    expect(Buffer.from(m.option(DHCP_OPT_DOMAIN_NAME)!).toString('latin1')).toBe('b.example');
  });

  it('still answers when the search list cannot be sent (a bad host domain, or too long): without options 15 and 119', () => {
    const r = rig({ config: { searchList: ['bad domain!'] } });
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!;
    expect(m).not.toBeNull();
    expect(m.messageType).toBe(DHCPOFFER);
    expect(m.option(DHCP_OPT_DOMAIN_NAME)).toBeNull();
    expect(m.option(DHCP_OPT_DOMAIN_SEARCH)).toBeNull();
    expect(u32(m.option(DHCP_OPT_DNS))).toBe(DNS);
    const long = Array.from({ length: 12 }, (_, i) => `${'x'.repeat(60)}.${'y'.repeat(60)}.d${i}.example`);
    const q = rig({ config: { searchList: long } });
    const n = q.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!;
    expect(n.messageType).toBe(DHCPOFFER);
    expect(n.option(DHCP_OPT_DOMAIN_SEARCH)).toBeNull();
  });
});

describe('DhcpServer: REQUEST', () => {
  it('SELECTING: ACKs the offered address and binds it for the lease time', () => {
    const r = rig();
    const offer = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!;
    r.clock.advance(1000);
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: GW, requestedIp: offer.yiaddr, xid: 77 })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.xid).toBe(77);
    expect(ack.yiaddr).toBe(ip('10.0.2.100'));
    expect(ack.leaseTime).toBe(LEASE_SEC);
    expect(u32(ack.option(DHCP_OPT_RENEWAL_TIME))).toBe(1800);
    expect(u32(ack.option(DHCP_OPT_SUBNET_MASK))).toBe(ip('255.255.255.0'));
    expect(r.pool.holdingOf(MAC_A)).toMatchObject({ ip: ip('10.0.2.100'), kind: HOLD_LEASE, bound: true, expiresAt: START + 1000 + LEASE_SEC * 1000 });
    expect(r.changes.count).toBe(1);
    expect(r.server.stats).toMatchObject({ discover: 1, request: 1, offer: 1, ack: 1 });
  });

  it("is silent to a REQUEST for another server, and releases the offer it made that client", () => {
    const r = rig();
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A });
    expect(r.pool.holdingOf(MAC_A)).toBeDefined();
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: OTHER_SERVER, requestedIp: ip('10.0.2.200') })).toBeNull();
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
    expect(r.server.stats.ignored).toBe(1);
    expect(r.changes.count).toBe(0);
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B })!.yiaddr).toBe(ip('10.0.2.100'));
  });

  it('does not give up a bound lease, or an attachment, for a REQUEST to another server', () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: OTHER_SERVER, requestedIp: ip('10.0.2.200') })).toBeNull();
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_C, serverId: OTHER_SERVER, requestedIp: ip('10.0.2.200') })).toBeNull();
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(a);
    expect(r.pool.holdingOf(MAC_C)?.ip).toBe(ip('10.0.2.42'));
  });

  it('NAKs a SELECTING REQUEST for an address that was not offered, by broadcast', () => {
    const r = rig();
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A });
    const nak = r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: GW, requestedIp: ip('10.0.2.123'), xid: 5 })!;
    expect(nak.messageType).toBe(DHCPNAK);
    expect(nak.xid).toBe(5);
    expect(nak.yiaddr).toBe(0);
    expect(nak.ciaddr).toBe(0);
    expect(nak.chaddr).toBe(MAC_A);
    expect(nak.serverId).toBe(GW);
    expect(nak.leaseTime).toBe(-1);
    expect(nak.option(DHCP_OPT_ROUTER)).toBeNull();
    expect(nak.option(DHCP_OPT_MESSAGE)).not.toBeNull();
    expect(r.server.replyIp).toBe(0xffffffff);
    expect(r.server.replyMac).toBe(BROADCAST_MAC);
    expect(r.server.stats.nak).toBe(1);
    // Without any offer at all, too.
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_B, serverId: GW, requestedIp: ip('10.0.2.100') })!.messageType).toBe(DHCPNAK);
    expect(r.pool.holdingOf(MAC_B)).toBeUndefined();
    expect(r.changes.count).toBe(0);
  });

  it("INIT-REBOOT: confirms the client's own address", () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    const before = r.changes.count;
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, requestedIp: a })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(a);
    // Renewing the expiry is a change the state file must see.
    expect(r.changes.count).toBe(before + 1);
  });

  it('INIT-REBOOT: binds a free address of the range for a client it does not know (a restart lost it)', () => {
    const r = rig();
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_B, requestedIp: ip('10.0.2.180') })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(ip('10.0.2.180'));
    expect(r.pool.holdingOf(MAC_B)).toMatchObject({ ip: ip('10.0.2.180'), bound: true, kind: HOLD_LEASE });
    expect(r.changes.count).toBe(1);
  });

  it("INIT-REBOOT: NAKs an address someone else holds, an address of another subnet or outside the range, and a different address than the client's own", () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    for (const [mac, wanted] of [
      [MAC_B, a],
      [MAC_B, ip('10.0.2.42')],
      [MAC_B, ip('192.168.1.50')],
      [MAC_B, ip('10.0.2.50')],
      [MAC_B, GW],
      [MAC_A, ip('10.0.2.200')],
    ] as const) {
      const m = r.send({ messageType: DHCPREQUEST, chaddr: mac, requestedIp: wanted })!;
      expect(m.messageType, `${mac} ${wanted}`).toBe(DHCPNAK);
      expect(r.server.replyIp).toBe(0xffffffff);
      expect(r.server.replyMac).toBe(BROADCAST_MAC);
    }
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(a);
    expect(r.pool.holdingOf(MAC_B)).toBeUndefined();
    expect(r.server.stats.nak).toBe(6);
  });

  it("INIT-REBOOT: takes over another client's expired lease", () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    r.clock.advance(LEASE_SEC * 1000);
    const m = r.send({ messageType: DHCPREQUEST, chaddr: MAC_B, requestedIp: a })!;
    expect(m.messageType).toBe(DHCPACK);
    expect(r.pool.holding(a)?.mac).toBe(MAC_B);
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
  });

  it('RENEWING: ACKs by unicast to ciaddr, extends the lease', () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    r.clock.advance(1_800_000);
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, ciaddr: a })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(ack.yiaddr).toBe(a);
    expect(ack.ciaddr).toBe(a);
    expect(ack.leaseTime).toBe(LEASE_SEC);
    expect(r.server.replyIp).toBe(a);
    expect(r.server.replyMac).toBe(MAC_A);
    expect(r.pool.holdingOf(MAC_A)?.expiresAt).toBe(START + 1_800_000 + LEASE_SEC * 1000);
    // Even with the broadcast bit: ciaddr wins (RFC 2131 4.1).
    r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, ciaddr: a, flags: DHCP_FLAG_BROADCAST });
    expect(r.server.replyIp).toBe(a);
    expect(r.server.replyMac).toBe(MAC_A);
  });

  it('RENEWING (or REBINDING) an address the client does not hold is NAKed', () => {
    const r = rig();
    bindLease(r, MAC_A);
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, ciaddr: ip('10.0.2.150') })!.messageType).toBe(DHCPNAK);
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_B, ciaddr: ip('10.0.2.42') })!.messageType).toBe(DHCPNAK);
  });

  it('ignores a REQUEST with neither a requested address nor ciaddr', () => {
    const r = rig();
    expect(r.send({ messageType: DHCPREQUEST, chaddr: MAC_A })).toBeNull();
    expect(r.server.stats).toMatchObject({ request: 1, ignored: 1, nak: 0, ack: 0 });
  });
});

describe('DhcpServer: RELEASE, DECLINE, INFORM', () => {
  it('RELEASE frees a lease and reports it', () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    expect(r.changes.count).toBe(1);
    expect(r.send({ messageType: DHCPRELEASE, chaddr: MAC_A, ciaddr: a, serverId: GW })).toBeNull();
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
    expect(r.pool.holding(a)).toBeUndefined();
    expect(r.changes.count).toBe(2);
    expect(r.server.stats.release).toBe(1);
  });

  it("RELEASE does not free an attachment's address, nor a lease for another ciaddr", () => {
    const r = rig();
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    const a = bindLease(r, MAC_A);
    const before = r.changes.count;
    expect(r.send({ messageType: DHCPRELEASE, chaddr: MAC_C, ciaddr: ip('10.0.2.42'), serverId: GW })).toBeNull();
    expect(r.send({ messageType: DHCPRELEASE, chaddr: MAC_A, ciaddr: ip('10.0.2.150'), serverId: GW })).toBeNull();
    expect(r.send({ messageType: DHCPRELEASE, chaddr: MAC_B, ciaddr: a, serverId: GW })).toBeNull();
    expect(r.pool.holdingOf(MAC_C)?.ip).toBe(ip('10.0.2.42'));
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(a);
    expect(r.changes.count).toBe(before);
  });

  it('DECLINE sets the address aside for a while and reports it', () => {
    const r = rig({ first: '10.0.2.100', last: '10.0.2.102' });
    const a = bindLease(r, MAC_A);
    expect(a).toBe(ip('10.0.2.100'));
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_A, requestedIp: a, serverId: GW })).toBeNull();
    expect(r.server.stats.decline).toBe(1);
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
    expect(r.changes.count).toBe(2);
    // The declining client and everyone else get other addresses.
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!.yiaddr).toBe(ip('10.0.2.101'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B })!.yiaddr).toBe(ip('10.0.2.102'));
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })).toBeNull();
    // After ten minutes it is free again.
    r.clock.advance(10 * 60_000);
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })!.yiaddr).toBe(ip('10.0.2.100'));
  });

  it('ignores a DECLINE for another server or without an address', () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_A, requestedIp: a, serverId: OTHER_SERVER })).toBeNull();
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_A, serverId: GW })).toBeNull();
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(a);
    expect(r.changes.count).toBe(1);
  });

  it("ignores a DECLINE of an address the client does not hold: one container cannot take another's lease away", () => {
    const r = rig();
    const a = bindLease(r, MAC_A);
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_B, requestedIp: a, serverId: GW })).toBeNull();
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_B, requestedIp: ip('10.0.2.150'), serverId: GW })).toBeNull();
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(a);
    expect(r.changes.count).toBe(1);
    // The free address it named was not set aside either.
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_D, requestedIp: ip('10.0.2.150') })!.yiaddr).toBe(ip('10.0.2.150'));
  });

  it("a DECLINE from an attached container leaves its attachment alone", () => {
    const r = rig();
    r.pool.hold(ip('10.0.2.42'), MAC_C, HOLD_ATTACHMENT, Infinity, true);
    expect(r.send({ messageType: DHCPDECLINE, chaddr: MAC_C, requestedIp: ip('10.0.2.42'), serverId: GW })).toBeNull();
    expect(r.pool.holdingOf(MAC_C)?.ip).toBe(ip('10.0.2.42'));
    expect(r.changes.count).toBe(0);
  });

  it('INFORM: ACK with configuration only (no yiaddr, no lease times), unicast to ciaddr', () => {
    const r = rig();
    const m = r.send({ messageType: DHCPINFORM, chaddr: MAC_B, ciaddr: ip('10.0.2.77'), flags: DHCP_FLAG_BROADCAST })!;
    expect(m.messageType).toBe(DHCPACK);
    expect(m.yiaddr).toBe(0);
    expect(m.ciaddr).toBe(ip('10.0.2.77'));
    expect(m.option(DHCP_OPT_LEASE_TIME)).toBeNull();
    expect(m.option(DHCP_OPT_RENEWAL_TIME)).toBeNull();
    expect(m.option(DHCP_OPT_REBINDING_TIME)).toBeNull();
    expect(u32(m.option(DHCP_OPT_ROUTER))).toBe(GW);
    expect(u32(m.option(DHCP_OPT_DNS))).toBe(DNS);
    expect(u32(m.option(DHCP_OPT_SUBNET_MASK))).toBe(ip('255.255.255.0'));
    expect(r.server.replyIp).toBe(ip('10.0.2.77'));
    expect(r.server.replyMac).toBe(MAC_B);
    expect(r.pool.holdingOf(MAC_B)).toBeUndefined();
    expect(r.changes.count).toBe(0);
    expect(r.server.stats).toMatchObject({ inform: 1, ack: 1 });
    // Without ciaddr there is nobody to answer.
    expect(r.send({ messageType: DHCPINFORM, chaddr: MAC_B })).toBeNull();
    expect(r.server.stats.ignored).toBe(1);
  });
});

describe('DhcpServer: addressing and what it refuses', () => {
  it('replies by broadcast when the client asks for it, else unicast to yiaddr at chaddr (RFC 2131 4.1)', () => {
    const r = rig();
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A, flags: DHCP_FLAG_BROADCAST });
    expect(r.server.replyIp).toBe(0xffffffff);
    expect(r.server.replyMac).toBe(BROADCAST_MAC);
    const m = r.send({ messageType: DHCPDISCOVER, chaddr: MAC_B })!;
    expect(m.flags).toBe(0);
    expect(r.server.replyIp).toBe(m.yiaddr);
    expect(r.server.replyMac).toBe(MAC_B);
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_B, serverId: GW, requestedIp: m.yiaddr })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(r.server.replyIp).toBe(m.yiaddr);
    expect(r.server.replyMac).toBe(MAC_B);
    r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: GW, requestedIp: ip('10.0.2.100'), flags: DHCP_FLAG_BROADCAST });
    expect(r.server.replyIp).toBe(0xffffffff);
    expect(r.server.replyMac).toBe(BROADCAST_MAC);
  });

  it('ignores relayed requests (giaddr set) and non-Ethernet hardware', () => {
    const r = rig();
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A, giaddr: ip('192.0.2.1') })).toBeNull();
    const buf = new Uint8Array(400);
    const len = writeDhcpRequest(buf, 0, { messageType: DHCPDISCOVER, xid: 1, chaddr: MAC_A });
    buf[1] = 6; // htype IEEE 802, hlen 6
    expect(r.raw(buf.subarray(0, len))).toBe(0);
    expect(r.server.stats).toMatchObject({ discover: 0, ignored: 2, malformed: 0, offer: 0 });
    expect(r.pool.holdings()).toEqual([]);
  });

  it('counts malformed messages and never answers them', () => {
    const r = rig();
    const good = new Uint8Array(400);
    const len = writeDhcpRequest(good, 0, { messageType: DHCPDISCOVER, xid: 1, chaddr: MAC_A });
    const cases: Uint8Array[] = [];
    cases.push(good.slice(0, 200)); // truncated
    const reply = good.slice(0, len);
    reply[0] = BOOTREPLY; // a server's message
    cases.push(reply);
    const cookie = good.slice(0, len);
    cookie[236] = 0; // bad magic cookie
    cases.push(cookie);
    const overrun = good.slice(0, len);
    overrun[241] = 200; // option 53 running past the end
    cases.push(overrun.subarray(0, 250));
    for (const type of [DHCPOFFER, DHCPACK, DHCPNAK, 42]) {
      const b = new Uint8Array(400);
      cases.push(b.subarray(0, writeDhcpRequest(b, 0, { messageType: type, xid: 1, chaddr: MAC_A })));
    }
    const bootp = good.slice(0, len);
    bootp[240] = 0; // option 53 becomes PAD, then 1 = option 1 ... make it plain BOOTP: all options gone
    bootp.fill(0, 240);
    bootp[240] = 255;
    cases.push(bootp);
    for (const c of cases) expect(r.raw(c)).toBe(0);
    expect(r.server.stats.malformed).toBe(cases.length);
    expect(r.server.stats).toMatchObject({ discover: 0, offer: 0, ignored: 0 });
    expect(r.pool.holdings()).toEqual([]);
  });

  it('reads a message at an offset inside a larger buffer (the UDP payload of a frame)', () => {
    const r = rig();
    const buf = new Uint8Array(600);
    const len = writeDhcpRequest(buf, 42, { messageType: DHCPDISCOVER, xid: 9, chaddr: MAC_A });
    expect(r.server.handle(dvOf(buf), 42, len, new Uint8Array(1500))).toBeGreaterThanOrEqual(300);
    expect(r.pool.holdingOf(MAC_A)?.ip).toBe(ip('10.0.2.100'));
  });
});

describe('DhcpServer: lease lifetime', () => {
  it('reports bind, release and decline through onLeasesChanged, not offers or renewals to the same address', () => {
    const r = rig();
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A });
    expect(r.changes.count).toBe(0);
    r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: GW, requestedIp: ip('10.0.2.100') });
    expect(r.changes.count).toBe(1);
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A }); // an offer to a bound client changes nothing
    expect(r.changes.count).toBe(1);
    expect(r.pool.holdingOf(MAC_A)?.bound).toBe(true);
    r.send({ messageType: DHCPRELEASE, chaddr: MAC_A, ciaddr: ip('10.0.2.100'), serverId: GW });
    expect(r.changes.count).toBe(2);
    const b = bindLease(r, MAC_B);
    expect(r.changes.count).toBe(3);
    r.send({ messageType: DHCPDECLINE, chaddr: MAC_B, requestedIp: b, serverId: GW });
    expect(r.changes.count).toBe(4);
  });

  it("keeps a bound lease's expiry when the client DISCOVERs again", () => {
    const r = rig();
    bindLease(r, MAC_A);
    r.clock.advance(1000);
    r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A });
    expect(r.pool.holdingOf(MAC_A)).toMatchObject({ bound: true, expiresAt: START + LEASE_SEC * 1000 });
  });

  it('hands never-used addresses out before expired leases, and expired ones lowest first', () => {
    const r = rig({ first: '10.0.2.100', last: '10.0.2.103' });
    expect(bindLease(r, MAC_A)).toBe(ip('10.0.2.100'));
    expect(bindLease(r, MAC_B)).toBe(ip('10.0.2.101'));
    r.clock.advance(LEASE_SEC * 1000 + 1);
    expect(bindLease(r, MAC_C)).toBe(ip('10.0.2.102'));
    expect(bindLease(r, MAC_D)).toBe(ip('10.0.2.103'));
    // Only expired leases are left: the lowest goes first.
    expect(bindLease(r, MAC_E)).toBe(ip('10.0.2.100'));
    expect(r.pool.holdingOf(MAC_A)).toBeUndefined();
    // B comes back late and still finds its address.
    expect(bindLease(r, MAC_B)).toBe(ip('10.0.2.101'));
    // A has lost its address and the range is full.
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })).toBeNull();
  });

  it('a client whose lease expired is offered its address again, and the offer is held for it', () => {
    const r = rig({ first: '10.0.2.100', last: '10.0.2.101' });
    expect(bindLease(r, MAC_A)).toBe(ip('10.0.2.100'));
    expect(bindLease(r, MAC_B)).toBe(ip('10.0.2.101'));
    r.clock.advance(LEASE_SEC * 1000 + 1);
    // A comes back after its lease ran out: it is offered its old address ...
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_A })!.yiaddr).toBe(ip('10.0.2.100'));
    // ... which is not given to the next client while the offer stands (B's expired lease is).
    expect(r.send({ messageType: DHCPDISCOVER, chaddr: MAC_C })!.yiaddr).toBe(ip('10.0.2.101'));
    const ack = r.send({ messageType: DHCPREQUEST, chaddr: MAC_A, serverId: GW, requestedIp: ip('10.0.2.100') })!;
    expect(ack.messageType).toBe(DHCPACK);
    expect(r.pool.holdingOf(MAC_A)?.expiresAt).toBe(r.clock.wallTime() + LEASE_SEC * 1000);
  });
});
