/**
 * `usernet-slirp4netns` (also `usernet slirp4netns`): a drop-in for slirp4netns 1.2, so that
 * rootlesskit, Podman and rootless Docker, which start slirp4netns as a program, get usernet
 * without a line changed.
 *
 * The contract (see docs/slirp4netns.md): the same flags; TAPNAME created if absent, attached if
 * present; `-c` configures it (cidr+100, default route via cidr+2, DNS at cidr+3, MTU, up); the
 * ready fd gets "1" once the TAP is up and the API socket listens; the exit fd hanging up ends the
 * program (status 0), as do SIGTERM and SIGINT; SIGKILL leaves nothing behind either, because the
 * TAP it created is not persistent and it has no helper processes.
 *
 * Inside, it is an ephemeral usernet daemon in this process — one network shaped like
 * slirp4netns's (DHCP from cidr+15) with its gateway, DNS forwarder and NAT — with the TAP as its
 * one attachment, and slirp4netns's API socket in front of the published-port machinery.
 */
import { closeSync, fstatSync, writeSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import pino, { type Logger } from 'pino';
import { Daemon, VERSION } from '../control/daemon.js';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';
import type { PublishedPort } from '../nat/publish.js';
import { SlirpApi, SlirpApiServer, type Hostfwd } from './api.js';
import { MAX_SLIRP_MTU, SlirpArgsError, parseSlirpArgs, slirpAddresses, type SlirpOptions } from './args.js';

/** The slirp4netns release whose interface this implements. */
export const SLIRP4NETNS_COMPAT_VERSION = '1.2.0';
/**
 * libslirp's feature level that slirp4netns prints and its tests read: 2 = --outbound-addr,
 * 3 = --disable-dns, 4 = the level of libslirp 4.7 (what slirp4netns 1.2 on Debian reports).
 */
export const SLIRP_CONFIG_VERSION_MAX = 4;

export const ATTACHMENT_NAME = 'slirp';

export function slirpHelp(program: string): string {
  return `Usage: ${program} [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces: usernet, speaking slirp4netns's
command line and API. TAPNAME (default tap0) is created in the namespace if absent.

-c, --configure          bring up the interface: address cidr+100, route via cidr+2, DNS cidr+3
-e, --exit-fd=FD         exit (status 0) when FD hangs up or becomes readable
-r, --ready-fd=FD        write "1" to FD (and close it) once the network is ready
-m, --mtu=MTU            MTU of the interface (default=1500, max=${MAX_SLIRP_MTU})
-6, --enable-ipv6        accepted; IPv6 is not routed yet (a warning says so)
-a, --api-socket=PATH    slirp4netns's API socket (add_hostfwd, list_hostfwd, remove_hostfwd)
--cidr=CIDR              network address CIDR (default=10.0.2.0/24, prefix 1-25)
--disable-host-loopback  prohibit connecting to the host's 127.0.0.1 through cidr+2
--netns-type=TYPE        PID|PATH operand type ([pid|path], default=pid)
--userns-path=PATH       user namespace to join with --netns-type=path
--enable-sandbox         run in a new mount namespace with an empty root (see docs/slirp4netns.md)
--enable-seccomp         limit the system calls of every thread (see docs/slirp4netns.md)
--outbound-addr=IPv4     IPv4 address or interface name for outgoing connections
--outbound-addr6=IPv6    accepted; IPv6 is not routed yet
--disable-dns            no DNS forwarder at cidr+3
--macaddress=MAC         MAC address of the TAP (only valid with -c)
--target-type=TYPE       target type ([netns], default=netns)
--network=NAME           usernet: join the network NAME of a running usernet daemon
--socket=PATH            usernet: that daemon's control socket (default: the usual one)
-h, --help               show this help and exit
-v, --version            show version and exit
`;
}

export function slirpVersion(): string {
  return `slirp4netns version ${SLIRP4NETNS_COMPAT_VERSION}+usernet-${VERSION}
commit: usernet ${VERSION}
libslirp: none (usernet ${VERSION}: its own NAT and TCP endpoint, in TypeScript)
SLIRP_CONFIG_VERSION_MAX: ${SLIRP_CONFIG_VERSION_MAX}
`;
}

/** An IPv4 literal, or the first IPv4 address of an interface; checked to be this host's. */
export async function resolveOutboundAddr(text: string): Promise<string> {
  let addr = text;
  if (tryParseIpv4(text) < 0) {
    const iface = networkInterfaces()[text];
    if (!iface) throw new SlirpArgsError(`--outbound-addr ${text}: not an IPv4 address, and no interface has that name`);
    const v4 = iface.find((a) => a.family === 'IPv4');
    if (!v4) throw new SlirpArgsError(`--outbound-addr ${text}: the interface has no IPv4 address`);
    addr = v4.address;
  }
  // Binding now turns "not an address of this host" into an error at start, not per connection.
  await new Promise<void>((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.close();
      reject(new SlirpArgsError(`--outbound-addr ${text}: ${addr} is not an address of this host (${err.code ?? err.message})`));
    });
    s.bind(0, addr, () => s.close(() => resolve()));
  });
  return addr;
}

interface Io {
  out(text: string): void;
  err(text: string): void;
}

const stdIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** The process: runs until the exit fd hangs up or a signal arrives. Resolves with the exit status. */
export async function runSlirp4netns(argv: readonly string[], program = 'usernet-slirp4netns', io: Io = stdIo): Promise<number> {
  let cmd;
  try {
    cmd = parseSlirpArgs(argv);
  } catch (err) {
    if (err instanceof SlirpArgsError) {
      io.err(`${program}: ${err.message}\nTry '${program} --help' for more information.\n`);
      return 1;
    }
    throw err;
  }
  if (cmd.action === 'help') {
    io.out(slirpHelp(program));
    return 0;
  }
  if (cmd.action === 'version') {
    io.out(slirpVersion());
    return 0;
  }
  const o = cmd.options;
  for (const w of cmd.warnings) io.err(`WARNING: ${w}\n`);
  if (o.enableIpv6) io.err('WARNING: IPv6 is not routed by usernet yet: --enable-ipv6 gives the namespace IPv4 only\n');
  if (o.outboundAddr6) io.err('WARNING: IPv6 is not routed by usernet yet: --outbound-addr6 has no effect\n');
  if (o.joinNetwork) {
    io.err(`${program}: --network: joining a running daemon's network is not available yet\n`);
    return 1;
  }
  if (o.enableSeccomp) io.err('WARNING: --enable-seccomp: not implemented yet in usernet; running without a seccomp filter\n');
  if (o.enableSandbox) io.err('WARNING: --enable-sandbox: not implemented yet in usernet; running without a mount sandbox\n');

  const log = pino(
    { level: process.env.USERNET_LOG_LEVEL ?? 'warn', base: { pid: process.pid, program: 'usernet-slirp4netns' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 2, sync: true }),
  );
  let instance: SlirpInstance;
  try {
    const outboundAddr = o.outboundAddr ? await resolveOutboundAddr(o.outboundAddr) : '';
    instance = new SlirpInstance(o, outboundAddr, log);
    await instance.start();
  } catch (err) {
    io.err(`${program}: ${(err as Error).message}\n`);
    return 1;
  }
  const status = await instance.run();
  return status;
}

/** One slirp4netns-style network: an ephemeral daemon, the TAP, the API socket, the fds. */
export class SlirpInstance {
  readonly daemon: Daemon;
  readonly api: SlirpApi;
  private apiServer: SlirpApiServer | null = null;
  private readonly published = new Map<number, PublishedPort[]>();
  private exitWatch: Socket | null = null;
  private finished: ((status: number) => void) | null = null;
  private readonly done: Promise<number>;
  private stopping: Promise<void> | null = null;

  constructor(
    readonly options: SlirpOptions,
    outboundAddr: string,
    private readonly log: Logger,
  ) {
    const a = slirpAddresses(options.network, options.prefix);
    this.daemon = new Daemon(
      {
        socketPath: '',
        stateDir: '',
        ephemeral: true,
        defaultSubnet: `${ipv4ToString(options.network)}/${options.prefix}`,
        // slirp4netns's DHCP hands out cidr+15 upward.
        defaultRange: `${ipv4ToString(a.dhcpFirst)}-${ipv4ToString((a.broadcast - 1) >>> 0)}`,
        defaultMtu: options.mtu,
        disableDns: options.disableDns,
        disableHostLoopback: options.disableHostLoopback,
        ...(outboundAddr ? { outboundAddr } : {}),
      },
      log,
    );
    this.api = new SlirpApi(
      {
        add: async (f) => this.addForward(f),
        remove: async (f) => this.removeForward(f),
      },
      a.guest,
      log,
    );
    this.done = new Promise<number>((resolve) => (this.finished = resolve));
  }

  async start(): Promise<void> {
    const o = this.options;
    const a = slirpAddresses(o.network, o.prefix);
    await this.daemon.start();
    try {
      await this.daemon.attach({
        name: ATTACHMENT_NAME,
        // A PID with --userns-path (slirp4netns allows it) is its namespace files.
        ...(o.netnsType === 'pid' && !o.usernsPath ? { pid: o.pid } : { netns: o.netnsType === 'pid' ? `/proc/${o.pid}/ns/net` : o.netnsPath }),
        ...(o.usernsPath ? { userns: o.usernsPath } : {}),
        ifname: o.tapname,
        mtu: o.mtu,
        ...(o.configure ? { configure: true, ip: ipv4ToString(a.guest) } : { address: false }),
        ...(o.macAddress ? { mac: o.macAddress } : {}),
      });
      this.daemon.onContainerGone = (_name, why) => {
        this.log.warn({ why }, 'the network namespace is gone: exiting');
        void this.stop(0);
      };
      if (o.apiSocket) {
        this.apiServer = new SlirpApiServer(o.apiSocket, this.api, this.log);
        await this.apiServer.listen();
      }
      this.watchExitFd();
      this.signalReady();
    } catch (err) {
      await this.shutdown();
      throw err;
    }
  }

  /** Resolves with the exit status once stopped (exit fd, signal, namespace gone). */
  run(): Promise<number> {
    const onSignal = (): void => void this.stop(0);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', onSignal);
    return this.done.finally(() => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onSignal);
    });
  }

  stop(status: number): Promise<void> {
    this.stopping ??= this.shutdown().then(() => this.finished?.(status));
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.exitWatch?.destroy();
    this.exitWatch = null;
    await this.apiServer?.close();
    this.apiServer = null;
    await this.api.removeAll();
    // Detach: a TAP this process created goes away; one that was there before stays.
    await this.daemon.detach(ATTACHMENT_NAME).catch(() => undefined);
    await this.daemon.stop();
  }

  private signalReady(): void {
    const fd = this.options.readyFd;
    if (fd < 0) return;
    try {
      writeSync(fd, '1');
    } catch (err) {
      throw new Error(`cannot write to ready-fd ${fd}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    } finally {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }

  /** The exit fd: its hang-up (or anything readable on it) ends the program with status 0. */
  private watchExitFd(): void {
    const fd = this.options.exitFd;
    if (fd < 0) return;
    try {
      fstatSync(fd);
    } catch {
      throw new Error(`exit-fd ${fd} is not an open file descriptor`);
    }
    const s = new Socket({ fd, readable: true, writable: false });
    const end = (): void => void this.stop(0);
    s.on('data', end);
    s.on('end', end);
    s.on('close', end);
    s.on('error', end);
    this.exitWatch = s;
  }

  private async addForward(f: Hostfwd): Promise<void> {
    const opened = await this.daemon.publishToAddress(ATTACHMENT_NAME, f.guestAddr, [
      { proto: f.proto, hostIp: ipv4ToString(f.hostAddr), hostPort: f.hostPort, containerPort: f.guestPort },
    ]);
    this.published.set(f.id, opened);
  }

  private async removeForward(f: Hostfwd): Promise<void> {
    const ports = this.published.get(f.id) ?? [];
    this.published.delete(f.id);
    await Promise.all(ports.map((p) => this.daemon.nat.publisher.unpublish(p, 'remove_hostfwd')));
  }
}
