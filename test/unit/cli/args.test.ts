import { describe, expect, it } from 'vitest';
import { boolFlag, intFlag, parse, stringFlag, UsageError } from '../../../src/cli/args.js';
import { InvalidArgumentError } from '../../../src/errors.js';

const OPTIONS = {
  socket: { type: 'string' as const },
  json: { type: 'boolean' as const },
  count: { type: 'string' as const, short: 'c' },
  write: { type: 'string' as const, short: 'w' },
  icc: { type: 'string' as const },
  mtu: { type: 'string' as const },
};

function usage(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as UsageError).code).toBe('ERR_USAGE');
    expect((err as UsageError).name).toBe('UsageError');
    expect((err as Error).message).not.toContain('\n');
    return err as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('parse', () => {
  it('parses options and positionals', () => {
    const r = parse('capture', ['--socket', '/s', '-c', '5', '--write=out.pcap', '--json', 'NAME'], OPTIONS, 1);
    expect(r.values).toMatchObject({ socket: '/s', count: '5', write: 'out.pcap', json: true });
    expect(r.positionals).toEqual(['NAME']);
  });

  it('accepts --flag=value style, including --icc=false', () => {
    expect(parse('daemon', ['--icc=false', '--mtu=9000'], OPTIONS).values).toMatchObject({ icc: 'false', mtu: '9000' });
    expect(parse('capture', ['-c5'], OPTIONS).values.count).toBe('5');
  });

  it('turns an unknown long option into a one-line UsageError naming command and flag', () => {
    const e = usage(() => parse('ports', ['--jsn'], OPTIONS));
    expect(e.message).toBe('ports: unknown option --jsn (see usernet ports --help)');
  });

  it('turns an unknown short option into a UsageError naming it', () => {
    expect(usage(() => parse('fdb', ['-x'], OPTIONS)).message).toBe('fdb: unknown option -x (see usernet fdb --help)');
  });

  it('turns a missing value into a UsageError naming the flag', () => {
    expect(usage(() => parse('attach', ['--socket'], OPTIONS)).message).toBe('attach: option --socket needs a value (see usernet attach --help)');
    expect(usage(() => parse('daemon', ['--icc'], OPTIONS)).message).toBe('daemon: option --icc needs a value (see usernet daemon --help)');
  });

  it('names a flag with a short form cleanly when its value is missing', () => {
    for (const args of [['-c'], ['--count']]) {
      const e = usage(() => parse('capture', args, OPTIONS));
      expect(e.message).toBe('capture: option --count needs a value (see usernet capture --help)');
    }
  });

  it('does not take the next option as a value', () => {
    expect(usage(() => parse('daemon', ['--icc', '--mtu', '9000'], OPTIONS)).message).toMatch(/^daemon: option --icc needs a value/);
  });

  it('says a boolean flag takes no value', () => {
    const e = usage(() => parse('ports', ['--json=yes'], OPTIONS));
    expect(e.message).toBe('ports: option --json does not take a value (see usernet ports --help)');
  });

  it('rejects positionals beyond the allowed number', () => {
    expect(usage(() => parse('ports', ['extra'], OPTIONS)).message).toBe('ports: unexpected argument "extra" (see usernet ports --help)');
    expect(usage(() => parse('detach', ['a', 'b'], OPTIONS, 1)).message).toBe('detach: unexpected argument "b" (see usernet detach --help)');
    expect(parse('detach', ['a'], OPTIONS, 1).positionals).toEqual(['a']);
  });

  it('takes arguments after -- as positionals', () => {
    expect(parse('detach', ['--', '--weird'], OPTIONS, 1).positionals).toEqual(['--weird']);
  });
});

describe('intFlag', () => {
  it('is undefined when the flag is absent', () => {
    expect(intFlag('daemon', 'mtu', undefined, 68, 65521)).toBeUndefined();
  });

  it('accepts whole numbers in range, both ends included', () => {
    expect(intFlag('daemon', 'mtu', '68', 68, 65521)).toBe(68);
    expect(intFlag('daemon', 'mtu', '65521', 68, 65521)).toBe(65521);
    expect(intFlag('daemon', 'mtu', '09000', 68, 65521)).toBe(9000);
  });

  it.each(['', '-1', '1.5', '1e3', '0x10', ' 5', 'abc', '5 '])('rejects %j as not a whole number', (v) => {
    expect(usage(() => intFlag('daemon', 'mtu', v, 0, 100000)).message).toBe(`daemon: --mtu must be a whole number, not "${v}"`);
  });

  it('rejects a boolean or list value', () => {
    expect(usage(() => intFlag('daemon', 'mtu', true, 0, 10)).message).toMatch(/--mtu must be a whole number/);
    expect(usage(() => intFlag('daemon', 'mtu', ['1'], 0, 10)).message).toMatch(/--mtu must be a whole number/);
  });

  it('rejects values out of range with the range', () => {
    expect(usage(() => intFlag('daemon', 'mtu', '67', 68, 65521)).message).toBe('daemon: --mtu must be between 68 and 65521, not 67');
    expect(usage(() => intFlag('daemon', 'mtu', '65522', 68, 65521)).message).toBe('daemon: --mtu must be between 68 and 65521, not 65522');
    expect(usage(() => intFlag('attach', 'pid', '0', 1, 0x3fffffff)).message).toMatch(/^attach: --pid must be between 1 and/);
    expect(usage(() => intFlag('attach', 'pid', '99999999999999999999', 1, 0x3fffffff)).message).toMatch(/^attach: --pid must be between/);
  });
});

describe('boolFlag', () => {
  it('is undefined when absent', () => {
    expect(boolFlag('daemon', 'icc', undefined)).toBeUndefined();
  });

  it.each([
    [true, true],
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ])('reads %j as %s', (v, expected) => {
    expect(boolFlag('daemon', 'icc', v)).toBe(expected);
  });

  it.each(['', 'TRUE', 'off', 'maybe'])('rejects %j naming command and flag', (v) => {
    expect(usage(() => boolFlag('daemon', 'icc', v)).message).toBe(`daemon: --icc must be true or false, not "${v}"`);
  });

  it('works end to end with parse for --icc=false and --offload=true', () => {
    const { values } = parse('daemon', ['--icc=false', '--offload=true'], { icc: { type: 'string' }, offload: { type: 'string' } });
    expect(boolFlag('daemon', 'icc', values.icc)).toBe(false);
    expect(boolFlag('daemon', 'offload', values.offload)).toBe(true);
  });
});

describe('stringFlag', () => {
  it('passes strings and drops everything else', () => {
    expect(stringFlag('x')).toBe('x');
    expect(stringFlag('')).toBe('');
    expect(stringFlag(true)).toBeUndefined();
    expect(stringFlag(undefined)).toBeUndefined();
    expect(stringFlag(['a'])).toBeUndefined();
  });
});
