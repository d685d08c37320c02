/**
 * The daemon's modules composed: a real in-process Daemon on a temporary socket and state
 * directory, driven through the API as any client drives it (no TAP, no root). Attaching a
 * container needs a TAP and is tested end to end (test/e2e/lifecycle.test.ts).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from '../../../src/control/client.js';
import { Daemon } from '../../../src/control/daemon.js';
import type { PortInfo } from '../../../src/control/protocol.js';
import type { UsernetError } from '../../../src/errors.js';

let dir: string;
let sock: string;
let daemon: Daemon | null = null;

async function start(config: { dnsUpstream?: string[] } = {}): Promise<Daemon> {
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'resolv.conf'), '# no nameserver\n');
  daemon = new Daemon({ socketPath: sock, stateDir, resolvConfPath: join(dir, 'resolv.conf'), dnsUpstream: ['127.0.0.1'], ...config }, pino({ level: 'silent' }));
  await daemon.start();
  return daemon;
}

async function failure(method: string, params: Record<string, unknown> = {}): Promise<[string, string]> {
  try {
    await request(sock, method, params);
  } catch (err) {
    return [(err as UsernetError).code, (err as UsernetError).message];
  }
  throw new Error(`${method} succeeded`);
}

const stateFile = (): { networks: { name: string }[]; attachments: unknown[] } => JSON.parse(readFileSync(join(dir, 'state', 'state.json'), 'utf8'));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'usernet-daemon-'));
  sock = join(dir, 'd.sock');
});

afterEach(async () => {
  await daemon?.stop();
  daemon = null;
  rmSync(dir, { recursive: true, force: true });
});

describe('Daemon (composed)', () => {
  it('records a network before building it, and builds it again on restart', async () => {
    await start();
    const created = await request<{ name: string; subnet: string }>(sock, 'network.create', { name: 'lab', subnet: '10.9.0.0/24', mtu: 9000 });
    expect([created.name, created.subnet]).toEqual(['lab', '10.9.0.0/24']);
    expect(stateFile().networks.map((n) => n.name)).toEqual(['lab']);
    await daemon?.stop();
    await start();
    const ls = await request<{ networks: { name: string }[]; invalid: unknown[] }>(sock, 'network.ls');
    expect(ls.networks.map((n) => n.name)).toEqual(['default', 'lab']);
    expect(ls.invalid).toEqual([]);
    const ports = await request<{ ports: PortInfo[] }>(sock, 'ports');
    expect(ports.ports.map((p) => [p.name, p.network, p.mtu])).toEqual([
      ['gateway', 'default', 1500],
      ['gateway', 'lab', 9000],
    ]);
    await request(sock, 'network.rm', { name: 'lab' });
    expect(stateFile().networks).toEqual([]);
    expect(await failure('network.inspect', { name: 'lab' })).toEqual(['ERR_NO_SUCH_NETWORK', 'no network named lab (see usernet network ls)']);
  });

  it('checks every parameter, and refuses unknown ones', async () => {
    await start();
    expect(await failure('status', { verbose: true })).toEqual(['ERR_INVALID_ARGUMENT', 'status: unknown parameter "verbose" (known: )']);
    expect((await failure('attach', { pid: 1, netns: '/run/netns/x' }))[1]).toBe('attach needs exactly one of --pid PID or --netns PATH');
    expect(await failure('attach', { pid: 1, mac: '01:00:00:00:00:01' })).toEqual(['ERR_INVALID_ARGUMENT', '--mac 01:00:00:00:00:01 is a multicast address']);
    expect((await failure('attach', { pid: 1, publish: ['nonsense'] }))[0]).toBe('ERR_BAD_PUBLISH_SPEC');
    expect(await failure('network.create', { name: 'default', subnet: '10.7.0.0/24' })).toEqual(['ERR_NETWORK_EXISTS', 'the default network always exists (its settings are daemon flags)']);
    expect(await failure('conntrack.list', { proto: 'sctp' })).toEqual(['ERR_INVALID_ARGUMENT', '"proto" must be tcp, udp or icmp, not "sctp"']);
    expect(await failure('unpublish', { name: 'c1' })).toEqual(['ERR_INVALID_ARGUMENT', 'unpublish needs either "specs" or "all": true']);
    expect(await failure('ports.set', { name: 'gateway', txLoss: 2 })).toEqual(['ERR_INVALID_ARGUMENT', '"txLoss" must be a number from 0 to 1']);
    expect(await failure('detach', { name: 'gateway' })).toEqual(['ERR_GATEWAY_PORT', 'gateway is the network\'s own port (ARP, ping, DHCP, DNS and the NAT): it cannot be detached']);
    expect(await failure('capture', { port: 'c1' })).toEqual(['ERR_NO_SUCH_PORT', 'no port named c1 (see usernet ports)']);
    expect((await failure('nosuch'))[0]).toBe('ERR_UNKNOWN_METHOD');
  });

  it('sets a port\'s loss, lists the MAC table and the NAT, and flushes conntrack', async () => {
    await start();
    expect(await request(sock, 'ports.set', { name: 'gateway', txLoss: 0.5 })).toEqual({ name: 'gateway', txLoss: 0.5 });
    expect(daemon?.networks.get('default')?.gateway.lossRate).toBe(0.5);
    const fdb = await request<{ entries: { port: string; static: boolean }[]; ageingTime: number; maxEntries: number }>(sock, 'fdb', { network: 'default' });
    expect(fdb.entries.map((e) => [e.port, e.static])).toEqual([['gateway', true]]);
    expect([fdb.ageingTime, fdb.maxEntries]).toEqual([300, 8192]);
    const ct = await request<{ entries: unknown[]; count: number; stats: Record<string, unknown> }>(sock, 'conntrack.list');
    expect([ct.entries, ct.count]).toEqual([[], 0]);
    expect(Object.keys(ct.stats)).toEqual(['nat', 'tcp', 'udp', 'icmp', 'conntrack', 'published']);
    expect(await request(sock, 'conntrack.flush')).toEqual({ flushed: 0 });
    expect(await request(sock, 'publish.list')).toMatchObject({ ports: [] });
  });

  it('warns, in status, of a network whose DNS forwarder has no upstream', async () => {
    await start({ dnsUpstream: [] });
    const status = await request<{ warnings: string[]; dnsUpstream: string[]; networks: string[] }>(sock, 'status');
    expect(status.dnsUpstream).toEqual([]);
    expect(status.networks).toEqual(['default']);
    expect(status.warnings).toEqual([`network default: no DNS upstream (${join(dir, 'resolv.conf')} names no usable nameserver): every query to 10.0.2.3 is answered SERVFAIL; give --dns-upstream IP`]);
  });
});
