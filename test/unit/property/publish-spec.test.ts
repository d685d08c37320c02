/**
 * Properties of the `-p` spec parser (Docker's syntax): a spec written from its parts parses to
 * those parts; what formatMapping prints parses back to the same mapping; any string at all is a
 * spec or an ERR_BAD_PUBLISH_SPEC error with a one-line message — never another exception.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERR_BAD_PUBLISH_SPEC, expandPublishSpec, formatMapping, parsePublishSpec, publishSpecMappings, type PortMapping } from '../../../src/nat/publish-spec.js';
import { ipv4ToString } from '../../../src/packet/ip-address.js';
import { check, u32 } from './fc.js';

const port = fc.integer({ min: 1, max: 65535 });
/** A port as text the way Docker reads it too: leading zeros or a "+" allowed. */
const portText = (p: number): fc.Arbitrary<string> => fc.constantFrom(String(p), `0${p}`, `+${p}`);

/** A global (not link-local) IPv6 address, written in any of its valid forms. */
const v6 = fc.ipV6().filter((a) => {
  const c = new URL(`http://[${a}]/`).hostname.slice(1, -1);
  const first = c.startsWith(':') ? 0 : parseInt(c.slice(0, c.indexOf(':')), 16);
  return (first & 0xffc0) !== 0xfe80 && !/^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(c);
});

interface Parts {
  ip: { text: string; hostIp: string; family: 4 | 6 };
  host: { text: string; start: number; end: number };
  container: { text: string; start: number; end: number };
  proto: { text: string; proto: 'tcp' | 'udp' };
}

const ip = fc.oneof(
  fc.constant({ text: '', hostIp: '0.0.0.0', family: 4 as const }),
  u32.map((a) => ({ text: ipv4ToString(a), hostIp: ipv4ToString(a), family: 4 as const })),
  u32.map((a) => ({ text: `[${ipv4ToString(a)}]`, hostIp: ipv4ToString(a), family: 4 as const })),
  fc.tuple(v6, fc.boolean()).map(([a, bracket]) => ({ text: bracket ? `[${a}]` : a, hostIp: new URL(`http://[${a}]/`).hostname.slice(1, -1), family: 6 as const })),
);

const range = fc.tuple(port, fc.integer({ min: 0, max: 20 })).filter(([a, n]) => a + n <= 65535);

const parts: fc.Arbitrary<Parts> = fc
  .tuple(ip, range, fc.oneof(fc.constant('none'), fc.constant('empty'), fc.constant('single'), fc.constant('range')), fc.integer({ min: 0, max: 40000 }), fc.constantFrom('', '/', '/tcp', '/TCP', '/udp', '/UDP', '/Udp'))
  .chain(([ip, [cStart, cLen], hostKind, hostAt, protoText]) =>
    fc.tuple(portText(cStart), portText(cStart + cLen), fc.constant(ip), fc.constant(hostKind), fc.constant(hostAt), fc.constant(protoText), fc.constant([cStart, cLen] as const)),
  )
  .map(([c1, c2, ipPart, hostKind, hostAt, protoText, [cStart, cLen]]) => {
    const container = { text: cLen === 0 ? c1 : `${c1}-${c2}`, start: cStart, end: cStart + cLen };
    const hStart = 1 + (hostAt % (65535 - 25));
    let host: Parts['host'];
    if (hostKind === 'none' || hostKind === 'empty') host = { text: hostKind === 'none' ? '' : '', start: 0, end: 0 };
    else if (hostKind === 'single' || cLen > 0) host = { text: cLen === 0 ? `${hStart}` : `${hStart}-${hStart + cLen}`, start: hStart, end: hStart + cLen };
    else host = { text: `${hStart}-${hStart + 1 + (hostAt % 20)}`, start: hStart, end: hStart + 1 + (hostAt % 20) };
    // "none" writes no host field at all when there is no address either: CONTAINER_PORT alone.
    const noHostField = hostKind === 'none' && ipPart.text === '';
    return { ip: ipPart, host: noHostField ? { ...host, text: '\0' } : host, container, proto: { text: protoText, proto: protoText.toLowerCase() === '/udp' ? 'udp' : 'tcp' } } as Parts;
  });

function specOf(p: Parts): string {
  const tail = `${p.container.text}${p.proto.text}`;
  if (p.host.text === '\0') return tail;
  return p.ip.text === '' ? `${p.host.text}:${tail}` : `${p.ip.text}:${p.host.text}:${tail}`;
}

describe('parsePublishSpec', () => {
  it('a spec written from its parts parses to those parts', () => {
    check(
      fc.property(parts, (p) => {
        const spec = specOf(p);
        expect(parsePublishSpec(spec)).toEqual({
          proto: p.proto.proto,
          hostIp: p.ip.hostIp,
          family: p.ip.family,
          hostPort: p.host.start,
          hostPortEnd: p.host.end,
          containerPort: p.container.start,
          containerPortEnd: p.container.end,
        });
      }),
      500,
    );
  });

  it('formatMapping prints what parses back to the same mapping', () => {
    check(
      fc.property(parts, (p) => {
        for (const m of publishSpecMappings(specOf(p))) {
          const again = publishSpecMappings(formatMapping(m));
          expect(again).toEqual([m]);
        }
      }),
      300,
    );
  });

  it('expands to one mapping per container port, or one for a host range and one container port', () => {
    check(
      fc.property(parts, (p) => {
        const s = parsePublishSpec(specOf(p));
        const ms = expandPublishSpec(s);
        const oneOfRange = s.containerPort === s.containerPortEnd && s.hostPortEnd > s.hostPort;
        expect(ms.length).toBe(oneOfRange ? 1 : s.containerPortEnd - s.containerPort + 1);
        ms.forEach((m: PortMapping, i) => {
          expect(m.containerPort).toBe(s.containerPort + i);
          if (oneOfRange) expect([m.hostPort, m.hostPortEnd]).toEqual([s.hostPort, s.hostPortEnd]);
          else expect([m.hostPort, m.hostPortEnd]).toEqual([s.hostPort === 0 ? 0 : s.hostPort + i, undefined]);
        });
      }),
    );
  });

  it('any string is a spec or an ERR_BAD_PUBLISH_SPEC error in one line', () => {
    const specish = fc.string({ unit: fc.constantFrom(...'0123456789:[]-/.abcdefTCPUDPudpx%+ '.split('')), maxLength: 30 });
    check(
      fc.property(fc.oneof(specish, fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 }), parts.map(specOf).map((s) => s.slice(0, -1))), (s) => {
        try {
          const spec = parsePublishSpec(s);
          expect(spec.containerPort).toBeGreaterThanOrEqual(1);
          expect(spec.containerPortEnd).toBeLessThanOrEqual(65535);
          expect(spec.hostPortEnd).toBeGreaterThanOrEqual(spec.hostPort);
        } catch (err) {
          const e = err as { code?: string; message?: string };
          if (e.code !== ERR_BAD_PUBLISH_SPEC) throw err;
          expect(e.message?.includes('\n')).toBe(false);
        }
      }),
      1000,
    );
  });
});
