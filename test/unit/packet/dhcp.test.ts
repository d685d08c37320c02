import { describe, it, expect } from 'vitest';
import { ParseStatus } from '../../../src/packet/status.js';
import {
  DhcpMessage,
  writeDhcpReply,
  writeDhcpRequest,
  writeDhcpOption,
  dhcpOptionLength,
  encodeSearchList,
  decodeSearchList,
  BOOTREQUEST,
  BOOTREPLY,
  DHCPDISCOVER,
  DHCPREQUEST,
  DHCPDECLINE,
  DHCPACK,
  DHCPNAK,
  DHCPRELEASE,
  DHCPINFORM,
  DHCP_FLAG_BROADCAST,
  DHCP_MAGIC_COOKIE,
  DHCP_MIN_MESSAGE_LENGTH,
  DHCP_OPTIONS_OFFSET,
  DHCP_OPT_SUBNET_MASK,
  DHCP_OPT_ROUTER,
  DHCP_OPT_DNS,
  DHCP_OPT_HOSTNAME,
  DHCP_OPT_DOMAIN_NAME,
  DHCP_OPT_MTU,
  DHCP_OPT_BROADCAST,
  DHCP_OPT_LEASE_TIME,
  DHCP_OPT_MESSAGE,
  DHCP_OPT_RENEWAL_TIME,
  DHCP_OPT_REBINDING_TIME,
  DHCP_OPT_DOMAIN_SEARCH,
  DHCP_OPT_PARAM_REQUEST_LIST,
  DHCP_OPT_MAX_MESSAGE_SIZE,
  DHCP_OPT_CLIENT_ID,
  DHCP_OPT_SERVER_ID,
  DHCP_OPT_REQUESTED_IP,
  DHCP_OPT_MESSAGE_TYPE,
  DHCP_OPT_END,
} from '../../../src/packet/dhcp.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { MAC_A, dvOf, hex, prng } from '../helpers/frames.js';

// DHCP messages (UDP payloads), 48 bytes a line: the cookie 63825363 ends the fifth line and the
// options start on the sixth. Generated once; python is not needed to run these tests.
//   discover, request, overload, repeated: scapy 2.5.0, BOOTP(chaddr=02:00:00:00:00:0a)/DHCP(options=[...])
//   udhcpc: captured from busybox 1.35.0 `udhcpc -i veth0` (MAC 02:00:00:00:00:0a) in the sandbox
//   ack: written by writeDhcpReply (the test below checks it still is) and decoded by scapy
const REF = {
  // xid 0x3903f326, flags broadcast; 53=DISCOVER, 61=01+MAC, 55=[1,3,6,15,26,28,119], 57=1500, 12="box-1"
  // 53 at 240, 61 at 243, 55 at 252, 57 at 261, 12 at 265, END at 272
  discover: `
    010106003903f326000080000000000000000000000000000000000002000000000a0000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    3501013d070102000000000a37070103060f1a1c77390205dc0c05626f782d31ff`,
  // xid 0x3903f326, secs 3; 53=REQUEST, 61=01+MAC, 50=10.0.2.100, 54=10.0.2.2, 55=[1,3,6], 12="box-1"
  request: `
    010106003903f326000300000000000000000000000000000000000002000000000a0000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    3501033d070102000000000a32040a00026436040a00020237030103060c05626f782d31ff`,
  // xid 0x01020304; options: 53=REQUEST, 52=3, END; file (offset 108): 50=10.0.2.101, 55=[1,3], END;
  // sname (offset 44): 54=10.0.2.2, 55=[6,15], END
  overload: `
    0101060001020304000000000000000000000000000000000000000002000000000a0000000000000000000036040a00
    02023702060fff0000000000000000000000000000000000000000000000000000000000000000000000000000000000
    00000000000000000000000032040a00026537020103ff00000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    350103340103ff`,
  // xid 0x0a0b0c0d; 53=INFORM, 55=[1,3], 12="box-1", 55=[6,119], then RFC 3397's example: 119 three
  // times, 9 bytes each ("eng.apple.com", "marketing.apple.com" with the pointer c0 04)
  repeated: `
    010106000a0b0c0d000000000000000000000000000000000000000002000000000a0000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    350108370201030c05626f782d3137020677770903656e67056170706c77096503636f6d00096d617709726b6574696e
    67c004ff`,
  // xid 0xa93e0374; 53=DISCOVER, 57=576, 55=[1,3,6,12,15,28,42], 60="udhcp 1.35.0", 61=01+MAC, END, 20 PADs
  udhcpc: `
    01010600a93e0374000000000000000000000000000000000000000002000000000a0000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    3501013902024037070103060c0f1c2a3c0c756468637020312e33352e303d070102000000000aff0000000000000000
    000000000000000000000000`,
  // scapy: op 2, xid 0x3903f326, flags 32768, yiaddr 10.0.2.100, chaddr 02000000000a, message-type 5,
  // server_id 10.0.2.2, lease_time 3600, renewal_time 1800, rebinding_time 3150, subnet_mask 255.255.255.0,
  // broadcast_address 10.0.2.255, router 10.0.2.2, name_server (10.0.2.3, 192.0.2.1),
  // domain b'example.internal', 119 (32 bytes: example.internal., corp.example.), interface-mtu 1500, end
  ack: `
    020106003903f32600008000000000000a000264000000000000000002000000000a0000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
    000000000000000000000000000000000000000000000000000000000000000000000000000000000000000063825363
    35010536040a000202330400000e103a04000007083b0400000c4e0104ffffff001c040a0002ff03040a00020206080a
    000203c00002010f106578616d706c652e696e7465726e616c7720076578616d706c6508696e7465726e616c0004636f
    7270076578616d706c65001a0205dcff`,
};

/** A reference message as bytes plus its DataView. */
function ref(name: keyof typeof REF): { b: Buffer; dv: DataView } {
  const b = hex(REF[name]);
  return { b, dv: dvOf(b) };
}

/** The 240-byte fixed part + cookie of the scapy DISCOVER followed by `options` (hex). */
function withOptions(options: string): Buffer {
  return Buffer.concat([hex(REF.discover).subarray(0, DHCP_OPTIONS_OFFSET), hex(options)]);
}

function bindAll(b: Buffer, m = new DhcpMessage()): { m: DhcpMessage; st: number } {
  return { m, st: m.bind(dvOf(b), 0, b.length) };
}

const u32s = (b: Uint8Array | null): number[] => {
  if (b === null) return [];
  const dv = dvOf(b);
  return Array.from({ length: b.length / 4 }, (_, i) => dv.getUint32(4 * i));
};
const ascii = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('latin1'));

const IP_100 = 0x0a000264; // 10.0.2.100
const IP_101 = 0x0a000265;
const GW = 0x0a000202; // 10.0.2.2
const CLIENT_ID = '01' + '02000000000a';

describe('DhcpMessage.bind', () => {
  it('decodes a scapy DISCOVER with a parameter request list and a client id', () => {
    const { b, dv } = ref('discover');
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.op).toBe(BOOTREQUEST);
    expect(m.htype).toBe(1);
    expect(m.hlen).toBe(6);
    expect(m.hops).toBe(0);
    expect(m.xid).toBe(0x3903f326);
    expect(m.secs).toBe(0);
    expect(m.flags).toBe(DHCP_FLAG_BROADCAST);
    expect([m.ciaddr, m.yiaddr, m.siaddr, m.giaddr]).toEqual([0, 0, 0, 0]);
    expect(m.chaddr).toBe(MAC_A);
    expect(m.overload).toBe(0);
    expect(m.messageType).toBe(DHCPDISCOVER);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 15, 26, 28, 119]);
    expect(Buffer.from(m.clientId!).toString('hex')).toBe(CLIENT_ID);
    expect(m.maxMessageSize).toBe(1500);
    expect(m.hostname).toBe('box-1');
    expect(m.requestedIp).toBe(-1);
    expect(m.serverId).toBe(-1);
    expect(m.leaseTime).toBe(-1);
    expect(m.domainSearch).toBeNull();
    // Views, not copies: they see the bound buffer.
    expect(m.paramRequestList!.buffer).toBe(b.buffer);
    expect(m.paramRequestList!.byteOffset).toBe(b.byteOffset + 254);
  });

  it('decodes a scapy REQUEST with requested IP and server id', () => {
    const { b, dv } = ref('request');
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.messageType).toBe(DHCPREQUEST);
    expect(m.xid).toBe(0x3903f326);
    expect(m.secs).toBe(3);
    expect(m.flags).toBe(0);
    expect(m.requestedIp).toBe(IP_100);
    expect(m.serverId).toBe(GW);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6]);
    expect(Buffer.from(m.clientId!).toString('hex')).toBe(CLIENT_ID);
    expect(m.hostname).toBe('box-1');
    expect(m.maxMessageSize).toBe(-1);
  });

  it('decodes the DISCOVER busybox udhcpc sends (300 bytes, PADs after END)', () => {
    const { b, dv } = ref('udhcpc');
    expect(b.length).toBe(300);
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.messageType).toBe(DHCPDISCOVER);
    expect(m.xid).toBe(0xa93e0374);
    expect(m.chaddr).toBe(MAC_A);
    expect(m.flags).toBe(0);
    expect(m.maxMessageSize).toBe(576);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 12, 15, 28, 42]);
    expect(ascii(m.option(60))).toBe('udhcp 1.35.0');
    expect(Buffer.from(m.clientId!).toString('hex')).toBe(CLIENT_ID);
    expect(m.hostname).toBeNull();
  });

  it('binds at an offset inside a larger buffer (the UDP payload of a frame)', () => {
    const inner = hex(REF.request);
    const b = Buffer.concat([Buffer.alloc(42, 0xee), inner, Buffer.alloc(9, 0xee)]);
    const m = new DhcpMessage();
    expect(m.bind(dvOf(b), 42, inner.length)).toBe(ParseStatus.OK);
    expect(m.requestedIp).toBe(IP_100);
    expect(m.serverId).toBe(GW);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6]);
    expect(m.hostname).toBe('box-1');
    // The trailing 0xee bytes are not options: one byte less and the hostname runs past the end.
    expect(m.bind(dvOf(b), 42, inner.length - 2)).toBe(ParseStatus.BAD_LENGTH);
  });

  it('reads overloaded options in the RFC order: options field, then file, then sname', () => {
    const { b, dv } = ref('overload');
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.overload).toBe(3);
    expect(m.messageType).toBe(DHCPREQUEST);
    expect(m.requestedIp).toBe(IP_101); // from file
    expect(m.serverId).toBe(GW); // from sname
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 15]); // file's part first
    expect(m.optionCount(DHCP_OPT_PARAM_REQUEST_LIST)).toBe(2);
  });

  it('reads only the fields option 52 names', () => {
    const { b, dv } = ref('overload');
    const m = new DhcpMessage();
    const at = DHCP_OPTIONS_OFFSET + 5; // the value of option 52
    b[at] = 1; // file only
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.requestedIp).toBe(IP_101);
    expect(m.serverId).toBe(-1);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3]);
    b[at] = 2; // sname only
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.requestedIp).toBe(-1);
    expect(m.serverId).toBe(GW);
    expect(Array.from(m.paramRequestList!)).toEqual([6, 15]);
    b[at] = 0;
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.UNSUPPORTED);
    b[at] = 4;
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.UNSUPPORTED);
    // Without option 52, file and sname are plain fields whatever they contain.
    b.fill(0, at - 2, at + 1); // 34 01 xx -> PAD PAD PAD
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.overload).toBe(0);
    expect(m.requestedIp).toBe(-1);
    expect(m.serverId).toBe(-1);
    expect(m.paramRequestList).toBeNull();
  });

  it('ignores an overload option inside file or sname', () => {
    const { b, dv } = ref('overload');
    b.set(hex('340102 ff'), 108 + 10); // replace file's END with 52=2, END
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.overload).toBe(3);
    expect(m.optionCount(52)).toBe(1);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 15]);
  });

  it('rejects an overloaded option that runs past the end of its field', () => {
    const { b, dv } = ref('overload');
    const m = new DhcpMessage();
    b[108 + 7] = 200; // 55 in file: 200 bytes from offset 117 is past 236, though inside the message
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.BAD_LENGTH);
    const s = ref('overload');
    s.b[44 + 7] = 60; // 55 in sname: past offset 108
    expect(m.bind(s.dv, 0, s.b.length)).toBe(ParseStatus.BAD_LENGTH);
    s.b[44 + 7] = 2;
    s.b[44 + 10] = 0x0c; // END -> option 12 of length 0 (the next byte), then PADs: fine
    expect(m.bind(s.dv, 0, s.b.length)).toBe(ParseStatus.OK);
    s.b.fill(0x0c, 44 + 10, 108); // 12 with length 12 repeatedly: the last one runs past 108
    expect(m.bind(s.dv, 0, s.b.length)).toBe(ParseStatus.BAD_LENGTH);
  });

  it('concatenates repeated options (RFC 3396): parameter list and RFC 3397 search list', () => {
    const { b, dv } = ref('repeated');
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.messageType).toBe(DHCPINFORM);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 119]);
    expect(m.optionCount(DHCP_OPT_DOMAIN_SEARCH)).toBe(3);
    expect(Buffer.from(m.domainSearch!).toString('hex')).toBe('03656e67056170706c6503636f6d00096d61726b6574696e67c004');
    expect(decodeSearchList(m.domainSearch!)).toEqual(['eng.apple.com', 'marketing.apple.com']);
    expect(Buffer.from(m.option(DHCP_OPT_DOMAIN_SEARCH)!).equals(Buffer.from(m.domainSearch!))).toBe(true);
    expect(m.hostname).toBe('box-1');
  });

  it('keeps one scratch buffer for concatenated options across binds', () => {
    const { b, dv } = ref('repeated');
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    const scratch = m.paramRequestList!.buffer;
    expect(scratch).not.toBe(b.buffer);
    for (let i = 0; i < 100; i++) expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.paramRequestList!.buffer).toBe(scratch);
    expect(m.domainSearch!.buffer).toBe(scratch);
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6, 119]);
  });

  it('reassembles a split fixed-size option and rejects a repeated message type', () => {
    const m = new DhcpMessage();
    // 50 in two 2-byte pieces = 10.0.2.100; 51 in 1 + 3 bytes = 7200
    let r = bindAll(withOptions('350103 32020a00 0c0161 32020264 3301 00 3303001c20 ff'), m);
    expect(r.st).toBe(ParseStatus.OK);
    expect(m.requestedIp).toBe(IP_100);
    expect(m.leaseTime).toBe(7200);
    expect(m.hostname).toBe('a');
    // Two one-byte message types make a two-byte one.
    r = bindAll(withOptions('350103 350103 ff'), m);
    expect(r.st).toBe(ParseStatus.BAD_LENGTH);
    // Split hostname beyond 255 characters: concatenated, then cut to 255.
    const long = 'h'.repeat(255);
    const b = withOptions('350101' + '0cff' + Buffer.from(long).toString('hex') + '0c03' + '787878' + 'ff');
    r = bindAll(b, m);
    expect(r.st).toBe(ParseStatus.OK);
    expect(m.hostname).toBe(long);
    expect(m.option(DHCP_OPT_HOSTNAME)!.length).toBe(258);
  });

  it('keeps only printable ASCII in the hostname; an empty one is null', () => {
    const m = new DhcpMessage();
    expect(bindAll(withOptions('350101 0c09 62 6f 00 78 0a c3 a9 2d 31 ff'), m).st).toBe(ParseStatus.OK);
    expect(m.hostname).toBe('box-1');
    expect(bindAll(withOptions('350101 0c00 ff'), m).st).toBe(ParseStatus.OK);
    expect(m.hostname).toBeNull();
    expect(bindAll(withOptions('350101 0c02 0001 ff'), m).st).toBe(ParseStatus.OK);
    expect(m.hostname).toBeNull();
  });

  it('treats an empty client id as absent', () => {
    const m = new DhcpMessage();
    expect(bindAll(withOptions('350101 3d00 ff'), m).st).toBe(ParseStatus.OK);
    expect(m.clientId).toBeNull();
    expect(m.optionCount(DHCP_OPT_CLIENT_ID)).toBe(1);
  });

  it('decodes plain BOOTP (no message type) and forgets the previous message', () => {
    const m = new DhcpMessage();
    expect(m.bind(ref('request').dv, 0, hex(REF.request).length)).toBe(ParseStatus.OK);
    expect(bindAll(withOptions(''), m).st).toBe(ParseStatus.OK); // 240 bytes, no END
    expect(m.messageType).toBe(0);
    expect(m.requestedIp).toBe(-1);
    expect(m.serverId).toBe(-1);
    expect(m.paramRequestList).toBeNull();
    expect(m.clientId).toBeNull();
    expect(m.hostname).toBeNull();
    expect(m.option(DHCP_OPT_MESSAGE_TYPE)).toBeNull();
  });

  it('accepts options that end at the end of the buffer without END, and skips unknown ones', () => {
    const m = new DhcpMessage();
    expect(bindAll(withOptions('350105 e0 03 010203 fe00 36040a000202'), m).st).toBe(ParseStatus.OK);
    expect(m.messageType).toBe(DHCPACK);
    expect(m.serverId).toBe(GW);
    expect(Array.from(m.option(0xe0)!)).toEqual([1, 2, 3]);
  });

  it('reports chaddr -1 for other hardware types', () => {
    const { b, dv } = ref('discover');
    b[1] = 6; // IEEE 802
    const m = new DhcpMessage();
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.chaddr).toBe(-1);
    b[1] = 32; // InfiniBand: hlen 0, the address is in the client id
    b[2] = 0;
    expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    expect(m.chaddr).toBe(-1);
    expect(m.messageType).toBe(DHCPDISCOVER);
  });

  describe('malformed messages', () => {
    it('short buffers are TRUNCATED', () => {
      const { b, dv } = ref('discover');
      const m = new DhcpMessage();
      expect(m.bind(dv, 0, 0)).toBe(ParseStatus.TRUNCATED);
      expect(m.bind(dv, 0, 235)).toBe(ParseStatus.TRUNCATED);
      expect(m.bind(dv, 0, 239)).toBe(ParseStatus.TRUNCATED);
      expect(m.bind(dv, 0, 240)).toBe(ParseStatus.OK);
      expect(m.messageType).toBe(0);
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
      // A length that claims more than the buffer holds.
      expect(m.bind(dv, 0, b.length + 1)).toBe(ParseStatus.BAD_LENGTH);
      expect(m.bind(dv, 40, b.length)).toBe(ParseStatus.BAD_LENGTH);
    });

    it('a wrong magic cookie is BAD_VERSION', () => {
      const { b, dv } = ref('discover');
      const m = new DhcpMessage();
      b[236 + 3] ^= 1;
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.BAD_VERSION);
      expect(m.messageType).toBe(0); // nothing of the options is reported
      expect(dv.getUint32(236)).not.toBe(DHCP_MAGIC_COOKIE);
    });

    it('op other than 1 or 2 is UNSUPPORTED', () => {
      const { b, dv } = ref('discover');
      const m = new DhcpMessage();
      for (const op of [0, 3, 255]) {
        b[0] = op;
        expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.UNSUPPORTED);
      }
      b[0] = BOOTREPLY;
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    });

    it('a bad hlen is BAD_LENGTH', () => {
      const { b, dv } = ref('discover');
      const m = new DhcpMessage();
      for (const hlen of [0, 5, 7, 16, 17, 255]) {
        b[2] = hlen; // Ethernet needs 6
        expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.BAD_LENGTH);
      }
      b[1] = 6;
      b[2] = 17; // more than chaddr holds, whatever the type
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.BAD_LENGTH);
      b[2] = 16;
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
    });

    it('an option running past the end is BAD_LENGTH, at every truncation point', () => {
      const { b, dv } = ref('discover');
      const m = new DhcpMessage();
      // Option boundaries of the DISCOVER: 240 243 252 261 265 272 (END) 273.
      const boundaries = new Set([240, 243, 252, 261, 265, 272, 273]);
      for (let len = 240; len <= b.length; len++) {
        expect(m.bind(dv, 0, len)).toBe(boundaries.has(len) ? ParseStatus.OK : ParseStatus.BAD_LENGTH);
      }
      b[266] = 7; // hostname length 7 from 267 ends at 274 > 273
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.BAD_LENGTH);
      b[266] = 6; // swallows the END byte: still inside the buffer
      expect(m.bind(dv, 0, b.length)).toBe(ParseStatus.OK);
      // A code in the last byte with no length byte.
      expect(bindAll(withOptions('350101 0c')).st).toBe(ParseStatus.BAD_LENGTH);
      expect(bindAll(withOptions('350101 00 00 0c')).st).toBe(ParseStatus.BAD_LENGTH);
      expect(bindAll(withOptions('350101 0cff 00')).st).toBe(ParseStatus.BAD_LENGTH);
    });

    it('a message type of the wrong length, or 0, is refused', () => {
      expect(bindAll(withOptions('3500 ff')).st).toBe(ParseStatus.BAD_LENGTH);
      expect(bindAll(withOptions('35020101 ff')).st).toBe(ParseStatus.BAD_LENGTH);
      expect(bindAll(withOptions('350100 ff')).st).toBe(ParseStatus.UNSUPPORTED);
    });

    it('decoded options of the wrong size are BAD_LENGTH', () => {
      for (const opts of [
        '350103 32030a0002 ff', // requested IP, 3 bytes
        '350103 3205 0a00026400 ff', // requested IP, 5 bytes
        '350103 3600 ff', // server id, empty
        '350103 36020a00 ff', // server id, 2 bytes
        '350103 33020e10 ff', // lease time, 2 bytes
        '350103 390105 ff', // max message size, 1 byte
        '350103 34020101 ff', // overload, 2 bytes
        '350103 3400 ff', // overload, empty
      ]) {
        expect(bindAll(withOptions(opts)).st, opts).toBe(ParseStatus.BAD_LENGTH);
      }
      // Options this codec does not decode are not size-checked.
      expect(bindAll(withOptions('350103 0100 0305 0102030405 ff')).st).toBe(ParseStatus.OK);
    });

    it('never throws or reads out of bounds on random corruption', () => {
      const rand = prng(2131);
      const m = new DhcpMessage();
      const names = Object.keys(REF) as (keyof typeof REF)[];
      const statuses = new Set(Object.values(ParseStatus) as number[]);
      for (let i = 0; i < 5000; i++) {
        const { b } = ref(names[i % names.length]);
        const flips = 1 + Math.floor(rand() * 6);
        for (let f = 0; f < flips; f++) {
          // Mostly in the options, sometimes in sname/file or the header.
          const at = rand() < 0.7 ? DHCP_OPTIONS_OFFSET + Math.floor(rand() * (b.length - DHCP_OPTIONS_OFFSET)) : Math.floor(rand() * b.length);
          b[at] = rand() < 0.3 ? [0, 255, 52, 53, 55, 119][Math.floor(rand() * 6)] : Math.floor(rand() * 256);
        }
        // A slice, so that reading past `len` would also be past the ArrayBuffer.
        const len = Math.floor(rand() * (b.length + 1));
        const copy = Buffer.from(b.subarray(0, len));
        const st = m.bind(dvOf(copy), 0, len);
        expect(statuses.has(st)).toBe(true);
        if (st === ParseStatus.OK) {
          for (const v of [m.paramRequestList, m.clientId, m.domainSearch]) if (v !== null) expect(v.length).toBeLessThanOrEqual(len);
          expect(m.hostname === null || m.hostname.length <= 255).toBe(true);
        }
      }
    });
  });
});

describe('writeDhcpReply', () => {
  const ACK = {
    messageType: DHCPACK,
    xid: 0x3903f326,
    flags: DHCP_FLAG_BROADCAST,
    ciaddr: 0,
    yiaddr: IP_100,
    siaddr: 0,
    giaddr: 0,
    chaddr: MAC_A,
    serverId: GW,
    leaseTime: 3600,
    renewalTime: 1800,
    rebindingTime: 3150,
    subnetMask: 0xffffff00,
    router: GW,
    dnsServers: [0x0a000203, 0xc0000201],
    domainName: 'example.internal',
    searchList: ['example.internal', 'corp.example'],
    mtu: 1500,
    broadcast: 0x0a0002ff,
  };

  it('writes the ACK that scapy decoded, byte for byte', () => {
    const buf = new Uint8Array(600);
    const n = writeDhcpReply(buf, 0, ACK);
    expect(n).toBe(352);
    expect(Buffer.from(buf.subarray(0, n)).toString('hex')).toBe(hex(REF.ack).toString('hex'));
  });

  it('parses back to what scapy read from it', () => {
    const buf = new Uint8Array(600);
    const n = writeDhcpReply(buf, 0, ACK);
    const m = new DhcpMessage();
    expect(m.bind(dvOf(buf), 0, n)).toBe(ParseStatus.OK);
    // The values scapy printed for REF.ack (see the comment there).
    expect(m.op).toBe(2);
    expect(m.xid).toBe(0x3903f326);
    expect(m.flags).toBe(32768);
    expect(m.yiaddr).toBe(IP_100);
    expect([m.ciaddr, m.siaddr, m.giaddr]).toEqual([0, 0, 0]);
    expect(m.chaddr).toBe(0x02000000000a);
    expect(m.messageType).toBe(5);
    expect(m.serverId).toBe(GW);
    expect(m.leaseTime).toBe(3600);
    expect(u32s(m.option(DHCP_OPT_RENEWAL_TIME))).toEqual([1800]);
    expect(u32s(m.option(DHCP_OPT_REBINDING_TIME))).toEqual([3150]);
    expect(u32s(m.option(DHCP_OPT_SUBNET_MASK))).toEqual([0xffffff00]);
    expect(u32s(m.option(DHCP_OPT_BROADCAST))).toEqual([0x0a0002ff]);
    expect(u32s(m.option(DHCP_OPT_ROUTER))).toEqual([GW]);
    expect(u32s(m.option(DHCP_OPT_DNS))).toEqual([0x0a000203, 0xc0000201]);
    expect(ascii(m.option(DHCP_OPT_DOMAIN_NAME))).toBe('example.internal');
    expect(m.domainSearch!.length).toBe(32);
    expect(decodeSearchList(m.domainSearch!)).toEqual(['example.internal', 'corp.example']);
    expect(dvOf(m.option(DHCP_OPT_MTU)!).getUint16(0)).toBe(1500);
    // Message type first, END last.
    expect(buf[DHCP_OPTIONS_OFFSET]).toBe(DHCP_OPT_MESSAGE_TYPE);
    expect(buf[n - 1]).toBe(DHCP_OPT_END);
  });

  it('pads a short reply with zeros to the 300-byte BOOTP minimum', () => {
    const buf = new Uint8Array(400).fill(0xaa);
    const n = writeDhcpReply(buf, 0, {
      messageType: DHCPNAK, xid: 2, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: MAC_A, serverId: GW,
      message: 'requested address not available',
    });
    expect(n).toBe(DHCP_MIN_MESSAGE_LENGTH);
    // 53 (3) + 54 (6) + 56 (2 + 31) + END = 43 bytes of options.
    const end = DHCP_OPTIONS_OFFSET + 43;
    expect(buf[end - 1]).toBe(DHCP_OPT_END);
    expect(buf.subarray(end, n).every((x) => x === 0)).toBe(true);
    expect(buf[n]).toBe(0xaa); // nothing written past the message
    // The junk in the fixed part (sname, file, chaddr padding) is cleared.
    expect(buf.subarray(34, 236).every((x) => x === 0)).toBe(true);
    const m = new DhcpMessage();
    expect(m.bind(dvOf(buf), 0, n)).toBe(ParseStatus.OK);
    expect(m.messageType).toBe(DHCPNAK);
    expect(m.leaseTime).toBe(-1);
    expect(ascii(m.option(DHCP_OPT_MESSAGE))).toBe('requested address not available');
    expect(m.option(DHCP_OPT_SUBNET_MASK)).toBeNull();
  });

  it('writes at an offset and leaves the bytes around it alone', () => {
    const buf = new Uint8Array(42 + 300 + 8).fill(0xee);
    const n = writeDhcpReply(buf, 42, { ...ACK, searchList: undefined, domainName: undefined, dnsServers: [] });
    expect(n).toBe(300);
    expect(buf.subarray(0, 42).every((x) => x === 0xee)).toBe(true);
    expect(buf.subarray(342).every((x) => x === 0xee)).toBe(true);
    const m = new DhcpMessage();
    expect(m.bind(dvOf(buf), 42, n)).toBe(ParseStatus.OK);
    expect(m.yiaddr).toBe(IP_100);
    expect(m.option(DHCP_OPT_DNS)).toBeNull(); // an empty list is no option
    expect(m.domainSearch).toBeNull();
  });

  it('splits a search list longer than 255 bytes into several options 119 (RFC 3396)', () => {
    // Checked once with scapy: two options 119, of 255 and 205 bytes.
    const domains = Array.from({ length: 12 }, (_, i) => `team-${i}.department-${i}.example.internal`);
    const buf = new Uint8Array(1500);
    const n = writeDhcpReply(buf, 0, { ...ACK, searchList: domains, domainName: undefined, dnsServers: undefined });
    const encoded = encodeSearchList(domains);
    expect(encoded.length).toBe(460);
    const m = new DhcpMessage();
    expect(m.bind(dvOf(buf), 0, n)).toBe(ParseStatus.OK);
    expect(m.optionCount(DHCP_OPT_DOMAIN_SEARCH)).toBe(2);
    expect(Buffer.from(m.domainSearch!).equals(encoded)).toBe(true);
    expect(decodeSearchList(m.domainSearch!)).toEqual(domains);
    // The two instances, in place.
    const first = buf.indexOf(DHCP_OPT_DOMAIN_SEARCH, DHCP_OPTIONS_OFFSET);
    expect(buf[first + 1]).toBe(255);
    expect(buf[first + 257]).toBe(DHCP_OPT_DOMAIN_SEARCH);
    expect(buf[first + 258]).toBe(205);
  });

  it('refuses a buffer that is too small, and bad values, naming them', () => {
    expect(() => writeDhcpReply(new Uint8Array(299), 0, ACK)).toThrow(RangeError);
    expect(() => writeDhcpReply(new Uint8Array(351), 0, ACK)).toThrow(RangeError);
    expect(writeDhcpReply(new Uint8Array(352), 0, ACK)).toBe(352);
    expect(() => writeDhcpReply(new Uint8Array(400), 100, ACK)).toThrow(RangeError);
    expect(() => writeDhcpReply(new Uint8Array(600), 0, { ...ACK, searchList: ['ok.example', 'bad domain'] })).toThrow(/"bad domain"/);
    expect(() => writeDhcpReply(new Uint8Array(600), 0, { ...ACK, domainName: 'a..b' })).toThrow(InvalidArgumentError);
    expect(() => writeDhcpReply(new Uint8Array(600), 0, { ...ACK, mtu: 67 })).toThrow(/MTU 67/);
  });
});

describe('writeDhcpRequest', () => {
  it('reproduces the scapy DISCOVER and REQUEST byte for byte', () => {
    const buf = new Uint8Array(600);
    const clientId = hex(CLIENT_ID);
    let n = writeDhcpRequest(buf, 0, {
      messageType: DHCPDISCOVER, xid: 0x3903f326, chaddr: MAC_A, flags: DHCP_FLAG_BROADCAST, clientId,
      paramRequestList: [1, 3, 6, 15, 26, 28, 119], maxMessageSize: 1500, hostname: 'box-1', minLength: 0,
    });
    expect(Buffer.from(buf.subarray(0, n)).toString('hex')).toBe(hex(REF.discover).toString('hex'));
    n = writeDhcpRequest(buf, 0, {
      messageType: DHCPREQUEST, xid: 0x3903f326, chaddr: MAC_A, secs: 3, clientId,
      requestedIp: IP_100, serverId: GW, paramRequestList: [1, 3, 6], hostname: 'box-1', minLength: 0,
    });
    expect(Buffer.from(buf.subarray(0, n)).toString('hex')).toBe(hex(REF.request).toString('hex'));
  });

  it('reproduces the udhcpc DISCOVER (300 bytes by default) with extra options', () => {
    const buf = new Uint8Array(600);
    const n = writeDhcpRequest(buf, 0, {
      messageType: DHCPDISCOVER, xid: 0xa93e0374, chaddr: MAC_A,
      options: [
        [DHCP_OPT_MAX_MESSAGE_SIZE, hex('0240')],
        [DHCP_OPT_PARAM_REQUEST_LIST, Uint8Array.from([1, 3, 6, 12, 15, 28, 42])],
        [60, Buffer.from('udhcp 1.35.0')],
        [DHCP_OPT_CLIENT_ID, hex(CLIENT_ID)],
      ],
    });
    expect(n).toBe(300);
    expect(Buffer.from(buf.subarray(0, n)).toString('hex')).toBe(hex(REF.udhcpc).toString('hex'));
  });

  it('builds RELEASE, DECLINE and INFORM that parse back', () => {
    const buf = new Uint8Array(400);
    const m = new DhcpMessage();
    for (const [type, extra] of [
      [DHCPRELEASE, { ciaddr: IP_100, serverId: GW }],
      [DHCPDECLINE, { requestedIp: IP_100, serverId: GW, message: 'address in use' }],
      [DHCPINFORM, { ciaddr: IP_100, paramRequestList: [1, 3, 6] }],
    ] as const) {
      const n = writeDhcpRequest(buf, 0, { messageType: type, xid: 77, chaddr: MAC_A, ...extra });
      expect(n).toBe(300);
      expect(m.bind(dvOf(buf), 0, n)).toBe(ParseStatus.OK);
      expect(m.op).toBe(BOOTREQUEST);
      expect(m.messageType).toBe(type);
      expect(m.xid).toBe(77);
      expect(m.chaddr).toBe(MAC_A);
      expect(m.ciaddr).toBe('ciaddr' in extra ? extra.ciaddr : 0);
      expect(m.requestedIp).toBe('requestedIp' in extra ? extra.requestedIp : -1);
      expect(m.serverId).toBe('serverId' in extra ? extra.serverId : -1);
      expect(m.yiaddr).toBe(0);
    }
    expect(ascii(m.option(DHCP_OPT_MESSAGE))).toBeNull();
    expect(Array.from(m.paramRequestList!)).toEqual([1, 3, 6]);
  });

  it('writes lease time, giaddr and hops, and splits a long extra option', () => {
    const buf = new Uint8Array(1000);
    const big = Uint8Array.from({ length: 300 }, (_, i) => i & 255);
    const n = writeDhcpRequest(buf, 0, {
      messageType: DHCPREQUEST, xid: 1, chaddr: MAC_A, giaddr: 0xc0000201, hops: 1, leaseTime: 600, options: [[224, big]],
    });
    const m = new DhcpMessage();
    expect(m.bind(dvOf(buf), 0, n)).toBe(ParseStatus.OK);
    expect(m.giaddr).toBe(0xc0000201);
    expect(m.hops).toBe(1);
    expect(m.leaseTime).toBe(600);
    expect(m.optionCount(224)).toBe(2);
    expect(Buffer.from(m.option(224)!).equals(Buffer.from(big))).toBe(true);
  });
});

describe('writeDhcpOption', () => {
  it('writes short options as one instance and splits at 255 bytes', () => {
    const buf = new Uint8Array(1200);
    const data = (len: number): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (i * 7) & 255);
    for (const [len, pieces] of [
      [0, [0]],
      [1, [1]],
      [255, [255]],
      [256, [255, 1]],
      [510, [255, 255]],
      [511, [255, 255, 1]],
    ] as const) {
      const d = data(len);
      const end = writeDhcpOption(buf, 3, 119, d);
      expect(end - 3).toBe(dhcpOptionLength(len));
      let p = 3;
      const got: number[] = [];
      for (const piece of pieces) {
        expect(buf[p]).toBe(119);
        expect(buf[p + 1]).toBe(piece);
        got.push(...buf.subarray(p + 2, p + 2 + piece));
        p += 2 + piece;
      }
      expect(p).toBe(end);
      expect(got).toEqual(Array.from(d));
    }
  });

  it('throws RangeError when the option does not fit', () => {
    expect(() => writeDhcpOption(new Uint8Array(10), 0, 12, new Uint8Array(9))).toThrow(RangeError);
    expect(writeDhcpOption(new Uint8Array(10), 0, 12, new Uint8Array(8))).toBe(10);
    expect(() => writeDhcpOption(new Uint8Array(600), 0, 12, new Uint8Array(300), 301)).toThrow(RangeError);
  });
});

describe('search lists (option 119)', () => {
  it('encodes names as RFC 1035 labels without compression', () => {
    expect(encodeSearchList(['eng.apple.com', 'marketing.apple.com.']).toString('hex')).toBe(
      '03656e67056170706c6503636f6d00' + '096d61726b6574696e67056170706c6503636f6d00',
    );
    expect(encodeSearchList([]).length).toBe(0);
    expect(encodeSearchList(['_srv.Example-1.internal'])).toEqual(hex('045f737276094578616d706c652d3108696e7465726e616c00'));
  });

  it('round-trips, including the largest labels and names', () => {
    const l63 = 'a'.repeat(63);
    const n253 = `${l63}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(n253.length).toBe(253);
    const list = ['example.internal', 'x', l63, n253, 'Mixed-Case_1.example'];
    const enc = encodeSearchList(list);
    expect(decodeSearchList(enc)).toEqual(list);
    expect(enc.length).toBe(list.reduce((s, d) => s + d.length + 2, 0));
  });

  it('decodes the RFC 3397 example with its compression pointer', () => {
    const data = hex('03656e67056170706c6503636f6d00 096d61726b6574696e67c004');
    expect(decodeSearchList(data)).toEqual(['eng.apple.com', 'marketing.apple.com']);
    // Chained pointers: a.apple.com -> apple.com; b.a.apple.com -> a.apple.com
    const chained = hex('03656e67056170706c6503636f6d00 0161c004 0162c00f');
    expect(decodeSearchList(chained)).toEqual(['eng.apple.com', 'a.apple.com', 'b.a.apple.com']);
    // A whole name as a pointer, and the root name.
    expect(decodeSearchList(hex('0161 00 c000 00'))).toEqual(['a', 'a', '.']);
    expect(decodeSearchList(new Uint8Array(0))).toEqual([]);
  });

  it('refuses pointer loops, forward pointers and truncated data', () => {
    const bad = (h: string): (() => string[]) => () => decodeSearchList(hex(h));
    expect(bad('c000')).toThrow(/loop/); // points at itself
    expect(bad('0161c000')).toThrow(/loop/); // back into its own name
    expect(bad('0161 00 0162c005')).toThrow(/loop/); // into the current name's own labels
    expect(bad('c002 0161 00')).toThrow(/loop/); // forward
    expect(bad('0161c004 0162c000')).toThrow(InvalidArgumentError); // ping-pong needs a forward jump
    expect(decodeSearchList(hex('0161 00 0162c002 c000'))).toEqual(['a', 'b', 'a']); // backward is fine
    expect(bad('0361')).toThrow(/past the end/);
    expect(bad('0161')).toThrow(/past the end/);
    expect(bad('0161 00 c0')).toThrow(/truncated pointer/);
    expect(bad('4161 00')).toThrow(/reserved label type/);
    expect(bad('8161 00')).toThrow(/reserved label type/);
    const tooLong = Buffer.concat([...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), Buffer.from([0])]);
    expect(() => decodeSearchList(tooLong)).toThrow(/longer than 255/);
  });

  it('escapes bytes outside letters, digits, - and _ as \\DDD', () => {
    expect(decodeSearchList(hex('03612e62 0420c3a95c 00'))).toEqual(['a\\046b.\\032\\195\\169\\092']);
  });

  it('validates names and says which one is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /"": it is empty/],
      ['.', /".": it is empty/],
      ['a..b', /"a..b": empty label/],
      ['.a', /empty label/],
      [`${'x'.repeat(64)}.com`, /label of 64 characters/],
      [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`, /254 characters/],
      ['bad domain', /"bad domain": label "bad domain"/],
      ['*.example', /label "\*"/],
      ['exämple.com', /"exämple.com"/],
      ['a.b/c', /label "b\/c"/],
    ];
    for (const [domain, re] of cases) {
      let err: unknown;
      try {
        encodeSearchList(['ok.example', domain]);
      } catch (e) {
        err = e;
      }
      expect(err, domain).toBeInstanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
      expect((err as Error).message, domain).toMatch(re);
      expect((err as Error).message).toMatch(/^invalid search domain /);
    }
  });
});
