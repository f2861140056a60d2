// bench/serve/load.mjs - drives `forja serve`'s chat completions endpoint and times it:
// prompt tokens/s, single-stream generated tokens/s, and aggregate generated tokens/s with
// N concurrent streaming requests. Node's own http module, nothing to install.
//
//   node load.mjs --url http://127.0.0.1:PORT --key KEY --model NAME --prompts FILE.json
//                 [--max-tokens 128] [--streams 1,4,16,64] [--reps 3] [--decode-reps 2]
//                 [--min-s 1]
//
// FILE.json is what prompts.py writes. Every request is POST /v1/chat/completions with
// temperature 0 (greedy). Measurements, after one warm-up request (which loads the model):
//   prefill  --reps non-streaming requests of the 512-token prompt with max_tokens 1 (more
//            until --min-s seconds are spent: a small model's requests are short); the
//            best wall time (send to whole response) -> usage.prompt_tokens / time. This
//            includes the HTTP round trip, rendering, tokenizing and one sampling step.
//   decode   --decode-reps streaming requests (more until --min-s s) of the short prompt with max_tokens N; from
//            the first chunk with content to the chunk with finish_reason:
//            (usage.completion_tokens - 1) / that time, the best run (the first token is
//            the prefill's; PyTorch's figure is counted the same way); also end to end.
//   streams  for each N: N streaming requests of N different short prompts sent at once;
//            aggregate = sum of usage.completion_tokens / (last response end - first
//            send); also the mean time to first content and each stream's own rate.
// Prints one JSON line per measurement.
import http from "node:http";
import { readFileSync } from "node:fs";

function args(argv) {
  const o = { maxTokens: 128, streams: "1,4,16,64", reps: 3, decodeReps: 2, minS: 1 };
  for (let i = 2; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, "").replace(/-(.)/g, (_, c) => c.toUpperCase());
    o[k] = argv[i + 1];
  }
  for (const k of ["url", "key", "model", "prompts"])
    if (!o[k]) throw new Error(`load.mjs: --${k} is required`);
  o.maxTokens = +o.maxTokens;
  o.reps = +o.reps;
  o.decodeReps = +o.decodeReps;
  o.minS = +o.minS;
  o.streams = String(o.streams).split(",").map(Number);
  return o;
}

const opt = args(process.argv);
const P = JSON.parse(readFileSync(opt.prompts, "utf8"));
const url = new URL("/v1/chat/completions", opt.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const now = () => Number(process.hrtime.bigint()) / 1e9;

// One request. Resolves {t0, tFirst, tEnd, usage, text, finish, chunks}; rejects on a
// non-200 answer or a malformed stream.
function chat(messages, maxTokens, stream) {
  const body = JSON.stringify({
    model: opt.model, messages, max_tokens: maxTokens, temperature: 0, stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });
  return new Promise((resolve, reject) => {
    const r = { t0: now(), tFirst: null, tEnd: null, usage: null, text: "", finish: null,
                chunks: 0 };
    const req = http.request(url, {
      method: "POST", agent,
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${opt.key}`,
                 "Content-Length": Buffer.byteLength(body) },
    }, (res) => {
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (d) => {
        buf += d;
        if (res.statusCode !== 200 || !stream) return;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, "");
          buf = buf.slice(i + 1);
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") { r.done = true; continue; }
          let c;
          try { c = JSON.parse(data); } catch (e) { reject(new Error(`bad SSE data: ${data}`)); return; }
          if (c.error) { reject(new Error(`stream error: ${JSON.stringify(c.error)}`)); return; }
          r.chunks++;
          if (c.usage) r.usage = c.usage;
          for (const ch of c.choices || []) {
            const t = ch.delta && ch.delta.content;
            if (t) {
              if (r.tFirst === null) r.tFirst = now();
              r.text += t;
            }
            if (ch.finish_reason) { r.finish = ch.finish_reason; r.tEnd = now(); }
          }
        }
      });
      res.on("end", () => {
        const tDone = now();
        if (res.statusCode !== 200) {
          reject(new Error(`HTTP ${res.statusCode}: ${buf.slice(0, 500)}`));
          return;
        }
        if (!stream) {
          const j = JSON.parse(buf);
          r.usage = j.usage;
          r.text = (j.choices && j.choices[0] && j.choices[0].message.content) || "";
          r.finish = j.choices && j.choices[0] && j.choices[0].finish_reason;
          r.tFirst = r.tEnd = tDone;
        } else if (!r.done) {
          reject(new Error("stream ended without data: [DONE]"));
          return;
        }
        if (!r.usage) { reject(new Error("no usage in the response")); return; }
        if (r.tEnd === null) r.tEnd = tDone;
        if (r.tFirst === null) r.tFirst = r.tEnd;
        r.tDone = tDone;
        resolve(r);
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const out = (o) => console.log(JSON.stringify({ impl: "forja", model: opt.model, ...o }));

// warm-up: the first request loads the model
{
  const t = now();
  await chat(P.decode_messages, 1, false);
  await chat(P.decode_messages, 4, true);
  out({ what: "warmup", s: now() - t });
}

// prompt tokens/s
{
  const times = [];
  let pt = 0;
  while (times.length < opt.reps ||
         (times.reduce((a, b) => a + b, 0) < opt.minS && times.length < 50)) {
    const r = await chat(P.prefill_messages, 1, false);
    times.push(r.tDone - r.t0);
    pt = r.usage.prompt_tokens;
  }
  const best = Math.min(...times);
  out({ what: "prefill", prompt_tokens: pt, expected_prompt_tokens: P.prefill.length,
        s: best, s_all: times, prompt_tok_s: pt / best });
}

// single-stream decoding
{
  let best = null;
  const all = [];
  let spent = 0;
  while (all.length < opt.decodeReps || (spent < opt.minS && all.length < 20)) {
    const r = await chat(P.decode_messages, opt.maxTokens, true);
    spent += r.tDone - r.t0;
    const n = r.usage.completion_tokens;
    r.rate = n > 1 && r.tEnd > r.tFirst ? (n - 1) / (r.tEnd - r.tFirst) : NaN;
    all.push(r.rate);
    if (!best || r.rate > best.rate) best = r;
  }
  out({ what: "decode", prompt_tokens: best.usage.prompt_tokens,
        expected_prompt_tokens: P.decode.length, completion_tokens: best.usage.completion_tokens,
        finish: best.finish, gen_tok_s: best.rate, gen_tok_s_all: all,
        gen_e2e_tok_s: best.usage.completion_tokens / (best.tDone - best.t0),
        ttft_s: best.tFirst - best.t0, text: best.text });
}

// concurrent streams
for (const n of opt.streams) {
  const msgs = [];
  for (let i = 0; i < n; i++) msgs.push(P.stream_messages[i % P.stream_messages.length]);
  const t0 = now();
  const rs = await Promise.all(msgs.map((m) => chat(m, opt.maxTokens, true)));
  const t1 = Math.max(...rs.map((r) => r.tDone));
  const tokens = rs.reduce((s, r) => s + r.usage.completion_tokens, 0);
  const per = rs.map((r) => r.usage.completion_tokens / (r.tDone - r.t0));
  const ttft = rs.map((r) => r.tFirst - r.t0);
  out({ what: "streams", streams: n, completion_tokens: tokens, s: t1 - t0,
        agg_tok_s: tokens / (t1 - t0),
        short: rs.filter((r) => r.usage.completion_tokens < opt.maxTokens).length,
        mean_ttft_s: ttft.reduce((a, b) => a + b, 0) / n, max_ttft_s: Math.max(...ttft),
        min_stream_tok_s: Math.min(...per), mean_stream_tok_s: per.reduce((a, b) => a + b, 0) / n });
}
agent.destroy();
