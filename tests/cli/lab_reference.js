#!/usr/bin/env node
// The lab's "validate token counts" cell, run with independent tools: token counts by npm
// tiktoken (the same procedure as the notebook's num_tokens_from_messages and
// num_assistant_tokens_from_messages), statistics and printing by numpy in Python, exactly as
// the notebook prints them. Usage: lab_reference.js FILE... > expected.txt
'use strict';
const fs = require('fs');
const { execFileSync } = require('child_process');
const { get_encoding } = require('tiktoken');

const enc = get_encoding(process.env.ENCODING || 'cl100k_base');
const files = [];
for (const file of process.argv.slice(2)) {
  const dataset = fs.readFileSync(file, 'utf8').split('\n').filter((l, i, a) => i < a.length - 1 || l !== '')
    .map((l) => JSON.parse(l));
  const total = [], assistant = [];
  for (const ex of dataset) {
    let n = 0, a = 0;
    for (const m of ex.messages) {
      n += 3;
      for (const [k, v] of Object.entries(m)) {
        n += enc.encode(v).length;
        if (k === 'name') n += 1;
      }
      if (m.role === 'assistant') a += enc.encode(m.content).length;
    }
    total.push(n + 3);
    assistant.push(a);
  }
  files.push([file, total, assistant]);
}
const py = `
import json, sys
import numpy as np
def print_distribution(values, name):
    print(f"\\n##### Distribution of {name}:")
    print(f"min / max: {min(values)}, {max(values)}")
    print(f"mean / median: {np.mean(values)}, {np.median(values)}")
for file, total, assistant in json.load(sys.stdin):
    print(f"File: {file}")
    print_distribution(total, "total tokens")
    print_distribution(assistant, "assistant tokens")
    print('*' * 75)
`;
process.stdout.write(execFileSync('/usr/bin/python3', ['-c', py], { input: JSON.stringify(files) }));
