/**
 * Every example in the docs runs, as written, against the built package.
 *
 * An example is a fenced ```js or ```ts block in a page under docs/ with a line
 * `<!-- example: NAME -->` right before it. Each is written to a temporary project whose
 * node_modules/usernet is this repo, so `import ... from 'usernet'` resolves the way it does for a
 * user: through package.json's "exports" to dist/ (built by `npm test`) and its .d.ts. A ts block
 * is type-checked (strict, NodeNext) against those declarations, then transpiled and run; a js
 * block is run as it is. An example passes when it exits 0 within the timeout (they assert with
 * node:assert); a failure names the example, its page and line, and its output.
 *
 * Adding an example means writing the block and its marker, nothing here.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DOCS = join(PROJECT, 'docs');
const MARKER = /^<!--\s*example:\s*(\S+)\s*-->\s*$/;
const FENCE = /^```(\w+)\s*$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
const RUN_TIMEOUT_MS = 30_000;

interface Example {
  name: string;
  lang: 'js' | 'ts';
  code: string;
  /** page:line of the marker, for messages. */
  where: string;
}

/** The examples of every page, and what is wrong with markers that do not mark one. */
function collect(): { examples: Example[]; problems: string[] } {
  const examples: Example[] = [];
  const problems: string[] = [];
  const pages = readdirSync(DOCS, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.md'))
    .sort();
  for (const page of pages) {
    const lines = readFileSync(join(DOCS, page), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = MARKER.exec(lines[i]);
      if (!m) continue;
      const where = `docs/${page}:${i + 1}`;
      const name = m[1];
      const fence = FENCE.exec(lines[i + 1] ?? '');
      if (!NAME.test(name)) problems.push(`${where}: example name "${name}" is not letters, digits and -`);
      if (!fence || (fence[1] !== 'js' && fence[1] !== 'ts')) {
        problems.push(`${where}: example "${name}" is not followed by a \`\`\`js or \`\`\`ts block`);
        continue;
      }
      const end = lines.findIndex((l, j) => j > i + 1 && /^```\s*$/.test(l));
      if (end < 0) {
        problems.push(`${where}: example "${name}" has no closing \`\`\``);
        continue;
      }
      if (examples.some((e) => e.name === name)) problems.push(`${where}: example name "${name}" is used twice`);
      examples.push({ name, lang: fence[1], code: `${lines.slice(i + 2, end).join('\n')}\n`, where });
    }
  }
  return { examples, problems };
}

const { examples, problems } = collect();

function run(file: string, cwd: string): Promise<{ code: number | null; signal: string | null; output: string; timedOut: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, RUN_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, output, timedOut });
    });
  });
}

describe('docs examples', () => {
  let dir: string;
  const typeErrors = new Map<string, string[]>();

  beforeAll(() => {
    expect(existsSync(join(PROJECT, 'dist', 'src', 'index.js')), 'dist/ is built (npm test builds it; or npm run build)').toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'usernet-doc-examples-'));
    writeFileSync(join(dir, 'package.json'), '{ "name": "usernet-doc-examples", "private": true, "type": "module" }\n');
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(PROJECT, join(dir, 'node_modules', 'usernet'), 'dir');

    const tsExamples = examples.filter((e) => e.lang === 'ts');
    if (tsExamples.length === 0) return;
    const files = tsExamples.map((e) => join(dir, `${e.name}.ts`));
    tsExamples.forEach((e, i) => writeFileSync(files[i], e.code));
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      typeRoots: [join(PROJECT, 'node_modules', '@types')],
      skipLibCheck: true,
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const file = d.file ? relative(dir, d.file.fileName) : '(options)';
      const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null;
      const name = file.replace(/\.ts$/, '');
      const list = typeErrors.get(name) ?? [];
      list.push(`${file}${pos ? `:${pos.line + 1}:${pos.character + 1}` : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      typeErrors.set(name, list);
    }
  }, 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every example marker marks a block, with a unique name', () => {
    expect(problems).toEqual([]);
    expect(examples.length).toBeGreaterThan(0);
  });

  it('the type check itself found every example file (no stray diagnostics)', () => {
    const names = new Set(examples.map((e) => e.name));
    expect([...typeErrors.keys()].filter((k) => !names.has(k))).toEqual([]);
  });

  for (const example of examples) {
    it(`${example.name} (${example.where}, ${example.lang}) runs`, async () => {
      let file = join(dir, `${example.name}.mjs`);
      if (example.lang === 'ts') {
        const errors = typeErrors.get(example.name) ?? [];
        expect(errors, `example ${example.name} (${example.where}) does not type-check`).toEqual([]);
        const js = ts.transpileModule(example.code, {
          compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, verbatimModuleSyntax: false },
          fileName: `${example.name}.ts`,
        }).outputText;
        file = join(dir, `${example.name}.ts.mjs`);
        writeFileSync(file, js);
      } else {
        writeFileSync(file, example.code);
      }
      const r = await run(file, dir);
      const status = r.timedOut ? `did not finish within ${RUN_TIMEOUT_MS / 1000} s` : `exited ${r.code ?? r.signal}`;
      expect(r.code === 0 && !r.timedOut, `example ${example.name} (${example.where}) ${status}:\n${r.output}`).toBe(true);
    });
  }
});
