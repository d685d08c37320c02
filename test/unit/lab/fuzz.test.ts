/**
 * Robustness through the library: a million random and mutated frames from a container into the
 * gateway and the NAT, against the in-memory outside, with real host sockets forbidden (and the
 * attempts counted: the count must be 0). Nothing may throw; the ingress port's counters must
 * account for every frame; once the clock has run past every timeout, no flow is left.
 */
import { describe, expect, it } from 'vitest';
import { Lab } from '../../../src/lab/lab.js';
import { HostSocketGuard } from '../../../src/lab/host-guard.js';
import { SeededRandom } from '../../../src/platform/random.js';
import { snapshotCounters } from '../../../src/link/counters.js';

const FRAMES = Number(process.env.USERNET_FUZZ_FRAMES ?? 1_000_000);

describe('a million hostile frames through the gateway and the NAT', () => {
  it('nothing throws, every frame is accounted for, nothing is left behind, no real socket is touched', async () => {
    const guard = new HostSocketGuard().enable();
    try {
      const lab = new Lab({ seed: 20261202, dnsUpstreams: ['203.0.113.53:53'], nat: { maxPerContainer: 4096 } });
      const world = lab.world;
      world.host('203.0.113.10').serveHttp(80, () => 'hello from outside\n');
      world.host('203.0.113.20').bindUdp(7, (d) => d.reply(d.data));
      const net = lab.addNetwork();
      const victim = net.addHost('c1');
      const peer = net.addHost('c2');
      // A corpus of real frames: what a container sends doing ordinary things.
      const corpus: Buffer[] = [];
      const probe = lab.probe(victim.port, { direction: 'in' });
      await lab.run(victim.dhcp());
      await lab.run(peer.dhcp());
      await lab.run(victim.ping('10.0.2.2'));
      await lab.run(victim.ping('203.0.113.10')).catch(() => 0);
      await lab.run(victim.udpRequest('203.0.113.20', 7, 'echo me')).catch(() => null);
      await lab.run(victim.udpRequest('10.0.2.3', 53, Buffer.from('00010100000100000000000003777777076578616d706c6503636f6d0000010001', 'hex'))).catch(() => null);
      const page = await lab.run(victim.httpGet('203.0.113.10', 80, '/'));
      expect(page.body.toString()).toBe('hello from outside\n');
      await lab.run(victim.ping(peer.address));
      for (const f of probe.seen) corpus.push(f.bytes);
      probe.stop();
      expect(corpus.length).toBeGreaterThan(10);

      const rnd = new SeededRandom('fuzz');
      const port = victim.port;
      // The scripted container stops answering while the fuzz runs, so that every frame the
      // port receives is one of ours.
      const answering = port.onFrame;
      port.onFrame = null;
      lab.advance(10);
      const before = snapshotCounters(port.counters);
      const scratch = Buffer.alloc(2048);
      for (let i = 0; i < FRAMES; i++) {
        const kind = rnd.below(10);
        let frame: Buffer;
        if (kind < 2) {
          // Random bytes, sometimes behind a plausible Ethernet header.
          const len = rnd.below(1600);
          frame = scratch.subarray(0, len);
          rnd.fill(frame);
          if (kind === 1 && len >= 14) {
            corpus[0].copy(frame, 0, 0, 12);
            frame.writeUInt16BE([0x0800, 0x0806, 0x86dd, 0x8100][rnd.below(4)], 12);
          }
        } else {
          const base = corpus[rnd.below(corpus.length)];
          const cut = kind === 2 ? rnd.below(base.length + 1) : base.length;
          const extra = kind === 3 ? rnd.below(64) : 0;
          frame = scratch.subarray(0, cut + extra);
          base.copy(frame, 0, 0, cut);
          if (extra) rnd.fill(frame.subarray(cut));
          const flips = 1 + rnd.below(kind >= 7 ? 1 : 4);
          for (let k = 0; k < flips && frame.length > 0; k++) {
            // Mostly in the headers, where the parsers look.
            const at = rnd.below(Math.min(frame.length, kind >= 6 ? 64 : frame.length));
            frame[at] = kind === 9 ? rnd.below(256) : frame[at] ^ (1 << rnd.below(8));
          }
        }
        port.inject(frame);
        if ((i & 1023) === 1023) lab.advance(50);
      }
      const after = snapshotCounters(port.counters);
      // The mutations reached every layer: the gateway's parsers, the NAT, its TCP and UDP sides.
      const gw = net.network.gateway.stats;
      const nat = lab.nat.stats;
      if (process.env.USERNET_FUZZ_REPORT) console.log({ gw, nat, tcp: lab.nat.tcp.stats, udp: lab.nat.udp.stats, icmp: lab.nat.icmp.stats });
      expect(gw.ipv4_malformed).toBeGreaterThan(FRAMES / 1000);
      expect(gw.arp_malformed + gw.arp_ignored).toBeGreaterThan(100);
      expect(nat.routed).toBeGreaterThan(FRAMES / 100);
      expect(nat.badChecksums).toBeGreaterThan(FRAMES / 1000);
      expect(lab.nat.tcp.stats.syns + lab.nat.tcp.stats.unknownFlowResets).toBeGreaterThan(FRAMES / 20_000);
      expect(lab.nat.udp.stats.datagramsOut).toBeGreaterThan(100);
      port.onFrame = answering;
      const injected = FRAMES;
      expect(after.rx_frames - before.rx_frames).toBe(injected);
      // Every received frame was dropped for a counted reason, forwarded to one port, or flooded.
      const d = (k: string): number => after.drops[k] - before.drops[k];
      const accounted =
        d('runt') + d('bad_src_mac') + d('reserved_dst') + d('same_port') + d('spoofed_src') + d('icc_blocked') + (after.rx_unicast - before.rx_unicast) + (after.rx_flooded - before.rx_flooded);
      expect(accounted).toBe(injected);
      expect(d('internal_error')).toBe(0);
      // The data path still works after all that.
      const again = await lab.run(victim.httpGet('203.0.113.10', 80, '/'));
      expect(again.status).toBe(200);
      // Past every timeout (TCP established 2 h 4 min), nothing is left.
      lab.advance(3 * 3600_000);
      expect(lab.conntrack()).toEqual([]);
      expect(lab.nat.tcp.active).toBe(0);
      expect(lab.nat.udp.active).toBe(0);
      await lab.close();
    } finally {
      guard.disable();
    }
    expect(guard.attempts).toBe(0);
  }, 120_000);
});
