/**
 * Published ports end to end: rootless containers serve on ports the daemon publishes on the host
 * (the sandbox's root namespace, 198.51.100.1 towards the "outside" namespace 198.51.100.0/24),
 * with real clients — curl, node, python — outside, on the host's loopback, and in another
 * container (hairpin). The servers report who they see: the client's own address, or the gateway.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, FIXTURES, Lines, Outside, PYTHON, cleanup, requireSandbox, run, startUntil, userTempDir } from './harness.js';

requireSandbox();

const BULK = join(FIXTURES, 'tcp-bulk.mjs');
const node = (...args: string[]): string[] => [process.execPath, BULK, ...args];
const MiB = 1024 * 1024;
const HOST = Outside.HOST;

interface Published {
  name: string;
  proto: string;
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
  state: string;
  error?: string;
  flows: number;
}

/** A python HTTP server in `c` on `port`; its access log (stderr) collects the client addresses. */
async function httpServer(c: Container, port: number): Promise<{ child: ChildProcess; log: Lines }> {
  const dir = userTempDir();
  await run(['sh', '-c', `echo "served by the container" > ${dir}/index.html`]);
  const child = await c.startUntil([PYTHON, '-u', '-m', 'http.server', String(port), '--bind', '0.0.0.0', '--directory', dir], (l) => l.startsWith('Serving HTTP'));
  return { child, log: new Lines(child, 'stderr') };
}

/** Waits for an access-log line from `client` (python's http.server logs "ADDR - - [...] ..."), from line `since` on. */
async function logged(log: Lines, client: string, since = 0): Promise<void> {
  await log.waitFor((l) => l.startsWith(`${client} - - `), 10_000, since);
}

async function curl(argv: (cmd: string[]) => string[], url: string): Promise<string> {
  const r = await run(argv(['curl', '-s', '-m', '10', url]), { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`curl ${url} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Whether anything listens on TCP `port` in this (the sandbox's root) namespace. */
async function listening(port: number): Promise<boolean> {
  const r = await run(['ss', '-Hltn', `sport = :${port}`]);
  return r.stdout.trim() !== '';
}

describe('published ports', () => {
  let daemon: Daemon;
  let out: Outside;
  let a: Container;
  let b: Container;
  let http: { child: ChildProcess; log: Lines };

  beforeAll(async () => {
    out = await Outside.create();
    [a, b] = await Promise.all([Container.start(), Container.start()]);
    daemon = await Daemon.start();
    await daemon.cliOk(['attach', '--pid', String(a.pid), '--name', 'a', '--configure']);
    // Published at attach time, in Docker's syntax.
    await daemon.cliOk(['attach', '--pid', String(b.pid), '--name', 'b', '--configure', '-p', '8080:80', '--publish', '8053:53/udp']);
    http = await httpServer(b, 80);
  });

  afterAll(async () => {
    await cleanup();
  });

  it('a client outside reaches the container through host:8080, and the server sees its own address', async () => {
    expect(await curl((c) => out.argv(c), `http://${HOST}:8080/`)).toBe('served by the container\n');
    await logged(http.log, '198.51.100.2');
    // From another outside address too: each client is itself.
    const r = await out.exec(['curl', '-s', '-m', '10', '--interface', '198.51.100.3', `http://${HOST}:8080/`]);
    expect(r.stdout).toBe('served by the container\n');
    await logged(http.log, '198.51.100.3');
  });

  it('a client on the host loopback is shown as the gateway', async () => {
    expect(await curl((c) => c, 'http://127.0.0.1:8080/')).toBe('served by the container\n');
    await logged(http.log, '10.0.2.2');
  });

  it('conntrack shows a published flow as the kernel shows a DNAT', async () => {
    await daemon.cliOk(['publish', 'b', '8081:81']);
    await b.startUntil(node('source', '81', String(64 * MiB)), (l) => l === 'ready');
    // The reader stalls, so the connection is still there to be listed.
    await out.startUntil(node('recv', HOST, '8081', '3000'), (l) => l === 'stalled');
    const table = await daemon.cliOk(['conntrack', '-L', '-p', 'tcp']);
    expect(table).toMatch(/^tcp {6}6 \d+ ESTABLISHED src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=(\d+) dport=8081 src=10\.0\.2\.101 dst=198\.51\.100\.2 sport=81 dport=\1 \[ASSURED\] mark=0 use=1$/m);
    const json = JSON.parse(await daemon.cliOk(['conntrack', '-L', '--json'])) as Array<{ dnat: boolean; original: { dport: number } }>;
    expect(json.find((e) => e.original.dport === 8081)?.dnat).toBe(true);
  });

  it('a connection the client closes first ends in TIME_WAIT, not in a reset from the container', async () => {
    // A keep-alive server: the client (curl) closes first, so usernet's FIN reaches the container
    // first and the container's FIN acknowledges it. Nothing may follow our FIN — a byte after
    // it makes the container answer RST, and the flow would vanish from conntrack.
    await daemon.cliOk(['publish', 'b', '8082:82']);
    // The server says when the container's side of the connection is closed (its FIN is out).
    const server = 'require("node:http").createServer((q, s) => s.end("kept alive\\n")).on("connection", (c) => c.on("close", () => console.log("closed"))).listen(82, "0.0.0.0", () => console.log("ready"))';
    const lines = new Lines(await b.startUntil([process.execPath, '-e', server], (l) => l === 'ready'));
    expect(await curl((c) => out.argv(c), `http://${HOST}:8082/`)).toBe('kept alive\n');
    await lines.waitFor((l) => l === 'closed', 10_000);
    // The container's FIN was written to its TAP before "closed" was printed, long before this
    // request reaches the daemon: the flow is in TIME_WAIT by then.
    const table = await daemon.cliOk(['conntrack', '-L', '-p', 'tcp']);
    expect(table).toMatch(/^tcp {6}6 \d+ TIME_WAIT src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=(\d+) dport=8082 src=10\.0\.2\.101 dst=198\.51\.100\.2 sport=82 dport=\1 \[ASSURED\] mark=0 use=1$/m);
    const status = JSON.parse(await daemon.cliOk(['status', '--json'])) as { conntrack: { removed: Record<string, number> } };
    expect(status.conntrack.removed['reset by the container'] ?? 0).toBe(0);
  });

  it('UDP: two clients at once each get their own replies, each seen with its own address', async () => {
    const server = new Lines(
      await b.startUntil(
        [PYTHON, '-u', '-c', "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 53))\nprint('ready', flush=True)\nwhile True:\n  d,p=s.recvfrom(2048)\n  print('%s %d' % p, flush=True)\n  s.sendto(b'echo '+d, p)"],
        (l) => l === 'ready',
      ),
    );
    const clients = `import socket
socks = {}
for addr in ['198.51.100.2', '198.51.100.3']:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))
    s.settimeout(5)
    socks[addr] = s
for i in range(20):
    for addr, s in socks.items():
        s.sendto(('%s #%d' % (addr, i)).encode(), ('${HOST}', 8053))
for addr, s in socks.items():
    got = sorted(s.recvfrom(100)[0].decode() for _ in range(20))
    want = sorted('echo %s #%d' % (addr, i) for i in range(20))
    print(addr, 'ok' if got == want else 'WRONG %r' % got[:3], flush=True)`;
    expect((await out.exec([PYTHON, '-c', clients], { timeoutMs: 30_000 })).stdout.trim().split('\n')).toEqual(['198.51.100.2 ok', '198.51.100.3 ok']);
    await server.waitFor((l) => l.startsWith('198.51.100.2 '));
    await server.waitFor((l) => l.startsWith('198.51.100.3 '));
    expect(await daemon.cliOk(['conntrack', '-L', '-p', 'udp'])).toMatch(/^udp {6}17 \d+ src=198\.51\.100\.2 dst=198\.51\.100\.1 sport=\d+ dport=8053 src=10\.0\.2\.101 dst=198\.51\.100\.2 sport=53 dport=\d+/m);
  });

  it('a range 9000-9009:9000-9009 works for all ten ports, and unpublishing closes them', async () => {
    const added = await daemon.cliOk(['publish', 'b', '9000-9009:9000-9009']);
    expect(added.trim().split('\n')).toEqual(Array.from({ length: 10 }, (_, i) => `${9000 + i}/tcp -> 0.0.0.0:${9000 + i}`));
    await b.startUntil(
      [
        PYTHON,
        '-u',
        '-c',
        "import socket, selectors\nsel = selectors.DefaultSelector()\nfor p in range(9000, 9010):\n  s = socket.socket()\n  s.bind(('0.0.0.0', p))\n  s.listen()\n  sel.register(s, selectors.EVENT_READ, p)\nprint('ready', flush=True)\nwhile True:\n  for key, _ in sel.select():\n    c, a = key.fileobj.accept()\n    c.sendall(b'port %d from %s\\n' % (key.data, a[0].encode()))\n    c.close()",
      ],
      (l) => l === 'ready',
    );
    const client = `import socket\nfor p in range(9000, 9010):\n  s = socket.create_connection(('${HOST}', p), timeout=5)\n  print(s.makefile().readline().strip(), flush=True)\n  s.close()`;
    const lines = (await out.exec([PYTHON, '-c', client], { timeoutMs: 30_000 })).stdout.trim().split('\n');
    expect(lines).toEqual(Array.from({ length: 10 }, (_, i) => `port ${9000 + i} from 198.51.100.2`));
    const list = await daemon.cliJson<Published[]>(['publish', '--list', 'b']);
    expect(list.filter((p) => p.hostPort >= 9000 && p.hostPort <= 9009 && p.state === 'listening').length).toBe(10);
    expect((await daemon.cliOk(['unpublish', 'b', '9000-9009:9000-9009'])).trim().split('\n').length).toBe(10);
    const r = await out.exec([PYTHON, '-c', `import socket\ntry:\n  socket.create_connection(('${HOST}', 9005), timeout=5)\n  print('connected')\nexcept ConnectionRefusedError:\n  print('refused')`]);
    expect(r.stdout.trim()).toBe('refused');
  });

  it('unpublish without a host port removes every mapping of that container port; a wrong host address is named', async () => {
    await daemon.cliOk(['publish', 'b', '8084:84', '84', '127.0.0.1:8085:85']);
    const before = (await daemon.cliOk(['publish', '--list', 'b'])).split('\n').filter((l) => /:84 /.test(l));
    expect(before).toHaveLength(2);
    expect((await daemon.cliOk(['unpublish', 'b', '84'])).trim().split('\n')).toHaveLength(2);
    expect(await daemon.cliOk(['publish', '--list', 'b'])).not.toMatch(/:84 /);
    const r = await daemon.cli(['unpublish', 'b', '8085:85']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('b has no published port 0.0.0.0:8085:85/tcp; it has 127.0.0.1:8085:85/tcp (give the host address as published)');
    await daemon.cliOk(['unpublish', 'b', '127.0.0.1:8085:85']);
  });

  it('hairpin: container A reaches B through the host address, and B sees the host address', async () => {
    const before = http.log.lines.length;
    expect(await a.execOk(['curl', '-s', '-m', '10', `http://${HOST}:8080/`])).toBe('served by the container\n');
    await logged(http.log, HOST, before);
    // And through the gateway address (the host's loopback): B sees the gateway.
    expect(await a.execOk(['curl', '-s', '-m', '10', 'http://10.0.2.2:8080/'])).toBe('served by the container\n');
  });

  it('moves 1 GiB each way through a published port with matching sha256', async () => {
    const GiB = 1024 * MiB;
    await daemon.cliOk(['publish', 'b', '8090:90', '8091:91']);
    const sink = new Lines(await b.startUntil(node('sink', '90'), (l) => l === 'ready'));
    const sent = (await out.exec(node('send', HOST, '8090', String(GiB)), { timeoutMs: 150_000 })).stdout.trim();
    expect(sent).toMatch(/^1073741824 [0-9a-f]{64}$/);
    expect(await sink.waitFor((l) => /^\d+ /.test(l))).toBe(sent);
    const source = new Lines(await b.startUntil(node('source', '91', String(GiB)), (l) => l === 'ready'));
    const got = (await out.exec(node('recv', HOST, '8091'), { timeoutMs: 150_000 })).stdout.trim();
    expect(got).toBe(await source.waitFor((l) => /^\d+ /.test(l)));
    // The upload's socket switched to onread after its first big read (the download's host side
    // sends nothing: it stays on 'data'), and left in segments built around its reads.
    const status = JSON.parse(await daemon.cliOk(['status', '--json'])) as { tcp: { inboundReadWithOnread: number; segmentsBuiltInReadFrame: number } };
    expect(status.tcp.inboundReadWithOnread).toBe(1);
    expect(status.tcp.segmentsBuiltInReadFrame).toBeGreaterThan(1000);
  });

  it('completes 500 concurrent connections', async () => {
    await daemon.cliOk(['publish', 'b', '8092:92']);
    await b.startUntil(node('echo', '92'), (l) => l === 'ready');
    const r = await out.exec(node('many', HOST, '8092', '500'), { timeoutMs: 120_000 });
    expect(r.stdout.trim()).toBe('ok 500');
  });

  it('resets the client promptly when nothing listens in the container', async () => {
    await daemon.cliOk(['publish', 'b', '8093:93']);
    const t0 = Date.now();
    const r = await out.exec(['curl', '-sS', '-m', '10', `http://${HOST}:8093/`]);
    // Reset by the peer: curl says 56 (while receiving) or 7 (when the reset overtakes its
    // connect completing) — either way a reset, not a timeout.
    expect([7, 56]).toContain(r.code);
    expect(r.stderr).toMatch(/reset by peer|refused|couldn't connect/i);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("takes Docker's other -p forms: :80 and ::80 (any free port), 8094:80/TCP, and a host range for one container port", async () => {
    const hostPortOf = (line: string): number => Number(/^80\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(line.trim())?.[1]);
    for (const spec of [':80', '::80']) {
      const port = hostPortOf(await daemon.cliOk(['publish', 'b', spec]));
      expect(port).toBeGreaterThan(0);
      expect(await curl((c) => out.argv(c), `http://${HOST}:${port}/`)).toBe('served by the container\n');
      await daemon.cliOk(['unpublish', 'b', `${port}:80`]);
    }
    expect((await daemon.cliOk(['publish', 'b', '8094:80/TCP'])).trim()).toBe('80/tcp -> 0.0.0.0:8094');
    expect(await curl((c) => out.argv(c), `http://${HOST}:8094/`)).toBe('served by the container\n');
    await daemon.cliOk(['unpublish', 'b', '8094:80']);
    // 8110 is held by another program: one free port of 8110-8112 is bound, listed and answering.
    const holder = await startUntil([PYTHON, '-u', '-c', "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0', 8110))\ns.listen()\nprint('ready', flush=True)\ntime.sleep(3600)"], (l) => l === 'ready');
    const port = hostPortOf(await daemon.cliOk(['publish', 'b', '8110-8112:80']));
    holder.kill();
    expect([8111, 8112]).toContain(port);
    expect(await curl((c) => out.argv(c), `http://${HOST}:${port}/`)).toBe('served by the container\n');
    const listed = await daemon.cliJson<Published[]>(['publish', '--list', 'b']);
    expect(listed.filter((p) => p.containerPort === 80 && p.hostPort >= 8110 && p.hostPort <= 8112).map((p) => p.hostPort)).toEqual([port]);
    // Unpublished by the range it was published with, as Docker's spec names it.
    expect((await daemon.cliOk(['unpublish', 'b', '8110-8112:80'])).trim()).toBe(`0.0.0.0:${port}:80/tcp`);
    expect(await listening(port)).toBe(false);
  });

  it('refuses host addresses no listener can bind with one clear line, never a raw "listen EINVAL"', async () => {
    let r = await daemon.cli(['publish', 'b', '[fe80::1]:8095:80']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('usernet: publish: bad port spec "[fe80::1]:8095:80": fe80::1 is a link-local address, which can only be bound with a zone (an interface) that usernet does not take: publish on :: or on a global address\n');
    r = await daemon.cli(['publish', 'b', '[ff02::1]:8095:80']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n')).toEqual([expect.stringMatching(/^usernet: cannot publish \[ff02::1\]:8095:80\/tcp: ff02::1 cannot be bound by a listening TCP socket .*\(EINVAL\)$/), '']);
    expect(await listening(8095)).toBe(false);
  });

  it('gives one-line errors for conflicts and bad specs, and a failed publish leaves no listener', async () => {
    let r = await daemon.cli(['publish', 'b', '8080:81']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: cannot publish 0.0.0.0:8080:81/tcp: 0.0.0.0:8080/tcp is already published to b port 80\n');
    r = await daemon.cli(['publish', 'b', '80:80/sctp']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('usernet: publish: bad port spec "80:80/sctp": sctp is not supported (usernet publishes tcp and udp)\n');
    r = await daemon.cli(['publish', 'nosuch', '8100:80']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: no port named nosuch (see usernet ports)\n');
    // A privileged port, for this unprivileged daemon.
    r = await daemon.cli(['publish', 'b', '80:80']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^usernet: cannot publish 0\.0\.0\.0:80:80\/tcp: no permission to bind 0\.0\.0\.0:80\/tcp: ports below \d+ \(net\.ipv4\.ip_unprivileged_port_start\) need CAP_NET_BIND_SERVICE \(EACCES\)\n$/);
    // A port another program holds, at the end of a range: nothing of the range stays.
    const holder = await startUntil([PYTHON, '-u', '-c', "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0', 8099))\ns.listen()\nprint('ready', flush=True)\ntime.sleep(3600)"], (l) => l === 'ready');
    r = await daemon.cli(['publish', 'b', '8097-8099:97-99']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: cannot publish 0.0.0.0:8099:99/tcp: 0.0.0.0:8099/tcp is already in use on the host (EADDRINUSE)\n');
    holder.kill();
    expect(await listening(8097)).toBe(false);
    expect(await listening(8098)).toBe(false);
    expect((await daemon.cliJson<Published[]>(['publish', '--list'])).some((p) => p.hostPort >= 8097 && p.hostPort <= 8099)).toBe(false);
    r = await daemon.cli(['unpublish', 'b', '7777:77']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('usernet: b has no published port 0.0.0.0:7777:77/tcp (see usernet publish --list b)\n');
  });

  it('after SIGKILL and a restart, the mappings are back, listed and answering', async () => {
    const before = await daemon.cliJson<Published[]>(['publish', '--list']);
    await daemon.kill('SIGKILL');
    const state = JSON.parse(readFileSync(join(daemon.stateDir, 'state.json'), 'utf8')) as { attachments: Array<{ name: string; ports?: unknown[] }> };
    expect(state.attachments.find((x) => x.name === 'b')?.ports?.length).toBe(before.length);
    await daemon.launch();
    const after = await daemon.cliJson<Published[]>(['publish', '--list']);
    expect(after.map((p) => `${p.hostIp}:${p.hostPort}:${p.containerPort}/${p.proto} ${p.state}`).sort()).toEqual(before.map((p) => `${p.hostIp}:${p.hostPort}:${p.containerPort}/${p.proto} listening`).sort());
    expect(await daemon.cliOk(['publish', '--list', 'b'])).toMatch(/^b +tcp +0\.0\.0\.0:8080 +10\.0\.2\.101:80 +listening/m);
    expect(await curl((c) => out.argv(c), `http://${HOST}:8080/`)).toBe('served by the container\n');
  });

  it('a container that goes away takes its listeners with it', async () => {
    expect(await listening(8080)).toBe(true);
    await b.stop();
    await daemon.waitForLog((l) => l.msg === 'container gone: port removed' && l.port === 'b', 15_000);
    expect(await listening(8080)).toBe(false);
    expect(await daemon.cliJson<Published[]>(['publish', '--list'])).toEqual([]);
    const state = JSON.parse(readFileSync(join(daemon.stateDir, 'state.json'), 'utf8')) as { attachments: Array<{ name: string }> };
    expect(state.attachments.map((x) => x.name)).toEqual(['a']);
  });
});
