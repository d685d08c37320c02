/**
 * The API methods: the table the ApiServer dispatches to, and each method's parameter checks
 * (every parameter checked, unknown ones refused, each failure an error with a stable code).
 * The work itself is done by the networks, attachments and published-ports modules; a method
 * here turns JSON parameters into a typed call and the call's result into JSON.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { DEFAULT_NETWORK, type NetworkSpec } from '../gateway/network.js';
import type { Nat } from '../nat/nat.js';
import { protoFromName, type ConntrackFilter } from '../nat/conntrack.js';
import { formatConntrackLine, toJson as conntrackJson } from '../nat/conntrack-format.js';
import { parseIpv4 } from '../packet/ip-address.js';
import { parseMac } from '../packet/mac.js';
import { StreamingResult, type Handler } from './api-server.js';
import type { Attachments } from './attachments.js';
import { CaptureSession } from './capture.js';
import { parseMemberAddress } from './network-spec.js';
import { processStartTime } from './namespaces.js';
import type { Networks } from './networks.js';
import type { AttachResult } from './protocol.js';
import { parseSpecs, publishedInfo, type PublishedPorts } from './published.js';
import { IFNAME_PATTERN, NAME_PATTERN, onlyKeys, optBool, optInt, optString, optStringList, reqString } from './validate.js';

const MIN_MTU = 68;
const MAX_MTU = 65521;
const NETWORK_PARAMS = ['name', 'subnet', 'gateway', 'dns', 'range', 'mtu', 'icc', 'dnsSearch', 'dnsUpstream', 'disableDns', 'leaseTime', 'disableHostLoopback'] as const;
const ATTACH_PARAMS = ['pid', 'netns', 'userns', 'network', 'name', 'ifname', 'mac', 'mtu', 'configure', 'ip', 'offload', 'publish', 'address', 'owner'] as const;

/** What the methods work on: the daemon's modules, and the two answers only the daemon as a whole can give. */
export interface ApiContext {
  log: Logger;
  nat: Nat;
  networks: Networks;
  attachments: Attachments;
  published: PublishedPorts;
  ageingTimeMs: number;
  fdbMaxEntries: number;
  status(): Record<string, unknown>;
  natStats(): Record<string, unknown>;
}

export class ApiMethods {
  constructor(private readonly d: ApiContext) {}

  /** The method table, by API method name. */
  handlers(): Record<string, Handler> {
    const d = this.d;
    return {
      status: (p) => {
        onlyKeys(p, [], 'status');
        return d.status();
      },
      attach: (p) => this.attach(p),
      detach: async (p) => {
        onlyKeys(p, ['name'], 'detach');
        await d.attachments.detach(reqString(p, 'name'));
        return {};
      },
      ports: (p) => {
        onlyKeys(p, [], 'ports');
        return { ports: d.attachments.listPorts() };
      },
      'ports.set': (p) => {
        onlyKeys(p, ['name', 'network', 'txLoss'], 'ports.set');
        const name = reqString(p, 'name');
        const loss = p.txLoss;
        if (typeof loss !== 'number' || !(loss >= 0 && loss <= 1)) throw new InvalidArgumentError('"txLoss" must be a number from 0 to 1');
        const port = d.attachments.livePort(name, optString(p, 'network'));
        port.lossRate = loss;
        d.log.warn({ port: name, network: optString(p, 'network'), txLoss: loss }, 'loss injected on a port (a testing knob)');
        return { name, txLoss: loss };
      },
      fdb: (p) => {
        onlyKeys(p, ['network'], 'fdb');
        const network = optString(p, 'network');
        if (network !== undefined) d.networks.get(network);
        return { entries: d.networks.fdb(network), ageingTime: d.ageingTimeMs / 1000, maxEntries: d.fdbMaxEntries };
      },
      capture: (p) => this.capture(p),
      'conntrack.list': (p) => {
        onlyKeys(p, ['proto', 'src', 'dst'], 'conntrack.list');
        return this.conntrackList(p);
      },
      'conntrack.flush': (p) => {
        onlyKeys(p, [], 'conntrack.flush');
        const flushed = d.nat.flush();
        d.log.info({ flushed }, 'conntrack flushed');
        return { flushed };
      },
      'network.create': (p) => d.networks.create(networkSpecOf(p)),
      'network.ls': (p) => {
        onlyKeys(p, [], 'network.ls');
        return d.networks.list();
      },
      'network.inspect': (p) => {
        onlyKeys(p, ['name'], 'network.inspect');
        return d.networks.inspect(reqString(p, 'name'));
      },
      'network.rm': async (p) => {
        onlyKeys(p, ['name'], 'network.rm');
        await d.networks.remove(reqString(p, 'name'));
        return {};
      },
      publish: async (p) => {
        onlyKeys(p, ['name', 'specs'], 'publish');
        const name = reqString(p, 'name');
        const specs = optStringList(p, 'specs');
        if (!specs || specs.length === 0) throw new InvalidArgumentError('"specs" must list at least one port spec');
        return { name, ports: (await d.published.publish(name, specs)).map(publishedInfo) };
      },
      unpublish: async (p) => {
        onlyKeys(p, ['name', 'specs', 'all'], 'unpublish');
        const name = reqString(p, 'name');
        const specs = optStringList(p, 'specs') ?? [];
        const all = optBool(p, 'all') ?? false;
        if (all === (specs.length > 0)) throw new InvalidArgumentError('unpublish needs either "specs" or "all": true');
        return { name, removed: await d.published.unpublish(name, all ? null : specs) };
      },
      'publish.list': (p) => {
        onlyKeys(p, ['name'], 'publish.list');
        const name = optString(p, 'name');
        if (name !== undefined && !d.attachments.has(name)) throw new NotFoundError(`no port named ${name}`, 'ERR_NO_SUCH_PORT');
        return { ports: d.published.list(name), stats: d.nat.publisher.stats };
      },
    };
  }

  /** `attach` (API params as in `usernet attach`): checked here, in the order users see the errors, then done by Attachments. */
  async attach(p: Record<string, unknown>): Promise<AttachResult> {
    onlyKeys(p, ATTACH_PARAMS, 'attach');
    const net = this.d.networks.get(optString(p, 'network') ?? DEFAULT_NETWORK);
    const pid = optInt(p, 'pid', 1, 0x3fffffff);
    const netnsPath = optString(p, 'netns', { max: 4096 });
    const usernsPath = optString(p, 'userns', { max: 4096 });
    if ((pid === undefined) === (netnsPath === undefined)) throw new InvalidArgumentError('attach needs exactly one of --pid PID or --netns PATH');
    if (usernsPath !== undefined && netnsPath === undefined) throw new InvalidArgumentError('--userns goes with --netns');
    const ifname = optString(p, 'ifname', { pattern: IFNAME_PATTERN, what: 'must be 1-15 letters, digits, "_", "." or "-"' }) ?? 'eth0';
    const name = optString(p, 'name', { pattern: NAME_PATTERN, what: 'must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit' });
    const macText = optString(p, 'mac');
    const mac = macText === undefined ? undefined : parseMac(macText);
    if (mac !== undefined && (Math.floor(mac / 2 ** 40) & 1) === 1) throw new InvalidArgumentError(`--mac ${macText} is a multicast address`);
    if (mac === 0) throw new InvalidArgumentError('--mac must not be all zeros');
    const mtu = optInt(p, 'mtu', MIN_MTU, MAX_MTU) ?? net.config.mtu;
    const configure = optBool(p, 'configure') ?? false;
    const offload = optBool(p, 'offload');
    const ipText = optString(p, 'ip');
    const wantedIp = ipText === undefined ? undefined : parseMemberAddress(ipText, net.config);
    // address: false — the attachment holds no address: the container configures itself, or
    // asks DHCP, which then hands it one from the range like to any client.
    const holdsAddress = optBool(p, 'address') ?? true;
    // owner: the attachment lasts as long as that process (a usernet-slirp4netns joined here).
    const ownerPid = optInt(p, 'owner', 1, 0x3fffffff);
    let owner: { pid: number; start: number } | undefined;
    if (ownerPid !== undefined) {
      const start = processStartTime(ownerPid);
      if (start < 0) throw new NotFoundError(`no process with PID ${ownerPid} (the owner)`, 'ERR_NO_SUCH_PROCESS');
      owner = { pid: ownerPid, start };
    }
    if (!holdsAddress && (wantedIp !== undefined || configure)) throw new InvalidArgumentError('"address": false goes without --ip and --configure');
    // Port specs are checked before anything is opened.
    const mappings = parseSpecs(optStringList(p, 'publish') ?? []);
    return this.d.attachments.attach({
      net,
      ...(pid !== undefined ? { pid } : {}),
      ...(netnsPath !== undefined ? { netnsPath } : {}),
      ...(usernsPath !== undefined ? { usernsPath } : {}),
      ifname,
      ...(name !== undefined ? { name } : {}),
      ...(mac !== undefined ? { mac } : {}),
      mtu,
      configure,
      ...(offload !== undefined ? { offload } : {}),
      ...(ipText !== undefined ? { ipText } : {}),
      ...(wantedIp !== undefined ? { wantedIp } : {}),
      holdsAddress,
      ...(owner ? { owner } : {}),
      mappings,
    });
  }

  private capture(p: Record<string, unknown>): StreamingResult {
    onlyKeys(p, ['port', 'network', 'count'], 'capture');
    const name = reqString(p, 'port');
    const count = optInt(p, 'count', 0, 2 ** 31) ?? 0;
    const network = optString(p, 'network');
    const port = this.d.attachments.livePort(name, network);
    const where = network !== undefined ? { port: name, network } : { port: name };
    return new StreamingResult({ port: name, linktype: 'ethernet' }, (socket: Socket) => {
      const session = new CaptureSession(port, socket, count, (s) => {
        this.d.log.info({ ...where, frames: s.frames, dropped: s.dropped }, 'capture ended');
      });
      port.taps = [...port.taps, session];
      this.d.log.info({ ...where, count }, 'capture started');
    });
  }

  private conntrackList(p: Record<string, unknown>): Record<string, unknown> {
    const proto = optString(p, 'proto');
    const filter: ConntrackFilter = {};
    if (proto !== undefined) {
      const n = protoFromName(proto);
      if (n < 0) throw new InvalidArgumentError(`"proto" must be tcp, udp or icmp, not "${proto}"`);
      filter.proto = n;
    }
    const src = optString(p, 'src');
    const dst = optString(p, 'dst');
    if (src !== undefined) filter.src = parseIpv4(src);
    if (dst !== undefined) filter.dst = parseIpv4(dst);
    const now = this.d.nat.ct.now();
    const entries = this.d.nat.ct.list(filter);
    return { entries: entries.map((e) => conntrackJson(e, now)), lines: entries.map((e) => formatConntrackLine(e, now)), count: this.d.nat.ct.size, stats: this.d.natStats() };
  }
}

/** The parameters of `network.create` as a NetworkSpec (each checked; the network as a whole is judged by Networks.create). */
function networkSpecOf(p: Record<string, unknown>): NetworkSpec {
  onlyKeys(p, NETWORK_PARAMS, 'network.create');
  const spec: NetworkSpec = {
    name: reqString(p, 'name'),
    subnet: reqString(p, 'subnet'),
  };
  const gateway = optString(p, 'gateway');
  const dns = optString(p, 'dns');
  const range = optString(p, 'range');
  const mtu = optInt(p, 'mtu', MIN_MTU, MAX_MTU);
  const icc = optBool(p, 'icc');
  const dnsSearch = optStringList(p, 'dnsSearch');
  const dnsUpstream = optStringList(p, 'dnsUpstream');
  const disableDns = optBool(p, 'disableDns');
  const leaseTime = optInt(p, 'leaseTime', 60, 2 ** 31 - 1);
  const disableHostLoopback = optBool(p, 'disableHostLoopback');
  if (disableHostLoopback !== undefined) spec.disableHostLoopback = disableHostLoopback;
  if (gateway !== undefined) spec.gateway = gateway;
  if (dns !== undefined) spec.dns = dns;
  if (range !== undefined) spec.range = range;
  if (mtu !== undefined) spec.mtu = mtu;
  if (icc !== undefined) spec.icc = icc;
  if (dnsSearch !== undefined) spec.dnsSearch = dnsSearch;
  if (dnsUpstream !== undefined) spec.dnsUpstream = dnsUpstream;
  if (disableDns !== undefined) spec.disableDns = disableDns;
  if (leaseTime !== undefined) spec.leaseTime = leaseTime;
  return spec;
}
