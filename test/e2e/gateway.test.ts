/**
 * The virtual gateway with real clients: udhcpc gets its lease (and keeps it over a daemon
 * restart), ping/arping see the gateway, dig resolves through the forwarder to a dnsmasq the test
 * runs on the sandbox's loopback, 1000 queries in flight from two containers with the same IDs
 * all get their own answers, a stopped upstream gives SERVFAIL, networks stay apart, and
 * malformed DHCP/DNS/ARP is counted and survived.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUdpFrame } from '../../src/packet/build.js';
import { CLI, Container, Daemon, FIXTURES, PYTHON, asUser, cleanup, exited, ping, requireSandbox, runOk, startUntil, track, userTempDir } from './harness.js';

requireSandbox();

const GATEWAY_MAC = '52:55:0a:00:02:02';
const SCRIPT = join(FIXTURES, 'udhcpc-event.sh');

interface NetworkStats {
  stats: {
    gateway: Record<string, number>;
    dhcp: Record<string, number>;
    dns: Record<string, number> | null;
  };
}

/** dnsmasq on the sandbox's loopback, answering for *.test only. Resolves once it serves. */
async function startDnsmasq(port: number): Promise<ChildProcess> {
  return startUntil(
    [
      'dnsmasq',
      '--no-daemon',
      '--no-resolv',
      '--no-hosts',
      '--pid-file=',
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      `--port=${port}`,
      '--address=/test/192.0.2.7',
      '--address=/test/2001:db8::7',
      '--txt-record=txt.test,hello from upstream',
      '--log-facility=-',
    ],
    (l) => /started, version/.test(l),
    { stream: 'stderr' },
  );
}

async function udhcpc(c: Container, extra: string[] = []): Promise<Record<string, string>> {
  await c.execOk(['ip', 'link', 'set', 'eth0', 'up']);
  const out = await c.execOk(['busybox', 'udhcpc', '-i', 'eth0', '-s', SCRIPT, '-n', '-q', '-t', '5', '-T', '1', ...extra], { timeoutMs: 30_000 });
  const line = out.split('\n').find((l) => l.startsWith('EVENT bound'));
  if (!line) throw new Error(`udhcpc got no lease:\n${out}`);
  return Object.fromEntries(line.split(' ').slice(2).map((kv) => kv.split('=') as [string, string]));
}

async function dig(c: Container, args: string[]): Promise<string> {
  const r = await c.exec(['dig', '+time=5', '+tries=1', '@10.0.2.3', ...args], { timeoutMs: 30_000 });
  return r.stdout;
}

async function sendRaw(c: Container, frame: Buffer): Promise<void> {
  await c.execOk([PYTHON, join(FIXTURES, 'l2probe.py'), 'raw', 'eth0', frame.toString('hex')]);
}

async function networkStats(d: Daemon, name = 'default'): Promise<NetworkStats['stats']> {
  return (JSON.parse(await d.cliOk(['network', 'inspect', name])) as NetworkStats).stats;
}

describe('DHCP', () => {
  let daemon: Daemon;
  let a: Container;
  let b: Container;

  beforeAll(async () => {
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start({ args: ['--dns-search', 'example.test', '--dns-upstream', '127.0.0.1:5399'] });
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a']);
    await daemon.cliOk(['attach', '--pid', String(b.pid), '--name', 'b']);
  });

  afterAll(cleanup);

  it('gives the first container 10.0.2.100 with router 10.0.2.2 and DNS 10.0.2.3, the second .101', async () => {
    const lease = await udhcpc(a);
    expect(lease).toMatchObject({
      ip: '10.0.2.100',
      subnet: '255.255.255.0',
      router: '10.0.2.2',
      dns: '10.0.2.3',
      domain: 'example.test',
      search: 'example.test',
      mtu: '1500',
      lease: '3600',
      serverid: '10.0.2.2',
      broadcast: '10.0.2.255',
    });
    expect((await udhcpc(b)).ip).toBe('10.0.2.101');
  });

  it('leases to any client MAC, and the same MAC gets the same lease after a daemon restart', async () => {
    await b.execOk(['ip', 'link', 'set', 'eth0', 'down']);
    await b.execOk(['ip', 'link', 'set', 'eth0', 'address', '02:00:00:00:be:ef']);
    const since = daemon.logs.length;
    const first = await udhcpc(b);
    expect(first.ip).toBe('10.0.2.102'); // .100 and .101 belong to the attachments
    // Lease changes reach the state file a moment later (debounced); the daemon says when.
    await daemon.waitForLog((l) => l.msg === 'leases saved', 5000, since);
    const leases = (JSON.parse(readFileSync(join(daemon.stateDir, 'state.json'), 'utf8')) as { leases: Array<{ mac: string; ip: string }> }).leases;
    expect(leases).toEqual([expect.objectContaining({ mac: '02:00:00:00:be:ef', ip: '10.0.2.102', network: 'default' })]);
    await daemon.kill('SIGKILL');
    await daemon.launch();
    // A fresh DISCOVER (no requested address) from the same MAC: the same address comes back.
    const again = await udhcpc(b);
    expect(again.ip).toBe('10.0.2.102');
    const inspect = JSON.parse(await daemon.cliOk(['network', 'inspect', 'default'])) as { addresses: Array<{ ip: string; mac: string; kind: string }> };
    expect(inspect.addresses).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ ip: '10.0.2.100', kind: 'attachment' }),
        // The attachment keeps its own MAC and address, whatever the container did to its interface.
        expect.objectContaining({ ip: '10.0.2.101', mac: '02:42:0a:00:02:65', kind: 'attachment', port: 'b' }),
        expect.objectContaining({ ip: '10.0.2.102', mac: '02:00:00:00:be:ef', kind: 'lease' }),
      ]),
    );
    // A second restart changes nothing, and detach frees the attachment's address.
    await daemon.kill('SIGKILL');
    await daemon.launch();
    expect((await udhcpc(b)).ip).toBe('10.0.2.102');
    await daemon.cliOk(['detach', 'b']);
    const after = JSON.parse(await daemon.cliOk(['network', 'inspect', 'default'])) as { addresses: Array<{ ip: string }> };
    expect(after.addresses.map((x) => x.ip)).not.toContain('10.0.2.101');
  });

  it("fits its replies to the client's maximum message size (a long search list is left out)", async () => {
    const domains = Array.from({ length: 12 }, (_, i) => `sub${i}.a-rather-long-search-domain-name.example.test`);
    await daemon.cliOk(['network', 'create', 'longsearch', '--subnet', '10.0.7.0/24', '--dns-search', domains.join(',')]);
    const c = await Container.start();
    await daemon.cliOk(['attach', '--pid', String(c.pid), '--name', 'ls', '--network', 'longsearch']);
    const lease = await udhcpc(c); // busybox advertises 576 bytes
    expect(lease.ip).toBe('10.0.7.100');
    expect(lease.search).toBe('');
    const stats = (JSON.parse(await daemon.cliOk(['network', 'inspect', 'longsearch'])) as NetworkStats).stats;
    expect(stats.dhcp.trimmed).toBeGreaterThan(0);
  });
});

describe('what the gateway answers', () => {
  let daemon: Daemon;
  let a: Container;

  beforeAll(async () => {
    a = await Container.start();
    daemon = await Daemon.start({ args: ['--dns-upstream', '127.0.0.1:5399'] });
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
  });

  afterAll(cleanup);

  it('configures the container: address, default route via 10.0.2.2, MTU, lo up', async () => {
    expect(await a.execOk(['ip', '-4', 'addr', 'show', 'eth0'])).toContain('inet 10.0.2.100/24');
    expect(await a.execOk(['ip', 'route', 'show', 'default'])).toMatch(/^default via 10\.0\.2\.2 dev eth0/);
    expect((await a.link('lo')).flags).toContain('UP');
    expect((await a.link()).address).toBe('02:42:0a:00:02:64');
  });

  it('answers ping on 10.0.2.2 and 10.0.2.3', async () => {
    expect(await ping(a, '10.0.2.2', 2)).toBe(2);
    expect(await ping(a, '10.0.2.3', 2)).toBe(2);
  });

  it('answers ping in the TAP reader, counted as the switch counts it, and leaves pings to the JS path while a capture runs', async () => {
    type Counted = { name: string; kind?: string; counters: { rx_frames: number; tx_frames: number } };
    expect(await ping(a, '10.0.2.2', 1)).toBe(1); // ARP settled
    const port = async (): Promise<Counted> => (await daemon.containerPorts<Counted>())[0];
    const [s0, p0] = [(await networkStats(daemon)).gateway, await port()];
    expect(await ping(a, '10.0.2.2', 5)).toBe(5);
    const [s1, p1] = [(await networkStats(daemon)).gateway, await port()];
    expect(s1.icmp_echo_replies - s0.icmp_echo_replies).toBe(5);
    expect(s1.icmp_echo_replies_in_reader - s0.icmp_echo_replies_in_reader).toBe(5);
    expect(p1.counters.rx_frames - p0.counters.rx_frames).toBeGreaterThanOrEqual(5);
    expect(p1.counters.tx_frames - p0.counters.tx_frames).toBeGreaterThanOrEqual(5);
    // A capture must see every frame: the reader stops answering while it runs.
    const file = join(userTempDir(), 'gateway-ping.pcap');
    const since = daemon.logs.length;
    const argv = asUser([process.execPath, CLI, 'capture', '--port', 'a', '-w', file, '--socket', daemon.socket]);
    const cli = track(spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] }));
    await daemon.waitForLog((l) => l.msg === 'capture started', 10_000, since);
    expect(await ping(a, '10.0.2.2', 3)).toBe(3);
    cli.kill('SIGINT');
    await exited(cli);
    const s2 = (await networkStats(daemon)).gateway;
    expect(s2.icmp_echo_replies - s1.icmp_echo_replies).toBe(3);
    expect(s2.icmp_echo_replies_in_reader).toBe(s1.icmp_echo_replies_in_reader);
    const types = (await runOk(['tshark', '-r', file, '-Y', 'icmp', '-T', 'fields', '-e', 'icmp.type'])).split('\n').filter(Boolean);
    expect(types.filter((t) => t === '8')).toHaveLength(3);
    expect(types.filter((t) => t === '0')).toHaveLength(3);
    // And once it has ended, the reader answers again.
    await daemon.waitForLog((l) => l.msg === 'capture ended', 10_000, since);
    expect(await ping(a, '10.0.2.2', 2)).toBe(2);
    expect((await networkStats(daemon)).gateway.icmp_echo_replies_in_reader - s2.icmp_echo_replies_in_reader).toBe(2);
  });

  it('answers ARP with its fixed MAC (arping)', async () => {
    const r = await a.exec(['arping', '-c', '1', '-w', '3', '-I', 'eth0', '10.0.2.2']);
    expect(r.stdout.toLowerCase()).toContain(GATEWAY_MAC);
    const fdb = await daemon.cliOk(['fdb']);
    expect(fdb).toContain(`${GATEWAY_MAC} dev gateway master default permanent`);
  });

  it('drops and counts a frame that spoofs the gateway MAC, never learning it', async () => {
    const before = await daemon.containerPorts<{ name: string; kind?: string; counters: { drops: Record<string, number> } }>();
    await a.execOk([PYTHON, join(FIXTURES, 'l2probe.py'), 'send', 'eth0', GATEWAY_MAC, 'ff:ff:ff:ff:ff:ff', 'SPOOF', '3']);
    expect(await ping(a, '10.0.2.2', 1)).toBe(1);
    const after = await daemon.containerPorts<{ name: string; kind?: string; counters: { drops: Record<string, number> } }>();
    expect(after[0].counters.drops.spoofed_src - before[0].counters.drops.spoofed_src).toBe(3);
    expect(await daemon.cliOk(['fdb'])).toContain(`${GATEWAY_MAC} dev gateway master default permanent`);
  });

  it('sends port unreachable for UDP to a port nothing serves, and resets TCP', async () => {
    const probe = (code: string): Promise<string> => a.execOk([PYTHON, '-c', code]);
    expect(
      await probe(
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.connect(('10.0.2.3', 9))\ns.send(b'x')\ns.settimeout(5)\ntry:\n  s.recv(1)\n  print('answered')\nexcept ConnectionRefusedError:\n  print('refused')",
      ),
    ).toBe('refused\n');
    expect(
      await probe(
        "import socket\ns=socket.socket()\ns.settimeout(5)\ntry:\n  s.connect(('10.0.2.3', 80))\n  print('connected')\nexcept ConnectionRefusedError:\n  print('refused')",
      ),
    ).toBe('refused\n');
    const stats = await networkStats(daemon);
    expect(stats.gateway.icmp_errors_sent).toBeGreaterThanOrEqual(1);
    expect(stats.gateway.tcp_resets_sent).toBeGreaterThanOrEqual(1);
  });

  it('passes a host without a route to the container as network unreachable', async () => {
    // Beyond the subnet is the NAT's; in the sandbox every outside address is a blackhole route,
    // so the host's connect fails and the container sees ENETUNREACH, from its gateway.
    const code = "import socket, errno\ns=socket.socket()\ns.settimeout(10)\ntry:\n  s.connect(('198.51.100.9', 80))\n  print('connected')\nexcept OSError as e:\n  print(errno.errorcode.get(e.errno, e))";
    expect((await a.execOk([PYTHON, '-c', code])).trim()).toBe('ENETUNREACH');
  });

  it('drops IPv6 sent to it (counted) and advertises no router', async () => {
    await a.exec(['ping', '-6', '-c', '1', '-W', '1', '-I', 'eth0', 'ff02::2']);
    const stats = await networkStats(daemon);
    expect(stats.gateway.ipv6_dropped).toBeGreaterThan(0);
    expect(await a.execOk(['ip', '-6', 'route', 'show', 'default'])).toBe('');
  });
});

describe('DNS', () => {
  let daemon: Daemon;
  let a: Container;
  let b: Container;
  let upstream: ChildProcess;

  beforeAll(async () => {
    upstream = await startDnsmasq(5353);
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start({ args: ['--dns-upstream', '127.0.0.1:5353'] });
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
    await daemon.cliOk(['attach', '--pid', String(b.pid), '--name', 'b', '--configure']);
  });

  afterAll(cleanup);

  it('forwards to the upstream and relays its A, AAAA and TXT answers', async () => {
    expect(await dig(a, ['+short', 'svc.test', 'A'])).toBe('192.0.2.7\n');
    expect(await dig(a, ['+short', 'svc.test', 'AAAA'])).toBe('2001:db8::7\n');
    expect(await dig(b, ['+short', 'txt.test', 'TXT'])).toBe('"hello from upstream"\n');
  });

  it('keeps 1000 queries in flight from two containers, with the same IDs, apart', async () => {
    const burst = (c: Container, tag: string): Promise<string> => c.execOk([process.execPath, join(FIXTURES, 'dns-burst.mjs'), '10.0.2.3', '500', tag, 'test'], { timeoutMs: 60_000 });
    const [ra, rb] = await Promise.all([burst(a, 'alpha'), burst(b, 'beta')]);
    expect(ra.trim()).toBe('ok 500');
    expect(rb.trim()).toBe('ok 500');
    const stats = await networkStats(daemon);
    expect(stats.dns?.answers).toBeGreaterThanOrEqual(1000);
    expect(stats.dns?.spoofed).toBe(0);
  });

  it('answers SERVFAIL, within its timeout, when the upstream is gone', async () => {
    upstream.kill('SIGTERM');
    await exited(upstream);
    const t0 = Date.now();
    const out = await dig(a, ['svc.test', 'A']);
    expect(out).toMatch(/status: SERVFAIL/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('uses the host resolv.conf by default (127.0.0.1 in the sandbox), re-reading it', async () => {
    const d2 = await Daemon.start();
    const c = await Container.start();
    await d2.cliOk(['attach', '--pid', String(c.pid), '--name', 'c', '--configure']);
    const local = await startDnsmasq(53);
    expect(await dig(c, ['+short', 'svc.test', 'A'])).toBe('192.0.2.7\n');
    local.kill('SIGTERM');
    await exited(local);
  });

  it('--disable-dns: no forwarder, no DNS option in DHCP, port unreachable on 10.0.2.3:53', async () => {
    const d3 = await Daemon.start({ args: ['--disable-dns'] });
    const c = await Container.start();
    await d3.cliOk(['attach', '--pid', String(c.pid), '--name', 'c']);
    const lease = await udhcpc(c);
    expect(lease.dns).toBe('');
    await c.execOk(['ip', 'addr', 'add', `${lease.ip}/24`, 'dev', 'eth0']);
    const r = await c.exec(['dig', '+time=2', '+tries=1', '@10.0.2.3', 'svc.test']);
    expect(r.stdout).toMatch(/connection refused|no servers could be reached/i);
    expect(await ping(c, '10.0.2.3', 1)).toBe(1);
  });
});

describe('networks', () => {
  let daemon: Daemon;

  beforeAll(async () => {
    daemon = await Daemon.start();
  });

  afterAll(cleanup);

  it('validates new networks with clear messages', async () => {
    const create = (...args: string[]) => daemon.cli(['network', 'create', ...args]);
    expect((await create('bad', '--subnet', '10.0.3.5/24')).stderr.trim()).toBe('usernet: network create: --subnet needs a network address like 10.0.3.0/24, not like 10.0.3.5/24');
    expect((await create('small', '--subnet', '10.0.4.0/27')).stderr.trim()).toBe('usernet: network create: --subnet prefix length must be 1-25 (a smaller subnet needs --gateway, --dns and --range)');
    expect((await create('wide', '--subnet', '10.0.0.0/16')).stderr.trim()).toBe('usernet: --subnet 10.0.0.0/16 overlaps network default (10.0.2.0/24)');
    expect((await create('x', '--subnet', 'nonsense')).stderr.trim()).toBe('usernet: network create: --subnet "nonsense" is not a valid CIDR (expected A.B.C.D/NN like 10.0.2.0/24)');
    const ok = await create('tiny', '--subnet', '10.0.4.0/29', '--gateway', '10.0.4.1', '--dns', '10.0.4.2', '--range', '10.0.4.3-10.0.4.6');
    expect(ok.code).toBe(0);
    expect((await create('tiny', '--subnet', '10.0.5.0/24')).stderr.trim()).toBe('usernet: a network named tiny already exists');
  });

  it('keeps networks apart: a container on one cannot reach a container on another', async () => {
    await daemon.cliOk(['network', 'create', 'back', '--subnet', '10.0.3.0/24', '--dns-search', 'back.test']);
    const [front, back] = await Promise.all([Container.start(), Container.start()]);
    await daemon.cliOk(['attach', '--pid', String(front.pid), '--name', 'front', '--configure']);
    const dir = userTempDir();
    const resolv = join(dir, 'resolv.conf');
    const attached = JSON.parse(await daemon.cliOk(['attach', '--pid', String(back.pid), '--name', 'back1', '--network', 'back', '--configure', '--json', '--resolv-conf', resolv])) as { ip: string; gateway: string; dns: string };
    expect(attached).toMatchObject({ ip: '10.0.3.100', gateway: '10.0.3.2', dns: '10.0.3.3' });
    expect(readFileSync(resolv, 'utf8')).toBe('# written by usernet for port back1 on network back\nnameserver 10.0.3.3\nsearch back.test\n');
    expect(await ping(back, '10.0.3.2', 1)).toBe(1);
    expect(await ping(front, '10.0.3.100', 2)).toBe(0);
    // Even addressed on the wire directly, nothing crosses: the back network's table never sees front.
    const frontMac = (await front.link()).address;
    expect(await daemon.cliOk(['fdb', '--network', 'back'])).not.toContain(frontMac);
    const ls = await daemon.cliOk(['network', 'ls']);
    expect(ls).toMatch(/^back\s+10\.0\.3\.0\/24\s+10\.0\.3\.2\s+10\.0\.3\.3\s+10\.0\.3\.100-10\.0\.3\.254\s+1500\s+on\s+1\s+back\.test$/m);
  });

  it('refuses to remove a network in use, removes it once empty, and keeps networks over restarts', async () => {
    const r = await daemon.cli(['network', 'rm', 'back']);
    expect(r.stderr.trim()).toBe('usernet: network back still has 1 attached port (back1): detach it first');
    expect((await daemon.cli(['network', 'rm', 'default'])).stderr.trim()).toBe('usernet: the default network cannot be removed');
    await daemon.kill('SIGTERM');
    await daemon.launch();
    expect(await daemon.cliOk(['network', 'ls'])).toMatch(/^back\s/m);
    await daemon.cliOk(['detach', 'back1']);
    await daemon.cliOk(['network', 'rm', 'back']);
    expect(await daemon.cliOk(['network', 'ls'])).not.toMatch(/^back\s/m);
  });

  it('refuses an address that is taken or outside the network', async () => {
    const c = await Container.start();
    expect((await daemon.cli(['attach', '--pid', String(c.pid), '--ip', '10.0.2.100'])).stderr.trim()).toBe('usernet: --ip 10.0.2.100: 10.0.2.100 is already in use on network default');
    expect((await daemon.cli(['attach', '--pid', String(c.pid), '--ip', '10.0.9.1'])).stderr.trim()).toBe('usernet: --ip 10.0.9.1: 10.0.9.1 is outside the subnet 10.0.2.0/24 on network default');
    expect((await daemon.cli(['attach', '--pid', String(c.pid), '--ip', '10.0.2.2'])).stderr.trim()).toBe("usernet: --ip 10.0.2.2: 10.0.2.2 is the network's own (gateway or DNS) address on network default");
    expect((await daemon.cli(['attach', '--pid', String(c.pid), '--network', 'nope'])).stderr.trim()).toBe('usernet: no network named nope (see usernet network ls)');
  });
});

describe('bad input to the gateway', () => {
  afterAll(cleanup);

  it('counts malformed DHCP, DNS and ARP, and keeps answering', async () => {
    const a = await Container.start();
    const daemon = await Daemon.start({ args: ['--dns-upstream', '127.0.0.1:5399'] });
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
    const mac = 0x0242_0a00_0264;
    const frame = (dstMac: number, dstIp: number, dport: number, payload: Buffer): Buffer => {
      const buf = Buffer.alloc(2000);
      const n = buildUdpFrame(buf, new DataView(buf.buffer), 0, { dstMac, srcMac: mac, srcIp: 0x0a000264, dstIp }, 68, dport, payload, 0, payload.length);
      return buf.subarray(0, n);
    };
    const before = await networkStats(daemon);
    // A DHCP "message" of 20 bytes, and one with a bad magic cookie.
    await sendRaw(a, frame(0xffffffffffff, 0xffffffff, 67, Buffer.alloc(20, 1)));
    const badCookie = Buffer.alloc(300);
    badCookie[0] = 1;
    await sendRaw(a, frame(0xffffffffffff, 0xffffffff, 67, badCookie));
    // A DNS "query" of 3 bytes to 10.0.2.3:53.
    await sendRaw(a, frame(0x52550a000202, 0x0a000203, 53, Buffer.from([1, 2, 3])));
    // ARP with a 7-byte hardware address length, and a truncated one.
    const arp = Buffer.from('ffffffffffff' + '02420a000264' + '0806' + '0001080007040001' + '02420a000264000a000264' + '0000000000000a000202', 'hex');
    await sendRaw(a, arp);
    await sendRaw(a, arp.subarray(0, 20));
    expect(await ping(a, '10.0.2.2', 1)).toBe(1);
    const after = await networkStats(daemon);
    expect(after.dhcp.malformed - before.dhcp.malformed).toBe(2);
    expect(after.gateway.dns_malformed - before.gateway.dns_malformed).toBe(1);
    expect(after.gateway.arp_malformed - before.gateway.arp_malformed).toBe(2);
    expect(daemon.child?.exitCode).toBe(null);
    expect(daemon.logs.filter((l) => l.level >= 50)).toEqual([]);
  });
});
