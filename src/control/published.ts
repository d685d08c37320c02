/**
 * Published ports: host listeners whose connections and datagrams the NAT carries to an
 * attachment's address (DNAT). They are part of the attachment's record (`ports`), so they
 * listen again after a restart, and they go with the attachment. The listeners themselves are
 * the NAT's (`nat.publisher`); this module records, checks and lists them.
 */
import type { Logger } from 'pino';
import { ConflictError, NotFoundError, UsernetError } from '../errors.js';
import { DEFAULT_NETWORK } from '../gateway/network.js';
import type { Nat } from '../nat/nat.js';
import type { PublishedPort, PublishTarget } from '../nat/publish.js';
import { expandPublishSpec, formatMapping, parsePublishSpec, specSelects, type PortMapping } from '../nat/publish-spec.js';
import { ipv4ToString, parseIpv4 } from '../packet/ip-address.js';
import type { Networks } from './networks.js';
import type { PublishedPortInfo } from './protocol.js';
import type { StateRecorder } from './records.js';
import type { AttachmentRecord } from './state.js';

/** What this module needs of an attachment: its record, which it replaces once a change is saved. */
export interface PublishableAttachment {
  record: AttachmentRecord;
}

export interface PublishedPortsOptions {
  log: Logger;
  nat: Nat;
  networks: Networks;
  records: StateRecorder;
  /** The attachment of that name, or undefined. */
  attachment(name: string): PublishableAttachment | undefined;
}

/** The specs parsed and expanded, every error before anything opens. */
export function parseSpecs(specs: readonly string[]): PortMapping[] {
  const out: PortMapping[] = [];
  for (const spec of specs) out.push(...expandPublishSpec(parsePublishSpec(spec)));
  return out;
}

export function publishedInfo(p: PublishedPort): PublishedPortInfo {
  const m = p.mapping;
  return {
    name: p.target.name,
    network: p.target.network,
    proto: m.proto,
    hostIp: m.hostIp,
    hostPort: m.hostPort,
    containerIp: ipv4ToString(p.target.containerIp),
    containerPort: m.containerPort,
    spec: formatMapping(m),
    state: p.listening ? 'listening' : 'down',
    ...(p.error && !p.listening ? { error: p.error } : {}),
    flows: p.stats.flows,
    refused: p.stats.refused,
  };
}

export class PublishedPorts {
  private readonly log: Logger;
  private readonly nat: Nat;

  constructor(private readonly o: PublishedPortsOptions) {
    this.log = o.log;
    this.nat = o.nat;
  }

  /** Where an attachment's published ports lead: its address on its network. */
  target(a: PublishableAttachment): PublishTarget {
    const r = a.record;
    const net = this.o.networks.get(r.network ?? DEFAULT_NETWORK);
    if (!r.ip) throw new UsernetError('ERR_NO_ADDRESS', `port ${r.name} has no address on network ${net.name}: nothing to publish to`);
    return { name: r.name, network: net.name, gw: net.gateway, containerIp: parseIpv4(r.ip), container: `${net.name}/${r.ip}` };
  }

  /** Refuses mappings that another attachment already publishes (checked before an attach opens anything). */
  checkFree(mappings: readonly PortMapping[]): void {
    for (const m of mappings) {
      const other = this.nat.publisher.clashWith(m);
      if (other) throw new ConflictError(`cannot publish ${formatMapping(m)}: it is already published to ${other.target.name} port ${other.mapping.containerPort}`, 'ERR_PORT_PUBLISHED');
    }
  }

  /** Opens the listeners of a new attachment (all or nothing); the caller records them. */
  open(a: PublishableAttachment, mappings: PortMapping[]): Promise<PublishedPort[]> {
    return this.nat.publisher.publish(this.target(a), mappings);
  }

  /** Closes every listener of an attachment (detached, gone, or a failed attach). */
  removeAll(name: string, why: string): Promise<void> {
    return this.nat.publisher.removeTarget(name, why);
  }

  /**
   * Publishes to any address of an attachment's network, not only the attachment's own (what
   * slirp4netns's add_hostfwd allows with guest_addr); not recorded in the state file. The
   * listeners go with the attachment.
   */
  async publishToAddress(name: string, containerIp: number, mappings: PortMapping[]): Promise<PublishedPort[]> {
    const a = this.o.attachment(name);
    if (!a) throw new NotFoundError(`no port named ${name}`, 'ERR_NO_SUCH_PORT');
    const net = this.o.networks.get(a.record.network ?? DEFAULT_NETWORK);
    const ip = ipv4ToString(containerIp);
    return this.nat.publisher.publish({ name, network: net.name, gw: net.gateway, containerIp, container: `${net.name}/${ip}` }, mappings);
  }

  /** Publishes ports to an attachment (all or nothing) and records them. */
  async publish(name: string, specs: readonly string[]): Promise<PublishedPort[]> {
    const a = this.o.attachment(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    const mappings = parseSpecs(specs);
    const opened = await this.nat.publisher.publish(this.target(a), mappings);
    if (this.o.attachment(name) !== a) {
      // Detached while the listeners were opening.
      await Promise.all(opened.map((p) => this.nat.publisher.unpublish(p, 'container gone')));
      throw new NotFoundError(`port ${name} was detached meanwhile`, 'ERR_NO_SUCH_PORT');
    }
    const ports = [...(a.record.ports ?? []), ...opened.map((p) => ({ ...p.mapping }))];
    try {
      this.o.records.commit(this.o.records.snapshot({ replace: { ...a.record, ports } }));
    } catch (err) {
      await Promise.all(opened.map((p) => this.nat.publisher.unpublish(p, 'publish failed')));
      throw err;
    }
    a.record.ports = ports;
    return opened;
  }

  /**
   * Removes published ports of an attachment: those the specs name (all of them must exist; a
   * spec without a host port matches any) or all (`null`). Returns them as specs.
   */
  async unpublish(name: string, specs: readonly string[] | null): Promise<string[]> {
    const a = this.o.attachment(name);
    if (!a) throw new NotFoundError(`no port named ${name} (see usernet ports)`, 'ERR_NO_SUCH_PORT');
    const live = this.nat.publisher.portsOf(name);
    let chosen: PublishedPort[];
    if (specs === null) chosen = live;
    else {
      chosen = [];
      for (const m of parseSpecs(specs)) {
        // Without a host port, every mapping of that container port (and host address) matches.
        const found = live.filter((x) => !chosen.includes(x) && specSelects(m, x.mapping));
        if (found.length === 0) {
          // Name what is there for that container port: usually another host address.
          const near = live.filter((x) => x.mapping.proto === m.proto && x.mapping.containerPort === m.containerPort).map((x) => formatMapping(x.mapping));
          throw new NotFoundError(
            `${name} has no published port ${formatMapping(m).replace(/:0:/, '::')}${near.length ? `; it has ${near.join(', ')} (give the host address as published)` : ''} (see usernet publish --list ${name})`,
            'ERR_NOT_PUBLISHED',
          );
        }
        // A spec without a host port, or with a host range, selects every mapping it matches.
        chosen.push(...(m.hostPort === 0 || m.hostPortEnd !== undefined ? found : found.slice(0, 1)));
      }
    }
    const removed = chosen.map((p) => formatMapping(p.mapping));
    const kept = (a.record.ports ?? []).filter((m) => !removed.includes(formatMapping(m)));
    const record: AttachmentRecord = { ...a.record, ports: kept };
    if (kept.length === 0) delete record.ports;
    // Recorded first: if that fails, the ports stay published and recorded as they were.
    this.o.records.commit(this.o.records.snapshot({ replace: record }));
    a.record = record;
    await Promise.all(chosen.map((p) => this.nat.publisher.unpublish(p, 'unpublished')));
    return removed;
  }

  /** `publish.list`: every published port, or one attachment's. */
  list(name?: string): PublishedPortInfo[] {
    return this.nat.publisher
      .list()
      .filter((p) => name === undefined || p.target.name === name)
      .map(publishedInfo);
  }

  /** After a restart: every recorded mapping listens again (or is retried until it can). */
  async restore(attachments: Iterable<PublishableAttachment>): Promise<void> {
    for (const a of attachments) {
      const ports = a.record.ports;
      if (!ports || ports.length === 0) continue;
      let target: PublishTarget;
      try {
        target = this.target(a);
      } catch (err) {
        this.log.error({ port: a.record.name, err: (err as Error).message }, 'published ports not restored');
        continue;
      }
      await this.nat.publisher.restore(target, ports);
    }
  }
}
