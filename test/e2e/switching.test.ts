/**
 * 802.1D behaviour through real TAPs, three rootless containers, raw frames from AF_PACKET:
 * flooding never back out the ingress port, reserved addresses relayed to nobody, a MAC move
 * learned at once, ageing; and --icc=false.
 */
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Container, Daemon, FIXTURES, PYTHON, cleanup, exited, ping, requireSandbox } from './harness.js';

requireSandbox();

const PROBE = join(FIXTURES, 'l2probe.py');
const BROADCAST = 'ff:ff:ff:ff:ff:ff';

interface Listener {
  child: ChildProcess;
  lines: string[];
  done: Promise<void>;
}

async function listen(c: Container): Promise<Listener> {
  const lines: string[] = [];
  const child = await c.startUntil([PYTHON, PROBE, 'listen', 'eth0'], (l) => l === 'ready');
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  return { child, lines, done: exited(child) };
}

function send(c: Container, src: string, dst: string, tag: string, count = 1): Promise<string> {
  return c.execOk([PYTHON, PROBE, 'send', 'eth0', src, dst, tag, String(count)]);
}

/** Which of the listeners received a frame with `tag` (by container index). */
function receivers(listeners: Listener[], tag: string): number[] {
  return listeners.flatMap((l, i) => (l.lines.some((line) => line.endsWith(` ${tag}`)) ? [i] : []));
}

describe('switching between three containers', () => {
  let daemon: Daemon;
  const c: Container[] = [];
  const macs: string[] = [];

  beforeAll(async () => {
    c.push(...(await Promise.all([Container.start(), Container.start(), Container.start()])));
    daemon = await Daemon.start({ args: ['--ageing-time', '2'] });
    for (let i = 0; i < 3; i++) {
      await daemon.attach(c[i], `p${i}`, `10.0.2.${i + 11}/24`, ['--mac', `02:00:00:00:00:0${i + 1}`]);
      macs.push(`02:00:00:00:00:0${i + 1}`);
    }
  });

  afterAll(cleanup);

  /**
   * Starts listeners on all three, lets `act` send frames from container 0, then ends the round
   * with END broadcasts (from 0, which reaches 1 and 2; from 1, which reaches 0). Frames from one
   * port are delivered in order, so a listener that saw END has seen everything sent before it.
   */
  async function round(act: () => Promise<void>): Promise<Listener[]> {
    const ls = await Promise.all(c.map((x) => listen(x)));
    await act();
    await send(c[0], macs[0], BROADCAST, 'END');
    await send(c[1], macs[1], BROADCAST, 'END');
    await Promise.all(ls.map((l) => l.done));
    return ls;
  }

  it('floods broadcast and unknown unicast to the two other ports, never back to the ingress one', async () => {
    const ls = await round(async () => {
      await send(c[0], macs[0], BROADCAST, 'BCAST');
      await send(c[0], macs[0], '02:00:00:00:09:99', 'UNKNOWN');
      await send(c[0], macs[0], '01:00:5e:01:02:03', 'MCAST4');
      await send(c[0], macs[0], '33:33:00:00:00:fb', 'MCAST6');
    });
    expect(receivers(ls, 'BCAST')).toEqual([1, 2]);
    expect(receivers(ls, 'UNKNOWN')).toEqual([1, 2]);
    expect(receivers(ls, 'MCAST4')).toEqual([1, 2]);
    expect(receivers(ls, 'MCAST6')).toEqual([1, 2]);
  });

  it('sends known unicast to its port only', async () => {
    const ls = await round(async () => {
      await send(c[0], macs[0], macs[2], 'KNOWN');
    });
    expect(receivers(ls, 'KNOWN')).toEqual([2]);
  });

  it('relays 01:80:C2:00:00:02 (and the rest of :01-:0F) to nobody, and counts it', async () => {
    const before = await daemon.cliJson<Array<{ name: string; counters: { drops: Record<string, number> } }>>(['ports']);
    const ls = await round(async () => {
      await send(c[0], macs[0], '01:80:c2:00:00:02', 'LACP');
      await send(c[0], macs[0], '01:80:c2:00:00:0e', 'LLDP');
      await send(c[0], macs[0], '01:80:c2:00:00:10', 'ALLBRIDGES');
    });
    expect(receivers(ls, 'LACP')).toEqual([]);
    expect(receivers(ls, 'LLDP')).toEqual([]);
    expect(receivers(ls, 'ALLBRIDGES')).toEqual([1, 2]);
    const after = await daemon.cliJson<Array<{ name: string; counters: { drops: Record<string, number> } }>>(['ports']);
    const drops = (ports: typeof before) => ports.find((p) => p.name === 'p0')?.counters.drops.reserved_dst ?? 0;
    expect(drops(after) - drops(before)).toBe(2);
  });

  it('drops frames with a multicast or all-zero source and does not learn them', async () => {
    const ls = await round(async () => {
      await send(c[0], '01:00:5e:00:00:01', BROADCAST, 'MCSRC');
      await send(c[0], '00:00:00:00:00:00', BROADCAST, 'ZEROSRC');
    });
    expect(receivers(ls, 'MCSRC')).toEqual([]);
    expect(receivers(ls, 'ZEROSRC')).toEqual([]);
    const fdb = await daemon.cliOk(['fdb']);
    expect(fdb).not.toContain('01:00:5e:00:00:01');
    expect(fdb).not.toContain('00:00:00:00:00:00');
  });

  it('applies a MAC move at once', async () => {
    const roaming = '02:00:00:00:0a:0a';
    await send(c[0], roaming, BROADCAST, 'HELLO-FROM-0');
    expect(await daemon.cliOk(['fdb'])).toMatch(new RegExp(`^${roaming} dev p0 `, 'm'));
    await send(c[2], roaming, BROADCAST, 'HELLO-FROM-2');
    expect(await daemon.cliOk(['fdb'])).toMatch(new RegExp(`^${roaming} dev p2 `, 'm'));
    const ls = await round(async () => {
      await send(c[0], macs[0], roaming, 'TO-ROAMING');
    });
    expect(receivers(ls, 'TO-ROAMING')).toEqual([2]);
  });

  it('ages out an entry that is not refreshed (ageing time 2 s)', async () => {
    const once = '02:00:00:00:0b:0b';
    await send(c[1], once, BROADCAST, 'ONCE');
    expect(await daemon.cliOk(['fdb'])).toContain(once);
    // The sweep runs every 500 ms with a 2 s ageing time; the entry must go within a few seconds.
    const deadline = Date.now() + 8000;
    let fdb = '';
    do {
      fdb = await daemon.cliOk(['fdb']);
    } while (fdb.includes(once) && Date.now() < deadline);
    expect(fdb).not.toContain(once);
  });
});

describe('--icc=false', () => {
  afterAll(cleanup);

  it('blocks container-to-container frames and counts them', async () => {
    const [a, b] = await Promise.all([Container.start(), Container.start()]);
    const daemon = await Daemon.start({ args: ['--icc=false'] });
    await daemon.attach(a, 'a', '10.0.2.11/24');
    await daemon.attach(b, 'b', '10.0.2.12/24');
    expect(await ping(a, '10.0.2.12', 2)).toBe(0);
    const ports = await daemon.cliJson<Array<{ name: string; counters: { drops: Record<string, number> } }>>(['ports']);
    const blocked = ports.reduce((n, p) => n + p.counters.drops.icc_blocked, 0);
    expect(blocked).toBeGreaterThan(0);
  });
});
