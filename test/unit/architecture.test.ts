/**
 * The layering of src/, checked on the import graph, so it stays true as the code grows:
 *
 *   control, cli, slirp            (the daemon, its API and front ends)
 *        │ may import anything below
 *   nat ─▶ gateway ─▶ switch ─▶ link ─▶ packet        the data path
 *        └──────────────┴─────────┴──▶ platform (clock, random, host stack), native, errors
 *
 * Every `import … from`, `export … from`, side-effect `import '…'` and dynamic `import('…')` in
 * src/**\/*.ts is read (comments stripped first), resolved against the importing file, and judged
 * by the rules below. A failure names the file, the import as written and the rule it breaks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

interface ImportEdge {
  /** The importing file, relative to src/ (e.g. "gateway/gateway.ts"). */
  from: string;
  /** The specifier as written. */
  specifier: string;
  /** For a relative import: the target relative to src/ ("packet/ipv4.js"); else null. */
  target: string | null;
}

/** The layer of a path relative to src/: its first directory, or the file name at the top. */
function layerOf(path: string): string {
  const slash = path.indexOf('/');
  return slash < 0 ? path.replace(/\.(ts|js)$/, '') : path.slice(0, slash);
}

/** Removes block and line comments (a `//` inside a string such as a URL is kept: it follows no blank). */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|\s)\/\/.*$/gm, '$1');
}

function importsOf(file: string, text: string): ImportEdge[] {
  const code = stripComments(text);
  const specifiers: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/g, // import x from, import type { … } from, export * from
    /\bimport\s*['"]([^'"]+)['"]/g, // import 'side-effect'
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g, // import('dynamic')
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) specifiers.push(m[1]);
  return specifiers.map((specifier) => ({
    from: file,
    specifier,
    target: specifier.startsWith('.') ? posix.normalize(posix.join(posix.dirname(file), specifier)) : null,
  }));
}

const DATA_PATH = ['packet', 'link', 'switch', 'gateway', 'nat'];
const CONTROL = ['control', 'cli', 'slirp'];
/** The library's composition root and the in-memory outside: tools for tests, never under the data path. */
const LIBRARY = ['lab', 'outside'];
/** Node modules that do I/O or start processes: never in the pure codecs. */
const IO_BUILTINS = /^(node:)?(fs|fs\/promises|net|dgram|child_process|cluster|http|https|http2|tls|dns|worker_threads|os|process)$/;

interface Rule {
  name: string;
  /** A reason the edge is not allowed, or null. */
  check(edge: ImportEdge): string | null;
}

const RULES: Rule[] = [
  {
    name: 'the data path never imports control, cli or slirp',
    check: (e) => (DATA_PATH.includes(layerOf(e.from)) && e.target !== null && CONTROL.includes(layerOf(e.target)) ? `${layerOf(e.from)}/ imports ${layerOf(e.target)}/` : null),
  },
  {
    name: 'packet/ is pure codecs: it imports only packet/ and errors.ts, and no I/O module',
    check: (e) => {
      if (layerOf(e.from) !== 'packet') return null;
      if (e.target === null) return IO_BUILTINS.test(e.specifier) ? `packet/ imports the I/O module ${e.specifier}` : null;
      const to = layerOf(e.target);
      return to === 'packet' || to === 'errors' ? null : `packet/ imports ${to}/`;
    },
  },
  {
    name: 'link/ never imports the layers above it (switch, gateway, nat)',
    check: (e) => (layerOf(e.from) === 'link' && e.target !== null && ['switch', 'gateway', 'nat'].includes(layerOf(e.target)) ? `link/ imports ${layerOf(e.target)}/` : null),
  },
  {
    name: 'the data path never imports the library (lab, outside)',
    check: (e) => (DATA_PATH.includes(layerOf(e.from)) && e.target !== null && LIBRARY.includes(layerOf(e.target)) ? `${layerOf(e.from)}/ imports ${layerOf(e.target)}/` : null),
  },
  {
    name: 'outside/ is a HostStack: it imports only platform/, packet/ and errors.ts',
    check: (e) => {
      if (layerOf(e.from) !== 'outside' || e.target === null) return null;
      const to = layerOf(e.target);
      return ['outside', 'platform', 'packet', 'errors'].includes(to) ? null : `outside/ imports ${to}/`;
    },
  },
  {
    name: 'platform/ imports nothing of the data path above packet, nor control',
    check: (e) =>
      layerOf(e.from) === 'platform' && e.target !== null && ['link', 'switch', 'gateway', 'nat', ...CONTROL].includes(layerOf(e.target)) ? `platform/ imports ${layerOf(e.target)}/` : null,
  },
];

/** Every violation of RULES among `edges`, one line each: file, import as written, rule. */
function violations(edges: ImportEdge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    for (const rule of RULES) {
      const why = rule.check(e);
      if (why !== null) out.push(`src/${e.from}: import '${e.specifier}' — ${why} (rule: ${rule.name})`);
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

function allEdges(): ImportEdge[] {
  return sourceFiles(SRC).flatMap((path) => importsOf(relative(SRC, path).split('\\').join('/'), readFileSync(path, 'utf8')));
}

describe('architecture: the import graph of src/', () => {
  it('reads the imports of every source file', () => {
    const edges = allEdges();
    // A parser that found nothing would pass every rule: make sure it sees the known edges.
    expect(edges.some((e) => e.from === 'gateway/gateway.ts' && e.target === 'packet/ipv4.js')).toBe(true);
    expect(edges.some((e) => e.from === 'link/port.ts' && e.target === 'link/sink.js')).toBe(false);
    expect(edges.some((e) => e.from === 'link/tap-port.ts' && e.target === 'link/sink.js')).toBe(true);
    expect(edges.length).toBeGreaterThan(300);
  });

  it('keeps the layers apart', () => {
    expect(violations(allEdges()), 'imports that break the layering (fix the import, or move the code to the right layer)').toEqual([]);
  });

  it('catches each kind of forbidden import, static, re-export, side-effect or dynamic', () => {
    const edges = [
      ...importsOf('gateway/x.ts', "import { Daemon } from '../control/daemon.js';"),
      ...importsOf('nat/x.ts', "export { main } from '../cli/main.js';"),
      ...importsOf('switch/x.ts', "const m = await import('../slirp/main.js');"),
      ...importsOf('nat/y.ts', "import { Lab } from '../lab/lab.js';"),
      ...importsOf('outside/x.ts', "import type { Nat } from '../nat/nat.js';"),
      ...importsOf('packet/x.ts', "import '../link/frame.js';\nimport { readFileSync } from 'node:fs';\nimport type {\n  Socket,\n} from 'node:net';"),
      ...importsOf('link/x.ts', "import type { Switch } from '../switch/switch.js';"),
      ...importsOf('platform/x.ts', "import { GatewayPort } from '../gateway/gateway.js';"),
      // Not imports: a comment, and a string that merely mentions one.
      ...importsOf('packet/y.ts', "// import { x } from '../control/daemon.js';\n/* import('../cli/main.js') */\nconst s = 'see http://example.org';"),
    ];
    const found = violations(edges);
    expect(found).toEqual([
      "src/gateway/x.ts: import '../control/daemon.js' — gateway/ imports control/ (rule: the data path never imports control, cli or slirp)",
      "src/nat/x.ts: import '../cli/main.js' — nat/ imports cli/ (rule: the data path never imports control, cli or slirp)",
      "src/switch/x.ts: import '../slirp/main.js' — switch/ imports slirp/ (rule: the data path never imports control, cli or slirp)",
      "src/nat/y.ts: import '../lab/lab.js' — nat/ imports lab/ (rule: the data path never imports the library (lab, outside))",
      "src/outside/x.ts: import '../nat/nat.js' — outside/ imports nat/ (rule: outside/ is a HostStack: it imports only platform/, packet/ and errors.ts)",
      "src/packet/x.ts: import 'node:fs' — packet/ imports the I/O module node:fs (rule: packet/ is pure codecs: it imports only packet/ and errors.ts, and no I/O module)",
      "src/packet/x.ts: import 'node:net' — packet/ imports the I/O module node:net (rule: packet/ is pure codecs: it imports only packet/ and errors.ts, and no I/O module)",
      "src/packet/x.ts: import '../link/frame.js' — packet/ imports link/ (rule: packet/ is pure codecs: it imports only packet/ and errors.ts, and no I/O module)",
      "src/link/x.ts: import '../switch/switch.js' — link/ imports switch/ (rule: link/ never imports the layers above it (switch, gateway, nat))",
      "src/platform/x.ts: import '../gateway/gateway.js' — platform/ imports gateway/ (rule: platform/ imports nothing of the data path above packet, nor control)",
    ]);
  });
});
