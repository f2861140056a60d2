#!/usr/bin/env node
// Records the reference encoding of 1 MB single "words" (tests/tok/fixtures/big_words.json).
//
// npm tiktoken 1.0.22 cannot encode a 1 MB word at all: its WASM build aborts ("RuntimeError:
// unreachable", the regex engine's backtracking limit). npm gpt-tokenizer, an independent
// implementation that agrees with tiktoken id for id on 100 KB words (checked live by
// tests/tok/parity.js), can, but its byte-pair merge is quadratic in the piece length: about 20
// minutes per word. So this script runs it once and records the token count and the sha256 of the
// ids (uint32 little-endian); tests/tok/parity.js regenerates the same words (tests/tok/words.js)
// and compares forja's ids with the record.
//
//   node tests/tok/gen_big_words.js [ENCODING...] > tests/tok/fixtures/big_words.json
//
// (default: cl100k_base and o200k_base; run one process per encoding to use several cores
// and concatenate their "words" lists).
'use strict';
const crypto = require('crypto');
const { bigWord, BIG_WORDS } = require('./words.js');

const out = [];
const encodings = process.argv.length > 2 ? process.argv.slice(2) : ['cl100k_base', 'o200k_base'];
for (const name of encodings) {
  const enc = require(`gpt-tokenizer/cjs/encoding/${name}`);
  for (const w of BIG_WORDS) {
    const text = bigWord(w.kind, w.bytes, w.seed);
    const t0 = Date.now();
    // encodeGenerator, not encode: encode() spreads a piece's tokens into push(), which
    // overflows the stack for a 1 MB piece.
    const ids = [];
    for (const part of enc.encodeGenerator(text)) for (const id of part) ids.push(id);
    const buf = Buffer.from(new Uint32Array(ids).buffer);
    out.push({ encoding: name, kind: w.kind, bytes: w.bytes, seed: w.seed, count: ids.length,
      sha256: crypto.createHash('sha256').update(buf).digest('hex') });
    process.stderr.write(`${name} ${w.kind}: ${ids.length} tokens in ${(Date.now() - t0) / 1000} s\n`);
  }
}
process.stdout.write(JSON.stringify({ reference: 'npm gpt-tokenizer 4.0.0', words: out }, null, 1) + '\n');
