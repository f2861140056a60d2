#!/usr/bin/env node
// Writes a deterministic chat fine-tuning file for the end-to-end tests: multi-turn
// conversations with system prompts, names, several languages, emoji and odd whitespace.
// Usage: gen_dataset.js N_EXAMPLES SEED > file.jsonl
'use strict';
const { rng } = require('../tok/adversarial.js');
const [n, seed] = process.argv.slice(2).map(Number);
const rand = rng(seed);
const pick = (a) => a[Math.floor(rand() * a.length)];
const words = ['clippy', 'paperclip', 'Word', 'document', "it's", 'you\'LL', 'really', 'help', 'HELP',
  'café', 'naïve', 'Straße', '日本語', 'привет', 'مرحبا', '👍🏽', '🙂', '1234567', '3.14159', '\t', '  ',
  'e\u0301', 'ǅ', 'x/y', '--', '...', '"quoted"', 'new\nline', 'CRLF\r\nhere', 'trailing '];
const sentence = () => Array.from({ length: 1 + Math.floor(rand() * 25) }, () => pick(words)).join(pick([' ', ' ', '', ', ']));
const lines = [];
for (let i = 0; i < n; i++) {
  const messages = [];
  if (rand() < 0.7) messages.push({ role: 'system', content: sentence() });
  const turns = 1 + Math.floor(rand() * 4);
  for (let t = 0; t < turns; t++) {
    const user = { role: 'user', content: sentence() };
    if (rand() < 0.2) user.name = pick(['bob', 'Ana_María', 'x1']);
    messages.push(user, { role: 'assistant', content: sentence() });
  }
  lines.push(JSON.stringify({ messages }));
}
process.stdout.write(lines.join('\n') + (seed % 2 ? '\n' : ''));
