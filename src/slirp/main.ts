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
import { Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import pino, { type Logger } from 'pino';
import { request } from '../control/client.js';
import { Daemon } from '../control/daemon.js';
import { VERSION, type AttachResult } from '../control/protocol.js';
import { defaultSocketPath } from '../control/paths.js';
import { native, type WatchHandle } from '../native/addon.js';
import { ipv4ToString, tryParseIpv4 } from '../packet/ip-address.js';
import { checkOutboundAddress } from '../nat/outbound-address.js';
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
  await checkOutboundAddress(addr, text);
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

  const log = pino(
    { level: process.env.USERNET_LOG_LEVEL ?? 'warn', base: { pid: process.pid, program: 'usernet-slirp4netns' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: 2, sync: true }),
  );
  let instance: SlirpInstance;
  try {
    let network: NetworkBackend;
    if (o.joinNetwork) {
      network = new JoinedNetwork(o, o.daemonSocket || defaultSocketPath(), log);
    } else {
      const outboundAddr = o.outboundAddr ? await resolveOutboundAddr(o.outboundAddr) : '';
      network = new PrivateNetwork(o, outboundAddr, log);
    }
    instance = new SlirpInstance(o, network, log);
    await instance.start();
  } catch (err) {
    io.err(`${program}: ${(err as Error).message}\n`);
    return 1;
  }
  return instance.run();
}

/**
 * Where the namespace's TAP is plugged in: a private network in this process (slirp4netns's
 * model), or a network of a running usernet daemon (--network NAME).
 */
export interface NetworkBackend {
  /** Opens (or attaches) the TAP; resolves with the address an empty guest_addr means. */
  start(onGone: (why: string) => void): Promise<{ guest: number }>;
  addForward(f: Hostfwd): Promise<void>;
  removeForward(f: Hostfwd): Promise<void>;
  /** Detaches: a TAP made for this instance goes away. */
  close(): Promise<void>;
  /** Why this backend cannot run in the mount sandbox ('' = it can), and what to stop first. */
  readonly sandboxBlocker: string;
  beforeSandbox(): void;
}

/** The namespace as the instance's target: its PID, or its namespace files. */
function targetParams(o: SlirpOptions): Record<string, unknown> {
  // A PID with --userns-path (slirp4netns allows it) is its namespace files.
  if (o.netnsType === 'pid' && !o.usernsPath) return { pid: o.pid };
  return {
    netns: o.netnsType === 'pid' ? `/proc/${o.pid}/ns/net` : o.netnsPath,
    ...(o.usernsPath ? { userns: o.usernsPath } : {}),
  };
}

/**
 * The queue of the TAP the native launcher created before Node started (so that the device is
 * there at once, as slirp4netns's is): once our own queue is open — or the attach failed — it is
 * closed, and the device lives (or dies) with ours.
 */
function releaseEarlyTap(): void {
  const fd = Number(process.env.USERNET_SLIRP_TAPFD);
  delete process.env.USERNET_SLIRP_TAPFD;
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    closeSync(fd);
  } catch {
    // not ours after all
  }
}

/** slirp4netns's model: a network of its own, in this process, with the TAP as its one port. */
export class PrivateNetwork implements NetworkBackend {
  readonly daemon: Daemon;
  /** The one port's name: the TAP's (messages say "published to tap0 port 80"). */
  private readonly name: string;
  private readonly published = new Map<number, PublishedPort[]>();

  constructor(
    private readonly o: SlirpOptions,
    outboundAddr: string,
    log: Logger,
  ) {
    const a = slirpAddresses(o.network, o.prefix);
    this.name = o.tapname;
    this.daemon = new Daemon(
      {
        socketPath: '',
        stateDir: '',
        ephemeral: true,
        defaultSubnet: `${ipv4ToString(o.network)}/${o.prefix}`,
        // slirp4netns's DHCP hands out cidr+15 upward.
        defaultRange: `${ipv4ToString(a.dhcpFirst)}-${ipv4ToString((a.broadcast - 1) >>> 0)}`,
        defaultMtu: o.mtu,
        disableDns: o.disableDns,
        disableHostLoopback: o.disableHostLoopback,
        ...(outboundAddr ? { outboundAddr } : {}),
      },
      log,
    );
  }

  async start(onGone: (why: string) => void): Promise<{ guest: number }> {
    const o = this.o;
    const guest = slirpAddresses(o.network, o.prefix).guest;
    await this.daemon.start();
    try {
      await this.daemon.attach({
        name: this.name,
        ...targetParams(o),
        ifname: o.tapname,
        mtu: o.mtu,
        ...(o.configure ? { configure: true, ip: ipv4ToString(guest) } : { address: false }),
        ...(o.macAddress ? { mac: o.macAddress } : {}),
      });
    } catch (err) {
      await this.daemon.stop();
      throw err;
    } finally {
      releaseEarlyTap();
    }
    this.daemon.onContainerGone = (_name, why) => onGone(why);
    return { guest };
  }

  async addForward(f: Hostfwd): Promise<void> {
    const opened = await this.daemon.publishToAddress(this.name, f.guestAddr, [
      { proto: f.proto, hostIp: ipv4ToString(f.hostAddr), hostPort: f.hostPort, containerPort: f.guestPort },
    ]);
    this.published.set(f.id, opened);
  }

  async removeForward(f: Hostfwd): Promise<void> {
    const ports = this.published.get(f.id) ?? [];
    this.published.delete(f.id);
    await Promise.all(ports.map((p) => this.daemon.nat.publisher.unpublish(p, 'remove_hostfwd')));
  }

  readonly sandboxBlocker = '';

  beforeSandbox(): void {
    // Namespace paths (/proc/PID/ns/net) vanish from view in the sandbox: as slirp4netns, rely
    // on the exit fd and signals to end, and on the PID's pidfd where there is one.
    this.daemon.stopNamespacePolling();
  }

  async close(): Promise<void> {
    // Detach: a TAP this process created goes away; one that was there before stays.
    await this.daemon.detach(this.name).catch(() => undefined);
    await this.daemon.stop();
  }
}

/**
 * --network NAME: the TAP becomes a port of a running daemon's network, so that containers
 * started separately (by Podman, by rootlesskit) reach each other. The attachment is owned by
 * this process: when it ends — even by SIGKILL — the daemon removes the port and its forwards.
 */
export class JoinedNetwork implements NetworkBackend {
  readonly name = `slirp4netns-${process.pid}`;
  private address = '';
  private watch: WatchHandle | null = null;

  constructor(
    private readonly o: SlirpOptions,
    private readonly socket: string,
    private readonly log: Logger,
  ) {}

  async start(onGone: (why: string) => void): Promise<{ guest: number }> {
    const o = this.o;
    const r = await request<AttachResult>(this.socket, 'attach', {
      name: this.name,
      network: o.joinNetwork,
      ...targetParams(o),
      ifname: o.tapname,
      owner: process.pid,
      ...(o.mtuGiven ? { mtu: o.mtu } : {}),
      // -c: the daemon takes the network's next free address; otherwise the interface's own
      // address (if it has one) is adopted — and refused if another container holds it.
      ...(o.configure ? { configure: true } : { address: false }),
      ...(o.macAddress ? { mac: o.macAddress } : {}),
    });
    this.address = r.ip ?? '';
    this.log.info({ port: r.name, network: r.network, ip: r.ip }, 'joined the daemon\'s network');
    if (o.netnsType === 'pid' && !o.usernsPath) {
      // The namespace's process ends: so does this instance (the daemon drops the port itself).
      try {
        this.watch = native().watchPid(o.pid, () => onGone(`process ${o.pid} exited`));
      } catch {
        queueMicrotask(() => onGone(`process ${o.pid} exited`));
      }
    }
    return { guest: this.address ? tryParseIpv4(this.address) : 0 };
  }

  get sandboxBlocker(): string {
    // The daemon's control socket must stay reachable (forwards, detach): inside /run it does.
    return this.socket.startsWith('/run/') ? '' : `the daemon's socket ${this.socket} is outside /run, where the sandbox could not reach it`;
  }

  beforeSandbox(): void {}

  async addForward(f: Hostfwd): Promise<void> {
    if (!this.address) throw new Error('this namespace has no address on the network: nothing to forward to');
    if (ipv4ToString(f.guestAddr) !== this.address) {
      throw new Error(`guest_addr ${ipv4ToString(f.guestAddr)} is not this namespace's address (${this.address}) on network ${this.o.joinNetwork}`);
    }
    await request(this.socket, 'publish', { name: this.name, specs: [forwardSpec(f)] });
  }

  async removeForward(f: Hostfwd): Promise<void> {
    await request(this.socket, 'unpublish', { name: this.name, specs: [forwardSpec(f)] });
  }

  async close(): Promise<void> {
    if (this.watch) native().unwatch(this.watch);
    this.watch = null;
    await request(this.socket, 'detach', { name: this.name }).catch((err: Error) => this.log.warn({ err: err.message }, 'detach failed'));
  }
}

function forwardSpec(f: Hostfwd): string {
  return `${ipv4ToString(f.hostAddr)}:${f.hostPort}:${f.guestPort}/${f.proto}`;
}

/** One slirp4netns instance: a network backend, the API socket, the ready and exit fds. */
export class SlirpInstance {
  api: SlirpApi | null = null;
  private apiServer: SlirpApiServer | null = null;
  private exitWatch: Socket | null = null;
  private finished: ((status: number) => void) | null = null;
  private readonly done: Promise<number>;
  private stopping: Promise<void> | null = null;

  constructor(
    readonly options: SlirpOptions,
    readonly network: NetworkBackend,
    private readonly log: Logger,
  ) {
    this.done = new Promise<number>((resolve) => (this.finished = resolve));
  }

  async start(): Promise<void> {
    const o = this.options;
    const { guest } = await this.network.start((why) => {
      this.log.warn({ why }, 'the network namespace is gone: exiting');
      void this.stop(0);
    });
    try {
      this.api = new SlirpApi({ add: (f) => this.network.addForward(f), remove: (f) => this.network.removeForward(f) }, guest, this.log);
      if (o.apiSocket) {
        this.apiServer = new SlirpApiServer(o.apiSocket, this.api, this.log);
        await this.apiServer.listen();
      }
      this.watchExitFd();
      this.harden();
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
    // Joined to a daemon, nothing else may keep this process alive; it lives until stopped.
    const alive = setInterval(() => undefined, 2 ** 30);
    return this.done.finally(() => {
      clearInterval(alive);
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
    await this.api?.removeAll();
    await this.network.close();
  }

  /**
   * --enable-sandbox and --enable-seccomp, after the TAP and the API socket are open and before
   * ready, as slirp4netns does. The sandbox needs the mount namespace the native launcher made
   * before Node started (USERNET_SLIRP_MOUNTNS=1); without it, it says so and goes on.
   */
  private harden(): void {
    const o = this.options;
    if (o.enableSandbox) {
      const blocker = this.network.sandboxBlocker;
      if (process.env.USERNET_SLIRP_MOUNTNS !== '1') {
        process.stderr.write('WARNING: --enable-sandbox needs the native launcher (bin/usernet-slirp4netns runs it once built by npm ci); running without a sandbox\n');
      } else if (blocker) {
        process.stderr.write(`WARNING: --enable-sandbox: ${blocker}; running without a sandbox\n`);
      } else {
        this.network.beforeSandbox();
        const r = native().sandboxEnter();
        this.log.info(r, 'sandbox: pivoted into an empty root with /etc and /run; capabilities dropped to CAP_NET_BIND_SERVICE');
      }
    }
    if (o.enableSeccomp) {
      const n = native().seccompDeny();
      this.log.info({ denied: n }, 'seccomp: privileged system calls denied on every thread');
    }
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
}
