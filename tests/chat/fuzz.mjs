// Random expressions and statements for tests/chat/jinja_parity.mjs: a seeded generator over
// the subset's grammar (literals, variables, operators, filters, tests, methods, slices,
// loops, sets), so forja and @huggingface/jinja are compared on combinations nobody wrote by
// hand. Cases whose result depends on what forja refuses on purpose (Unicode case mapping,
// tojson(sort_keys=true), half a surrogate pair) are left out by construction.

export const FUZZ_CTX = {
  l: [3, 1, 2],
  e: [],
  d: { a: 1, b: 'two', c: [1, 2], n: null },
  s: 'Ab c',
  w: '  x y  ',
  u8: 'héllo 😀',
  x: 3,
  f: 2.5,
  n: null,
  t: true,
  ms: [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'yo', weight: 0 },
  ],
};

// mulberry32
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function fuzzCases(seed, n) {
  const r = rng(seed);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const ATOMS = [
    '0', '1', '2', '7', '-3', '10', '0.5', '2.0', '-1.5', "''", "'a'", "'Ab c'", "' x '", "'10'",
    "'1'", "'😀z'", "'a,b'", 'true', 'false', 'none', 'l', 'e', 'd', 's', 'w', 'u8', 'x', 'f', 'n',
    't', 'undef', 'ms', '[1, 2]', "['b', 'a']", "{'k': 1}", '(1, 2)', 'd.c', 'ms[0]', 'l[0]',
  ];
  const BIN = ['+', '-', '*', '/', '//', '%', '**', '~', '==', '!=', '<', '>', '<=', '>=', 'in', 'not in', 'and', 'or'];
  const FILTERS = [
    'length', 'first', 'last', 'reverse', 'sort', 'join', "join(',')", 'string', 'list', 'unique',
    'trim', 'title', 'capitalize', 'int', 'float', 'abs', 'items', 'tojson', 'tojson(indent=2)',
    "default('D')", "default('D', true)", 'safe', 'indent', 'indent(2, true)', "replace('a', 'Z')",
    'sort(reverse=true)', "map(attribute='role')", "selectattr('role', 'eq', 'user')",
    "rejectattr('weight')", 'dictsort', "int(5)", 'float(1.5)',
  ];
  const TESTS = ['defined', 'undefined', 'none', 'string', 'number', 'integer', 'iterable', 'mapping', 'sequence', 'boolean', 'true', 'false', 'odd', 'even', 'callable'];
  const METHODS = ['strip()', 'lstrip()', 'rstrip()', 'split()', "split(',')", "split(' ', 1)", "startswith('A')", "endswith('c')", "replace('b', 'B')", 'title()', 'capitalize()', "get('a')", "get('zz', 0)", 'keys()', 'values()', 'items()', 'length'];
  const expr = (depth) => {
    if (depth <= 0) return pick(ATOMS);
    const k = r();
    if (k < 0.25) return `${expr(depth - 1)} ${pick(BIN)} ${expr(depth - 1)}`;
    if (k < 0.4) return `(${expr(depth - 1)})|${pick(FILTERS)}`;
    if (k < 0.5) return `(${expr(depth - 1)}) is ${r() < 0.3 ? 'not ' : ''}${pick(TESTS)}`;
    if (k < 0.6) return `(${expr(depth - 1)}).${pick(METHODS)}`;
    if (k < 0.7) {
      const part = () => (r() < 0.4 ? '' : pick(['0', '1', '-1', '2', '-2', '5']));
      return r() < 0.5 ? `(${expr(depth - 1)})[${part()}:${part()}${r() < 0.4 ? ':' + pick(['1', '-1', '2', '-2']) : ''}]` : `(${expr(depth - 1)})[${pick(['0', '-1', '1', "'a'", "'role'", '9'])}]`;
    }
    if (k < 0.78) return `${pick(['not ', '-', ''])}(${expr(depth - 1)})`;
    if (k < 0.86) return `(${expr(depth - 1)} if ${expr(depth - 1)} else ${expr(depth - 1)})`;
    if (k < 0.93) return `[${expr(depth - 1)}, ${expr(depth - 1)}]`;
    return `{'p': ${expr(depth - 1)}}`;
  };
  const stmt = (depth) => {
    const k = r();
    if (depth <= 0 || k < 0.35) return `{{ ${expr(2)} }}`;
    if (k < 0.55) return `{% for i in ${pick(['l', 'e', 'd', 'ms', 'range(3)', '[1, 2]', "'abc'.split('b')"])}${r() < 0.3 ? ' if ' + expr(1) : ''} %}${stmt(depth - 1)}{{ loop.index }}{% if ${expr(1)} %}{% ${pick(['break', 'continue'])} %}{% endif %}${r() < 0.3 ? '{% else %}E' : ''}{% endfor %}`;
    if (k < 0.7) return `{% if ${expr(2)} %}${stmt(depth - 1)}{% elif ${expr(1)} %}B{% else %}${stmt(depth - 1)}{% endif %}`;
    if (k < 0.85) return `{% set v = ${expr(2)} %}{{ v }}`;
    return `{%- set ns = namespace(c=${expr(1)}) -%} {% for i in [1, 2] %}{% set ns.c = ns.c ~ i %}{% endfor %} {{- ns.c }}`;
  };
  const out = [];
  for (let i = 0; i < n; i++) out.push(i % 3 === 2 ? stmt(2) : `{{ ${expr(1 + (i % 3))} }}`);
  return out;
}

// Random layouts: text with spaces, tabs, newlines (\n, \r\n, U+2028), Unicode spaces and
// stray braces around tags with and without whitespace control, comments and generation
// tags: the preprocessing (lstrip_blocks, trim_blocks) and the lexer's trimming.
export function layoutCases(seed, n) {
  const r = rng(seed);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const TEXT = [' ', '  ', '\t', '\n', '\n\n', '\r\n', '\r', '\u2028', '\u3000', '\u00a0', 'a', 'b c', '{', '}', '-', '#', '%', '{ -', ' -}', '#}', '%}\n', '-}\n', '\n  {-'];
  const dash = () => (r() < 0.35 ? '-' : '');
  const text = () => {
    let t = '';
    const k = 1 + Math.floor(r() * 4);
    for (let i = 0; i < k; i++) t += pick(TEXT);
    return t;
  };
  const tag = (body) => `{%${dash()} ${body} ${dash()}%}`;
  const block = (depth) => {
    let out = '';
    const k = 1 + Math.floor(r() * 4);
    for (let i = 0; i < k; i++) {
      const c = r();
      if (c < 0.35) out += text();
      else if (c < 0.5) out += `{{${dash()} ${pick(["'x'", 'v', "'\\n'", '1'])} ${dash()}}}`;
      else if (c < 0.6) out += `{#${dash()} ${pick(['c', '', 'a - b'])} ${dash()}#}`;
      else if (c < 0.68) out += tag(pick(['set v = 2', 'generation', 'endgeneration']));
      else if (depth > 0 && c < 0.84) out += tag(pick(['if true', 'if false', 'if v'])) + block(depth - 1) + (r() < 0.4 ? tag('else') + block(depth - 1) : '') + tag('endif');
      else if (depth > 0) out += tag(pick(['for i in [1, 2]', 'for i in []'])) + block(depth - 1) + tag('endfor');
      else out += text();
    }
    return out;
  };
  const out = [];
  for (let i = 0; i < n; i++) out.push(block(3) + (r() < 0.3 ? '\n' : ''));
  return out;
}

// Results forja refuses on purpose (docs/chat-templates.md, "Refused"): leave those cases out.
export function deliberatelyRefused(cMsg) {
  return /unsupported: ((upper|lower)-casing|'\*\*')|half a UTF-16 surrogate pair|sort_keys/.test(cMsg || '');
}
