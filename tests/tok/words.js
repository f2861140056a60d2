// Deterministic generators for very long single words, shared by gen_big_words.js (which
// records the reference's ids) and parity.js (which has forja encode the same words).
'use strict';

// Alphabets: lowercase ASCII; lowercase Greek + Cyrillic (2-byte UTF-8 letters, category Ll).
const ALPHABETS = {
  lower_ascii: 'abcdefghijklmnopqrstuvwxyz',
  lower_greek_cyrillic: 'αβγδεζηθικλμνξοπρστυφχψωабвгдежзийклмнопрстуфхцчшщъыьэюя',
};

// Linear congruential generator (glibc's constants); the letter is taken from bits 16..30.
function bigWord(kind, bytes, seed) {
  const alphabet = Array.from(ALPHABETS[kind]);
  let x = seed >>> 0;
  const parts = [];
  let n = 0;
  while (true) {
    x = (Math.imul(x, 1103515245) + 12345) & 0x7fffffff;
    const ch = alphabet[(x >>> 16) % alphabet.length];
    const len = Buffer.byteLength(ch);
    if (n + len > bytes) break;
    parts.push(ch);
    n += len;
  }
  return parts.join('');
}

const BIG_WORDS = [
  { kind: 'lower_ascii', bytes: 1000000, seed: 12345 },
  { kind: 'lower_greek_cyrillic', bytes: 1000000, seed: 777 },
];

module.exports = { ALPHABETS, bigWord, BIG_WORDS };
