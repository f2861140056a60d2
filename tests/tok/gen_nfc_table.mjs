#!/usr/bin/env node
// Writes src/tok/nfc_table.c: the data of Unicode Normalization Form C (UAX #15) that
// src/tok/nfc.c needs for tokenizer.json files whose normalizer is "NFC" (Qwen 2/2.5/3).
//
//   node tests/tok/gen_nfc_table.mjs > src/tok/nfc_table.c
//
// The source is the JavaScript engine's own String.prototype.normalize (ICU), because the
// reference forja is compared with (npm @huggingface/transformers) normalizes with exactly
// that; the Unicode version is Node's (process.versions.unicode). Everything is derived by
// asking normalize() questions, so nothing is copied from another implementation:
//
//   decompositions  NFD(c) for every code point c with NFD(c) != c (Hangul syllables are
//                   left to the algorithm in nfc.c);
//   compositions    every c with NFC(c) == c != NFD(c) is a primary composite: its pair is
//                   (NFC(NFD(c) less its last code point), last code point), checked by
//                   NFC(pair) == c;
//   combining class only its order matters to NFC (canonical ordering sorts marks by it, and
//                   composition compares it), so the table holds an order-preserving rank:
//                   c is a non-starter iff NFD(U+0345 c) swaps the two (U+0345 has the
//                   highest class, 240), and NFD(a b) == b a iff class(a) > class(b) > 0;
//   quick check     a flag on every code point that can change under NFC or change its
//                   neighbours: NFC(c) != c, a non-starter, or the second of a composition
//                   pair (Hangul vowel and trailing jamo included). Text without a flagged
//                   code point is already NFC.
//
// tests/tok/nfc_table.sh runs this again and checks the committed file is what it writes.
const NCP = 0x110000;
const isSurrogate = (cp) => cp >= 0xd800 && cp < 0xe000;
const isHangulSyllable = (cp) => cp >= 0xac00 && cp <= 0xd7a3;
const chr = (cp) => String.fromCodePoint(cp);
const hex = (cp) => 'U+' + cp.toString(16).toUpperCase().padStart(4, '0');

const decomp = []; // [cp, [code points]]
const pairs = []; // [first, second, composite]
const nonStarters = [];
const flag = new Uint8Array(NCP);
for (let cp = 0; cp < NCP; cp++) {
  if (isSurrogate(cp) || isHangulSyllable(cp)) continue;
  const s = chr(cp);
  const d = s.normalize('NFD');
  if (s.normalize('NFC') !== s) flag[cp] = 1;
  if (d !== s) {
    decomp.push([cp, [...d].map((c) => c.codePointAt(0))]);
    if (s.normalize('NFC') === s) {
      const parts = [...d];
      const last = parts.pop();
      const first = [...parts.join('').normalize('NFC')];
      if (first.length !== 1 || (first[0] + last).normalize('NFC') !== s)
        throw new Error(`cannot derive the composition pair of ${hex(cp)}`);
      pairs.push([first[0].codePointAt(0), last.codePointAt(0), cp]);
    }
  } else if (cp === 0x345 || ('\u0345' + s).normalize('NFD') === s + '\u0345') {
    nonStarters.push(cp);
  }
}

// Combining-class ranks: sort the non-starters by class, then number the distinct classes.
const cmp = (a, b) => {
  if (a === b) return 0;
  const sa = chr(a), sb = chr(b);
  if ((sa + sb).normalize('NFD') === sb + sa) return 1;
  if ((sb + sa).normalize('NFD') === sa + sb) return -1;
  return 0;
};
nonStarters.sort((a, b) => cmp(a, b) || a - b);
const rank = new Uint8Array(NCP);
let r = 0;
for (let i = 0; i < nonStarters.length; i++) {
  if (i === 0 || cmp(nonStarters[i - 1], nonStarters[i]) < 0) r++;
  rank[nonStarters[i]] = r;
  flag[nonStarters[i]] = 1;
}
if (r >= 128) throw new Error(`${r} combining classes do not fit in 7 bits`);
for (const [, second] of pairs) flag[second] = 1;
for (let cp = 0x1161; cp <= 0x1175; cp++) flag[cp] = 1; // Hangul V: L V -> LV
for (let cp = 0x11a8; cp <= 0x11c2; cp++) flag[cp] = 1; // Hangul T: LV T -> LVT
let minFlagged = NCP;
for (let cp = 0; cp < NCP; cp++) if (flag[cp]) { minFlagged = cp; break; }

// Two-stage table, as unicode_table.c: value = flag << 7 | class rank.
const BLOCK = 128;
const blocks = new Map();
const stage1 = [];
const stage2 = [];
for (let b = 0; b < NCP / BLOCK; b++) {
  const vals = [];
  for (let cp = b * BLOCK; cp < (b + 1) * BLOCK; cp++) vals.push((flag[cp] << 7) | rank[cp]);
  const key = vals.join(',');
  let id = blocks.get(key);
  if (id === undefined) {
    id = blocks.size;
    blocks.set(key, id);
    stage2.push(...vals);
  }
  stage1.push(id);
}
if (blocks.size > 256) throw new Error('too many blocks for a uint8_t stage 1');

pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
const pool = [];
const dOff = [];
for (const [, cps] of decomp) {
  dOff.push(pool.length);
  pool.push(...cps);
}
const maxLen = Math.max(...decomp.map(([, cps]) => cps.length));

const rows = (arr, per, fmt = (x) => String(x)) => {
  const out = [];
  for (let i = 0; i < arr.length; i += per) out.push('    ' + arr.slice(i, i + per).map(fmt).join(', ') + ',');
  return out.join('\n');
};
const h = (x) => '0x' + x.toString(16).toUpperCase();
process.stdout.write(`/* clang-format off */
/* nfc_table.c - data of Unicode Normalization Form C for src/tok/nfc.c.
 *
 * Generated by tests/tok/gen_nfc_table.mjs from Node's String.prototype.normalize (ICU,
 * Unicode ${process.versions.unicode}). Do not edit.
 * tok_nfc_stage2[tok_nfc_stage1[cp >> 7] * 128 + (cp & 127)]: bit 7 = may change under NFC
 * (or change a neighbour), bits 0-6 = order-preserving rank of the canonical combining class.
 */
#include "tok/nfc.h"

const char tok_nfc_version[] = "${process.versions.unicode}";

const uint8_t tok_nfc_stage1[${stage1.length}] = {
${rows(stage1, 24)}
};

const uint8_t tok_nfc_stage2[${stage2.length}] = {
${rows(stage2, 24)}
};

/* Full canonical decompositions (Hangul syllables excepted), sorted by code point:
 * tok_nfc_decomp_cp[i] decomposes into tok_nfc_decomp_len[i] code points of tok_nfc_pool
 * from tok_nfc_decomp_off[i]. */
const size_t tok_nfc_n_decomp = ${decomp.length};
const uint32_t tok_nfc_decomp_cp[${decomp.length}] = {
${rows(decomp.map(([cp]) => cp), 12, h)}
};
const uint16_t tok_nfc_decomp_off[${decomp.length}] = {
${rows(dOff, 16)}
};
const uint8_t tok_nfc_decomp_len[${decomp.length}] = {
${rows(decomp.map(([, cps]) => cps.length), 32)}
};
const uint32_t tok_nfc_pool[${pool.length}] = {
${rows(pool, 12, h)}
};

/* Primary composites (Hangul excepted) by their pair: key (first << 21 | second), sorted. */
const size_t tok_nfc_n_pairs = ${pairs.length};
const uint64_t tok_nfc_pair_key[${pairs.length}] = {
${rows(pairs.map(([a, b]) => (BigInt(a) << 21n) | BigInt(b)), 8, (x) => '0x' + x.toString(16).toUpperCase() + 'ull')}
};
const uint32_t tok_nfc_pair_cp[${pairs.length}] = {
${rows(pairs.map(([, , c]) => c), 12, h)}
};

const uint32_t tok_nfc_min_flagged = ${h(minFlagged)};
const int tok_nfc_max_decomp = ${maxLen};
`);
