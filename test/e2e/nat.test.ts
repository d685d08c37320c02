/**
 * The outbound NAT end to end: rootless containers reach an "outside" namespace
 * (198.51.100.0/24, the host is .1) and the host's loopback (through 10.0.2.2) with real
 * clients — curl, node, python, dig, ping — through host sockets of the daemon.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, FIXTURES, Lines, Outside, PYTHON, cleanup, requireSandbox, rssBytes, runOk, startUntil, testUser, userTempDir } from './harness.js';

requireSandbox();

const BULK = join(FIXTURES, 'tcp-bulk.mjs');
const node = (...args: string[]): string[] => [process.execPath, BULK, ...args];
const MiB = 1024 * 1024;

interface NatStatus {
  nat: Record<string, number>;
  tcp: Record<string, number>;
  udp: Record<string, number>;
  icmp: Record<string, number | string>;
}

async function status(d: Daemon): Promise<NatStatus> {
  return JSON.parse(await d.cliOk(['status', '--json'])) as NatStatus;
}

async function conntrack(d: Daemon, ...args: string[]): Promise<string> {
  return d.cliOk(['conntrack', '-L', ...args]);
}

describe('outbound NAT', () => {
  let daemon: Daemon;
  let out: Outside;
  let a: Container;
  let b: Container;
  let dnsmasq: ChildProcess;

  beforeAll(async () => {
    // ICMP ping sockets for the daemon's group, in this (sandbox) network namespace only.
    await runOk(['sysctl', '-q', '-w', `net.ipv4.ping_group_range=0 ${testUser().gid}`]);
    out = await Outside.create();
    dnsmasq = await startUntil(
      ['dnsmasq', '--no-daemon', '--no-resolv', '--no-hosts', '--pid-file=', '--listen-address=127.0.0.1', '--bind-interfaces', '--port=5353', '--address=/test/192.0.2.7', '--log-facility=-'],
      (l) => /started, version/.test(l),
      { stream: 'stderr' },
    );
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start({ args: ['--dns-upstream', '127.0.0.1:5353'] });
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
    await daemon.cliOk(['attach', '--pid', String(b.pid), '--name', 'b', '--configure']);
  });

  afterAll(async () => {
    dnsmasq?.kill();
    await cleanup();
  });

  it('curl reaches a server outside (which sees the host) and one on the host loopback via 10.0.2.2', async () => {
    const dir = userTempDir();
    await runOk(['sh', '-c', `echo outside > ${dir}/index.html`]);
    await out.startUntil([PYTHON, '-u', '-m', 'http.server', '80', '--bind', '198.51.100.2', '--directory', dir], (l) => l.startsWith('Serving HTTP'));
    await startUntil([PYTHON, '-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', dir], (l) => l.startsWith('Serving HTTP'));
    expect(await a.execOk(['curl', '-s', '-m', '10', 'http://198.51.100.2/'])).toBe('outside\n');
    expect(await a.execOk(['curl', '-s', '-m', '10', 'http://10.0.2.2:8080/'])).toBe('outside\n');
    // Two connections held open (a reader stalled for a while) so conntrack shows them live.
    await out.startUntil(node('source', '7050', String(64 * MiB)), (l) => l === 'ready');
    await startUntil(node('source', '7051', String(64 * MiB)), (l) => l === 'ready');
    await a.startUntil(node('recv', '198.51.100.2', '7050', '3000'), (l) => l === 'stalled');
    await a.startUntil(node('recv', '10.0.2.2', '7051', '3000'), (l) => l === 'stalled');
    const table = await conntrack(daemon, '-p', 'tcp');
    expect(table).toMatch(/^tcp {6}6 \d+ ESTABLISHED src=10\.0\.2\.100 dst=198\.51\.100\.2 sport=\d+ dport=7050 src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=7050 dport=\d+ \[ASSURED\] mark=0 use=1$/m);
    expect(table).toMatch(/^tcp {6}6 \d+ ESTABLISHED src=10\.0\.2\.100 dst=10\.0\.2\.2 sport=\d+ dport=7051 src=127\.0\.0\.1 dst=127\.0\.0\.1 sport=7051 dport=\d+ \[ASSURED\] mark=0 use=1$/m);
    expect(await conntrack(daemon, '--dst', '10.0.2.2')).not.toContain('198.51.100.2');
  });

  it('the outside server sees the host address as the source', async () => {
    const server = new Lines(await out.startUntil(node('answer', '7100'), (l) => l === 'ready'));
    const r = await a.execOk(node('halfclose', '198.51.100.2', '7100'));
    expect(r.trim()).toBe('answer to question');
    expect(await server.waitFor((l) => l.startsWith('peer '))).toBe('peer 198.51.100.1');
    expect(await conntrack(daemon, '-p', 'tcp', '--dst', '198.51.100.2')).toMatch(/dport=7100 src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=7100/);
  });

  it('moves 1 GiB each way with matching sha256', async () => {
    const GiB = 1024 * MiB;
    const sink = await out.startUntil(node('sink', '7200'), (l) => l === 'ready');
    const sinkLines = new Lines(sink);
    const sent = (await a.execOk(node('send', '198.51.100.2', '7200', String(GiB)), { timeoutMs: 150_000 })).trim();
    expect(sent).toMatch(/^1073741824 [0-9a-f]{64}$/);
    expect(await sinkLines.waitFor((l) => /^\d+ /.test(l))).toBe(sent);
    const source = await out.startUntil(node('source', '7201', String(GiB)), (l) => l === 'ready');
    const sourceLines = new Lines(source);
    const got = (await a.execOk(node('recv', '198.51.100.2', '7201'), { timeoutMs: 150_000 })).trim();
    expect(got).toBe(await sourceLines.waitFor((l) => /^\d+ /.test(l)));
    expect(got).toMatch(/^1073741824 /);
  });

  it('keeps memory bounded while either reader is stalled for 10 s', async () => {
    const rssBefore = rssBytes(daemon.pid);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(daemon.pid))), 200);
    try {
      // The host-side reader stalls: the container keeps sending.
      const sink = await out.startUntil(node('sink', '7300', '10000'), (l) => l === 'ready');
      const sinkLines = new Lines(sink);
      const sent = (await a.execOk(node('send', '198.51.100.2', '7300', String(512 * MiB)), { timeoutMs: 120_000 })).trim();
      expect(await sinkLines.waitFor((l) => /^\d+ /.test(l), 120_000)).toBe(sent);
      // The container-side reader stalls: the outside keeps sending.
      const source = await out.startUntil(node('source', '7301', String(512 * MiB)), (l) => l === 'ready');
      const sourceLines = new Lines(source);
      const got = (await a.execOk(node('recv', '198.51.100.2', '7301', '10000'), { timeoutMs: 120_000 })).split('\n').find((l) => /^\d+ /.test(l));
      expect(got).toBe(await sourceLines.waitFor((l) => /^\d+ /.test(l), 120_000));
    } finally {
      clearInterval(sampler);
    }
    expect(peak - rssBefore).toBeLessThanOrEqual(64 * MiB);
  });

  it('completes 1000 concurrent connections from two containers', async () => {
    await out.startUntil(node('echo', '7400'), (l) => l === 'ready');
    const [ra, rb] = await Promise.all([a.execOk(node('many', '198.51.100.2', '7400', '500'), { timeoutMs: 120_000 }), b.execOk(node('many', '198.51.100.2', '7400', '500'), { timeoutMs: 120_000 })]);
    expect(ra.trim()).toBe('ok 500');
    expect(rb.trim()).toBe('ok 500');
  });

  it('resets a connection to a closed port at once', async () => {
    const t0 = Date.now();
    const r = await a.exec(['curl', '-s', '-m', '10', 'http://198.51.100.2:9/']);
    expect(r.code).toBe(7); // couldn't connect: refused
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('carries a half-close and resets in both directions', async () => {
    await out.startUntil(node('answer', '7500'), (l) => l === 'ready');
    expect((await a.execOk(node('halfclose', '198.51.100.2', '7500'))).trim()).toBe('answer to question');
    await out.startUntil(node('rst-server', '7501'), (l) => l === 'ready');
    const r = await a.exec(node('halfclose', '198.51.100.2', '7501'));
    expect(r.stdout.trim()).toBe('error ECONNRESET');
    const watcher = await out.startUntil(node('expect-reset', '7502'), (l) => l === 'ready');
    const wl = new Lines(watcher);
    expect((await a.execOk(node('rst-client', '198.51.100.2', '7502'))).trim()).toBe('reset sent');
    expect(await wl.waitFor((l) => l === 'peer reset' || l === 'peer ended', 10_000)).toBe('peer reset');
  });

  it('answers DNS over TCP on 10.0.2.3 (dig +tcp)', async () => {
    const r = await a.execOk(['dig', '+tcp', '+short', '+time=5', '+tries=1', '@10.0.2.3', 'svc.test', 'A']);
    expect(r).toBe('192.0.2.7\n');
  });

  it('recovers from lost frames: a transfer completes intact with 5% loss towards the container', async () => {
    await daemon.cliOk(['ports', 'set', 'b', '--tx-loss', '0.05']);
    try {
      const source = await out.startUntil(node('source', '7600', String(64 * MiB)), (l) => l === 'ready');
      const sl = new Lines(source);
      const got = (await b.execOk(node('recv', '198.51.100.2', '7600'), { timeoutMs: 150_000 })).trim();
      expect(got).toBe(await sl.waitFor((l) => /^\d+ /.test(l)));
    } finally {
      await daemon.cliOk(['ports', 'set', 'b', '--tx-loss', '0']);
    }
    const ports = await daemon.containerPorts<{ name: string; kind?: string; counters: { drops: Record<string, number> } }>();
    expect(ports.find((p) => p.name === 'b')?.counters.drops.injected_loss).toBeGreaterThan(0);
  });

  it('UDP: one external port for every destination, address-dependent filtering, port unreachable', async () => {
    const udpServer = (addr: string): Promise<ChildProcess> =>
      out.startUntil(
        [PYTHON, '-u', '-c', `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('${addr}', 7000))\nprint('ready', flush=True)\nwhile True:\n  d,p=s.recvfrom(2048)\n  print('%s %d' % p, flush=True)\n  s.sendto(b'pong '+d, p)`],
        (l) => l === 'ready',
      );
    const s2 = new Lines(await udpServer('198.51.100.2'));
    const s3 = new Lines(await udpServer('198.51.100.3'));
    const client = `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5000))\ns.settimeout(5)\nfor dst in ['198.51.100.2', '198.51.100.3']:\n  s.sendto(b'ping', (dst, 7000))\n  print(s.recvfrom(100)[0].decode(), flush=True)`;
    expect((await a.execOk([PYTHON, '-c', client])).trim().split('\n')).toEqual(['pong ping', 'pong ping']);
    const p2 = await s2.waitFor((l) => l.startsWith('198.51.100.1 '));
    const p3 = await s3.waitFor((l) => l.startsWith('198.51.100.1 '));
    expect(p2).toBe(p3); // the same external port for both destinations (endpoint-independent mapping)
    const ext = Number(p2.split(' ')[1]);
    // The other container, same source port, same destination: a distinct external port.
    const clientB = `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 5000))\ns.settimeout(5)\ns.sendto(b'ping', ('198.51.100.2', 7000))\nprint(s.recvfrom(100)[0].decode(), flush=True)`;
    const before2 = s2.lines.length;
    expect((await b.execOk([PYTHON, '-c', clientB])).trim()).toBe('pong ping');
    const pb = await s2.waitFor((l) => l.startsWith('198.51.100.1 ') && s2.lines.indexOf(l) >= before2);
    expect(Number(pb.split(' ')[1])).not.toBe(ext);
    // A third address the container never sent to is filtered out.
    const before = (await status(daemon)).udp.filtered;
    await out.exec([PYTHON, '-c', `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('198.51.100.4', 7000))\ns.sendto(b'unsolicited', ('198.51.100.1', ${ext}))`]);
    // The filtered datagram is counted once the daemon read it; a ping round trip orders us after it.
    await a.execOk(['ping', '-c', '1', '-W', '2', '10.0.2.2']);
    let filtered = before;
    for (let i = 0; i < 50 && filtered === before; i++) filtered = (await status(daemon)).udp.filtered;
    expect(filtered).toBe(before + 1);
    // UDP to a closed port: the container gets port unreachable.
    const refused = `import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.connect(('198.51.100.2', 9999))\ns.send(b'x')\ns.settimeout(5)\ntry:\n  s.recv(10)\n  print('answered')\nexcept ConnectionRefusedError:\n  print('refused')`;
    expect((await a.execOk([PYTHON, '-c', refused])).trim()).toBe('refused');
    expect(await conntrack(daemon, '-p', 'udp')).toMatch(/^udp {6}17 \d+ src=10\.0\.2\.100 dst=198\.51\.100\.2 sport=5000 dport=7000 src=198\.51\.100\.2 dst=\S+ sport=7000 dport=5000/m);
  });

  it('pings the outside, and two containers with the same identifier both get their replies', async () => {
    const [ra, rb] = await Promise.all([a.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', '198.51.100.2']), b.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', '198.51.100.2'])]);
    expect(ra.stdout).toMatch(/3 received/);
    expect(rb.stdout).toMatch(/3 received/);
    expect(await conntrack(daemon, '-p', 'icmp')).toMatch(/^icmp {5}1 \d+ src=10\.0\.2\.10[01] dst=198\.51\.100\.2 type=8 code=0 id=\d+ src=198\.51\.100\.2 dst=\S+ type=0 code=0 id=\d+/m);
  });

  it('drops and counts bad TCP segments and bad checksums; flows stay unaffected', async () => {
    const before = await status(daemon);
    // Ethernet to the gateway MAC, IPv4 10.0.2.100 -> 198.51.100.2, TCP 40000 -> 80.
    const eth = '52550a000202' + '02420a000264' + '0800';
    const ipHdr = (total: number, proto = 6): string => {
      const h = Buffer.from(`4500${total.toString(16).padStart(4, '0')}00004000400600000a000264c6336402`, 'hex');
      h[9] = proto;
      let s = 0;
      for (let i = 0; i < 20; i += 2) s += h.readUInt16BE(i);
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      h.writeUInt16BE(~s & 0xffff, 10);
      return h.toString('hex');
    };
    // A TCP header (40000 -> 80, seq 1) with a correct checksum unless `bad`.
    const tcp = (doffFlags: string, bad = false): string => {
      const h = Buffer.from(`9c400050000000010000000${doffFlags}ffff00000000`, 'hex');
      let sum = 0x0a00 + 0x0264 + 0xc633 + 0x6402 + 6 + h.length;
      for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      h.writeUInt16BE(bad ? (~sum + 1) & 0xffff : ~sum & 0xffff, 16);
      return h.toString('hex');
    };
    const frames = [
      eth + ipHdr(40) + tcp('05003'), // SYN+FIN
      eth + ipHdr(40) + tcp('05000'), // no flags
      eth + ipHdr(40) + tcp('02002'), // data offset 2 (8 bytes)
      eth + ipHdr(40) + tcp('05002', true), // SYN with a wrong checksum (no offload flag)
      eth + ipHdr(60) + '9c400050', // IPv4 total length beyond the frame
    ];
    await out.startUntil(node('answer', '7800'), (l) => l === 'ready');
    for (const f of frames) await a.execOk([PYTHON, join(FIXTURES, 'l2probe.py'), 'raw', 'eth0', f]);
    expect((await a.execOk(node('halfclose', '198.51.100.2', '7800'))).trim()).toBe('answer to question');
    const after = await status(daemon);
    expect(after.tcp.badSegments - before.tcp.badSegments).toBe(3);
    expect(after.nat.badChecksums - before.nat.badChecksums).toBeGreaterThanOrEqual(1);
    expect(daemon.child?.exitCode).toBe(null);
  });

  it('detach during a transfer resets the outside peer and empties conntrack', async () => {
    const source = await out.startUntil(node('source', '7700', String(4 * 1024 * MiB)), (l) => l === 'ready');
    const sl = new Lines(source);
    // The receiver is left hanging by the detach; cleanup() ends it.
    void b.exec(node('recv', '198.51.100.2', '7700'), { timeoutMs: 600_000 }).catch(() => undefined);
    // Wait until the flow is established in conntrack, then detach.
    let table = '';
    for (let i = 0; i < 100 && !/dport=7700 .*ESTABLISHED|ESTABLISHED .*dport=7700/.test(table); i++) table = await conntrack(daemon, '--src', '10.0.2.101');
    await daemon.cliOk(['detach', 'b']);
    expect(await sl.waitFor((l) => l.startsWith('error'), 20_000)).toMatch(/ECONNRESET|EPIPE/);
    expect(await conntrack(daemon, '--src', '10.0.2.101')).toBe('');
  });
});
