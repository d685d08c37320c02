/**
 * slirp4netns's command line as its clients write it: rootlesskit, Podman, slirp4netns's own tests.
 */
import { describe, expect, it } from 'vitest';
import { SLIRP_HELP_FLAGS, SlirpArgsError, parseSlirpArgs, parseSlirpCidr, slirpAddresses, type SlirpOptions } from '../../../src/slirp/args.js';
import { slirpHelp, slirpVersion } from '../../../src/slirp/main.js';

function options(argv: string[]): SlirpOptions {
  const c = parseSlirpArgs(argv);
  if (c.action !== 'run') throw new Error(`expected run, got ${c.action}`);
  return c.options;
}

function refused(argv: string[]): string {
  try {
    parseSlirpArgs(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(SlirpArgsError);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${argv.join(' ')}`);
}

describe('parseSlirpArgs', () => {
  it("takes rootlesskit's command line", () => {
    const o = options(['--mtu', '65520', '-r', '3', '--disable-host-loopback', '--api-socket', '/run/s4nn.sock', '--enable-sandbox', '--enable-seccomp', '4242', 'tap0']);
    expect(o).toMatchObject({ mtu: 65520, readyFd: 3, exitFd: -1, disableHostLoopback: true, apiSocket: '/run/s4nn.sock', enableSandbox: true, enableSeccomp: true, pid: 4242, tapname: 'tap0', configure: false, netnsType: 'pid' });
  });

  it("takes Podman's, with = values and a path operand", () => {
    const o = options(['--disable-host-loopback', '--mtu=65520', '--enable-sandbox', '--enable-seccomp', '--enable-ipv6', '-c', '-e', '3', '-r', '4', '--netns-type=path', '/run/user/1000/netns/netns-1', 'tap0']);
    expect(o).toMatchObject({ configure: true, exitFd: 3, readyFd: 4, enableIpv6: true, netnsType: 'path', netnsPath: '/run/user/1000/netns/netns-1', pid: 0 });
  });

  it('clusters short options, attaches values, and permutes options after the operands', () => {
    expect(options(['-ce3', '-r4', '99'])).toMatchObject({ configure: true, exitFd: 3, readyFd: 4, pid: 99 });
    expect(options(['99', 'tap9', '-c', '--mtu', '9000'])).toMatchObject({ configure: true, mtu: 9000, pid: 99, tapname: 'tap9' });
    expect(options(['-c6', '99'])).toMatchObject({ configure: true, enableIpv6: true });
  });

  it('accepts unambiguous prefixes of long options, as getopt_long does', () => {
    expect(options(['-c', '--macaddr', '0e:d4:18:d9:38:fb', '1'])).toMatchObject({ macAddress: '0e:d4:18:d9:38:fb' });
    expect(options(['--disable-h', '1'])).toMatchObject({ disableHostLoopback: true });
    expect(refused(['--disable', '1'])).toMatch(/^option '--disable' is ambiguous; possibilities: '--disable-host-loopback' '--disable-dns'$/);
    expect(refused(['--nope', '1'])).toBe("unrecognized option '--nope'");
    expect(refused(['-x', '1'])).toBe("invalid option -- 'x'");
  });

  it('treats everything after -- as operands', () => {
    expect(options(['-c', '--', '12'])).toMatchObject({ pid: 12 });
  });

  it('answers --help and --version at once, wherever they are', () => {
    expect(parseSlirpArgs(['-c', '-h']).action).toBe('help');
    expect(parseSlirpArgs(['--mtu=1500', '--version', '1']).action).toBe('version');
  });

  it('defaults to slirp4netns values', () => {
    const o = options(['7']);
    expect(o).toMatchObject({ mtu: 1500, cidr: '10.0.2.0/24', prefix: 24, tapname: 'tap0', exitFd: -1, readyFd: -1, apiSocket: '', disableDns: false });
  });

  it('checks values with the messages its clients know', () => {
    expect(refused(['-e', 'x', '1'])).toBe('exit-fd must be a non-negative integer');
    expect(refused(['-r', '-1', '1'])).toBe("ready-fd must be a non-negative integer");
    expect(refused(['-m', '65522', '1'])).toBe('MTU must be a positive integer (< 65522)');
    expect(refused(['-m', '0', '1'])).toBe('MTU must be a positive integer (< 65522)');
    expect(refused(['-m', '60', '1'])).toBe('MTU must be at least 68 for IPv4');
    expect(options(['-m', '65521', '1']).mtu).toBe(65521);
    expect(refused(['--macaddress', '0e:d4:18:d9:38:fb', '1'])).toBe('--macaddress cannot be specified when --configure or -c is not specified');
    expect(refused(['-c', '--macaddress', 'zz', '1'])).toMatch(/not a MAC address/);
    expect(refused(['0'])).toBe('PID must be a positive integer');
    expect(refused(['abc'])).toBe('PID must be a positive integer');
    expect(refused([])).toMatch(/missing PID or PATH/);
    expect(refused(['1', 'tap0', 'extra'])).toBe('too many arguments');
    expect(refused(['--netns-type=tapfd', '3'])).toMatch(/tapfd is not supported/);
    expect(refused(['--netns-type=bogus', '3'])).toBe('--netns-type must be pid or path');
    expect(refused(['--target-type=bess', '/x'])).toMatch(/bess is not supported/);
    expect(refused(['--mtu'])).toBe("option '--mtu' requires an argument");
    expect(refused(['-c', '-r'])).toBe("option requires an argument -- 'r'");
    expect(refused(['--configure=1', '1'])).toBe("option '--configure' doesn't allow an argument");
    expect(refused(['1', 'this-name-is-too-long'])).toMatch(/TAPNAME/);
  });

  it('warns about deprecated spellings and still honours them', () => {
    const c = parseSlirpArgs(['--no-host-loopback', '--create-sandbox', '1']);
    expect(c.action).toBe('run');
    if (c.action !== 'run') return;
    expect(c.options).toMatchObject({ disableHostLoopback: true, enableSandbox: true });
    expect(c.warnings).toHaveLength(2);
  });
});

describe('parseSlirpCidr', () => {
  it("uses slirp4netns's exact errors", () => {
    const msg = (t: string) => {
      try {
        parseSlirpCidr(t);
        return 'ok';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(msg('10.0.2.100/24')).toBe('CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24');
    expect(msg('10.0.2.0/26')).toBe('prefix length needs to be 1-25');
    expect(msg('10.0.2.100/26')).toBe('prefix length needs to be 1-25');
    expect(msg('24')).toBe('invalid CIDR');
    expect(msg('10.0.135.128/25')).toBe('ok');
    expect(msg('0.0.0.0/0')).toBe('prefix length needs to be 1-25');
    expect(msg('foo')).toBe('invalid CIDR');
    expect(msg('10.0.2.0')).toBe('invalid CIDR');
    expect(msg('10.0.2.0/33')).toBe('invalid CIDR');
    expect(msg('10.0.3.0/24')).toBe('ok');
    expect(parseSlirpCidr('192.168.0.0/16')).toEqual({ network: 0xc0a80000, prefix: 16 });
  });

  it('derives the addresses slirp4netns uses', () => {
    expect(slirpAddresses(0x0a000200, 24)).toEqual({ gateway: 0x0a000202, dns: 0x0a000203, guest: 0x0a000264, dhcpFirst: 0x0a00020f, broadcast: 0x0a0002ff });
  });
});

describe('--help and --version', () => {
  it('--help names every flag (clients probe features by searching it)', () => {
    const text = slirpHelp('slirp4netns');
    for (const flag of SLIRP_HELP_FLAGS) expect(text).toContain(`--${flag}`);
    for (const probe of ['--netns-type', '--enable-ipv6', '--cidr', '--disable-host-loopback', '--api-socket', '--enable-sandbox', '--enable-seccomp', '--mtu', '--outbound-addr', '--disable-dns', '--macaddress', '--userns-path', '--target-type']) {
      expect(text).toContain(probe);
    }
  });

  it("--version has slirp4netns's layout and states the feature level", () => {
    const lines = slirpVersion().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^slirp4netns version \S+/);
    expect(lines.some((l) => /usernet/.test(l))).toBe(true);
    expect(lines).toContain('SLIRP_CONFIG_VERSION_MAX: 4');
  });
});
