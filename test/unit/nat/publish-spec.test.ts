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

  it.each([
    ['', 'empty'],
    ['8080:80/sctp', 'protocol "sctp" is not tcp or udp'],
    ['8080:80/', 'protocol "" is not tcp or udp'],
    ['8080:', 'no container port'],
    [':80', 'no host port before ":"'],
    ['0:80', 'host port 0 is not 1-65535'],
    ['8080:65536', 'container port 65536 is not 1-65535'],
    ['http:80', 'host port "http" is not a port'],
    ['8080:80-', 'container port "80-" is not a port'],
    ['9009-9000:80', 'host port range 9009-9000 ends before it starts'],
    ['9000-9009:80-81', 'ranges must be of equal length'],
    ['9000:80-81', 'ranges must be of equal length'],
    ['1.2.3:8080:80', '"1.2.3" is not an IPv4 address'],
    ['300.1.1.1:8080:80', '"300.1.1.1" is not an IPv4 address'],
    ['::1:8080:80', 'IPv6 host address goes in brackets'],
    ['[::1:8080:80', 'is not closed'],
    ['[zz::1]:8080:80', '"zz::1" is not an IPv6 address'],
    ['[::1]8080:80', 'needs ":HOST_PORT:CONTAINER_PORT"'],
    ['[::1]:80', 'expected [HOST_IP]:HOST_PORT:CONTAINER_PORT'],
    ['192.0.2.4:1:2:3', 'too many ":"'],
  ])('refuses %j: %s', (spec, why) => {
    const e = error(spec);
    expect(e.code).toBe(ERR_BAD_PUBLISH_SPEC);
    expect(e.message).toContain(why);
    expect(e.message).toContain(`bad port spec "${spec}"`);
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
  });
});
