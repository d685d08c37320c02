import { describe, it, expect } from 'vitest';
import { DEFAULT_NETWORK, DEFAULT_SUBNET, type NetworkConfig, type NetworkSpec } from '../../../src/gateway/network.js';
import { parseMemberAddress, validateNetworkSpec } from '../../../src/control/network-spec.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { parseIpv4 } from '../../../src/packet/ip-address.js';

const ip = parseIpv4;

function validate(spec: Partial<NetworkSpec> & { subnet: string }, others: NetworkConfig[] = []): NetworkConfig {
  return validateNetworkSpec({ name: 'net1', ...spec }, others);
}

/** The error message validate() throws (and that it is an InvalidArgumentError). */
function refusal(spec: Partial<NetworkSpec> & { subnet: string }, others: NetworkConfig[] = []): string {
  try {
    validate(spec, others);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
    return (err as Error).message;
  }
  throw new Error(`${JSON.stringify(spec)} was accepted`);
}

const DEFAULT = validateNetworkSpec({ name: DEFAULT_NETWORK, subnet: DEFAULT_SUBNET }, []);

describe('validateNetworkSpec: defaults', () => {
  it('lays out the default network as slirp4netns does', () => {
    expect(DEFAULT).toEqual({
      name: 'default',
      network: ip('10.0.2.0'),
      prefix: 24,
      gateway: ip('10.0.2.2'),
      dns: ip('10.0.2.3'),
      rangeFirst: ip('10.0.2.100'),
      rangeLast: ip('10.0.2.254'),
      mtu: 1500,
      icc: true,
      dnsSearch: null,
      dnsUpstream: null,
      disableDns: false,
      leaseTime: 3600,
      disableHostLoopback: false,
    });
  });

  it('lays out a /16 the same way, relative to its subnet', () => {
    const c = validate({ subnet: '172.20.0.0/16' });
    expect(c.network).toBe(ip('172.20.0.0'));
    expect(c.prefix).toBe(16);
    expect(c.gateway).toBe(ip('172.20.0.2'));
    expect(c.dns).toBe(ip('172.20.0.3'));
    expect(c.rangeFirst).toBe(ip('172.20.0.100'));
    expect(c.rangeLast).toBe(ip('172.20.255.254'));
  });

  it('accepts /25, the smallest prefix with room for the default layout', () => {
    const c = validate({ subnet: '192.168.7.128/25' });
    expect(c.gateway).toBe(ip('192.168.7.130'));
    expect(c.dns).toBe(ip('192.168.7.131'));
    expect(c.rangeFirst).toBe(ip('192.168.7.228'));
    expect(c.rangeLast).toBe(ip('192.168.7.254'));
  });

  it('takes every option as given', () => {
    const c = validate({
      subnet: ' 10.9.0.0/24 ',
      gateway: '10.9.0.1',
      dns: '10.9.0.53',
      range: '10.9.0.10-10.9.0.20',
      mtu: 9000,
      icc: false,
      dnsSearch: ['example.com', 'corp.example.org.', '_srv.example'],
      dnsUpstream: ['192.0.2.53', '198.51.100.1:5353', '[2001:db8::1]:53'],
      disableDns: true,
      leaseTime: 600,
    });
    expect(c).toMatchObject({
      network: ip('10.9.0.0'),
      gateway: ip('10.9.0.1'),
      dns: ip('10.9.0.53'),
      rangeFirst: ip('10.9.0.10'),
      rangeLast: ip('10.9.0.20'),
      mtu: 9000,
      icc: false,
      dnsSearch: ['example.com', 'corp.example.org.', '_srv.example'],
      disableDns: true,
      leaseTime: 600,
    });
    expect(c.dnsUpstream).toEqual([
      { address: '192.0.2.53', port: 53, family: 4 },
      { address: '198.51.100.1', port: 5353, family: 4 },
      { address: '2001:db8::1', port: 53, family: 6 },
    ]);
  });

  it('accepts a range of one address and the MTU limits', () => {
    expect(validate({ subnet: '10.9.0.0/24', range: '10.9.0.7-10.9.0.7' })).toMatchObject({ rangeFirst: ip('10.9.0.7'), rangeLast: ip('10.9.0.7') });
    expect(validate({ subnet: '10.9.0.0/24', mtu: 576 }).mtu).toBe(576);
    expect(validate({ subnet: '10.9.0.0/24', mtu: 65521 }).mtu).toBe(65521);
  });
});

describe('validateNetworkSpec: the subnet', () => {
  it('refuses subnets no container can use', () => {
    for (const subnet of ['0.0.0.0/24', '127.0.0.0/24', '169.254.0.0/24', '224.0.0.0/24', '240.0.0.0/24', '255.255.255.0/24']) {
      expect(refusal({ subnet }), subnet).toMatch(/is not usable for containers/);
    }
  });

  it('refuses a range that leaves no address for containers', () => {
    expect(refusal({ subnet: '10.0.9.0/30', gateway: '10.0.9.1', dns: '10.0.9.2', range: '10.0.9.1-10.0.9.2' })).toMatch(/leaves no address for containers/);
  });

  it('wants the network address, and says which', () => {
    expect(refusal({ subnet: '10.0.2.5/24' })).toBe('--subnet needs a network address like 10.0.2.0/24, not like 10.0.2.5/24');
    expect(refusal({ subnet: '172.20.3.0/16' })).toBe('--subnet needs a network address like 172.20.0.0/16, not like 172.20.3.0/16');
  });

  it('refuses what is not a CIDR', () => {
    for (const subnet of ['10.0.2.0', '10.0.2.0/', '10.0.2.0/33', '10.0.2/24', '300.0.0.0/8', '10.0.2.0/24/1', 'default', '']) {
      expect(refusal({ subnet }), subnet).toBe(`--subnet "${subnet}" is not a valid CIDR (expected A.B.C.D/NN like 10.0.2.0/24)`);
    }
  });

  it('refuses a prefix over 25 unless gateway, DNS and range are all given', () => {
    const msg = '--subnet prefix length must be 1-25 (a smaller subnet needs --gateway, --dns and --range)';
    expect(refusal({ subnet: '10.0.5.0/26' })).toBe(msg);
    expect(refusal({ subnet: '10.0.5.0/26', gateway: '10.0.5.1', dns: '10.0.5.2' })).toBe(msg);
    expect(refusal({ subnet: '10.0.5.0/26', gateway: '10.0.5.1', range: '10.0.5.10-10.0.5.20' })).toBe(msg);
    expect(refusal({ subnet: '10.0.5.0/26', dns: '10.0.5.2', range: '10.0.5.10-10.0.5.20' })).toBe(msg);
    expect(refusal({ subnet: '10.0.0.0/0' })).toMatch(/needs a network address|not usable/);
    const c = validate({ subnet: '10.0.5.0/26', gateway: '10.0.5.1', dns: '10.0.5.2', range: '10.0.5.10-10.0.5.62' });
    expect(c).toMatchObject({ prefix: 26, gateway: ip('10.0.5.1'), dns: ip('10.0.5.2'), rangeFirst: ip('10.0.5.10'), rangeLast: ip('10.0.5.62') });
  });

  it('allows /30 when everything is given, never /31 or /32', () => {
    const c = validate({ subnet: '10.0.5.0/30', gateway: '10.0.5.1', dns: '10.0.5.1', range: '10.0.5.2-10.0.5.2' });
    expect(c).toMatchObject({ prefix: 30, gateway: ip('10.0.5.1'), dns: ip('10.0.5.1'), rangeFirst: ip('10.0.5.2'), rangeLast: ip('10.0.5.2') });
    expect(refusal({ subnet: '10.0.5.0/31', gateway: '10.0.5.0', dns: '10.0.5.1', range: '10.0.5.1-10.0.5.1' })).toBe('--subnet prefix length must be 1-30');
    expect(refusal({ subnet: '10.0.5.1/32', gateway: '10.0.5.1', dns: '10.0.5.1', range: '10.0.5.1-10.0.5.1' })).toBe('--subnet prefix length must be 1-30');
  });
});

describe('validateNetworkSpec: gateway, DNS and range', () => {
  it('refuses addresses outside the subnet', () => {
    expect(refusal({ subnet: '10.9.0.0/24', gateway: '10.9.1.1' })).toBe('--gateway 10.9.1.1 is outside the subnet 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', dns: '192.0.2.53' })).toBe('--dns 192.0.2.53 is outside the subnet 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.100-10.9.1.10' })).toBe('--range 10.9.1.10 is outside the subnet 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.8.255.250-10.9.0.10' })).toBe('--range 10.8.255.250 is outside the subnet 10.9.0.0/24');
  });

  it('refuses the network and broadcast addresses', () => {
    expect(refusal({ subnet: '10.9.0.0/24', gateway: '10.9.0.0' })).toBe('--gateway 10.9.0.0 is the network address of 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', dns: '10.9.0.255' })).toBe('--dns 10.9.0.255 is the broadcast address of 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.0-10.9.0.10' })).toBe('--range 10.9.0.0 is the network address of 10.9.0.0/24');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.100-10.9.0.255' })).toBe('--range 10.9.0.255 is the broadcast address of 10.9.0.0/24');
  });

  it('refuses what is not an address, and a range that is not FIRST-LAST in order', () => {
    expect(refusal({ subnet: '10.9.0.0/24', gateway: 'gw' })).toBe('--gateway "gw" is not an IPv4 address');
    expect(refusal({ subnet: '10.9.0.0/24', dns: '10.9.0.256' })).toBe('--dns "10.9.0.256" is not an IPv4 address');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.100' })).toBe('--range "10.9.0.100" must be FIRST-LAST, like 10.0.2.100-10.0.2.200');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.1-10.9.0.2-10.9.0.3' })).toBe('--range "10.9.0.1-10.9.0.2-10.9.0.3" must be FIRST-LAST, like 10.0.2.100-10.0.2.200');
    expect(refusal({ subnet: '10.9.0.0/24', range: '10.9.0.200-10.9.0.100' })).toBe('--range 10.9.0.200-10.9.0.100: the first address is after the last');
    expect(refusal({ subnet: '10.9.0.0/24', range: '-10.9.0.100' })).toBe('--range "" is not an IPv4 address');
  });
});

describe('validateNetworkSpec: other networks', () => {
  it('refuses a subnet overlapping another network, in both directions and partially', () => {
    const other = validate({ name: 'other', subnet: '10.1.0.0/16' });
    // Inside the other one.
    expect(refusal({ subnet: '10.1.5.0/24' }, [other])).toBe('--subnet 10.1.5.0/24 overlaps network other (10.1.0.0/16)');
    // Containing the other one.
    expect(refusal({ subnet: '10.0.0.0/8' }, [other])).toBe('--subnet 10.0.0.0/8 overlaps network other (10.1.0.0/16)');
    // The same subnet.
    expect(refusal({ subnet: '10.1.0.0/16' }, [other])).toBe('--subnet 10.1.0.0/16 overlaps network other (10.1.0.0/16)');
    // Sharing only the first or the last address.
    expect(refusal({ subnet: '10.1.255.0/24' }, [other])).toMatch(/overlaps network other \(10\.1\.0\.0\/16\)/);
    expect(refusal({ subnet: '10.1.0.0/25' }, [other])).toMatch(/overlaps network other \(10\.1\.0\.0\/16\)/);
    // The default network.
    expect(refusal({ subnet: '10.0.0.0/16' }, [DEFAULT])).toBe('--subnet 10.0.0.0/16 overlaps network default (10.0.2.0/24)');
  });

  it('accepts neighbours that touch but do not overlap', () => {
    const other = validate({ name: 'other', subnet: '10.1.0.0/16' });
    expect(validate({ name: 'n2', subnet: '10.0.0.0/16' }, [other]).network).toBe(ip('10.0.0.0'));
    expect(validate({ name: 'n2', subnet: '10.2.0.0/16' }, [other]).network).toBe(ip('10.2.0.0'));
    expect(validate({ name: 'n2', subnet: '10.0.3.0/24' }, [DEFAULT, other]).network).toBe(ip('10.0.3.0'));
  });

  it('refuses a duplicate name', () => {
    expect(refusal({ name: 'default', subnet: '10.7.0.0/24' }, [DEFAULT])).toBe('a network named default already exists');
  });
});

describe('validateNetworkSpec: names and options', () => {
  it('refuses bad names', () => {
    for (const name of ['', '-net', '.net', 'my net', 'net/1', 'ne:t', 'x'.repeat(65), 'né']) {
      expect(refusal({ name, subnet: '10.7.0.0/24' }), name).toBe(
        `network name "${name}" must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit`,
      );
    }
    for (const name of ['a', 'net_1', 'Net-2.test', '9', 'x'.repeat(64)]) expect(validate({ name, subnet: '10.7.0.0/24' }).name).toBe(name);
  });

  it('refuses a bad MTU', () => {
    for (const mtu of [0, 67, 575, 65522, 1500.5, Number.NaN, -1]) {
      expect(refusal({ subnet: '10.7.0.0/24', mtu }), String(mtu)).toBe(`--mtu must be between 576 and 65521, not ${mtu}`);
    }
  });

  it('refuses a bad lease time', () => {
    for (const leaseTime of [0, 59, 60.5, 2 ** 31]) expect(refusal({ subnet: '10.7.0.0/24', leaseTime })).toBe('--lease-time must be at least 60 seconds');
    expect(validate({ subnet: '10.7.0.0/24', leaseTime: 60 }).leaseTime).toBe(60);
  });

  it('refuses search domains that are not domain names', () => {
    for (const d of ['', 'bad domain', 'a..b', '-x.example', 'x-.example', 'ex!ample.com', `${'a'.repeat(64)}.com`, `${'a.'.repeat(127)}ab`]) {
      expect(refusal({ subnet: '10.7.0.0/24', dnsSearch: ['ok.example', d] }), d).toBe(`--dns-search "${d}" is not a domain name`);
    }
    expect(validate({ subnet: '10.7.0.0/24', dnsSearch: [] }).dnsSearch).toEqual([]);
  });

  it('refuses bad upstreams, naming them', () => {
    for (const u of ['dns.example', '192.0.2.1:0', '192.0.2.1:65536', '[2001:db8::1', '[192.0.2.1]:53', ':53', '300.1.1.1']) {
      expect(refusal({ subnet: '10.7.0.0/24', dnsUpstream: ['192.0.2.53', u] }), u).toMatch(new RegExp(`^invalid DNS upstream "${u.replace(/[[\]().]/g, '\\$&')}": `));
    }
  });
});

describe('parseMemberAddress', () => {
  it('reads an address, with or without the network prefix', () => {
    expect(parseMemberAddress('10.0.2.50', DEFAULT)).toBe(ip('10.0.2.50'));
    expect(parseMemberAddress('10.0.2.50/24', DEFAULT)).toBe(ip('10.0.2.50'));
    expect(parseMemberAddress(' 10.0.2.51 ', DEFAULT)).toBe(ip('10.0.2.51'));
  });

  it("refuses a prefix other than the network's", () => {
    expect(() => parseMemberAddress('10.0.2.50/16', DEFAULT)).toThrow(InvalidArgumentError);
    expect(() => parseMemberAddress('10.0.2.50/16', DEFAULT)).toThrow('--ip 10.0.2.50/16: network default is /24');
    expect(() => parseMemberAddress('10.0.2.50/', DEFAULT)).toThrow('network default is /24');
    expect(() => parseMemberAddress('10.0.2.50/x', DEFAULT)).toThrow('network default is /24');
  });

  it('refuses what is not an address', () => {
    expect(() => parseMemberAddress('10.0.2', DEFAULT)).toThrow(InvalidArgumentError);
    expect(() => parseMemberAddress('host/24', DEFAULT)).toThrow('invalid IPv4 address "host"');
  });
});
