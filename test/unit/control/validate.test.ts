import { describe, expect, it } from 'vitest';
import { IFNAME_PATTERN, NAME_PATTERN, onlyKeys, optBool, optInt, optString, reqString } from '../../../src/control/validate.js';
import { InvalidArgumentError } from '../../../src/errors.js';

function thrown(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARGUMENT');
    return err as InvalidArgumentError;
  }
  throw new Error('expected a throw');
}

describe('optString', () => {
  it('returns undefined for a missing or null field', () => {
    expect(optString({}, 'name')).toBeUndefined();
    expect(optString({ name: null }, 'name')).toBeUndefined();
    expect(optString({ name: undefined }, 'name')).toBeUndefined();
  });

  it('returns a string that passes the checks', () => {
    expect(optString({ name: 'c1' }, 'name')).toBe('c1');
    expect(optString({ name: 'abc' }, 'name', { max: 3, pattern: /^[a-z]+$/ })).toBe('abc');
  });

  it.each([
    [{ name: 5 }, /"name" must be a string/],
    [{ name: true }, /"name" must be a string/],
    [{ name: ['a'] }, /"name" must be a string/],
    [{ name: { a: 1 } }, /"name" must be a string/],
    [{ name: '' }, /"name" must not be empty/],
  ])('rejects %j naming the field', (p, msg) => {
    expect(thrown(() => optString(p, 'name')).message).toMatch(msg);
  });

  it('rejects a string over max, naming the field and the limit', () => {
    expect(thrown(() => optString({ netns: 'abcd' }, 'netns', { max: 3 })).message).toBe('"netns" is longer than 3 characters');
  });

  it('rejects a pattern mismatch with the field, the explanation and the value', () => {
    const e = thrown(() => optString({ ifname: 'a/b' }, 'ifname', { pattern: IFNAME_PATTERN, what: 'must be 1-15 letters' }));
    expect(e.message).toBe('"ifname" must be 1-15 letters: "a/b"');
    expect(thrown(() => optString({ x: 'B' }, 'x', { pattern: /^[a-z]$/ })).message).toBe('"x" has an invalid format: "B"');
  });
});

describe('reqString', () => {
  it('returns a present string', () => {
    expect(reqString({ name: 'c1' }, 'name')).toBe('c1');
  });

  it('requires the field, naming it', () => {
    expect(thrown(() => reqString({}, 'port')).message).toBe('"port" is required');
    expect(thrown(() => reqString({ port: null }, 'port')).message).toBe('"port" is required');
  });

  it('applies the same checks as optString', () => {
    expect(thrown(() => reqString({ port: 1 }, 'port')).message).toMatch(/"port" must be a string/);
    expect(thrown(() => reqString({ port: 'xy' }, 'port', { max: 1 })).message).toMatch(/"port" is longer/);
  });
});

describe('optInt', () => {
  it('returns undefined for a missing or null field', () => {
    expect(optInt({}, 'mtu', 68, 65521)).toBeUndefined();
    expect(optInt({ mtu: null }, 'mtu', 68, 65521)).toBeUndefined();
  });

  it('accepts integers in range, both ends included', () => {
    expect(optInt({ mtu: 68 }, 'mtu', 68, 65521)).toBe(68);
    expect(optInt({ mtu: 65521 }, 'mtu', 68, 65521)).toBe(65521);
    expect(optInt({ mtu: 1500 }, 'mtu', 68, 65521)).toBe(1500);
    expect(optInt({ count: 0 }, 'count', 0, 2 ** 31)).toBe(0);
  });

  it.each([1.5, '1500', true, [1500], Number.NaN, Number.POSITIVE_INFINITY])('rejects the non-integer %j naming the field', (v) => {
    expect(thrown(() => optInt({ mtu: v }, 'mtu', 68, 65521)).message).toBe('"mtu" must be an integer');
  });

  it('rejects values out of range with the range and the value', () => {
    expect(thrown(() => optInt({ mtu: 67 }, 'mtu', 68, 65521)).message).toBe('"mtu" must be between 68 and 65521, not 67');
    expect(thrown(() => optInt({ mtu: 65522 }, 'mtu', 68, 65521)).message).toBe('"mtu" must be between 68 and 65521, not 65522');
    expect(thrown(() => optInt({ pid: -1 }, 'pid', 1, 0x3fffffff)).message).toMatch(/^"pid" must be between 1 and/);
  });
});

describe('optBool', () => {
  it('accepts booleans and missing values', () => {
    expect(optBool({ configure: true }, 'configure')).toBe(true);
    expect(optBool({ configure: false }, 'configure')).toBe(false);
    expect(optBool({}, 'configure')).toBeUndefined();
    expect(optBool({ configure: null }, 'configure')).toBeUndefined();
  });

  it.each(['true', 1, 0, 'yes', {}])('rejects %j naming the field', (v) => {
    expect(thrown(() => optBool({ configure: v }, 'configure')).message).toBe('"configure" must be true or false');
  });
});

describe('onlyKeys', () => {
  it('accepts known keys (and none)', () => {
    expect(() => onlyKeys({ pid: 1, name: 'x' }, ['pid', 'name', 'mtu'], 'attach')).not.toThrow();
    expect(() => onlyKeys({}, ['pid'], 'attach')).not.toThrow();
  });

  it('rejects an unknown key naming the method, the key and the known ones', () => {
    const e = thrown(() => onlyKeys({ pid: 1, nmae: 'x' }, ['pid', 'name'], 'attach'));
    expect(e.message).toBe('attach: unknown parameter "nmae" (known: pid, name)');
  });

  it('rejects Object.prototype names as parameters', () => {
    const p = JSON.parse('{"__proto__": 1}') as Record<string, unknown>;
    expect(thrown(() => onlyKeys(p, ['pid'], 'attach')).message).toContain('"__proto__"');
  });
});

describe('NAME_PATTERN', () => {
  it.each(['c1', 'a', 'A.b_c-d', '9', 'x'.repeat(64)])('accepts %j', (n) => {
    expect(NAME_PATTERN.test(n)).toBe(true);
  });
  it.each(['', '-c1', '.hidden', '_x', 'a b', 'a/b', 'a:b', 'é', 'x'.repeat(65), 'c1\n'])('rejects %j', (n) => {
    expect(NAME_PATTERN.test(n)).toBe(false);
  });
});

describe('IFNAME_PATTERN', () => {
  it.each(['eth0', 'e', 'veth-1.2_x', 'x'.repeat(15)])('accepts %j', (n) => {
    expect(IFNAME_PATTERN.test(n)).toBe(true);
  });
  it.each(['', 'x'.repeat(16), 'a/b', 'a:b', 'a b', 'eth0\n', 'é'])('rejects %j', (n) => {
    expect(IFNAME_PATTERN.test(n)).toBe(false);
  });
});
