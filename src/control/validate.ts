/** Checks on API parameters: each failure is an InvalidArgumentError naming the field. */
import { InvalidArgumentError } from '../errors.js';

type Params = Record<string, unknown>;

export function optString(p: Params, key: string, opts: { max?: number; pattern?: RegExp; what?: string } = {}): string | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InvalidArgumentError(`"${key}" must be a string`);
  if (v.length === 0) throw new InvalidArgumentError(`"${key}" must not be empty`);
  if (opts.max !== undefined && v.length > opts.max) throw new InvalidArgumentError(`"${key}" is longer than ${opts.max} characters`);
  if (opts.pattern && !opts.pattern.test(v)) throw new InvalidArgumentError(`"${key}" ${opts.what ?? 'has an invalid format'}: "${v}"`);
  return v;
}

export function reqString(p: Params, key: string, opts: { max?: number; pattern?: RegExp; what?: string } = {}): string {
  const v = optString(p, key, opts);
  if (v === undefined) throw new InvalidArgumentError(`"${key}" is required`);
  return v;
}

export function optInt(p: Params, key: string, min: number, max: number): number | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new InvalidArgumentError(`"${key}" must be an integer`);
  if (v < min || v > max) throw new InvalidArgumentError(`"${key}" must be between ${min} and ${max}, not ${v}`);
  return v;
}

/** A list of non-empty strings (or a single string, taken as a one-element list). */
export function optStringList(p: Params, key: string): string[] | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string' || x === '')) {
    throw new InvalidArgumentError(`"${key}" must be a list of non-empty strings`);
  }
  return list as string[];
}

export function optBool(p: Params, key: string): boolean | undefined {
  const v = p[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new InvalidArgumentError(`"${key}" must be true or false`);
  return v;
}

/** Rejects fields the method does not know (a typo must not be silently ignored). */
export function onlyKeys(p: Params, allowed: readonly string[], method: string): void {
  for (const k of Object.keys(p)) {
    if (!allowed.includes(k)) throw new InvalidArgumentError(`${method}: unknown parameter "${k}" (known: ${allowed.join(', ')})`);
  }
}

/** Port/attachment names: what a user can type and a log can show without quoting. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** Linux interface names: 1-15 bytes, no '/', ':' or whitespace. */
export const IFNAME_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;
