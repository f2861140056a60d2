// tests/compat/chat.mjs - chat completions on the built-in model through the official openai
// SDK: bad input answered with 400/404 in the API's shape, sampling parameters (seed, n,
// stop, max_tokens, logprobs) checked by properties that can fail, greedy answers the same
// alone and batched with others, a capacity-1 deployment's 429 with retry-after that the
// SDK's own retry gets past, a client that goes away mid-stream freeing its slot, and 200
// concurrent streams all completing in bounded memory.
import fs from 'node:fs';
import assert from 'node:assert/strict';
import { APIError, BadRequestError, NotFoundError, RateLimitError } from 'openai';
import {
  forjaTest, check, ok, expectError, sleep, waitFor, managementToken, putDeployment, waitDeployment, streamChat,
} from './lib.mjs';

const M = 'forja-base';
const user = (content) => [{ role: 'user', content }];

/** The server's inference gauges from /metrics. */
async function inferGauges(srv) {
  const r = await srv.fetch('/metrics', { headers: { Authorization: `Bearer ${srv.key}` } });
  const num = (re) => Number((re.exec(r.text) || [])[1]);
  return {
    running: num(/forja_inference_sequences\{state="running"\} (\d+)/),
    queued: num(/forja_inference_sequences\{state="queued"\} (\d+)/),
    generated: num(/forja_inference_tokens_total\{kind="generated"\} (\d+)/),
  };
}

function rssMb(pid, field = 'VmHWM') {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) / 1024;
}

forjaTest('chat completions: errors, sampling, batching, rate limits, disconnects, load', async (h) => {
  const dir = h.dataDir('chat');
  const key = h.createKey(dir, 'chat');
  const srv = await h.startServer(dir, ['--max-batch', '32'], 'chat server');
  srv.key = key;
  const oa = srv.openai(key);
  const az = srv.azure(key, { apiVersion: '2024-02-01' });

  // --- bad input --------------------------------------------------------------------------------
  await expectError(oa.chat.completions.create({ model: 'no-such-model', messages: user('hi') }), NotFoundError, 404, 'unknown model: 404');
  await expectError(az.chat.completions.create({ model: 'no-such-deployment', messages: user('hi') }), NotFoundError, 404, 'unknown deployment: 404');
  const bad = [
    ['empty messages', { messages: [] }],
    ['no messages', { messages: undefined }],
    ['unknown role', { messages: [{ role: 'wizard', content: 'hi' }] }],
    ['content of the wrong type', { messages: [{ role: 'user', content: 42 }] }],
    ['max_tokens 0', { max_tokens: 0 }],
    ['max_tokens larger than the context', { max_tokens: 5000 }],
    ['n 0', { n: 0 }],
    ['n 17', { n: 17 }],
    ['temperature -0.1', { temperature: -0.1 }],
    ['temperature 2.1', { temperature: 2.1 }],
    ['top_p 1.5', { top_p: 1.5 }],
    ['five stop strings', { stop: ['a', 'b', 'c', 'd', 'e'] }],
    ['top_logprobs without logprobs', { top_logprobs: 2 }],
    ['a string temperature', { temperature: 'hot' }],
  ];
  for (const [what, over] of bad) {
    const e = await expectError(oa.chat.completions.create({ model: M, messages: user('hi'), ...over }), BadRequestError, 400, `${what}: 400`);
    assert.equal(e.error?.type ?? e.type, 'invalid_request_error', `${what}: ${JSON.stringify(e.error)}`);
  }
  const long = 'forja '.repeat(2100);
  const e = await expectError(oa.chat.completions.create({ model: M, messages: user(long) }), BadRequestError, 400, 'a prompt longer than the context: 400');
  await check('... whose message gives the context and the prompt\'s token count', () => {
    assert.match(e.message, /maximum context length is 2048 tokens/);
    assert.match(e.message, /\((\d+) in the messages/);
    assert.equal(e.code, 'context_length_exceeded');
  });
  await check('malformed JSON: 400 in the OpenAI shape', async () => {
    const r = await srv.fetch('/v1/chat/completions', { method: 'POST', headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' }, body: '{"model": "forja-base", "messages": [' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.type, 'invalid_request_error');
  });

  // --- sampling -------------------------------------------------------------------------------
  const greedy = await oa.chat.completions.create({ model: M, messages: user('Tell me about the sea'), temperature: 0, max_tokens: 24 });
  const text = greedy.choices[0].message.content;
  await check('max_tokens is honoured: 24 completion tokens, finish_reason length', () => {
    assert.equal(greedy.usage.completion_tokens, 24);
    assert.equal(greedy.choices[0].finish_reason, 'length');
    assert.ok(text.length > 10, text);
  });
  await check('a stop string inside the greedy text cuts it there, is left out, finish_reason stop', async () => {
    const stop = text.slice(6, 11);
    const r = await oa.chat.completions.create({ model: M, messages: user('Tell me about the sea'), temperature: 0, max_tokens: 24, stop: [stop, 'zzzzzz'] });
    assert.equal(r.choices[0].message.content, text.slice(0, text.indexOf(stop)));
    assert.equal(r.choices[0].finish_reason, 'stop');
  });
  await check('the same seed gives the same sample; n = 3 gives three choices', async () => {
    const body = { model: M, messages: user('Tell me about the sea'), temperature: 1, max_tokens: 16, seed: 42, n: 3 };
    const a = await oa.chat.completions.create(body);
    const b = await oa.chat.completions.create(body);
    assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2]);
    assert.deepEqual(a.choices.map((c) => c.message.content), b.choices.map((c) => c.message.content));
    assert.equal(new Set(a.choices.map((c) => c.message.content)).size > 1, true, 'three samples, not one repeated');
    assert.equal(a.usage.completion_tokens, 48);
    const c = await oa.chat.completions.create({ ...body, seed: 43 });
    assert.notDeepEqual(c.choices.map((x) => x.message.content), a.choices.map((x) => x.message.content));
  });
  await check('logprobs: one entry per token, top_logprobs sorted, the greedy token first, text = the tokens', async () => {
    const r = await oa.chat.completions.create({ model: M, messages: user('Tell me about the sea'), temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3 });
    const lp = r.choices[0].logprobs.content;
    assert.equal(lp.length, 8);
    for (const t of lp) {
      assert.ok(t.logprob <= 0, JSON.stringify(t));
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0].token, t.token);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6);
      for (let i = 1; i < 3; i++) assert.ok(t.top_logprobs[i - 1].logprob >= t.top_logprobs[i].logprob);
    }
    assert.equal(Buffer.from(lp.flatMap((t) => t.bytes)).toString('utf8'), r.choices[0].message.content);
  });
  await check('presence and frequency penalties change a repetitive greedy answer', async () => {
    const base = { model: M, messages: user('Tell me about the sea'), temperature: 0, max_tokens: 24 };
    const p = await oa.chat.completions.create({ ...base, frequency_penalty: 2, presence_penalty: 2 });
    assert.notEqual(p.choices[0].message.content, text);
  });

  // --- batching: the same greedy tokens alone and together --------------------------------------
  const prompts = ['Who discovered Antarctica?', 'hi', 'What is the largest planet in the solar system, and why?', 'Count: 1 2 3 4 5 6 7 8 9',
    'Clippy', 'Does Azure OpenAI support customer managed keys?', 'a b c', 'Write a haiku about the sea and the wind'];
  const alone = [];
  for (const p of prompts) alone.push((await oa.chat.completions.create({ model: M, messages: user(p), temperature: 0, max_tokens: 20 + p.length % 7 })).choices[0].message.content);
  const together = await Promise.all(prompts.map((p, i) => (i % 2
    ? streamChat(oa, { model: M, messages: user(p), temperature: 0, max_tokens: 20 + p.length % 7 }).then((s) => s.text)
    : oa.chat.completions.create({ model: M, messages: user(p), temperature: 0, max_tokens: 20 + p.length % 7 }).then((r) => r.choices[0].message.content))));
  await check('8 concurrent greedy requests (different lengths, streamed and not) = each alone', () => assert.deepEqual(together, alone));

  // --- a capacity-1 deployment: 1000 tokens per minute ----------------------------------------
  const token = managementToken(dir);
  assert.equal((await putDeployment(srv, token, 'tiny', M, 1)).status, 201);
  assert.equal((await waitDeployment(srv, token, 'tiny')).properties.provisioningState, 'Succeeded');
  const req = { model: 'tiny', messages: user('hi'), max_tokens: 300, temperature: 0 };
  let used = 0;
  for (let i = 0; i < 3; i++) {
    const r = await az.chat.completions.create(req);
    used += r.usage.total_tokens;
  }
  ok(`3 requests admitted (${used} tokens used, ${3 * 300} completion tokens reserved)`);
  const limited = await expectError(az.chat.completions.create(req), RateLimitError, 429, 'the next one is over 1,000 tokens in a minute: 429');
  await check('... with retry-after and the Azure error code', () => {
    const ra = Number(limited.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 60, `retry-after ${ra}`);
    assert.equal(limited.code, '429');
  });
  const retrying = srv.azure(key, { apiVersion: '2024-02-01', maxRetries: 3 });
  const t0 = Date.now();
  const after = await retrying.chat.completions.create(req);
  await check(`the SDK's retry honours retry-after and then succeeds (${((Date.now() - t0) / 1000).toFixed(1)} s)`, () => {
    assert.equal(after.object, 'chat.completion');
    assert.ok(Date.now() - t0 >= 900, 'it waited');
  });

  // --- a client that goes away mid-stream ---------------------------------------------------------
  await check('a client that disconnects mid-stream frees its slot at once', async () => {
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST', signal: ac.signal,
      headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: M, messages: user('go on forever'), max_tokens: 1900, temperature: 1, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const reader = res.body.getReader();
    await reader.read();
    await reader.read();
    const before = await inferGauges(srv);
    assert.equal(before.running, 1, JSON.stringify(before));
    ac.abort();
    await waitFor('the slot freed', async () => (await inferGauges(srv)).running === 0, { timeoutMs: 5000, pollMs: 20 });
    const g1 = (await inferGauges(srv)).generated;
    await sleep(300);
    assert.equal((await inferGauges(srv)).generated, g1, 'no tokens are generated for it any more');
  });

  // --- 200 concurrent streams -----------------------------------------------------------------
  const rss0 = rssMb(srv.proc.pid, 'VmRSS');
  const t1 = Date.now();
  const many = await Promise.all(Array.from({ length: 200 }, (_, i) => streamChat(srv.openai(key, { timeout: 600_000 }),
    { model: M, messages: user(`request ${i}`), max_tokens: 12, temperature: 0.7, seed: i, stream_options: { include_usage: true } })));
  const peak = rssMb(srv.proc.pid);
  await check(`200 concurrent streams all complete (${((Date.now() - t1) / 1000).toFixed(1)} s), peak RSS ${peak.toFixed(0)} MB (${rss0.toFixed(0)} before)`, () => {
    for (const s of many) {
      assert.equal(s.finish, 'length');
      assert.equal(s.usage.completion_tokens, 12);
    }
    assert.ok(peak < rss0 + 800, `memory grew by ${(peak - rss0).toFixed(0)} MB`);
  });
  const g = await inferGauges(srv);
  await check('afterwards nothing runs or waits', () => assert.deepEqual([g.running, g.queued], [0, 0]));

  // --- SIGTERM while streams and a plain request are running ------------------------------------
  await check('SIGTERM during generation: the server ends the chats and exits 0', async () => {
    const body = { model: M, messages: user('go on'), max_tokens: 1900, temperature: 1 };
    const plain = oa.chat.completions.create(body).then(() => 'answered', (e) => `error ${e.status ?? e.message}`);
    const streams = [0, 1].map(() => streamChat(oa, body).then(() => 'ended', (e) => `error ${e.message}`));
    await waitFor('the generations running', async () => (await inferGauges(srv)).running === 3, { timeoutMs: 10_000, pollMs: 20 });
    const r = await srv.stop();
    assert.equal(r.code, 0, `exit ${JSON.stringify(r)}\n${srv.logs(20)}`);
    const outcomes = await Promise.all([plain, ...streams]);
    ok(`outcomes: ${outcomes.join(', ')}`);
    assert.notEqual(outcomes[0], 'answered', 'a 1900-token answer cannot have finished');
  });

  // --- a model that does not fit the inference memory ---------------------------------------
  const small = await h.startServer(h.dataDir('small'), ['--infer-memory-mb', '16'], 'small server');
  const skey = h.createKey(small.dataDir, 'small');
  const stoken = managementToken(small.dataDir);
  assert.equal((await putDeployment(small, stoken, 'too-big', M, 1)).status, 201);
  const failed = await waitDeployment(small, stoken, 'too-big');
  await check('a deployment that does not fit the memory budget is Failed with the reason, not an OOM kill', () => {
    assert.equal(failed.properties.provisioningState, 'Failed', JSON.stringify(failed));
    assert.match(failed.properties.error.message, /memory budget/);
    assert.ok(small.running, 'the server is still up');
  });
  await expectError(small.openai(skey).chat.completions.create({ model: M, messages: user('hi') }), APIError, 503,
    'a chat with a model that does not fit: 503 with the reason');
});
