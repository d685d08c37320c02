import { describe, expect, it } from 'vitest';
import { formatFdb, formatPorts, table } from '../../../src/cli/format.js';
import type { PortInfo } from '../../../src/control/protocol.js';

describe('table', () => {
  it('left-aligns columns separated by two spaces, the last column unpadded', () => {
    const t = table(['NAME', 'MAC', 'X'], [
      ['c1', '02:00:00:00:00:0a', '1'],
      ['longname', 'm', '12345'],
    ]);
    expect(t.split('\n')).toEqual([
      'NAME      MAC                X',
      'c1        02:00:00:00:00:0a  1',
      'longname  m                  12345',
    ]);
  });

  it('sizes a column by its header when the cells are shorter', () => {
    expect(table(['LONGHEADER', 'B'], [['a', 'b']]).split('\n')).toEqual(['LONGHEADER  B', 'a           b']);
  });

  it('has no trailing spaces, even with an empty last cell', () => {
    const lines = table(['A', 'B'], [['x', '']]).split('\n');
    expect(lines).toEqual(['A  B', 'x']);
    for (const l of lines) expect(l).toBe(l.trimEnd());
  });

  it('prints only the header for no rows', () => {
    expect(table(['A', 'BB'], [])).toBe('A  BB');
  });

  it('aligns every column start across rows', () => {
    const rows = [['a', 'bbbbb', 'c', 'd'], ['aaaa', 'b', 'ccccccc', 'd']];
    const lines = table(['H1', 'H2', 'H3', 'H4'], rows).split('\n');
    const starts = (l: string): number[] => [...l.matchAll(/(?:^|\s{2,})(\S)/g)].map((m) => (m.index ?? 0) + m[0].length - 1);
    const first = starts(lines[0]);
    for (const l of lines) expect(starts(l)).toEqual(first);
  });
});

describe('formatFdb', () => {
  it('prints lines like `bridge fdb show` with the age', () => {
    const text = formatFdb([
      { mac: '02:00:00:00:00:0a', port: 'c1', static: false, age: 1.234, network: 'default' },
      { mac: '02:00:00:00:00:0b', port: 'c2', static: false, age: 0, network: 'default' },
      { mac: '02:42:ac:11:00:01', port: 'gw', static: true, age: 0, network: 'default' },
    ]);
    expect(text.split('\n')).toEqual([
      '02:00:00:00:00:0a dev c1 master default age 1.23s',
      '02:00:00:00:00:0b dev c2 master default age 0.00s',
      '02:42:ac:11:00:01 dev gw master default permanent',
    ]);
  });

  it('names each entry\'s network as the bridge', () => {
    expect(formatFdb([{ mac: 'aa:bb:cc:dd:ee:ff', port: 'p', static: false, age: 300, network: 'br0' }])).toBe('aa:bb:cc:dd:ee:ff dev p master br0 age 300.00s');
  });

  it('prints nothing for an empty table', () => {
    expect(formatFdb([])).toBe('');
  });
});

describe('formatPorts', () => {
  const counters = {
    rx_frames: 10,
    rx_bytes: 1000,
    tx_frames: 20,
    tx_bytes: 2000,
    rx_flooded: 1,
    rx_unicast: 9,
    drops: { runt: 0, icc_blocked: 2, mtu_exceeded: 3 },
    drops_total: 5,
  };
  const up: PortInfo = { name: 'c1', network: 'default', kind: 'container', ifname: 'eth0', ip: '10.0.2.100', container: 'pid 42', mac: '02:00:00:00:00:0a', mtu: 1500, offloads: true, state: 'up', counters };
  const clean: PortInfo = { ...up, name: 'c2', counters: { ...counters, drops: { runt: 0 }, drops_total: 0 }, offloads: false };
  const down: PortInfo = { ...up, name: 'c3', ip: null, state: 'down', counters: null, error: 'namespace gone' };

  it('says so when there are no ports', () => {
    expect(formatPorts([])).toBe('no ports');
  });

  it('prints a header and one aligned row per port', () => {
    const lines = formatPorts([up, clean, down]).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0].split(/\s+/)).toEqual(['NAME', 'NETWORK', 'STATE', 'IFNAME', 'IP', 'CONTAINER', 'MAC', 'MTU', 'OFFLOAD', 'RX_FRAMES', 'RX_BYTES', 'TX_FRAMES', 'TX_BYTES', 'DROPS']);
    expect(lines[1].split(/\s{2,}/)).toEqual(['c1', 'default', 'up', 'eth0', '10.0.2.100', 'pid 42', '02:00:00:00:00:0a', '1500', 'on', '10', '1000', '20', '2000', 'icc_blocked=2,mtu_exceeded=3']);
    expect(lines[2].split(/\s{2,}/)).toEqual(['c2', 'default', 'up', 'eth0', '10.0.2.100', 'pid 42', '02:00:00:00:00:0a', '1500', 'off', '10', '1000', '20', '2000', '0']);
    expect(lines[3].split(/\s{2,}/)).toEqual(['c3', 'default', 'down', 'eth0', '-', 'pid 42', '02:00:00:00:00:0a', '1500', 'on', '-', '-', '-', '-', 'namespace gone']);
    const col = lines[0].indexOf('DROPS');
    for (const l of lines.slice(1)) expect(l[col - 1]).toBe(' ');
  });
});
