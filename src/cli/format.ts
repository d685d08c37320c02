/** Text output of the CLI: aligned tables and the `bridge fdb show` style. */
import type { PortInfo } from '../control/daemon.js';
import type { FdbEntrySnapshot } from '../switch/fdb.js';

/** Left-aligned columns separated by two spaces. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatPorts(ports: PortInfo[]): string {
  if (ports.length === 0) return 'no ports (attach a container with: usernet attach --pid PID)';
  const rows = ports.map((p) => {
    const c = p.counters;
    const drops = c ? Object.entries(c.drops).filter(([, n]) => n > 0).map(([k, n]) => `${k}=${n}`).join(',') : '';
    return [
      p.name,
      p.state,
      p.ifname,
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
  return table(['NAME', 'STATE', 'IFNAME', 'CONTAINER', 'MAC', 'MTU', 'OFFLOAD', 'RX_FRAMES', 'RX_BYTES', 'TX_FRAMES', 'TX_BYTES', 'DROPS'], rows);
}

/** One line per entry, like `bridge fdb show` (with the entry's age, like `bridge -s fdb`). */
export function formatFdb(entries: FdbEntrySnapshot[], bridge = 'usernet'): string {
  return entries
    .map((e) => (e.static ? `${e.mac} dev ${e.port} master ${bridge} permanent` : `${e.mac} dev ${e.port} master ${bridge} age ${e.age.toFixed(2)}s`))
    .join('\n');
}
