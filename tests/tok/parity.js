#!/usr/bin/env node
// Token-for-token parity of forja's tokenizers with npm tiktoken 1.0.22 (OpenAI's Rust
// tiktoken built to WASM), the independent reference named in docs/ORACLES.
//
//   node parity.js TOK_DUMP WORKDIR adversarial            every encoding, every special mode
//   node parity.js TOK_DUMP WORKDIR corpus CORPUS ENC...   per line and per 1 MiB chunk
//   node parity.js TOK_DUMP WORKDIR bigwords               100 KB words live, 1 MB words
//                                                          against tests/tok/fixtures/big_words.json
//
// TOK_DUMP is tests/tok/tok_dump.c, built. Each unit of text is encoded by both sides and the
// ids must be equal; for text holding a special token in "reject" mode both sides must refuse.
// Exits 1 on the first few mismatches (printed), 0 when everything agrees.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');
const { get_encoding } = require('tiktoken');

const FJ_ERR_SPECIAL = -5;
const [dumpBin, workdir, what, ...rest] = process.argv.slice(2);
fs.mkdirSync(workdir, { recursive: true });

function* records(buf) {
  let p = 0;
  while (p < buf.length) {
    const off = Number(buf.readBigUInt64LE(p));
    const len = Number(buf.readBigUInt64LE(p + 8));
    const status = buf.readInt32LE(p + 16);
    const count = buf.readUInt32LE(p + 20);
    const ids = new Uint32Array(buf.buffer.slice(buf.byteOffset + p + 24, buf.byteOffset + p + 24 + 4 * count));
    p += 24 + 4 * count;
    yield { off, len, status, ids };
  }
}

function runDump(enc, mode, special, input) {
  const out = path.join(workdir, `dump-${enc}-${mode}-${special}.bin`);
  execFileSync(dumpBin, [enc, mode, special, input, out], { stdio: 'inherit' });
  const buf = fs.readFileSync(out);
  fs.unlinkSync(out);
  return buf;
}

const show = (s) => JSON.stringify(s.length > 120 ? s.slice(0, 120) + '…' : s);
let failures = 0;
function fail(msg) {
  failures++;
  if (failures <= 10) console.error('MISMATCH ' + msg);
}

function reference(enc, special, text) {
  try {
    if (special === 'text') return enc.encode_ordinary(text);
    if (special === 'allow') return enc.encode(text, 'all');
    return enc.encode(text);
  } catch (e) {
    if (special === 'reject' && /special token/i.test(String(e))) return null;
    throw e;
  }
}

// Compares every record of a dump with the reference; textOf(off, len) gives the unit's text.
function compare(label, encName, special, dump, textOf, expectUnits) {
  const enc = get_encoding(encName);
  let units = 0, tokens = 0;
  for (const r of records(dump)) {
    units++;
    const text = textOf(r.off, r.len);
    const ref = reference(enc, special, text);
    if (ref === null) {
      if (r.status !== FJ_ERR_SPECIAL) fail(`${label}: tiktoken refuses special-token text, forja status ${r.status}: ${show(text)}`);
      continue;
    }
    if (r.status !== 0) {
      fail(`${label}: forja failed (${r.status}) where tiktoken encodes: ${show(text)}`);
      continue;
    }
    tokens += ref.length;
    if (ref.length !== r.ids.length || ref.some((v, i) => v !== r.ids[i])) {
      let k = 0;
      while (k < ref.length && ref[k] === r.ids[k]) k++;
      fail(`${label} unit at byte ${r.off}: first difference at token ${k}: tiktoken ` +
        `[${Array.from(ref.slice(k, k + 6))}] forja [${Array.from(r.ids.slice(k, k + 6))}] in ${show(text)}`);
    }
  }
  enc.free();
  if (units !== expectUnits) fail(`${label}: ${units} units compared, expected ${expectUnits}`);
  console.log(`${label}: ${units} units, ${tokens} tokens compared`);
}

async function adversarial() {
  const { buildUnits } = require('./adversarial.js');
  const units = await buildUnits();
  const parts = [];
  for (const u of units) {
    const b = Buffer.from(u, 'utf8');
    const h = Buffer.alloc(4);
    h.writeUInt32LE(b.length);
    parts.push(h, b);
  }
  const file = path.join(workdir, 'adversarial.units');
  const buf = Buffer.concat(parts);
  fs.writeFileSync(file, buf);
  const textOf = (off, len) => buf.toString('utf8', off, off + len);
  for (const enc of ['cl100k_base', 'o200k_base', 'p50k_base', 'r50k_base']) {
    for (const special of ['reject', 'allow', 'text']) {
      compare(`adversarial ${enc} ${special}`, enc, special, runDump(enc, 'units', special, file), textOf, units.length);
    }
  }
}

function corpus(file, encs) {
  const buf = fs.readFileSync(file);
  const textOf = (off, len) => buf.toString('utf8', off, off + len);
  let lines = 0;
  for (let i = 0; i < buf.length; i++) if (buf[i] === 10) lines++;
  if (buf.length && buf[buf.length - 1] !== 10) lines++;
  const chunks = Math.ceil(buf.length / (1 << 20));
  for (const enc of encs) {
    // Texts holding a special token would make encode() and encode_ordinary() differ; the
    // corpus has none, so "text" mode (encode_ordinary, the fast reference call) is exact.
    compare(`corpus ${enc} lines`, enc, 'text', runDump(enc, 'lines', 'text', file), textOf, lines);
    const dump = runDump(enc, 'chunks', 'text', file);
    let n = 0;
    for (const _ of records(dump)) n++;
    if (n < chunks) fail(`corpus chunks: ${n} chunks for ${buf.length} bytes`);
    compare(`corpus ${enc} chunks`, enc, 'text', dump, textOf, n);
  }
}

function bigWords() {
  const { bigWord, BIG_WORDS } = require('./words.js');
  const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'big_words.json'), 'utf8'));
  for (const encName of ['cl100k_base', 'o200k_base']) {
    // 100 KB words: tiktoken still manages them (in seconds), so compare live.
    const small = BIG_WORDS.map((w) => bigWord(w.kind, 100000, w.seed));
    const file = path.join(workdir, 'words100k.units');
    const parts = [];
    for (const s of small) {
      const b = Buffer.from(s);
      const h = Buffer.alloc(4);
      h.writeUInt32LE(b.length);
      parts.push(h, b);
    }
    const buf = Buffer.concat(parts);
    fs.writeFileSync(file, buf);
    compare(`100 KB words ${encName}`, encName, 'text', runDump(encName, 'units', 'text', file),
      (off, len) => buf.toString('utf8', off, off + len), small.length);
    // 1 MB words: against the recorded reference.
    for (const w of BIG_WORDS) {
      const rec = fixture.words.find((r) => r.encoding === encName && r.kind === w.kind && r.bytes === w.bytes && r.seed === w.seed);
      if (!rec) { fail(`no fixture for ${encName} ${w.kind}`); continue; }
      const text = Buffer.from(bigWord(w.kind, w.bytes, w.seed));
      const f = path.join(workdir, 'word1m.units');
      const h = Buffer.alloc(4);
      h.writeUInt32LE(text.length);
      fs.writeFileSync(f, Buffer.concat([h, text]));
      const [r] = [...records(runDump(encName, 'units', 'text', f))];
      const sha = crypto.createHash('sha256').update(Buffer.from(r.ids.buffer, r.ids.byteOffset, r.ids.byteLength)).digest('hex');
      if (r.status !== 0 || r.ids.length !== rec.count || sha !== rec.sha256)
        fail(`1 MB word ${encName} ${w.kind}: forja ${r.ids.length} tokens sha256 ${sha}, reference ${rec.count} tokens ${rec.sha256}`);
      else console.log(`1 MB word ${encName} ${w.kind}: ${rec.count} tokens, same as ${fixture.reference}`);
    }
  }
}

(async () => {
  if (what === 'adversarial') await adversarial();
  else if (what === 'corpus') corpus(rest[0], rest.slice(1));
  else if (what === 'bigwords') bigWords();
  else { console.error('usage: parity.js TOK_DUMP WORKDIR adversarial|corpus FILE ENC...|bigwords'); process.exit(2); }
  if (failures) {
    console.error(`${failures} mismatch(es)`);
    process.exit(1);
  }
  console.log('parity: all equal');
})().catch((e) => { console.error(e); process.exit(1); });
