/**
 * The error registry (src/errors.ts) is the one list of usernet's codes: every `ERR_` string in
 * src/ must be registered there, every registered code must be used and documented in
 * docs/cli.md, and the classes carry the codes of their kind only.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConflictError, ERROR_CODES, errnoError, InvalidArgumentError, isErrorCode, NotFoundError, SystemError, toUsernetError, UsernetError } from '../../../src/errors.js';

const ROOT = join(import.meta.dirname, '../../..');
const SRC = join(ROOT, 'src');

/** Codes of Node.js that usernet reads (util.parseArgs's), never emits. */
const NODE_CODES_READ = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE']);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Every quoted `ERR_…` string in the TypeScript sources, with where it is. */
function codesInSources(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    let text = readFileSync(file, 'utf8');
    // The registry itself lists every code; what counts there is what its classes use (defaults).
    if (relative(SRC, file) === 'errors.ts') text = text.slice(text.indexOf('} as const;'));
    for (const m of text.matchAll(/['"`](ERR_[A-Z0-9_]+)['"`]/g)) {
      const list = found.get(m[1]) ?? [];
      list.push(relative(ROOT, file));
      found.set(m[1], list);
    }
  }
  return found;
}

describe('the error registry', () => {
  const used = codesInSources();

  it('registers every code used in src/', () => {
    const unregistered = [...used.keys()].filter((c) => !isErrorCode(c) && !NODE_CODES_READ.has(c)).map((c) => `${c} (${used.get(c)?.join(', ')})`);
    expect(unregistered).toEqual([]);
  });

  it('registers no code that nothing uses', () => {
    expect(Object.keys(ERROR_CODES).filter((c) => !used.has(c))).toEqual([]);
  });

  it('documents every registered code in docs/cli.md', () => {
    const doc = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
    const undocumented = Object.keys(ERROR_CODES).filter((c) => !doc.includes(`\`${c}\``));
    expect(undocumented).toEqual([]);
  });

  it('gives every code a meaning and one class', () => {
    for (const [code, entry] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^ERR_[A-Z0-9_]+$/);
      expect(entry.meaning.length).toBeGreaterThan(10);
      expect(['invalid-argument', 'not-found', 'conflict', 'other']).toContain(entry.kind);
    }
  });

  it('types the classes\' codes from the registry', () => {
    expect(new InvalidArgumentError('x').code).toBe('ERR_INVALID_ARGUMENT');
    expect(new NotFoundError('x', 'ERR_NO_SUCH_PORT').code).toBe('ERR_NO_SUCH_PORT');
    expect(new ConflictError('x', 'ERR_NAME_IN_USE').code).toBe('ERR_NAME_IN_USE');
    // @ts-expect-error: an unregistered code does not compile
    expect(new UsernetError('ERR_NOT_REGISTERED', 'x').code).toBe('ERR_NOT_REGISTERED');
    // @ts-expect-error: a code of another kind does not compile
    expect(new NotFoundError('x', 'ERR_NAME_IN_USE')).toBeInstanceOf(NotFoundError);
    // @ts-expect-error: NotFoundError and ConflictError name what failed: no generic default
    expect(new ConflictError('x')).toBeInstanceOf(ConflictError);
  });

  it('passes errno names through as SystemError, and turns foreign codes into ERR_INTERNAL', () => {
    const eacces = errnoError('EACCES', 'stat', 'permission denied on x');
    expect(eacces).toBeInstanceOf(SystemError);
    expect([eacces.code, eacces.errno, eacces.syscall]).toEqual(['EACCES', 13, 'stat']);
    const fs = toUsernetError(Object.assign(new Error('nope'), { code: 'ENOENT', errno: -2, syscall: 'open' }));
    expect(fs).toBeInstanceOf(SystemError);
    expect(fs.code).toBe('ENOENT');
    const node = toUsernetError(Object.assign(new TypeError('"fd" must be a number'), { code: 'ERR_INVALID_ARG_TYPE' }));
    expect(node.code).toBe('ERR_INTERNAL');
    expect(node.message).toBe('"fd" must be a number (ERR_INVALID_ARG_TYPE)');
    expect(toUsernetError('a string').code).toBe('ERR_INTERNAL');
  });
});
