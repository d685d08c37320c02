/**
 * A guard against real host sockets, for tests that must stay in memory (fuzzing the NAT against
 * the in-memory outside, say): while it is on, every attempt to open, bind, connect, listen on or
 * send from a real socket — node:net, node:dgram, or loading a native addon (usernet's own opens
 * its sockets) — throws a HostSocketForbiddenError and is counted. A test turns it on, does its
 * work, turns it off and asserts `attempts === 0`: a count, because code that catches the error
 * (the NAT turns a failed connect into an ICMP error) would otherwise hide it.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { UsernetError } from '../errors.js';

export class HostSocketForbiddenError extends UsernetError {}

type Patch = { target: object; key: string; original: unknown };

export class HostSocketGuard {
  /** Attempts refused while on, by what was attempted ("net.Socket.connect", …). */
  readonly attemptsBy = new Map<string, number>();
  private patches: Patch[] = [];

  get attempts(): number {
    let n = 0;
    for (const v of this.attemptsBy.values()) n += v;
    return n;
  }

  get active(): boolean {
    return this.patches.length > 0;
  }

  /** Turns the guard on (idempotent). */
  enable(): this {
    if (this.active) return this;
    this.patch(net.Socket.prototype, 'connect', 'net.Socket.connect');
    this.patch(net.Server.prototype, 'listen', 'net.Server.listen');
    this.patch(dgram.Socket.prototype, 'bind', 'dgram.Socket.bind');
    this.patch(dgram.Socket.prototype, 'connect', 'dgram.Socket.connect');
    this.patch(dgram.Socket.prototype, 'send', 'dgram.Socket.send');
    this.patch(process, 'dlopen', 'process.dlopen (a native addon)');
    return this;
  }

  /** Turns it off, restoring what it replaced. */
  disable(): this {
    for (const p of this.patches.reverse()) (p.target as Record<string, unknown>)[p.key] = p.original;
    this.patches = [];
    return this;
  }

  private patch(target: object, key: string, what: string): void {
    const t = target as Record<string, unknown>;
    const original = t[key];
    this.patches.push({ target, key, original });
    t[key] = () => {
      this.attemptsBy.set(what, (this.attemptsBy.get(what) ?? 0) + 1);
      throw new HostSocketForbiddenError('ERR_HOST_SOCKET_FORBIDDEN', `${what}: real host sockets are forbidden while the HostSocketGuard is on`);
    };
  }
}
