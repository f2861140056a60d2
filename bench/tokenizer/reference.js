#!/usr/bin/env node
// The references' side of bench/tokenizer: npm tiktoken 1.0.22 and gpt-tokenizer 4.0.0 encode
// the corpus on one thread, in the same ~1 MiB chunks and the same lines as tokbench.c, and
// print a JSON line per (implementation, mode) with the token total and MB/s (10^6 bytes/s).
// Units are turned into JS strings before the clock starts: the references take strings.
//
//   reference.js CORPUS ENCODING [--tiktoken-encode-lines]
'use strict';
const fs = require('fs');
const { get_encoding } = require('tiktoken');

const [file, encName, flag] = process.argv.slice(2);
const buf = fs.readFileSync(file);
const CHUNK = 1 << 20;

function units(lines) {
  const out = [];
  for (let i = 0; i < buf.length;) {
    let end;
    if (lines) {
      const nl = buf.indexOf(10, i);
      end = nl < 0 ? buf.length : nl + 1;
    } else {
      end = Math.min(i + CHUNK, buf.length);
      while (end < buf.length && (buf[end] & 0xc0) === 0x80) end--;
    }
    out.push(buf.toString('utf8', i, end));
    i = end;
  }
  return out;
}

function bench(impl, mode, list, encode) {
  const t0 = process.hrtime.bigint();
  let tokens = 0;
  for (const s of list) tokens += encode(s).length;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ impl, encoding: encName, mode, bytes: buf.length, tokens, seconds,
    mb_per_s: buf.length / seconds / 1e6 }));
}

const chunks = units(false), lines = units(true);
const tk = get_encoding(encName);
bench('tiktoken', 'chunks', chunks, (s) => tk.encode(s));
bench('tiktoken encode_ordinary', 'lines', lines, (s) => tk.encode_ordinary(s));
if (flag === '--tiktoken-encode-lines') bench('tiktoken', 'lines', lines, (s) => tk.encode(s));
const gt = require(`gpt-tokenizer/cjs/encoding/${encName}`);
bench('gpt-tokenizer', 'chunks', chunks, (s) => gt.encode(s));
bench('gpt-tokenizer', 'lines', lines, (s) => gt.encode(s));
