#!/usr/bin/env node
// Writes a chat fine-tuning JSONL file of about BYTES bytes for the `forja tokens`
// throughput benchmark: each example is a system prompt, then user/assistant turns, their
// text taken from consecutive lines of the corpus (so the content is real text).
//   gen_jsonl.js CORPUS BYTES > out.jsonl
'use strict';
const fs = require('fs');
const [file, bytesArg] = process.argv.slice(2);
const target = Number(bytesArg);
const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
const out = fs.openSync('/dev/stdout', 'w');
let written = 0, k = 0, batch = [];
while (written < target) {
  const messages = [{ role: 'system', content: 'You answer questions about manuals.' }];
  const turns = 1 + (k % 3);
  for (let t = 0; t < turns; t++) {
    messages.push({ role: 'user', content: lines[k++ % lines.length] });
    messages.push({ role: 'assistant', content: lines[k++ % lines.length] + ' ' + lines[k++ % lines.length] });
  }
  const s = JSON.stringify({ messages }) + '\n';
  written += Buffer.byteLength(s);
  batch.push(s);
  if (batch.length === 10000) { fs.writeSync(out, batch.join('')); batch = []; }
}
fs.writeSync(out, batch.join(''));
