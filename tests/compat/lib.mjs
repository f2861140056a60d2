// tests/compat/lib.mjs - what the API compatibility tests share: a real `forja serve` per
// test (started on a fresh data dir with --port 0, stopped with SIGTERM, never left behind),
// API keys from `forja keys create`, clients of the official `openai` SDK pointed at it,
// job polling, sha256 of files, and the temp dir (removed on success, kept and named on
// failure together with the tail of every server's stdout and stderr).
//
// Environment: FORJA_BIN (the forja binary; default <repo>/build/forja), FORJA_SHARED (the
// shared folder; else FORJA_SHARED_DEFAULT, which CTest sets; else <repo>/../shared),
// FORJA_TEST_TMP (where temp dirs go; default os.tmpdir()), FORJA_JOB_TIMEOUT_S (how long a
// job may take to reach a status; 600).
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import OpenAI, { AzureOpenAI, APIError } from 'openai';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '../..');
export const FORJA_BIN = process.env.FORJA_BIN || path.join(REPO, 'build', 'forja');
export const SHARED = process.env.FORJA_SHARED || process.env.FORJA_SHARED_DEFAULT || path.resolve(REPO, '..', 'shared');
export const CLIPPY = path.join(SHARED, 'data', 'clippy');
export const TRAIN = path.join(CLIPPY, 'training_set.jsonl');
export const VALID = path.join(CLIPPY, 'validation_set.jsonl');
export const TMP_BASE = process.env.FORJA_TEST_TMP || os.tmpdir();
export const AZURE_API_VERSION = '2024-05-01-preview'; // the lab's
export const JOB_TIMEOUT_MS = Number(process.env.FORJA_JOB_TIMEOUT_S || 600) * 1000;
const START_TIMEOUT_MS = 120_000; // slow under AddressSanitizer
const STOP_TIMEOUT_MS = 60_000;

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const JOB_STATUSES = new Set(['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'paused']);
// API.md's job object: every key present, null where it does not apply yet.
export const JOB_KEYS = ['id', 'object', 'created_at', 'finished_at', 'error', 'fine_tuned_model', 'hyperparameters',
  'model', 'organization_id', 'result_files', 'seed', 'status', 'trained_tokens', 'training_file', 'validation_file',
  'estimated_finish', 'integrations', 'metadata', 'method', 'suffix'];
export const FILE_KEYS = ['id', 'object', 'bytes', 'created_at', 'filename', 'purpose', 'status', 'status_details'];
export const METRIC_KEYS = ['step', 'train_loss', 'train_mean_token_accuracy', 'valid_loss', 'valid_mean_token_accuracy',
  'full_valid_loss', 'full_valid_mean_token_accuracy'];
export const RESULTS_HEADER = METRIC_KEYS.join(',');
export const ALIASES = ['gpt-4o', 'gpt-4o-mini', 'gpt-35-turbo', 'gpt-4.1-mini'];

// --- checks, printed one line each ------------------------------------------------------------
export function ok(msg) { console.log(`ok   ${msg}`); }

/** check(msg, fn): runs fn (its asserts), prints "ok msg" or "FAIL msg", returns fn's value. */
export async function check(msg, fn) {
  try {
    const r = await fn();
    ok(msg);
    return r;
  } catch (e) {
    console.log(`FAIL ${msg}`);
    throw e;
  }
}

/** expectError(promise, Class, status, msg): the call fails with that SDK error class and status. */
export async function expectError(promise, Class, status, msg) {
  let err = null;
  try {
    const v = await promise;
    err = new assert.AssertionError({ message: `${msg}: expected ${Class.name} ${status}, the call succeeded with ${JSON.stringify(v)?.slice(0, 400)}` });
  } catch (e) {
    if (!(e instanceof Class) || (status !== undefined && e.status !== status)) {
      console.log(`FAIL ${msg}`);
      throw new assert.AssertionError({ message: `${msg}: expected ${Class.name} ${status ?? ''}, got ${e?.constructor?.name} status=${e?.status} ${e?.message}` });
    }
    ok(msg);
    return e;
  }
  console.log(`FAIL ${msg}`);
  throw err;
}

export const nowSec = () => Math.floor(Date.now() / 1000);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const isInt = (v) => Number.isInteger(v);

export function assertKeys(obj, keys, what) {
  for (const k of keys) assert.ok(Object.prototype.hasOwnProperty.call(obj, k) && obj[k] !== undefined, `${what}: key '${k}' is missing (fields that do not apply are null, not absent): ${JSON.stringify(obj)}`);
}

/** A plausible unix-seconds timestamp (integer, within the test's run). */
export function assertTimestamp(v, what, notBefore) {
  assert.ok(isInt(v), `${what}: integer unix seconds, got ${JSON.stringify(v)}`);
  const now = nowSec();
  assert.ok(v >= (notBefore ?? now - 3600) - 2 && v <= now + 5, `${what}: ${v} is not a current unix time (now ${now})`);
}

export function sha256File(p) { return crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'); }
export function sha256(buf) { return crypto.createHash('sha256').update(buf).digest('hex'); }

/** Lines of a JSONL file (the lab's files have no trailing newline). */
export function jsonlLines(p) { return fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length > 0); }

/** Collects every item of an SDK list (auto-pagination). */
export async function listAll(pagePromise) {
  const out = [];
  for await (const item of pagePromise) out.push(item);
  return out;
}

/** Reads a files.content() Response into a Buffer. */
export async function contentBytes(client, id) {
  const res = await client.files.content(id);
  return Buffer.from(await res.arrayBuffer());
}

// --- processes --------------------------------------------------------------------------------
function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { pid, state: f[0], ppid: Number(f[1]), start: f[19] };
  } catch {
    return null;
  }
}

/** Live descendants of pid (processes, not threads), each {pid, start} to survive pid reuse. */
export function descendants(pid) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = procStat(Number(d));
    if (!st || st.state === 'Z') continue;
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(st);
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    for (const c of kids.get(todo.pop()) || []) { out.push({ pid: c.pid, start: c.start }); todo.push(c.pid); }
  }
  return out;
}

function stillAlive(p) {
  const st = procStat(p.pid);
  return st !== null && st.state !== 'Z' && st.start === p.start;
}

async function waitGone(procs, ms) {
  const end = Date.now() + ms;
  let left = procs.filter(stillAlive);
  while (left.length && Date.now() < end) { await sleep(100); left = left.filter(stillAlive); }
  return left;
}

function describeProc(p) {
  try { return `${p.pid} (${fs.readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').join(' ').trim()})`; } catch { return String(p.pid); }
}

const LIVE = new Set(); // servers whose process may still run: killed when this process ends
function killEverything() {
  for (const s of LIVE) {
    const procs = s.proc.pid ? descendants(s.proc.pid) : [];
    try { s.proc.kill('SIGKILL'); } catch {}
    for (const p of procs) { try { process.kill(p.pid, 'SIGKILL'); } catch {} }
  }
  LIVE.clear();
}
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { console.log(`# ${sig}: killing the servers`); killEverything(); process.exit(128 + os.constants.signals[sig]); });
}

// --- the forja CLI ----------------------------------------------------------------------------
export function forjaSync(args, { timeoutMs = 120_000 } = {}) {
  const r = spawnSync(FORJA_BIN, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) throw new Error(`cannot run ${FORJA_BIN} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

/** `forja keys create --data-dir DIR --name NAME`: the key alone on stdout's first line. */
export function createKey(dataDir, name = 'compat') {
  const r = forjaSync(['keys', 'create', '--data-dir', dataDir, '--name', name]);
  assert.equal(r.status, 0, `forja keys create exited ${r.status} (signal ${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const key = r.stdout.split('\n')[0].trim();
  assert.match(key, /^\S{16,}$/, `forja keys create: the first line of stdout should be the key alone, got ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return key;
}

// --- the server -------------------------------------------------------------------------------
export class Server {
  constructor(dataDir, args, label) {
    this.dataDir = dataDir;
    this.args = args;
    this.label = label;
    this.stdout = '';
    this.stderr = '';
    this.exit = null; // {code, signal} once it has exited
    this.port = null;
  }

  async start() {
    const argv = ['serve', '--data-dir', this.dataDir, '--host', '127.0.0.1', '--port', '0', ...this.args];
    this.cmd = `${FORJA_BIN} ${argv.join(' ')}`;
    if (!fs.existsSync(FORJA_BIN)) throw new Error(`FORJA_BIN ${FORJA_BIN} does not exist (build forja, or set FORJA_BIN)`);
    const proc = spawn(FORJA_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    LIVE.add(this);
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.exit = { code, signal };
      LIVE.delete(this);
      resolve(this.exit);
    }));
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => { this.stderr += d; });
    const listening = new Promise((resolve, reject) => {
      proc.stdout.on('data', (d) => {
        this.stdout += d;
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.stdout);
        if (m && this.port === null) { this.port = Number(m[1]); resolve(); }
      });
      proc.on('error', (e) => reject(new Error(`cannot start ${this.cmd}: ${e.message}`)));
      this.exited.then((e) => reject(new Error(`forja serve exited (code ${e.code}, signal ${e.signal}) before listening\n${this.logs()}`)));
      setTimeout(() => reject(new Error(`forja serve printed no 'listening on http://127.0.0.1:PORT' line within ${START_TIMEOUT_MS / 1000} s\n${this.logs()}`)), START_TIMEOUT_MS).unref();
    });
    try {
      await listening;
    } catch (e) {
      await this.kill9().catch(() => {});
      throw e;
    }
    assert.ok(this.port > 0 && this.port < 65536, `port ${this.port}`);
    const m = /API key: (\S+)/.exec(this.stdout);
    this.printedKey = m ? m[1] : null;
    console.log(`# ${this.label}: forja serve pid ${proc.pid} on ${this.url} (data dir ${this.dataDir})`);
    return this;
  }

  get url() { return `http://127.0.0.1:${this.port}`; }
  get running() { return this.exit === null && this.proc !== undefined; }

  openai(apiKey, opts = {}) {
    return new OpenAI({ baseURL: `${this.url}/v1`, apiKey, maxRetries: 0, timeout: 120_000, ...opts });
  }

  azure(apiKey, opts = {}) {
    return new AzureOpenAI({ endpoint: this.url, apiKey, apiVersion: AZURE_API_VERSION, maxRetries: 0, timeout: 120_000, ...opts });
  }

  /** Plain fetch against the server: {status, headers, text, json}. */
  async fetch(pathAndQuery, init = {}) {
    const res = await fetch(this.url + pathAndQuery, { ...init, signal: AbortSignal.timeout(120_000) });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, headers: res.headers, text, json };
  }

  logs(lines = 80) {
    const tail = (s) => s.split('\n').slice(-lines).join('\n');
    return `--- ${this.label} (${this.cmd}) stdout, last ${lines} lines:\n${tail(this.stdout)}\n--- stderr:\n${tail(this.stderr)}\n---`;
  }

  /** SIGTERM; waits for it and its workers. {code, signal, forced, survivors}. */
  async stop() {
    if (!this.running) return { ...this.exit, forced: false, survivors: [] };
    const procs = descendants(this.proc.pid);
    this.proc.kill('SIGTERM');
    let forced = false;
    let timer;
    const t = await Promise.race([this.exited, new Promise((r) => { timer = setTimeout(() => r(null), STOP_TIMEOUT_MS); })]);
    clearTimeout(timer);
    if (t === null) { forced = true; this.proc.kill('SIGKILL'); await this.exited; }
    let survivors = await waitGone(procs, 10_000);
    const names = survivors.map(describeProc);
    for (const p of survivors) { try { process.kill(p.pid, 'SIGKILL'); } catch {} }
    return { ...this.exit, forced, survivors: names };
  }

  /** kill -9; returns the descendants (workers) that outlived it by 10 s (then kills them). */
  async kill9() {
    if (!this.running) return [];
    const procs = descendants(this.proc.pid);
    this.proc.kill('SIGKILL');
    await this.exited;
    const survivors = await waitGone(procs, 10_000);
    const names = survivors.map(describeProc);
    for (const p of survivors) { try { process.kill(p.pid, 'SIGKILL'); } catch {} }
    return names;
  }
}

/** A server that SIGTERM stopped must exit 0: anything else is a crash or, in the sanitizer
 * build, a leak or error report (on its stderr). */
function exitProblem(srv, r) {
  return `${srv.label}: exited with code ${r.code} (signal ${r.signal}) after SIGTERM\n${srv.logs(40)}`;
}

// --- a test with its temp dir and servers -----------------------------------------------------
export class Harness {
  constructor(name) {
    this.name = name;
    fs.mkdirSync(TMP_BASE, { recursive: true });
    this.root = fs.mkdtempSync(path.join(TMP_BASE, `forja-compat-${name}-`));
    this.servers = [];
    this.n = 0;
  }

  dataDir(label) {
    const d = path.join(this.root, label);
    fs.mkdirSync(d, { recursive: true });
    return d;
  }

  /** A file in the temp dir with the given contents; returns its path. */
  writeFile(name, contents) {
    const p = path.join(this.root, name);
    fs.writeFileSync(p, contents);
    return p;
  }

  createKey(dataDir, name) { return createKey(dataDir, name); }

  async startServer(dataDir, args = [], label) {
    const s = new Server(dataDir, args, label || `server ${++this.n}`);
    this.servers.push(s);
    return s.start();
  }

  /** Stops a server with SIGTERM and checks that it and its workers went by themselves. */
  async stopServer(srv) {
    const r = await srv.stop();
    assert.ok(!r.forced, `${srv.label}: still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM (killed)\n${srv.logs(30)}`);
    assert.deepEqual(r.survivors, [], `${srv.label}: processes left after SIGTERM: ${r.survivors.join(', ')}`);
    assert.ok(r.code === 0 && !r.signal, exitProblem(srv, r));
    ok(`${srv.label}: SIGTERM stopped it (exit ${r.code ?? r.signal}), no processes left`);
    return r;
  }

  /** kill -9, and checks that no worker outlives the server. */
  async kill9(srv) {
    const survivors = await srv.kill9();
    assert.deepEqual(survivors, [], `${srv.label}: processes outlived kill -9 of the server by 10 s: ${survivors.join(', ')}`);
    ok(`${srv.label}: killed with SIGKILL, no worker outlived it`);
  }

  async close(passed) {
    const problems = [];
    for (const s of this.servers) {
      if (!s.running) continue;
      const r = await s.stop();
      if (r.forced) problems.push(`${s.label}: still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM (killed)`);
      if (r.survivors.length) problems.push(`${s.label}: processes left after SIGTERM: ${r.survivors.join(', ')}`);
      if (!r.forced && (r.code !== 0 || r.signal)) problems.push(exitProblem(s, r));
    }
    if (!passed || problems.length) {
      for (const s of this.servers) console.log(s.logs());
      console.log(`# kept the temp dir ${this.root}`);
    } else {
      fs.rmSync(this.root, { recursive: true, force: true });
    }
    if (passed && problems.length) throw new assert.AssertionError({ message: problems.join('\n') });
    if (passed) ok('servers stopped by SIGTERM, no processes left');
  }
}

/** forjaTest(name, async (h) => {...}): a node:test test with a Harness, cleaned up after. */
export function forjaTest(name, fn, { timeoutMs = 1_700_000 } = {}) {
  test(name, { timeout: timeoutMs }, async (t) => {
    const h = new Harness(name.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40));
    let passed = false;
    try {
      await fn(h, t);
      passed = true;
    } finally {
      await h.close(passed);
    }
  });
}

// --- jobs -------------------------------------------------------------------------------------
/**
 * Retrieves the job until its status is one of `want` (a string or a list). A terminal status
 * that is not wanted, a server that has exited, or JOB_TIMEOUT_MS passing fail at once.
 */
export async function waitJob(client, id, want, { server, timeoutMs = JOB_TIMEOUT_MS, pollMs = 250, quiet = false } = {}) {
  const wanted = new Set(Array.isArray(want) ? want : [want]);
  const t0 = Date.now();
  let last = null;
  for (;;) {
    if (server && !server.running) throw new Error(`${server.label} exited (${JSON.stringify(server.exit)}) while job ${id} was '${last?.status}'`);
    const job = await client.fineTuning.jobs.retrieve(id);
    if (!last || job.status !== last.status) {
      if (!quiet) console.log(`# ${id}: ${job.status} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      assert.ok(JOB_STATUSES.has(job.status), `job ${id}: unknown status '${job.status}'`);
    }
    last = job;
    if (wanted.has(job.status)) return job;
    if (TERMINAL.has(job.status)) {
      throw new assert.AssertionError({ message: `job ${id} ended '${job.status}', waiting for ${[...wanted].join('|')}: ${JSON.stringify(job)}` });
    }
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`job ${id} still '${job.status}' after ${timeoutMs / 1000} s, waiting for ${[...wanted].join('|')}`);
    }
    await sleep(pollMs);
  }
}

/** Polls fn() until it returns a truthy value; returns it. */
export async function waitFor(what, fn, { timeoutMs = JOB_TIMEOUT_MS, pollMs = 150 } = {}) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(pollMs);
  }
}

/** All events of a job, newest first as the API lists them. */
export async function allEvents(client, id) {
  return listAll(client.fineTuning.jobs.listEvents(id, { limit: 100 }));
}

/** Parses results.csv: {header, rows: [{step, train_loss, ...} as numbers or null]}. */
export function parseResults(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  const header = lines[0];
  const cols = header.split(',');
  const rows = lines.slice(1).map((l) => {
    const v = l.split(',');
    assert.equal(v.length, cols.length, `results.csv row '${l}' has ${v.length} fields, the header ${cols.length}`);
    return Object.fromEntries(cols.map((c, i) => [c, v[i] === '' ? null : Number(v[i])]));
  });
  return { header, rows };
}

/** Steps 1..n, each once, in order. */
export function assertSteps(rows, n, what) {
  assert.deepEqual(rows.map((r) => r.step), Array.from({ length: n }, (_, i) => i + 1), `${what}: steps should be 1..${n}, each once`);
}

/** Example lines for an upload of about `bytes` bytes: valid fine-tuning JSONL. */
export function syntheticJsonl(bytes, tag = 'x') {
  const out = [];
  let n = 0;
  let i = 0;
  while (n < bytes) {
    const line = JSON.stringify({ messages: [
      { role: 'user', content: `Question ${tag} ${i}: ${'pad '.repeat(40)}` },
      { role: 'assistant', content: `Answer ${tag} ${i}.` },
    ] });
    out.push(line);
    n += line.length + 1;
    i++;
  }
  return Buffer.from(out.join('\n') + '\n', 'utf8');
}

export { APIError };

// --- deployments and chat ---------------------------------------------------------------------
/** `forja token --data-dir DIR`: a management token alone on stdout. */
export function managementToken(dataDir, ttl = '1h') {
  const r = forjaSync(['token', '--data-dir', dataDir, '--ttl', ttl]);
  assert.equal(r.status, 0, `forja token exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const token = r.stdout.trim();
  assert.match(token, /^fjm_\S+$/, `forja token printed ${JSON.stringify(r.stdout)}`);
  return token;
}

/** The lab's management URL path for deployment `name` (subscription etc. as the lab's placeholders). */
export function armPath(name) {
  return `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/lab-rg/providers/Microsoft.CognitiveServices/accounts/lab-openai/deployments${name ? `/${name}` : ''}`;
}

/** PUT a deployment as the lab does (requests.put with a Bearer token, api-version 2023-05-01). */
export async function putDeployment(srv, token, name, model, capacity = 1) {
  return srv.fetch(`${armPath(name)}?api-version=2023-05-01`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ sku: { name: 'standard', capacity }, properties: { model: { format: 'OpenAI', name: model, version: '1' } } }),
  });
}

/** Polls GET until provisioningState is no longer Creating; returns the object. */
export async function waitDeployment(srv, token, name, timeoutMs = 120_000) {
  let last;
  await waitFor(`deployment ${name} provisioned`, async () => {
    const r = await srv.fetch(`${armPath(name)}?api-version=2023-05-01`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200, r.text);
    last = r.json;
    return last.properties.provisioningState !== 'Creating';
  }, { timeoutMs, pollMs: 100 });
  return last;
}

/** Runs a streaming chat through the SDK: {text, chunks, finish, usage}. */
export async function streamChat(client, body) {
  const stream = await client.chat.completions.create({ ...body, stream: true });
  const chunks = [];
  let text = '';
  let finish = null;
  let usage = null;
  for await (const c of stream) {
    chunks.push(c);
    for (const ch of c.choices) {
      if (ch.delta?.content) text += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (c.usage) usage = c.usage;
  }
  return { text, chunks, finish, usage };
}
