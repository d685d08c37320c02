/**
 * Docker's `-p` syntax as usernet reads it: every form it accepts, every mistake named.
 */
import { describe, expect, it } from 'vitest';
import {
  ERR_BAD_PUBLISH_SPEC,
  expandPublishSpec,
  formatMapping,
  mappingsClash,
  parsePublishSpec,
  publishSpecMappings,
  specSelects,
  type PortMapping,
} from '../../../src/nat/publish-spec.js';

function error(spec: string): { code: string; message: string } {
  try {
    parsePublishSpec(spec);
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`"${spec}" was accepted`);
}

describe('parsePublishSpec', () => {
  it('reads HOST_PORT:CONTAINER_PORT with 0.0.0.0 and tcp as defaults', () => {
    expect(parsePublishSpec('8080:80')).toEqual({ proto: 'tcp', hostIp: '0.0.0.0', family: 4, hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 });
  });

  it('reads a host address, a protocol and ranges', () => {
    expect(parsePublishSpec('127.0.0.1:5353:53/udp')).toMatchObject({ proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerPort: 53 });
    expect(parsePublishSpec('9000-9009:9000-9009')).toMatchObject({ hostPort: 9000, hostPortEnd: 9009, containerPort: 9000, containerPortEnd: 9009 });
    expect(parsePublishSpec('198.51.100.1:8000-8001:80-81/tcp')).toMatchObject({ hostIp: '198.51.100.1', hostPort: 8000, hostPortEnd: 8001, containerPort: 80, containerPortEnd: 81 });
  });

  it('reads IPv6 host addresses in brackets', () => {
    expect(parsePublishSpec('[::1]:8080:80')).toMatchObject({ hostIp: '::1', family: 6, hostPort: 8080, containerPort: 80, proto: 'tcp' });
    expect(parsePublishSpec('[2001:DB8::1]:53:53/udp')).toMatchObject({ hostIp: '2001:db8::1', family: 6, proto: 'udp' });
    expect(parsePublishSpec('[::]:80:80')).toMatchObject({ hostIp: '::' });
  });

  it('takes a missing host port as "any free port", as Docker does', () => {
    expect(parsePublishSpec('80')).toMatchObject({ hostIp: '0.0.0.0', hostPort: 0, hostPortEnd: 0, containerPort: 80 });
    expect(parsePublishSpec('127.0.0.1::80/udp')).toMatchObject({ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, proto: 'udp' });
    expect(parsePublishSpec('[::1]::80')).toMatchObject({ hostIp: '::1', hostPort: 0 });
    expect(expandPublishSpec(parsePublishSpec('80-82'))).toEqual([80, 81, 82].map((p) => ({ proto: 'tcp', hostIp: '0.0.0.0', hostPort: 0, containerPort: p })));
  });

  // Each of these was refused before (item 7 of issue #10); Docker's nat.ParsePortSpec takes them.
  it.each([
    [':80', { hostIp: '0.0.0.0', family: 4, hostPort: 0, hostPortEnd: 0, containerPort: 80, proto: 'tcp' }],
    ['::80', { hostIp: '0.0.0.0', family: 4, hostPort: 0, hostPortEnd: 0, containerPort: 80, proto: 'tcp' }],
    [':80/udp', { hostPort: 0, containerPort: 80, proto: 'udp' }],
    ['8094:80/TCP', { hostPort: 8094, containerPort: 80, proto: 'tcp' }],
    ['8094:80/Udp', { hostPort: 8094, containerPort: 80, proto: 'udp' }],
    ['8080:80/', { hostPort: 8080, containerPort: 80, proto: 'tcp' }],
    ['0:80', { hostPort: 0, hostPortEnd: 0, containerPort: 80 }],
    ['8099-8100:80', { hostPort: 8099, hostPortEnd: 8100, containerPort: 80, containerPortEnd: 80 }],
    ['127.0.0.1:8099-8100:80/udp', { hostIp: '127.0.0.1', hostPort: 8099, hostPortEnd: 8100, containerPort: 80, proto: 'udp' }],
    ['::1:8080:80', { hostIp: '::1', family: 6, hostPort: 8080, containerPort: 80 }],
    ['2001:db8::5::80', { hostIp: '2001:db8::5', family: 6, hostPort: 0, containerPort: 80 }],
    ['[2001:db8:0:0::1]:8080:80', { hostIp: '2001:db8::1', family: 6 }],
    ['[192.0.2.4]:8080:80', { hostIp: '192.0.2.4', family: 4 }],
    ['[::ffff:127.0.0.1]:8080:80', { hostIp: '127.0.0.1', family: 4 }],
    ['08080:+80', { hostPort: 8080, containerPort: 80 }],
    ['8080-8080:80', { hostPort: 8080, hostPortEnd: 8080, containerPort: 80 }],
  ])('accepts %j as Docker does', (spec, want) => {
    expect(parsePublishSpec(spec)).toMatchObject(want);
  });

  it('expands a host range with one container port to one mapping that asks for one port of the range', () => {
    expect(publishSpecMappings('8099-8100:80')).toEqual([{ proto: 'tcp', hostIp: '0.0.0.0', hostPort: 8099, hostPortEnd: 8100, containerPort: 80 }]);
    expect(formatMapping(publishSpecMappings('8099-8100:80')[0] as PortMapping)).toBe('0.0.0.0:8099-8100:80/tcp');
    // Equal lengths still pair up port by port.
    expect(publishSpecMappings('8099-8100:80-81').map(formatMapping)).toEqual(['0.0.0.0:8099:80/tcp', '0.0.0.0:8100:81/tcp']);
  });

  it.each([
    ['', 'empty'],
    ['8080:80/sctp', 'sctp is not supported'],
    ['8080:80/icmp', 'protocol "icmp" is not tcp or udp'],
    ['8080:80/tcp/udp', 'protocol "tcp/udp" is not tcp or udp'],
    ['8080:', 'no container port'],
    ['8080:/udp', 'no container port'],
    ['8080:65536', 'container port "65536" is not a port'],
    ['8080:0', 'container port 0 is not a port'],
    ['http:80', 'host port "http" is not a port'],
    ['8080:80-', 'container port "80-" is not a port'],
    ['8080:-80', 'container port "-80" is not a port'],
    ['8080:1-2-3', 'container port "1-2-3" is not a port'],
    ['9009-9000:80', 'host port range "9009-9000" ends before it starts'],
    ['0-10:80', 'host port range "0-10" starts at 0'],
    ['9000-9009:80-81', 'ranges must be of equal length'],
    ['9000:80-81', 'ranges must be of equal length'],
    ['1.2.3:8080:80', '"1.2.3" is not an IPv4 or IPv6 address'],
    ['300.1.1.1:8080:80', '"300.1.1.1" is not an IPv4 or IPv6 address'],
    ['010.1.1.1:8080:80', '"010.1.1.1" is not an IPv4 or IPv6 address'],
    ['[::1:8080:80', 'is not a host address'],
    ['[zz::1]:8080:80', '"zz::1" is not an IPv4 or IPv6 address'],
    ['[::1]8080:80', 'is not a host address'],
    ['[::1]:80', 'is not a host address'],
    ['192.0.2.4:1:2:3', '"192.0.2.4:1" is not an IPv4 or IPv6 address'],
    ['[fe80::1%eth0]:8095:80', 'has an IPv6 zone'],
    ['[fe80::1]:8095:80', 'fe80::1 is a link-local address'],
    ['[FEBF::1]:8095:80', 'febf::1 is a link-local address'],
    ['80\n:90', 'host port "80\\n" is not a port'],
    ['\n', 'empty'],
  ])('refuses %j: %s', (spec, why) => {
    const e = error(spec);
    expect(e.code).toBe(ERR_BAD_PUBLISH_SPEC);
    expect(e.message).toContain(why);
    expect(e.message).toContain(`bad port spec ${JSON.stringify(spec)}`);
    expect(e.message.split('\n')).toHaveLength(1);
  });
});

describe('mappings', () => {
  it('expand a range port by port, and print back in the spec syntax', () => {
    const ms = publishSpecMappings('127.0.0.1:9000-9002:7000-7002/udp');
    expect(ms.map(formatMapping)).toEqual(['127.0.0.1:9000:7000/udp', '127.0.0.1:9001:7001/udp', '127.0.0.1:9002:7002/udp']);
    expect(formatMapping(publishSpecMappings('[::1]:8080:80')[0] as PortMapping)).toBe('[::1]:8080:80/tcp');
  });

  it('clash like bind(2): same protocol and port, same address or a wildcard of the same family', () => {
    const m = (spec: string): PortMapping => publishSpecMappings(spec)[0] as PortMapping;
    expect(mappingsClash(m('8080:80'), m('8080:81'))).toBe(true);
    expect(mappingsClash(m('8080:80'), m('127.0.0.1:8080:80'))).toBe(true);
    expect(mappingsClash(m('127.0.0.1:8080:80'), m('127.0.0.2:8080:80'))).toBe(false);
    expect(mappingsClash(m('8080:80'), m('8080:80/udp'))).toBe(false);
    expect(mappingsClash(m('8080:80'), m('[::]:8080:80'))).toBe(false);
    expect(mappingsClash(m('[::]:8080:80'), m('[::1]:8080:80'))).toBe(true);
    expect(mappingsClash(m('80'), m('80'))).toBe(false); // any free port: never the same one
    expect(mappingsClash(m('8080-8081:80'), m('8080:81'))).toBe(false); // a range takes a free port of it
  });

  it('an unpublish spec selects mappings by host port, any port, or a port in its range', () => {
    const m = (spec: string): PortMapping => publishSpecMappings(spec)[0] as PortMapping;
    const bound = m('127.0.0.1:8100:80');
    expect(specSelects(m('127.0.0.1:8100:80'), bound)).toBe(true);
    expect(specSelects(m('127.0.0.1::80'), bound)).toBe(true);
    expect(specSelects(m('127.0.0.1:8099-8100:80'), bound)).toBe(true);
    expect(specSelects(m('127.0.0.1:8101-8102:80'), bound)).toBe(false);
    expect(specSelects(m('127.0.0.1:8100:81'), bound)).toBe(false);
    expect(specSelects(m('8100:80'), bound)).toBe(false);
    expect(specSelects(m('127.0.0.1:8100:80/udp'), bound)).toBe(false);
  });
});
