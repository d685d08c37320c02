/**
 * `usernet`: the command line. Every command but `daemon` and `demo` is a client of the daemon's
 * control API. Usage errors exit 2, runtime errors 1, each with one line on stderr.
 */
import { closeSync, createWriteStream, existsSync, openSync, renameSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { dirname, resolve } from 'node:path';
import pino from 'pino';
import { Daemon } from '../control/daemon.js';
import { openRequest, request } from '../control/client.js';
import { checkDaemonSocket, checkSocketPath, defaultSocketPath, defaultStateDir, ensureDir, ensurePrivateDir, socketDir } from '../control/paths.js';
import { VERSION, type AttachResult, type FdbEntryInfo, type PortInfo, type PublishedPortInfo } from '../control/protocol.js';
import { formatHostAddress, parsePublishSpec } from '../nat/publish-spec.js';
import { parseUpstream } from '../control/resolv.js';
import type { NetworkSpec } from '../gateway/network.js';
import { checkDomain, validateNetworkSpec } from '../control/network-spec.js';
import { describeErrno, errnoError, toUsernetError, UsernetError } from '../errors.js';
import { IFNAME_PATTERN, NAME_PATTERN } from '../control/validate.js';
import { parseIpv4, parseIpv4Cidr } from '../packet/ip-address.js';
import { parseMac } from '../packet/mac.js';
import { PcapRecordCounter } from '../packet/pcap.js';
import { boolFlag, intFlag, parse, stringFlag, UsageError } from './args.js';
import { formatFdb, formatNetworks, formatPorts, formatPublished, formatStatus, type NetworkInfo } from './format.js';
import { runDemo } from './demo.js';
import { runSlirp4netns } from '../slirp/main.js';

const HELP: Record<string, string> = {
  main: `usernet ${VERSION} — user-mode networking for containers

Usage: usernet COMMAND [OPTIONS]

Commands:
  daemon     run the daemon (networks + control API) in the foreground
  network    create, list, inspect and remove networks
  attach     give a container a TAP port on a network
  detach     remove a container's port
  publish    publish container ports on the host (DNAT), list them; unpublish removes
  ports      list ports and their counters
  fdb        show the MAC table (like "bridge fdb show")
  capture    write the frames crossing a port to a pcap file
  conntrack  list (-L) or flush (-F) the NAT's connection tracking table
  status     show the daemon's status
  demo       two rootless containers ping each other through usernet
  slirp4netns  slirp4netns's command line and API (also the usernet-slirp4netns program)

Every client command takes --socket PATH (or USERNET_SOCKET); default:
  ${defaultSocketPath()}
Run "usernet COMMAND --help" for a command's options.`,
  daemon: `Usage: usernet daemon [OPTIONS]

Runs the daemon in the foreground: the networks (each a learning switch with a gateway that
answers ARP, ping, DHCP and DNS), the containers' TAP ports and the JSON control API on a UNIX
socket (mode 0600). Networks, attachments and DHCP leases are kept in the state directory and
restored when the daemon starts again. The default network is 10.0.2.0/24 (gateway 10.0.2.2,
DNS 10.0.2.3, containers from 10.0.2.100), as slirp4netns.

Options:
  --socket PATH         control socket (default: $XDG_RUNTIME_DIR/usernet/usernet.sock,
                        /tmp/usernet-$UID/usernet.sock, or /run/usernet/usernet.sock for root)
  --state-dir DIR       state directory (default: $XDG_STATE_HOME/usernet or ~/.local/state/usernet)
  --log-level LEVEL     fatal, error, warn, info (default), debug, trace, silent
  --ageing-time SEC     MAC table ageing time, 1-1000000 seconds (default 300)
  --fdb-max N           MAC table size cap, LRU eviction beyond it (default 8192)
  --icc=true|false      container-to-container traffic on the default network (default true)
  --mtu N               MTU of the default network, 576-65521 (default 1500)
  --offload=true|false  virtio-net checksum/TSO offloads on TAPs (default true)
  --dns-upstream IP[:PORT]
                        resolver(s) the DNS forwarders use, repeatable (default: the
                        nameservers of /etc/resolv.conf, re-read when it changes)
  --dns-search DOMAIN   search domain(s) for DHCP and --resolv-conf, repeatable or
                        comma-separated (default: the search line of /etc/resolv.conf)
  --disable-dns         no DNS forwarder on the default network
  --lease-time SEC      DHCP lease time on the default network (default 3600)
  --disable-host-loopback
                        on the default network, 10.0.2.2 does not lead to the host's loopback
                        (connections to it get "network unreachable")
  --outbound-addr IP    host address the NAT's connections come from
  --udp-filtering address-dependent|endpoint-independent
                        who may answer a container's UDP mapping (default address-dependent)
  --conntrack-max N     NAT flows at most (default 65536)
  --conntrack-max-per-container N
                        NAT flows per container at most (default 8192)`,
  attach: `Usage: usernet attach (--pid PID | --netns PATH [--userns PATH]) [OPTIONS]

Creates a TAP interface inside the container's network namespace (joining its user namespace,
so this works rootless), plugs it into a network's switch and gives it an address (the next
free one of the network's range, or --ip). Prints the port name. The container gets its
address by --configure, or by running a DHCP client.

Options:
  --pid PID          the container: a process in it (its user + network namespaces are used)
  --netns PATH       the container: a network namespace file (e.g. /run/netns/NAME)
  --userns PATH      with --netns: the user namespace to join (default: the netns's owner)
  --name NAME        port name: letters, digits, "_", "." or "-", starting with a letter or
                     digit (default c1, c2, ...)
  --ifname NAME      interface name in the container (default eth0)
  --network NAME     the network (default: default, 10.0.2.0/24)
  --mac MAC          interface MAC address (default: 02:42 + its IPv4 address, as Docker does)
  --mtu N            interface MTU, 68-65521 (default: the daemon's, 1500)
  --ip A.B.C.D       this address rather than the next free one (refused if taken or
                     outside the network); /NN may follow if it is the network's prefix
  --configure        set the address, the default route via the gateway and the MTU, and
                     bring the interface and lo up, from inside (no ip binary needed)
  --resolv-conf FILE write a resolv.conf for the container (nameserver = the network's DNS
                     address, search list), for the container runtime to bind-mount
  --offload=BOOL     virtio-net checksum/TSO offloads on this TAP (default: the daemon's);
                     false makes the switch complete checksums and segment GSO frames for it
  -p, --publish SPEC publish a container port on the host, repeatable, in Docker's syntax
                     [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]
                     (see usernet publish --help); if one cannot be published, nothing is
                     attached
  --json             print the result as JSON`,
  detach: `Usage: usernet detach NAME

Removes the port: the TAP disappears from the container (a TAP that was there before the
attachment is left as it was). The gateway port of a network cannot be detached.`,
  ports: `Usage: usernet ports [--json]
       usernet ports set NAME [--network NET] --tx-loss P

Lists the ports with their state, counters and drops by reason. "set --tx-loss P" drops each
frame sent out of the port with probability P (counted as injected_loss): a knob for testing
how connections recover from loss. 0 turns it off. NAME may be "gateway": the gateway port of
the default network, or of --network NET.`,
  fdb: `Usage: usernet fdb [--network NAME] [--json]

Shows the networks' MAC tables in the style of "bridge fdb show": MAC, port, network, age.
The gateway's MAC is a permanent entry.`,
  capture: `Usage: usernet capture --port NAME [--network NET] -w FILE [-c COUNT]

Writes the frames received and sent on a port to a pcap file (readable by tshark/Wireshark),
with offloaded checksums completed. Stops after COUNT frames, on Ctrl-C, or when the port goes;
on Ctrl-C (or SIGTERM) the daemon first sends every frame that crossed the port until then
(a second Ctrl-C stops at once). A reader too slow for the port loses frames, counted as
capture_overrun in "usernet ports".

Options:
  --port NAME        the port to capture; "gateway" is the gateway port of the default
                     network, or of --network NET
  --network NET      the port's network (for "gateway")
  -w, --write FILE   pcap file to write ("-" for stdout)
  -c, --count N      stop after N frames`,
  status: `Usage: usernet status [--json]`,
  publish: `Usage: usernet publish NAME SPEC [SPEC...]
       usernet publish --list [NAME] [--json]
       usernet unpublish NAME SPEC [SPEC...]
       usernet unpublish NAME --all

Publishes container ports on the host, like "docker run -p": a host port forwards to a port of
the container attached as NAME. The container sees each client's real address (a client on the
host's loopback, or over IPv6, appears as the network's gateway). Published ports are recorded:
after a daemon restart they listen again.

SPEC, in Docker's syntax:
  [HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]
  HOST_IP defaults to 0.0.0.0; an IPv6 address goes in brackets ([::1]:8080:80); ranges pair up
  in order and must be of equal length (9000-9009:9000-9009); without a host port
  (CONTAINER_PORT alone, or HOST_IP::CONTAINER_PORT) any free host port is taken.

A publish request is all or nothing: a port in use, a port below
net.ipv4.ip_unprivileged_port_start without CAP_NET_BIND_SERVICE, or a bad spec leaves nothing
listening. Unpublishing closes the listeners and resets their open connections. An unpublish
SPEC names the mapping as published, host address included (0.0.0.0 when none is given);
without a host port it removes every mapping of that container port.

--list prints one line per published port, like "docker port":
  NAME  PROTO  HOST  CONTAINER  STATE  FLOWS`,
  conntrack: `Usage: usernet conntrack -L [-p tcp|udp|icmp] [--src IP] [--dst IP] [--json]
       usernet conntrack -F

The NAT's connection tracking table, in the format of conntrack-tools' "conntrack -L": protocol,
seconds left, TCP state, the original tuple (container side), [UNREPLIED], the reply tuple (its
destination is the NAT mapping on the host), [ASSURED]. --src/--dst filter on the original tuple.
-F flushes: every flow ends (TCP peers are reset, host sockets closed).`,
  demo: `Usage: usernet demo

Builds two rootless containers (unshare --user --map-root-user --net), starts a daemon on a
temporary socket, attaches both, pings one from the other, shows the ports and the MAC table,
and cleans everything up. Sends nothing beyond the namespaces it made.`,
};

const SOCKET_OPTION = { socket: { type: 'string' as const } };
const HELP_OPTION = { help: { type: 'boolean' as const, short: 'h' } };

/** The socket path a command uses: --socket, USERNET_SOCKET, or usernet's default. */
function socketPathOf(values: Record<string, unknown>): string {
  const s = resolve(typeof values.socket === 'string' ? values.socket : defaultSocketPath());
  checkSocketPath(s);
  return s;
}

/** Whether the socket is in usernet's own default directory (not one the user named). */
function isDefaultSocket(values: Record<string, unknown>): boolean {
  return typeof values.socket !== 'string' && !process.env.USERNET_SOCKET;
}

/** The daemon socket a client command talks to, checked to be one no other user planted. */
function socketOf(values: Record<string, unknown>): string {
  const s = socketPathOf(values);
  checkDaemonSocket(s, isDefaultSocket(values));
  return s;
}

/** Checks a flag's value with the same parser the daemon uses, as a usage error (exit 2). */
function checkValue(command: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}`);
  }
}

function out(text: string): void {
  if (text !== '') process.stdout.write(`${text}\n`);
}

async function cmdDaemon(args: string[]): Promise<number> {
  const { values } = parse('daemon', args, {
    ...SOCKET_OPTION,
    ...HELP_OPTION,
    'state-dir': { type: 'string' },
    'log-level': { type: 'string' },
    'ageing-time': { type: 'string' },
    'fdb-max': { type: 'string' },
    icc: { type: 'string' },
    mtu: { type: 'string' },
    offload: { type: 'string' },
    'dns-upstream': { type: 'string', multiple: true },
    'dns-search': { type: 'string', multiple: true },
    'disable-dns': { type: 'boolean' },
    'lease-time': { type: 'string' },
    'disable-host-loopback': { type: 'boolean' },
    'outbound-addr': { type: 'string' },
    'udp-filtering': { type: 'string' },
    'conntrack-max': { type: 'string' },
    'conntrack-max-per-container': { type: 'string' },
  });
  if (values.help) return help('daemon');
  const level = stringFlag(values['log-level']) ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(level)) {
    throw new UsageError(`daemon: --log-level must be one of fatal, error, warn, info, debug, trace, silent, not "${level}"`);
  }
  const socketPath = socketPathOf(values);
  const stateDir = stringFlag(values['state-dir']) ?? defaultStateDir();
  const ageing = intFlag('daemon', 'ageing-time', values['ageing-time'], 1, 1_000_000) ?? 300;
  const fdbMax = intFlag('daemon', 'fdb-max', values['fdb-max'], 1, 1_000_000) ?? 8192;
  const mtu = intFlag('daemon', 'mtu', values.mtu, 576, 65521) ?? 1500;
  const leaseTime = intFlag('daemon', 'lease-time', values['lease-time'], 60, 2 ** 31 - 1);
  const outboundAddr = stringFlag(values['outbound-addr']);
  if (outboundAddr !== undefined) checkValue('daemon', () => parseIpv4(outboundAddr));
  const udpFiltering = stringFlag(values['udp-filtering']) ?? 'address-dependent';
  if (udpFiltering !== 'address-dependent' && udpFiltering !== 'endpoint-independent') {
    throw new UsageError(`daemon: --udp-filtering must be address-dependent or endpoint-independent, not "${udpFiltering}"`);
  }
  const conntrackMax = intFlag('daemon', 'conntrack-max', values['conntrack-max'], 16, 10_000_000);
  const conntrackMaxPerContainer = intFlag('daemon', 'conntrack-max-per-container', values['conntrack-max-per-container'], 1, 10_000_000);
  const icc = boolFlag('daemon', 'icc', values.icc) ?? true;
  const offloads = boolFlag('daemon', 'offload', values.offload) ?? true;
  const dnsUpstream = splitList(values['dns-upstream'] as string[] | undefined) ?? [];
  for (const u of dnsUpstream) checkValue('daemon', () => parseUpstream(u));
  const dnsSearch = splitList(values['dns-search'] as string[] | undefined) ?? [];
  for (const d of dnsSearch) checkValue('daemon', () => checkDomain(d));

  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  // Only usernet's own default socket directory is made private (0700, ours); a directory the
  // user named is used as it is.
  if (isDefaultSocket(values)) ensurePrivateDir(socketDir(socketPath));
  else ensureDir(socketDir(socketPath));
  ensureDir(stateDir);
  const daemon = new Daemon(
    { socketPath, stateDir, ageingTimeMs: ageing * 1000, fdbMaxEntries: fdbMax, defaultMtu: mtu, icc, offloads, dnsUpstream, dnsSearch, disableDns: values['disable-dns'] === true, ...(leaseTime !== undefined ? { leaseTime } : {}),
      disableHostLoopback: values['disable-host-loopback'] === true,
      ...(outboundAddr !== undefined ? { outboundAddr } : {}),
      udpFiltering: udpFiltering as 'address-dependent' | 'endpoint-independent',
      ...(conntrackMax !== undefined ? { conntrackMax } : {}),
      ...(conntrackMaxPerContainer !== undefined ? { conntrackMaxPerContainer } : {}) },
    log,
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping (TAPs stay in the containers; a new daemon re-attaches them)');
    daemon.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => log.info('SIGHUP ignored'));
  process.on('uncaughtException', (err) => {
    // State is on disk and TAPs are persistent: dying loudly and being restarted is safer than
    // running on in an unknown state.
    log.fatal({ err }, 'uncaught exception: exiting');
    process.exit(70);
  });
  await daemon.start();
  return -1; // keep running
}

async function cmdAttach(args: string[]): Promise<number> {
  const { values } = parse('attach', args, {
    ...SOCKET_OPTION,
    ...HELP_OPTION,
    pid: { type: 'string' },
    netns: { type: 'string' },
    userns: { type: 'string' },
    name: { type: 'string' },
    ifname: { type: 'string' },
    mac: { type: 'string' },
    mtu: { type: 'string' },
    configure: { type: 'boolean' },
    ip: { type: 'string' },
    network: { type: 'string' },
    'resolv-conf': { type: 'string' },
    offload: { type: 'string' },
    publish: { type: 'string', short: 'p', multiple: true },
    json: { type: 'boolean' },
  });
  if (values.help) return help('attach');
  const publish = (values.publish as string[] | undefined) ?? [];
  for (const spec of publish) checkValue('attach', () => parsePublishSpec(spec));
  const pid = intFlag('attach', 'pid', values.pid, 1, 0x3fffffff);
  if ((pid === undefined) === (values.netns === undefined)) throw new UsageError('attach: give exactly one of --pid PID or --netns PATH');
  const name = stringFlag(values.name);
  const ifname = stringFlag(values.ifname);
  if (name !== undefined && !NAME_PATTERN.test(name)) {
    throw new UsageError(`attach: --name "${name}" must be 1-64 letters, digits, "_", "." or "-", starting with a letter or digit`);
  }
  if (ifname !== undefined && !IFNAME_PATTERN.test(ifname)) throw new UsageError(`attach: --ifname "${ifname}" must be 1-15 letters, digits, "_", "." or "-"`);
  if (typeof values.mac === 'string') checkValue('attach', () => parseMac(values.mac as string));
  if (typeof values.ip === 'string') checkValue('attach', () => parseIpv4Cidr(values.ip as string, 32, 1));
  if (typeof values.network === 'string' && !NAME_PATTERN.test(values.network)) throw new UsageError(`attach: --network "${values.network}" is not a network name`);
  const resolvConf = stringFlag(values['resolv-conf']);
  const params: Record<string, unknown> = {
    pid,
    netns: stringFlag(values.netns),
    userns: stringFlag(values.userns),
    name: stringFlag(values.name),
    ifname: stringFlag(values.ifname),
    mac: stringFlag(values.mac),
    mtu: intFlag('attach', 'mtu', values.mtu, 68, 65521),
    configure: values.configure === true ? true : undefined,
    ip: stringFlag(values.ip),
    network: stringFlag(values.network),
    offload: boolFlag('attach', 'offload', values.offload),
    publish: publish.length ? publish : undefined,
  };
  for (const k of Object.keys(params)) if (params[k] === undefined) delete params[k];
  const result = await request<AttachResult>(socketOf(values), 'attach', params);
  if (resolvConf !== undefined) {
    try {
      writeResolvConf(resolvConf, result);
    } catch (err) {
      // The attachment stands; say what did not work, and how to get it.
      throw new UsernetError('ERR_RESOLV_CONF', `attached as ${result.name}, but cannot write ${resolvConf}: ${whyNotWritable(resolvConf, err)}`);
    }
  }
  out(values.json ? JSON.stringify(result) : result.name);
  return 0;
}

/**
 * Why a file could not be written, in words that fit the case: ENOENT is "no such directory"
 * only when the directory is missing; in /proc or /sys it means the directory takes no new files.
 */
function whyNotWritable(path: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    const dir = dirname(resolve(path));
    return existsSync(dir) ? `${dir} does not take new files` : `no such directory ${dir}`;
  }
  return describeErrno(err);
}

/** A resolv.conf for the container: the network's DNS address and search list (atomic write). */
function writeResolvConf(path: string, r: AttachResult): void {
  const lines = [`# written by usernet for port ${r.name} on network ${r.network}`];
  if (r.dns) lines.push(`nameserver ${r.dns}`);
  else lines.push('# DNS is disabled on this network');
  if (r.dnsSearch.length) lines.push(`search ${r.dnsSearch.join(' ')}`);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${lines.join('\n')}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

const NETWORK_HELP = `Usage: usernet network create NAME --subnet CIDR [OPTIONS]
       usernet network ls [--json]
       usernet network inspect NAME
       usernet network rm NAME

A network is a switch with its own subnet and gateway (ARP, ping, DHCP, DNS). Networks are
isolated from each other. "default" (10.0.2.0/24) always exists.

create options:
  --subnet CIDR        a network address, e.g. 10.0.3.0/24; prefix 1-25 unless --gateway,
                       --dns and --range are all given
  --gateway IP         gateway address (default: network + 2)
  --dns IP             DNS address (default: network + 3)
  --range FIRST-LAST   addresses for containers (default: network + 100 to broadcast - 1)
  --mtu N              MTU (default 1500)
  --icc=true|false     container-to-container traffic (default true)
  --dns-search DOMAIN  search domains (repeatable or comma-separated; default: the daemon's)
  --dns-upstream IP[:PORT]  resolvers for this network (repeatable; default: the daemon's)
  --disable-dns        no DNS forwarder on this network
  --lease-time SEC     DHCP lease time (default 3600)
  --disable-host-loopback  the gateway address does not lead to the host's loopback`;

async function cmdConntrack(args: string[]): Promise<number> {
  const { values } = parse('conntrack', args, {
    ...SOCKET_OPTION,
    ...HELP_OPTION,
    list: { type: 'boolean', short: 'L' },
    flush: { type: 'boolean', short: 'F' },
    proto: { type: 'string', short: 'p' },
    src: { type: 'string', short: 's' },
    dst: { type: 'string', short: 'd' },
    json: { type: 'boolean' },
  });
  if (values.help) return help('conntrack');
  if (values.flush && values.list) throw new UsageError('conntrack: -L and -F do not go together');
  if (values.flush) {
    const { flushed } = await request<{ flushed: number }>(socketOf(values), 'conntrack.flush');
    process.stderr.write(`conntrack: ${flushed} flow entries have been deleted.\n`);
    return 0;
  }
  if (!values.list) throw new UsageError('conntrack: give -L (list) or -F (flush)');
  const params: Record<string, unknown> = {};
  const proto = stringFlag(values.proto);
  if (proto !== undefined) {
    if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new UsageError(`conntrack: -p must be tcp, udp or icmp, not "${proto}"`);
    params.proto = proto;
  }
  for (const k of ['src', 'dst'] as const) {
    const v = stringFlag(values[k]);
    if (v !== undefined) {
      checkValue('conntrack', () => parseIpv4(v));
      params[k] = v;
    }
  }
  const r = await request<{ entries: unknown[]; lines: string[] }>(socketOf(values), 'conntrack.list', params);
  if (values.json) out(JSON.stringify(r.entries, null, 2));
  else {
    out(r.lines.join('\n'));
    // conntrack-tools prints its count on stderr, so the table alone stays on stdout.
    process.stderr.write(`conntrack v1.4.7 (usernet): ${r.lines.length} flow entries have been shown.\n`);
  }
  return 0;
}

function splitList(values: string[] | undefined): string[] | undefined {
  if (!values) return undefined;
  return values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

async function cmdNetwork(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    out(NETWORK_HELP);
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    out(NETWORK_HELP);
    return 0;
  }
  if (sub === 'create') {
    const { values, positionals } = parse('network create', rest, {
      ...SOCKET_OPTION,
      ...HELP_OPTION,
      subnet: { type: 'string' },
      gateway: { type: 'string' },
      dns: { type: 'string' },
      range: { type: 'string' },
      mtu: { type: 'string' },
      icc: { type: 'string' },
      'dns-search': { type: 'string', multiple: true },
      'dns-upstream': { type: 'string', multiple: true },
      'disable-dns': { type: 'boolean' },
      'lease-time': { type: 'string' },
      'disable-host-loopback': { type: 'boolean' },
      json: { type: 'boolean' },
    }, 1);
    if (values.help) {
      out(NETWORK_HELP);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('network create: give the network NAME');
    const subnet = stringFlag(values.subnet);
    if (!subnet) throw new UsageError('network create: --subnet CIDR is required (e.g. --subnet 10.0.3.0/24)');
    const params: Record<string, unknown> = {
      name: positionals[0],
      subnet,
      gateway: stringFlag(values.gateway),
      dns: stringFlag(values.dns),
      range: stringFlag(values.range),
      mtu: intFlag('network create', 'mtu', values.mtu, 68, 65521),
      icc: boolFlag('network create', 'icc', values.icc),
      dnsSearch: splitList(values['dns-search'] as string[] | undefined),
      dnsUpstream: splitList(values['dns-upstream'] as string[] | undefined),
      disableDns: values['disable-dns'] === true ? true : undefined,
      leaseTime: intFlag('network create', 'lease-time', values['lease-time'], 60, 2 ** 31 - 1),
      disableHostLoopback: values['disable-host-loopback'] === true ? true : undefined,
    };
    for (const k of Object.keys(params)) if (params[k] === undefined) delete params[k];
    // Everything that can be judged without the other networks is a usage error (exit 2).
    checkValue('network create', () => validateNetworkSpec(params as unknown as NetworkSpec, []));
    const result = await request<Record<string, unknown>>(socketOf(values), 'network.create', params);
    out(values.json ? JSON.stringify(result, null, 2) : String(result.name));
    return 0;
  }
  if (sub === 'ls' || sub === 'list') {
    const { values } = parse('network ls', rest, { ...SOCKET_OPTION, ...HELP_OPTION, json: { type: 'boolean' } });
    const { networks, invalid } = await request<{ networks: NetworkInfo[]; invalid: Array<{ name: string; subnet: string }> }>(socketOf(values), 'network.ls');
    if (values.json) out(JSON.stringify({ networks, invalid }, null, 2));
    else {
      out(formatNetworks(networks));
      for (const n of invalid) out(`(invalid, kept in the state file: ${n.name} ${n.subnet} — see the daemon log; usernet network rm ${n.name} removes it)`);
    }
    return 0;
  }
  if (sub === 'inspect') {
    const { values, positionals } = parse('network inspect', rest, { ...SOCKET_OPTION, ...HELP_OPTION }, 1);
    if (positionals.length !== 1) throw new UsageError('network inspect: give the network NAME');
    out(JSON.stringify(await request(socketOf(values), 'network.inspect', { name: positionals[0] }), null, 2));
    return 0;
  }
  if (sub === 'rm' || sub === 'remove') {
    const { values, positionals } = parse('network rm', rest, { ...SOCKET_OPTION, ...HELP_OPTION }, 1);
    if (positionals.length !== 1) throw new UsageError('network rm: give the network NAME');
    await request(socketOf(values), 'network.rm', { name: positionals[0] });
    return 0;
  }
  throw new UsageError(`network: unknown subcommand "${sub}" (create, ls, inspect, rm)`);
}

async function cmdDetach(args: string[]): Promise<number> {
  const { values, positionals } = parse('detach', args, { ...SOCKET_OPTION, ...HELP_OPTION }, 1);
  if (values.help) return help('detach');
  if (positionals.length !== 1) throw new UsageError('detach: give the port NAME (see usernet ports)');
  await request(socketOf(values), 'detach', { name: positionals[0] });
  return 0;
}

async function cmdPorts(args: string[]): Promise<number> {
  if (args[0] === 'set') {
    const { values, positionals } = parse('ports set', args.slice(1), { ...SOCKET_OPTION, ...HELP_OPTION, 'tx-loss': { type: 'string' }, network: { type: 'string' } }, 1);
    if (values.help) return help('ports');
    if (positionals.length !== 1) throw new UsageError('ports set: give the port NAME');
    const text = stringFlag(values['tx-loss']);
    const loss = text === undefined ? NaN : Number(text);
    if (!(loss >= 0 && loss <= 1)) throw new UsageError('ports set: --tx-loss must be a probability from 0 to 1 (e.g. 0.05)');
    const network = stringFlag(values.network);
    await request(socketOf(values), 'ports.set', { name: positionals[0], txLoss: loss, ...(network !== undefined ? { network } : {}) });
    return 0;
  }
  const { values } = parse('ports', args, { ...SOCKET_OPTION, ...HELP_OPTION, json: { type: 'boolean' } });
  if (values.help) return help('ports');
  const { ports } = await request<{ ports: PortInfo[] }>(socketOf(values), 'ports');
  out(values.json ? JSON.stringify(ports, null, 2) : formatPorts(ports));
  return 0;
}

async function cmdFdb(args: string[]): Promise<number> {
  const { values } = parse('fdb', args, { ...SOCKET_OPTION, ...HELP_OPTION, json: { type: 'boolean' }, network: { type: 'string' } });
  if (values.help) return help('fdb');
  const network = stringFlag(values.network);
  const { entries } = await request<{ entries: FdbEntryInfo[] }>(socketOf(values), 'fdb', network ? { network } : {});
  out(values.json ? JSON.stringify(entries, null, 2) : formatFdb(entries));
  return 0;
}

async function cmdStatus(args: string[]): Promise<number> {
  const { values } = parse('status', args, { ...SOCKET_OPTION, ...HELP_OPTION, json: { type: 'boolean' } });
  if (values.help) return help('status');
  const status = await request<Record<string, unknown>>(socketOf(values), 'status');
  out(values.json ? JSON.stringify(status, null, 2) : formatStatus(status));
  return 0;
}

/** How long the CLI waits, after Ctrl-C, for the daemon to send the rest of a capture. */
const CAPTURE_STOP_DEADLINE_MS = 5000;

async function cmdCapture(args: string[]): Promise<number> {
  const { values } = parse('capture', args, {
    ...SOCKET_OPTION,
    ...HELP_OPTION,
    port: { type: 'string' },
    network: { type: 'string' },
    write: { type: 'string', short: 'w' },
    count: { type: 'string', short: 'c' },
  });
  if (values.help) return help('capture');
  const port = stringFlag(values.port);
  const file = stringFlag(values.write);
  if (!port) throw new UsageError('capture: --port NAME is required (see usernet ports)');
  if (!file) throw new UsageError('capture: -w FILE is required ("-" for stdout)');
  const count = intFlag('capture', 'count', values.count, 1, 2 ** 31) ?? 0;
  // Open the file first: a path we cannot write is an error before any capture starts.
  let fd = -1;
  if (file !== '-') {
    try {
      fd = openSync(file, 'w', 0o644);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw errnoError(e.code ?? 'EIO', 'open', `capture: cannot write ${file}: ${e.code === 'ENOENT' ? 'no such directory' : e.code === 'EACCES' ? 'permission denied' : e.message}`);
    }
  }
  let opened;
  try {
    const network = stringFlag(values.network);
    opened = await openRequest(socketOf(values), 'capture', { port, ...(network !== undefined ? { network } : {}), ...(count ? { count } : {}) });
  } catch (err) {
    if (fd >= 0) {
      closeSync(fd);
      rmSync(file, { force: true });
    }
    throw err;
  }
  const { socket, rest } = opened;
  const sink: WriteStream | NodeJS.WriteStream = file === '-' ? process.stdout : createWriteStream(file, { fd });
  const counter = new PcapRecordCounter();
  return new Promise<number>((resolve, reject) => {
    let bytes = 0;
    let deadline: NodeJS.Timeout | null = null;
    const onSignal = (): void => {
      if (deadline !== null) {
        // A second Ctrl-C: stop waiting for the daemon, keep what arrived.
        socket.destroy();
        finish(130, 'interrupted again before the daemon had sent everything');
        return;
      }
      // Ctrl-C asks the daemon to stop: our side half-closes, the daemon flushes every frame it
      // has staged and ends the stream, and we exit once all of it is written — within a deadline.
      socket.end();
      deadline = setTimeout(() => {
        socket.destroy();
        finish(1, `the daemon did not end the capture within ${CAPTURE_STOP_DEADLINE_MS / 1000} s`);
      }, CAPTURE_STOP_DEADLINE_MS);
    };
    let done = false;
    const finish = (code: number, problem?: string): void => {
      if (done) return;
      done = true;
      if (deadline) clearTimeout(deadline);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      const report = (): void => {
        if (file !== '-') {
          const what = counter.valid ? `${counter.records} frame${counter.records === 1 ? '' : 's'} (${bytes} bytes)` : `${bytes} bytes`;
          process.stderr.write(`capture: ${what} written to ${file}${problem ? `; ${problem}` : ''}\n`);
        } else if (problem) {
          process.stderr.write(`capture: ${problem}\n`);
        }
        resolve(code);
      };
      if (sink === process.stdout) report();
      else (sink as WriteStream).end(report);
    };
    const write = (chunk: Buffer): void => {
      bytes += chunk.length;
      counter.push(chunk);
      if (!sink.write(chunk)) {
        socket.pause();
        sink.once('drain', () => socket.resume());
      }
    };
    if (rest.length) write(rest);
    socket.on('data', write);
    socket.once('end', () => finish(0));
    socket.once('error', (err) => {
      if (done) return;
      done = true;
      reject(err);
    });
    sink.once('error', (err: Error) => {
      socket.destroy();
      if (done) return;
      done = true;
      reject(errnoError('EIO', 'write', `capture: writing ${file} failed: ${err.message}`));
    });
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    socket.resume();
  });
}

async function cmdPublish(args: string[]): Promise<number> {
  const { values, positionals } = parse('publish', args, { ...SOCKET_OPTION, ...HELP_OPTION, list: { type: 'boolean', short: 'l' }, json: { type: 'boolean' } }, Infinity);
  if (values.help) return help('publish');
  if (values.list) {
    if (positionals.length > 1) throw new UsageError(`publish --list: unexpected argument "${positionals[1]}"`);
    const { ports } = await request<{ ports: PublishedPortInfo[] }>(socketOf(values), 'publish.list', positionals[0] ? { name: positionals[0] } : {});
    out(values.json ? JSON.stringify(ports, null, 2) : formatPublished(ports));
    return 0;
  }
  const [name, ...specs] = positionals;
  if (name === undefined || specs.length === 0) throw new UsageError('publish: give the port NAME and at least one SPEC, e.g. usernet publish c1 8080:80 (or --list)');
  for (const spec of specs) checkValue('publish', () => parsePublishSpec(spec));
  const { ports } = await request<{ ports: PublishedPortInfo[] }>(socketOf(values), 'publish', { name, specs });
  out(values.json ? JSON.stringify(ports, null, 2) : ports.map((p) => `${p.containerPort}/${p.proto} -> ${formatHostAddress(p)}`).join('\n'));
  return 0;
}

async function cmdUnpublish(args: string[]): Promise<number> {
  const { values, positionals } = parse('unpublish', args, { ...SOCKET_OPTION, ...HELP_OPTION, all: { type: 'boolean' } }, Infinity);
  if (values.help) return help('publish');
  const [name, ...specs] = positionals;
  if (name === undefined) throw new UsageError('unpublish: give the port NAME and the SPECs to remove (or --all)');
  if (values.all && specs.length) throw new UsageError('unpublish: give SPECs or --all, not both');
  if (!values.all && specs.length === 0) throw new UsageError('unpublish: give the SPECs to remove (or --all)');
  for (const spec of specs) checkValue('unpublish', () => parsePublishSpec(spec));
  const { removed } = await request<{ removed: string[] }>(socketOf(values), 'unpublish', values.all ? { name, all: true } : { name, specs });
  out(removed.join('\n'));
  return 0;
}

function help(command: string): number {
  out(HELP[command] ?? HELP.main);
  return 0;
}

/**
 * Global options given before the command (`usernet --socket P status`) go to the command, as if
 * given after it; only --socket is global. Anything else before the command is refused by name.
 */
function hoistGlobalOptions(argv: string[]): string[] {
  const globals: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i].startsWith('--socket')) {
    const arg = argv[i];
    if (arg === '--socket') {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('-')) throw new UsageError('option --socket needs a value (see usernet --help)');
      globals.push('--socket', argv[i + 1]);
      i += 2;
    } else if (arg.startsWith('--socket=')) {
      globals.push(arg);
      i += 1;
    } else {
      break;
    }
  }
  if (globals.length === 0) return argv;
  const [command, ...rest] = argv.slice(i);
  if (command === undefined) throw new UsageError('give a command after --socket (see usernet --help)');
  if (command === 'demo' || command === 'slirp4netns' || command === 'help' || command === '--help' || command === '-h' || command === 'version' || command === '--version' || command === '-v') {
    throw new UsageError(`--socket does not apply to "${command}"`);
  }
  return [command, ...globals, ...rest];
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = hoistGlobalOptions(argv);
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return help(args[0] ?? 'main');
    case '--version':
    case '-v':
    case 'version':
      out(`usernet ${VERSION}`);
      return 0;
    case 'daemon':
      return cmdDaemon(args);
    case 'attach':
      return cmdAttach(args);
    case 'network':
      return cmdNetwork(args);
    case 'conntrack':
      return cmdConntrack(args);
    case 'detach':
      return cmdDetach(args);
    case 'publish':
      return cmdPublish(args);
    case 'unpublish':
      return cmdUnpublish(args);
    case 'ports':
      return cmdPorts(args);
    case 'fdb':
      return cmdFdb(args);
    case 'status':
      return cmdStatus(args);
    case 'capture':
      return cmdCapture(args);
    case 'slirp4netns':
      // slirp4netns's own command line: its --help, not ours.
      process.exit(await runSlirp4netns(args, 'usernet slirp4netns'));
    case 'demo':
      if (args.includes('--help') || args.includes('-h')) return help('demo');
      if (args.length) throw new UsageError(`demo: unexpected argument "${args[0]}"`);
      return runDemo();
    default:
      throw new UsageError(`unknown command "${command}" (see usernet --help)`);
  }
}

/** Runs the CLI: prints one line per error, sets the exit code. */
export function run(argv: string[]): void {
  main(argv).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      const e = toUsernetError(err);
      process.stderr.write(`usernet: ${e.message}\n`);
      process.exitCode = err instanceof UsageError ? 2 : 1;
    },
  );
}
