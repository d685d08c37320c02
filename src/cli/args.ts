/**
 * Command-line parsing on node:util parseArgs, with errors a user can act on: one line, naming
 * the command and the flag, pointing at `--help`.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../errors.js';

export class UsageError extends InvalidArgumentError {
  constructor(message: string) {
    super(message, 'ERR_USAGE');
    this.name = 'UsageError';
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** Parses `args` for `command`; unknown flags and missing values become UsageErrors. */
export function parse(command: string, args: string[], options: Options, maxPositionals = 0): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    const flag = /'(-[^']*)'/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${command}: unknown option ${flag ?? ''} (see usernet ${command} --help)`);
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      // Node names the option as "--name <value>", "-c, --count <value>" or "--json": prefer the long form.
      const spec = /Option '(-[^']*)/.exec(e.message)?.[1] ?? flag ?? '';
      const name = /--[^\s,]+/.exec(spec)?.[0] ?? spec.split(/[\s,]/)[0];
      if (e.message.includes('does not take an argument')) {
        throw new UsageError(`${command}: option ${name} does not take a value (see usernet ${command} --help)`);
      }
      throw new UsageError(`${command}: option ${name} needs a value (see usernet ${command} --help)`);
    }
    throw new UsageError(`${command}: ${e.message}`);
  }
  // parseArgs lets the last of a repeated flag win; a flag that takes one value given twice is
  // more likely a mistake (two --pid) than a wish, so it is refused. A boolean said twice is harmless.
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option') continue;
    const o = options[t.name];
    if (!o || o.multiple || o.type !== 'string') continue;
    if (seen.has(t.name)) throw new UsageError(`${command}: --${t.name} is given more than once (it takes one value; see usernet ${command} --help)`);
    seen.add(t.name);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`${command}: unexpected argument "${parsed.positionals[maxPositionals]}" (see usernet ${command} --help)`);
  }
  return { values: parsed.values as Parsed['values'], positionals: parsed.positionals };
}

/** An integer flag in [min, max]. */
export function intFlag(command: string, flag: string, value: string | boolean | string[] | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value)) throw new UsageError(`${command}: --${flag} must be a whole number, not "${String(value)}"`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${command}: --${flag} must be between ${min} and ${max}, not ${n}`);
  return n;
}

/** A boolean given as --flag, --flag=true or --flag=false (Docker's --icc=false style). */
export function boolFlag(command: string, flag: string, value: string | boolean | string[] | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === true || value === 'true' || value === '1' || value === 'yes') return true;
  if (value === 'false' || value === '0' || value === 'no') return false;
  throw new UsageError(`${command}: --${flag} must be true or false, not "${String(value)}"`);
}

export function stringFlag(value: string | boolean | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
