import { describe, it, expect } from 'vitest';
import { LineDecoder, LineTooLongError, MAX_REQUEST_LINE, parseRequest } from '../../../src/control/protocol.js';

const b = (s: string): Buffer => Buffer.from(s, 'utf8');

/** Feeds `chunks` in order and returns every line they complete. */
function feed(d: LineDecoder, chunks: Buffer[]): string[] {
  const out: string[] = [];
  for (const c of chunks) out.push(...d.push(c));
  return out;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('LineDecoder', () => {
  const text = '{"id":1,"method":"ports"}\n{"id":2,"method":"fdb","params":{"x":"é"}}\n\nlast\n';
  const expected = ['{"id":1,"method":"ports"}', '{"id":2,"method":"fdb","params":{"x":"é"}}', '', 'last'];

  it('returns several lines from one chunk', () => {
    expect(new LineDecoder().push(b(text))).toEqual(expected);
  });

  it('returns the same lines when fed one byte at a time (multi-byte UTF-8 split too)', () => {
    const bytes = b(text);
    const chunks = [...bytes].map((x) => Buffer.from([x]));
    expect(feed(new LineDecoder(), chunks)).toEqual(expected);
  });

  it('returns the same lines for every two-way split of the input', () => {
    const bytes = b(text);
    for (let i = 0; i <= bytes.length; i++) {
      expect(feed(new LineDecoder(), [bytes.subarray(0, i), bytes.subarray(i)])).toEqual(expected);
    }
  });

  it('joins a line split across several chunks', () => {
    const d = new LineDecoder();
    expect(d.push(b('{"id":1,'))).toEqual([]);
    expect(d.push(b('"method":'))).toEqual([]);
    expect(d.push(b('"x"}\n{"id"'))).toEqual(['{"id":1,"method":"x"}']);
    expect(d.push(b(':2}\n'))).toEqual(['{"id":2}']);
    expect(d.push(Buffer.alloc(0))).toEqual([]);
  });

  it('keeps no reference to the caller\'s buffer for a pending partial line', () => {
    const d = new LineDecoder();
    const chunk = b('abc');
    d.push(chunk);
    chunk.fill(0x7a); // the caller reuses its buffer
    expect(d.push(b('d\n'))).toEqual(['abcd']);
  });

  it('treats CR as an ordinary byte (CRLF is not special)', () => {
    expect(new LineDecoder().push(b('a\r\nb\rc\n'))).toEqual(['a\r', 'b\rc']);
  });

  it('accepts a line of exactly the limit, in one chunk or split', () => {
    const line = 'x'.repeat(16);
    expect(new LineDecoder(16).push(b(`${line}\n`))).toEqual([line]);
    const d = new LineDecoder(16);
    expect(d.push(b(line))).toEqual([]);
    expect(d.push(b('\n'))).toEqual([line]);
  });

  it('throws LineTooLongError (ERR_REQUEST_TOO_LARGE) for a complete line over the limit', () => {
    const d = new LineDecoder(16);
    let err: unknown;
    try {
      d.push(b(`${'x'.repeat(17)}\n`));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LineTooLongError);
    expect((err as LineTooLongError).code).toBe('ERR_REQUEST_TOO_LARGE');
    expect((err as Error).message).toContain('16');
  });

  it('throws when a line split across chunks grows over the limit', () => {
    const d = new LineDecoder(16);
    d.push(b('x'.repeat(10)));
    expect(codeOf(() => d.push(b(`${'x'.repeat(7)}\n`)))).toBe('ERR_REQUEST_TOO_LARGE');
  });

  it('throws as soon as the excess arrives without a newline', () => {
    const d = new LineDecoder(16);
    expect(codeOf(() => d.push(b('x'.repeat(17))))).toBe('ERR_REQUEST_TOO_LARGE');
    const d2 = new LineDecoder(16);
    d2.push(b('x'.repeat(16)));
    expect(codeOf(() => d2.push(b('x')))).toBe('ERR_REQUEST_TOO_LARGE');
  });

  it('throws for a too-long tail after good lines in the same chunk', () => {
    const d = new LineDecoder(16);
    expect(codeOf(() => d.push(b(`ok\n${'x'.repeat(17)}`)))).toBe('ERR_REQUEST_TOO_LARGE');
  });

  it('limits lines, not chunks: many short lines in one big chunk are fine', () => {
    const d = new LineDecoder(16);
    const lines = d.push(b('0123456789\n'.repeat(100)));
    expect(lines).toHaveLength(100);
  });

  it('defaults to a 1 MiB limit', () => {
    expect(MAX_REQUEST_LINE).toBe(1024 * 1024);
    const d = new LineDecoder();
    expect(d.push(b('x'.repeat(MAX_REQUEST_LINE)))).toEqual([]);
    expect(codeOf(() => d.push(b('x')))).toBe('ERR_REQUEST_TOO_LARGE');
  });
});

describe('parseRequest', () => {
  it('parses a request with id, method and params', () => {
    expect(parseRequest('{"id":7,"method":"attach","params":{"pid":42}}')).toEqual({ id: 7, method: 'attach', params: { pid: 42 } });
  });

  it('defaults params to an empty object and keeps a missing id undefined', () => {
    expect(parseRequest('{"method":"ports"}')).toEqual({ id: undefined, method: 'ports', params: {} });
  });

  it('accepts any JSON id (string, null)', () => {
    expect(parseRequest('{"id":"a","method":"m"}').id).toBe('a');
    expect(parseRequest('{"id":null,"method":"m"}').id).toBeNull();
  });

  it.each(['', 'not json', '{"method":', "{'method':'x'}", '{"method":"x"} trailing'])('rejects bad JSON %j with ERR_BAD_JSON', (line) => {
    let err: (Error & { code?: string }) | undefined;
    try {
      parseRequest(line);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    expect(err?.code).toBe('ERR_BAD_JSON');
    expect(err?.message).toMatch(/not valid JSON/);
  });

  it.each([
    ['a number', '42'],
    ['a string', '"ports"'],
    ['null', 'null'],
    ['true', 'true'],
    ['an array', '[{"method":"ports"}]'],
    ['an object without method', '{"id":1}'],
    ['an empty method', '{"method":""}'],
    ['a non-string method', '{"method":5}'],
    ['params that are a string', '{"method":"m","params":"x"}'],
    ['params that are null', '{"method":"m","params":null}'],
    ['params that are an array', '{"method":"m","params":[1]}'],
    ['params that are a number', '{"method":"m","params":1}'],
  ])('rejects %s with ERR_BAD_REQUEST', (_what, line) => {
    expect(codeOf(() => parseRequest(line))).toBe('ERR_BAD_REQUEST');
  });
});
