#!/usr/bin/env node
// The trainer's loss masks (src/train/dataset.c via tests/train/dataset_dump.c) against an
// independent rendering: ChatML written out in JavaScript (no template engine), each span
// tokenized on its own by npm tiktoken 1.0.22 (cl100k_base plus <|im_start|> = 100264 and
// <|im_end|> = 100265, special tokens allowed, as the trainer and Hugging Face do).
//
//   node tests/train/masking.mjs DATASET_DUMP FORJA TMP_DIR
//
// The rule being checked (src/chat/chat.h, docs/chat-templates.md): a ChatML message is
// `<|im_start|>{role}\n{content}<|im_end|>\n`; an assistant message's span is
// `{content}<|im_end|>\n` (its header is not part of it), trainable with weight 1 (the
// default), not with weight 0; the text between assistant spans is one non-trainable span;
// spans are never merged and each is encoded alone. A prompt/completion line is the
// prompt's tokens (mask 0), the completion's (mask 1), then <|im_end|> (mask 1).
//
// Checks: a chat file and a prompt/completion file on the built-in model (forja-base); the
// chat file again on a copy whose template adds a default system prompt (Qwen2.5's style);
// truncation at MAX_LEN 20; the problems reported, by line. Deliberately wrong expectations
// (the assistant header trainable, no eos after a completion) must mismatch. Prints the
// counts; exits 1 on any mismatch, showing the first difference.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(path.join(root, 'package.json'));
const [dumpBin, forjaBin, tmpArg] = process.argv.slice(2);
if (!dumpBin || !forjaBin || !tmpArg) {
  console.error('usage: node masking.mjs DATASET_DUMP FORJA TMP_DIR');
  process.exit(2);
}

// ---- reporting ------------------------------------------------------------------------------
let failures = 0;
const counts = {};
const count = (what, n = 1) => (counts[what] = (counts[what] || 0) + n);
function fail(msg) {
  failures++;
  if (failures <= 20) console.error('MISMATCH ' + msg);
}

// ---- the reference tokenizer ---------------------------------------------------------------
const { get_encoding } = require('tiktoken');
const IM_START = 100264, IM_END = 100265;
const enc = get_encoding('cl100k_base', { '<|im_start|>': IM_START, '<|im_end|>': IM_END });
const encode = (text) => (text.length ? Array.from(enc.encode(text, 'all')) : []);

// ---- expected tokens -------------------------------------------------------------------------
// spans: [[text, train], ...] -> { ids, mask }, each span encoded on its own.
function tokensOfSpans(spans) {
  const ids = [], mask = [];
  for (const [text, train] of spans) {
    if (text.length === 0) continue; // empty spans are left out
    for (const id of encode(text)) {
      ids.push(id);
      mask.push(train);
    }
  }
  return { ids, mask };
}

const DEFAULT_SYSTEM = 'You are a helpful assistant.';

// The spans of a conversation in ChatML. opts.defaultSystem: the template adds a system
// message when the first is not one. opts.headerTrainable: the deliberately wrong rule.
function chatSpans(messages, opts = {}) {
  const spans = [];
  let pending = '';
  if (opts.defaultSystem && messages[0].role !== 'system')
    pending += `<|im_start|>system\n${DEFAULT_SYSTEM}<|im_end|>\n`;
  for (const m of messages) {
    const header = `<|im_start|>${m.role}\n`;
    const body = `${m.content}<|im_end|>\n`;
    if (m.role !== 'assistant') {
      pending += header + body;
      continue;
    }
    const train = m.weight === 0 ? 0 : 1;
    if (opts.headerTrainable && train) {
      spans.push([pending, 0], [header + body, 1]);
    } else {
      spans.push([pending + header, 0], [body, train]);
    }
    pending = '';
  }
  spans.push([pending, 0]);
  return spans;
}

function expectChat(messages, opts) {
  return tokensOfSpans(chatSpans(messages, opts));
}

function expectCompletion(ex, opts = {}) {
  const spans = [[ex.prompt, 0], [ex.completion, 1]];
  const t = tokensOfSpans(spans);
  if (!opts.noEos) {
    t.ids.push(IM_END);
    t.mask.push(1);
  }
  return t;
}

// The first difference between an expected and a dumped example, or null.
function firstDifference(want, got) {
  const n = Math.max(want.ids.length, got.ids.length);
  for (let k = 0; k < n; k++) {
    if (want.ids[k] !== got.ids[k] || want.mask[k] !== got.mask[k]) {
      const ctx = (t) => JSON.stringify(t.ids.slice(Math.max(0, k - 3), k + 4).map((id, j) => `${id}/${t.mask[Math.max(0, k - 3) + j]}`));
      return `token ${k} of ${want.ids.length} expected / ${got.ids.length} got: ` +
        `expected ${want.ids[k]}/${want.mask[k]}, got ${got.ids[k]}/${got.mask[k]} ` +
        `(id/mask around it: expected ${ctx(want)}, got ${ctx(got)})`;
    }
  }
  return null;
}

// ---- the C side ------------------------------------------------------------------------------
function dump(modelDir, file, maxLen) {
  const args = [modelDir, file];
  if (maxLen !== undefined) args.push(String(maxLen));
  const r = spawnSync(dumpBin, args, { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`dataset_dump ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const lines = r.stdout.toString('utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  const tail = lines.pop();
  if (!tail || !Array.isArray(tail.problems)) throw new Error(`dataset_dump ${args.join(' ')}: no problems line`);
  const byLine = new Map();
  for (const ex of lines) {
    if (ex.ids.length !== ex.mask.length) fail(`${file}:${ex.line}: ${ex.ids.length} ids but ${ex.mask.length} mask values`);
    byLine.set(ex.line, ex);
  }
  return { examples: lines, byLine, problems: tail.problems, truncated: tail.truncated };
}

// Compares every expected example (cases[i] is line i + 1; null: no example expected).
function compareFile(label, file, result, cases, expectFn) {
  cases.forEach((c, i) => {
    const line = i + 1;
    const got = result.byLine.get(line);
    if (c.noExample) {
      if (got) fail(`${label}:${line} (${c.name}): an example came out of a line that should be refused`);
      else count('lines refused as expected');
      return;
    }
    if (!got) {
      fail(`${label}:${line} (${c.name}): no example (problems: ${JSON.stringify(result.problems.filter((p) => p.line === line))})`);
      return;
    }
    const want = expectFn(c);
    const diff = firstDifference(want, got);
    if (diff) {
      fail(`${label}:${line} (${c.name}): ${diff}`);
      return;
    }
    count('examples identical');
    count('tokens compared (ids and masks)', want.ids.length);
    count('trainable tokens', want.mask.filter((m) => m === 1).length);
  });
  const extra = result.examples.filter((e) => !(e.line >= 1 && e.line <= cases.length));
  if (extra.length) fail(`${label}: examples for lines that do not exist: ${extra.map((e) => e.line)}`);
}

// Problems: errors exactly on the lines marked error, warnings only where marked.
function checkProblems(label, result, cases) {
  cases.forEach((c, i) => {
    const line = i + 1;
    const mine = result.problems.filter((p) => p.line === line);
    const errors = mine.filter((p) => p.severity === 'error');
    const warnings = mine.filter((p) => p.severity === 'warning');
    if (c.noExample && errors.length === 0) fail(`${label}:${line} (${c.name}): refused without an error`);
    if (!c.noExample && errors.length) fail(`${label}:${line} (${c.name}): unexpected error ${JSON.stringify(errors)}`);
    if (!c.warn && warnings.length) fail(`${label}:${line} (${c.name}): unexpected warning ${JSON.stringify(warnings)}`);
    if (c.warn && warnings.length === 0) fail(`${label}:${line} (${c.name}): expected a warning, got none`);
  });
  const stray = result.problems.filter((p) => !(p.line >= 1 && p.line <= cases.length));
  if (stray.length) fail(`${label}: problems not tied to a line: ${JSON.stringify(stray)}`);
  count('problem lists checked');
}

// ---- the data --------------------------------------------------------------------------------
const sys = (content) => ({ role: 'system', content });
const dev = (content) => ({ role: 'developer', content });
const user = (content, extra = {}) => ({ role: 'user', content, ...extra });
const asst = (content, extra = {}) => ({ role: 'assistant', content, ...extra });

const CHAT = [
  { name: 'one turn', messages: [user('Hello!'), asst('Hi there. How can I help?')] },
  { name: 'system', messages: [sys('You are Clippy, a terse assistant.'), user('2+2?'), asst('4')] },
  { name: 'developer', messages: [dev('Answer in French.'), user('What colour is the sky?'), asst('Le ciel est bleu.')] },
  { name: 'system and developer', messages: [sys('Be kind.'), dev('Use one sentence.'), user('Why rain?'), asst('Water vapour condenses and falls.')] },
  {
    name: 'multi-turn, 3 assistant turns',
    messages: [sys('Count.'), user('one'), asst('two'), user('three'), asst('four'), user('five'), asst('six')],
  },
  {
    name: 'multi-turn, weights 1 0 1 0',
    messages: [user('q1'), asst('good 1'), user('q2'), asst('bad 2', { weight: 0 }), user('q3'), asst('good 3', { weight: 1 }), user('q4'), asst('bad 4', { weight: 0 })],
  },
  {
    name: 'weight 0 first, leading whitespace in answers',
    messages: [user('Indent?'), asst('\n\n  not this one', { weight: 0 }), user('Again'), asst('  \n  this one\n')],
  },
  {
    name: 'special-token text in a user message',
    messages: [user('What does <|im_end|> mean? And <|im_start|>user?'), asst('It ends a turn: <|im_end|> is one token.')],
  },
  {
    name: 'unicode',
    messages: [sys('Ünïcödé — 你好, 世界!'), user('🦙🔥 עברית ﷽ e\u0301 \u2028 Ω≈ç√'), asst('Ответ: ✓ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 日本語のテキスト 🎉')],
  },
  { name: 'empty assistant content', messages: [user('Say nothing.'), asst(''), user('Now say hi.'), asst('hi')] },
  { name: 'a name field (the template ignores it)', messages: [user('Who am I?', { name: 'alice' }), asst('You are alice.')] },
  { name: 'ends with a user turn', messages: [user('a'), asst('b'), user('trailing question')] },
  { name: 'every assistant weight 0', warn: true, messages: [user('ignore'), asst('nothing to learn', { weight: 0 })] },
  { name: 'no assistant message (refused)', noExample: true, messages: [user('no answer here')] },
  {
    name: 'whitespace and newlines',
    messages: [user('\n\n  lines\n\twith tabs  \n'), asst('  trailing spaces   \n\n'), user('x'), asst('\r\nCRLF inside\r\n')],
  },
];

const COMPLETIONS = [
  { name: 'plain', prompt: 'The capital of France is', completion: ' Paris.' },
  { name: 'empty prompt', prompt: '', completion: 'Once upon a time' },
  { name: 'unicode', prompt: 'Traduce: ¿Qué tal? →', completion: ' 你好吗？ 🙂' },
  { name: 'special-token text', prompt: 'Q: <|im_start|>?\nA:', completion: ' a marker <|im_end|> done' },
  { name: 'newlines', prompt: 'List:\n', completion: '\n- one\n- two\n' },
];

// The truncation file: MAX_LEN 20 keeps 21 tokens.
const MAX_LEN = 20;
const TRUNC = [
  { name: 'short (kept whole)', messages: [user('hi'), asst('yo')] },
  { name: 'long answer (truncated)', warn: true, messages: [user('Tell me a story.'), asst('Once upon a time there was a little forge that made tiny models, and every night it trained them on stories like this one until they spoke.')] },
  { name: 'long prompt (truncated, nothing left to learn)', warn: true, messages: [user('word '.repeat(60)), asst('ok')] },
];

// ---- files and models ------------------------------------------------------------------------
const tmp = path.resolve(tmpArg);
fs.rmSync(tmp, { recursive: true, force: true });
fs.mkdirSync(tmp, { recursive: true });
const dataDir = path.join(tmp, 'data');
{
  const r = spawnSync(forjaBin, ['models', 'init', '--data-dir', dataDir], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`forja models init failed (${r.status}): ${r.stderr}${r.stdout}`);
    process.exit(1);
  }
}
const base = path.join(dataDir, 'models', 'forja-base');

// The same model with Qwen2.5's kind of template: a default system prompt when none is given.
const withSystem = path.join(tmp, 'forja-base-default-system');
fs.mkdirSync(withSystem);
for (const f of fs.readdirSync(base)) {
  if (f.endsWith('.safetensors')) fs.symlinkSync(path.join(base, f), path.join(withSystem, f));
  else fs.copyFileSync(path.join(base, f), path.join(withSystem, f));
}
{
  const p = path.join(withSystem, 'tokenizer_config.json');
  const cfg = JSON.parse(fs.readFileSync(p, 'utf8'));
  cfg.chat_template =
    "{%- if messages[0]['role'] != 'system' %}{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}{%- endif %}" +
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{%- endfor %}" +
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  fs.writeFileSync(p, JSON.stringify(cfg, null, 2));
}

const write = (name, rows, eol = '\n') => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, rows.map((r) => JSON.stringify(r)).join(eol) + eol);
  return p;
};
const chatFile = write('chat.jsonl', CHAT.map((c) => ({ messages: c.messages })));
// CRLF line ends: the reader must strip them.
const complFile = write('completion.jsonl', COMPLETIONS.map((c) => ({ prompt: c.prompt, completion: c.completion })), '\r\n');
const truncFile = write('truncation.jsonl', TRUNC.map((c) => ({ messages: c.messages })));

// ---- 1. chat on forja-base -----------------------------------------------------------------
const chatBase = dump(base, chatFile);
compareFile('chat.jsonl (forja-base)', chatFile, chatBase, CHAT, (c) => expectChat(c.messages));
checkProblems('chat.jsonl (forja-base)', chatBase, CHAT);
if (chatBase.truncated !== 0) fail(`chat.jsonl: ${chatBase.truncated} examples truncated, expected none`);
// weight 0: nothing of that turn counts, and the all-weight-0 line has no 1 at all
{
  const got = chatBase.byLine.get(CHAT.findIndex((c) => c.name === 'every assistant weight 0') + 1);
  if (got && got.mask.some((m) => m !== 0)) fail('every assistant weight 0: a mask 1 in the example');
  else if (got) count('weight-0 examples with an all-zero mask');
}
// The decoded trainable text is exactly the weight-1 answers and their end of turn.
CHAT.forEach((c, i) => {
  const got = chatBase.byLine.get(i + 1);
  if (!got || c.noExample) return;
  const trained = got.ids.filter((_, k) => got.mask[k] === 1);
  const text = new TextDecoder().decode(enc.decode(new Uint32Array(trained)));
  const want = c.messages.filter((m) => m.role === 'assistant' && m.weight !== 0).map((m) => `${m.content}<|im_end|>\n`).join('');
  if (text !== want) fail(`chat.jsonl:${i + 1} (${c.name}): trainable text ${JSON.stringify(text)}, expected ${JSON.stringify(want)}`);
  else count('examples whose trainable text is the weighted answers');
});

// ---- 2. prompt/completion --------------------------------------------------------------------
const compl = dump(base, complFile);
compareFile('completion.jsonl', complFile, compl, COMPLETIONS, (c) => expectCompletion(c));
checkProblems('completion.jsonl', compl, COMPLETIONS);
for (const ex of compl.examples) {
  if (ex.ids[ex.ids.length - 1] !== IM_END || ex.mask[ex.mask.length - 1] !== 1)
    fail(`completion.jsonl:${ex.line}: does not end with <|im_end|> (${IM_END}) mask 1`);
}

// ---- 3. a template with a default system prompt ------------------------------------------
const chatSys = dump(withSystem, chatFile);
compareFile('chat.jsonl (default system prompt)', chatFile, chatSys, CHAT, (c) => expectChat(c.messages, { defaultSystem: true }));
checkProblems('chat.jsonl (default system prompt)', chatSys, CHAT);
{
  const head = encode(`<|im_start|>system\n${DEFAULT_SYSTEM}<|im_end|>\n`);
  CHAT.forEach((c, i) => {
    const a = chatBase.byLine.get(i + 1), b = chatSys.byLine.get(i + 1);
    if (!a || !b) return;
    const added = c.messages[0].role !== 'system';
    const lead = b.ids.slice(0, head.length);
    if (added) {
      if (JSON.stringify(lead) !== JSON.stringify(head) || b.mask.slice(0, head.length).some((m) => m !== 0))
        fail(`default system prompt, line ${i + 1} (${c.name}): does not start with the default system text at mask 0`);
      else count('examples with the default system text at mask 0');
    } else if (b.ids.length !== a.ids.length) {
      fail(`default system prompt, line ${i + 1} (${c.name}): the template added a system turn although one was given`);
    }
    // the answers still count, the same tokens in both models
    const tr = (e) => JSON.stringify(e.ids.filter((_, k) => e.mask[k] === 1));
    if (tr(a) !== tr(b)) fail(`default system prompt, line ${i + 1} (${c.name}): trainable tokens differ from forja-base's`);
  });
}

// ---- 4. truncation ---------------------------------------------------------------------------
const trunc = dump(base, truncFile, MAX_LEN);
checkProblems('truncation.jsonl', trunc, TRUNC);
TRUNC.forEach((c, i) => {
  const line = i + 1;
  const full = expectChat(c.messages);
  const got = trunc.byLine.get(line);
  if (!got) return fail(`truncation.jsonl:${line} (${c.name}): no example`);
  const cut = full.ids.length > MAX_LEN + 1;
  const want = { ids: full.ids.slice(0, MAX_LEN + 1), mask: full.mask.slice(0, MAX_LEN + 1) };
  if (cut && got.ids.length !== MAX_LEN + 1) fail(`truncation.jsonl:${line}: ${got.ids.length} tokens kept, expected ${MAX_LEN + 1}`);
  const diff = firstDifference(want, got);
  if (diff) return fail(`truncation.jsonl:${line} (${c.name}): ${diff}`);
  count('examples identical');
  count('tokens compared (ids and masks)', want.ids.length);
  const warned = trunc.problems.some((p) => p.line === line && p.severity === 'warning' && /truncated to/i.test(p.message));
  if (cut !== warned) fail(`truncation.jsonl:${line} (${c.name}): ${cut ? 'no truncation warning' : 'a truncation warning for an example that fits'}`);
  else if (cut) count('truncation warnings naming their line');
});
if (trunc.truncated !== 2) fail(`truncation.jsonl: ${trunc.truncated} examples reported truncated, expected 2`);
{
  const nothing = trunc.problems.filter((p) => p.line === 3 && p.severity === 'warning' && /nothing to learn|no token counts/i.test(p.message));
  if (nothing.length === 0) fail('truncation.jsonl:3: no warning that nothing is left to learn after truncation');
}

// ---- 5. the test can fail ------------------------------------------------------------------
// Wrong rules must disagree with forja wherever they make a difference.
CHAT.forEach((c, i) => {
  const got = chatBase.byLine.get(i + 1);
  if (!got || !c.messages.some((m) => m.role === 'assistant' && m.weight !== 0)) return;
  if (firstDifference(expectChat(c.messages, { headerTrainable: true }), got) === null)
    fail(`self-check: "header trainable" matched forja on chat.jsonl:${i + 1} (${c.name})`);
  else count('self-check: wrong expectations caught');
});
COMPLETIONS.forEach((c, i) => {
  const got = compl.byLine.get(i + 1);
  if (got && firstDifference(expectCompletion(c, { noEos: true }), got) === null)
    fail(`self-check: "no eos" matched forja on completion.jsonl:${i + 1}`);
  else if (got) count('self-check: wrong expectations caught');
});
{
  // a single flipped mask bit is found
  const c = CHAT[0], got = chatBase.byLine.get(1);
  const want = expectChat(c.messages);
  want.mask[want.mask.length - 1] ^= 1;
  if (got && firstDifference(want, got) === null) fail('self-check: a flipped mask bit went unnoticed');
  else if (got) count('self-check: wrong expectations caught');
}

enc.free();
for (const [k, v] of Object.entries(counts).sort()) console.log(`${String(v).padStart(7)}  ${k}`);
console.log(`examples: ${CHAT.length} chat lines (x2 models), ${COMPLETIONS.length} prompt/completion, ${TRUNC.length} truncation`);
if (failures) {
  console.error(`${failures} mismatches`);
  process.exit(1);
}
console.log('train masking: the trainer\'s ids and loss masks agree with ChatML + tiktoken');
