/** Text output of the CLI: aligned tables and the `bridge fdb show` style. */
import type { FdbEntryInfo, PortInfo, PublishedPortInfo } from '../control/protocol.js';
import { formatHostAddress } from '../nat/publish-spec.js';

/** Left-aligned columns separated by two spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatPorts(ports: PortInfo[]): string {
  if (ports.length === 0) return 'no ports';
  const rows = ports.map((p) => {
    const c = p.counters;
    const drops = c ? Object.entries(c.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`).join(',') : '';
    return [
      p.name,
      p.network,
      p.kind === 'gateway' ? 'gateway' : p.state,
      p.ifname,
      p.ip ?? '-',
      p.container,
      p.mac,
      String(p.mtu),
      p.offloads ? 'on' : 'off',
      c ? String(c.rx_frames) : '-',
      c ? String(c.rx_bytes) : '-',
      c ? String(c.tx_frames) : '-',
      c ? String(c.tx_bytes) : '-',
      c ? (drops === '' ? '0' : drops) : (p.error ?? '-'),
    ];
  });
  return table(['NAME', 'NETWORK', 'STATE', 'IFNAME', 'IP', 'CONTAINER', 'MAC', 'MTU', 'OFFLOAD', 'RX_FRAMES', 'RX_BYTES', 'TX_FRAMES', 'TX_BYTES', 'DROPS'], rows);
}

/** One line per entry, like `bridge fdb show` (with the entry's age, like `bridge -s fdb`); the network is the bridge. */
export function formatFdb(entries: FdbEntryInfo[]): string {
  return entries
    .map((e) => (e.static ? `${e.mac} dev ${e.port} master ${e.network} permanent` : `${e.mac} dev ${e.port} master ${e.network} age ${e.age.toFixed(2)}s`))
    .join('\n');
}

export interface NetworkInfo {
  name: string;
  subnet: string;
  gateway: string;
  dns: string | null;
  range: string;
  mtu: number;
  icc: boolean;
  ports: number;
  dnsSearch: string[];
}

export function formatNetworks(networks: NetworkInfo[]): string {
  return table(
    ['NAME', 'SUBNET', 'GATEWAY', 'DNS', 'RANGE', 'MTU', 'ICC', 'PORTS', 'SEARCH'],
    networks.map((n) => [n.name, n.subnet, n.gateway, n.dns ?? 'off', n.range, String(n.mtu), n.icc ? 'on' : 'off', String(n.ports), n.dnsSearch.join(',') || '-']),
  );
}

/** Published ports, one per line, `docker port` style with the container and the state. */
export function formatPublished(ports: PublishedPortInfo[]): string {
  if (ports.length === 0) return 'no published ports';
  return table(
    ['NAME', 'PROTO', 'HOST', 'CONTAINER', 'STATE', 'FLOWS'],
    ports.map((p) => [
      p.name,
      p.proto,
      formatHostAddress(p),
      `${p.containerIp}:${p.containerPort}`,
      p.state === 'listening' ? 'listening' : `down: ${p.error ?? 'not listening'}`,
      p.refused ? `${p.flows} (${p.refused} refused)` : String(p.flows),
    ]),
  );
}

/**
 * `usernet status` as text: one `key: value` line per field; a list on one line, comma-separated
 * (`warnings`, one per line, indented); a nested object (the NAT's counters) as an indented block
 * under its key, so no value ever prints as `[object Object]`.
 */
export function formatStatus(status: Record<string, unknown>, indent = ''): string {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(status)) {
    if (Array.isArray(value)) {
      if (key === 'warnings') {
        lines.push(`${indent}${key}: ${value.length === 0 ? 'none' : ''}`.trimEnd());
        for (const w of value) lines.push(`${indent}  ${String(w)}`);
      } else {
        lines.push(`${indent}${key}: ${value.length === 0 ? '-' : value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v))).join(', ')}`);
      }
    } else if (typeof value === 'object' && value !== null) {
      if (Object.keys(value).length === 0) {
        lines.push(`${indent}${key}: -`);
        continue;
      }
      lines.push(`${indent}${key}:`);
      lines.push(formatStatus(value as Record<string, unknown>, `${indent}  `));
    } else {
      lines.push(`${indent}${key}: ${String(value)}`);
    }
  }
  return lines.join('\n');
}
