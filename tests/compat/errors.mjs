// tests/compat/errors.mjs - errors and edges of the wire contract (docs/API.md), as the
// official SDK sees them and, where the SDK hides the wire, with plain fetch: the first-start
// API key, keys made while the server runs, wrong and missing keys on both API families, a
// missing api-version, unknown ids, bad job parameters, bad training data (the job fails, not
// the call, with the line named), a too-large upload (413), malformed JSON, content-type and
// x-request-id on every answer, one stderr log line per request, the Azure job DELETE, and a
// server still healthy at the end.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { toFile, APIError, AuthenticationError, BadRequestError, NotFoundError } from 'openai';
import {
  forjaTest, check, ok, expectError, TRAIN, VALID, AZURE_API_VERSION, jsonlLines, waitJob, listAll, contentBytes,
  forjaSync, syntheticJsonl, sleep, assertKeys,
} from './lib.mjs';

const JSON_CT = /^application\/json\b/;

/** An answer (from Server.fetch or an SDK error) has content-type JSON and an x-request-id. */
function wireOk(headers, what) {
  assert.match(headers.get('content-type') || '', JSON_CT, `${what}: content-type ${headers.get('content-type')}`);
  assert.ok((headers.get('x-request-id') || '').length > 0, `${what}: no x-request-id header`);
}

function openaiErrorShape(body, what) {
  assert.ok(body && typeof body.error === 'object' && body.error !== null, `${what}: body ${JSON.stringify(body)}`);
  assertKeys(body.error, ['message', 'type', 'param', 'code'], `${what}: error`);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0, `${what}: empty message`);
}

function azureErrorShape(body, what) {
  assert.ok(body && typeof body.error === 'object' && body.error !== null, `${what}: body ${JSON.stringify(body)}`);
  assert.equal(typeof body.error.code, 'string', `${what}: error.code ${JSON.stringify(body.error)}`);
  assert.equal(typeof body.error.message, 'string', `${what}: error.message`);
}

forjaTest('errors and edges of the wire contract', async (h) => {
  const dir = h.dataDir('errors');
  // --- first start: no key yet, the server makes one and prints it once -------------------------
  let srv = await h.startServer(dir, [], 'errors server');
  const key = srv.printedKey;
  await check('first start on an empty data dir prints "API key: <key>"; the key works', async () => {
    assert.ok(key, `no 'API key:' line in stdout:\n${srv.stdout}`);
    const page = await srv.openai(key).files.list();
    assert.deepEqual(page.data, []);
  });
  await h.stopServer(srv);
  srv = await h.startServer(dir, [], 'errors server (restarted)');
  await check('a restart prints no new key; the first key still works', async () => {
    assert.equal(srv.printedKey, null, `printed a key again:\n${srv.stdout}`);
    assert.ok(!srv.stdout.includes(key), 'printed the key again');
    await srv.openai(key).files.list();
  });
  const key2 = h.createKey(dir, 'second-key');
  await check('a key made with `forja keys create` while the server runs works at once; keys list names it', async () => {
    assert.notEqual(key2, key);
    await srv.openai(key2).files.list();
    await srv.azure(key2).files.list();
    const r = forjaSync(['keys', 'list', '--data-dir', dir]);
    assert.equal(r.status, 0, `keys list: ${r.stderr}`);
    assert.ok(r.stdout.includes('second-key'), `keys list:\n${r.stdout}`);
    assert.ok(!r.stdout.includes(key2), 'keys list should not print the secret keys');
  });

  await check('`forja keys revoke ID` on a running server: that key gets 401 at once, the others still work', async () => {
    const r = forjaSync(['keys', 'list', '--data-dir', dir]);
    const line = r.stdout.split('\n').find((l) => /\ssecond-key\s*$/.test(l));
    assert.ok(line, `keys list has no line for second-key:\n${r.stdout}`);
    const id = line.trim().split(/\s+/)[0];
    const v = forjaSync(['keys', 'revoke', id, '--data-dir', dir]);
    assert.equal(v.status, 0, `keys revoke ${id}: exit ${v.status}\n${v.stdout}${v.stderr}`);
    try {
      await srv.openai(key2).files.list();
      assert.fail('a revoked key still works');
    } catch (e) {
      assert.ok(e instanceof AuthenticationError, `revoked key: ${e?.constructor?.name} ${e?.status} ${e?.message}`);
    }
    await expectError(srv.azure(key2).files.list(), AuthenticationError, 401, '  revoked key on the Azure path: 401');
    await srv.openai(key).files.list();
    const again = forjaSync(['keys', 'list', '--data-dir', dir]).stdout.split('\n').find((l) => l.includes(id));
    assert.ok(again && !/\s-\s+second-key/.test(again), `keys list should show the revocation: ${again}`);
  });

  const oa = srv.openai(key);
  const az = srv.azure(key);
  const bearer = { authorization: `Bearer ${key}` };

  // --- health, auth --------------------------------------------------------------------------------
  await check('GET /healthz needs no key', async () => {
    const r = await srv.fetch('/healthz');
    assert.equal(r.status, 200, r.text);
  });
  const e401 = await expectError(srv.openai('sk-wrong-key-0123456789abcdef').files.list(), AuthenticationError, 401, 'OpenAI client, wrong key: AuthenticationError 401');
  await check('  ... OpenAI error shape, content-type JSON, x-request-id', () => {
    openaiErrorShape({ error: e401.error }, '401');
    wireOk(e401.headers, '401');
    assert.equal(e401.requestID, e401.headers.get('x-request-id'));
  });
  const a401 = await expectError(srv.azure('wrong-key-0123456789abcdef').files.list(), AuthenticationError, 401, 'AzureOpenAI client, wrong key: AuthenticationError 401');
  await check('  ... Azure error shape', () => {
    azureErrorShape({ error: a401.error }, 'azure 401');
    wireOk(a401.headers, 'azure 401');
  });
  await expectError(srv.azure('wrong-key-0123456789abcdef').fineTuning.jobs.list(), AuthenticationError, 401, 'AzureOpenAI jobs.list, wrong key: 401');
  await check('no key, an empty or a non-Bearer key: 401 on /v1 and /openai', async () => {
    let r = await srv.fetch('/v1/files');
    assert.equal(r.status, 401);
    wireOk(r.headers, 'no key /v1');
    openaiErrorShape(r.json, 'no key /v1');
    r = await srv.fetch(`/openai/files?api-version=${AZURE_API_VERSION}`);
    assert.equal(r.status, 401);
    azureErrorShape(r.json, 'no key /openai');
    r = await srv.fetch('/v1/files', { headers: { authorization: 'Bearer ' } });
    assert.equal(r.status, 401, 'empty bearer token');
    r = await srv.fetch('/v1/files', { headers: { authorization: `Basic ${key}` } });
    assert.equal(r.status, 401, 'Basic is not Bearer');
  });

  // --- api-version -------------------------------------------------------------------------------------
  await check('Azure path without api-version: 400 {error:{code, message}}; with it: 200', async () => {
    const r = await srv.fetch('/openai/files', { headers: { 'api-key': key } });
    assert.equal(r.status, 400, r.text);
    wireOk(r.headers, 'missing api-version');
    azureErrorShape(r.json, 'missing api-version');
    assert.match(r.json.error.message, /api-version/i);
    const g = await srv.fetch(`/openai/files?api-version=${AZURE_API_VERSION}`, { headers: { 'api-key': key } });
    assert.equal(g.status, 200, g.text);
    wireOk(g.headers, 'Azure files list');
    assert.equal(g.json.object, 'list');
    const j = await srv.fetch('/openai/fine_tuning/jobs', { headers: { 'api-key': key } });
    assert.equal(j.status, 400, j.text);
  });

  // --- uploads for the job tests ------------------------------------------------------------------------
  const tf = await oa.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' });
  const lines = jsonlLines(TRAIN);
  const badJson = [...lines];
  badJson[2] = '{"messages": [{"role": "user", "content": "unterminated';
  const bad = await oa.files.create({ file: await toFile(Buffer.from(badJson.join('\n')), 'bad_line3.jsonl'), purpose: 'fine-tune' });
  const few = await oa.files.create({ file: await toFile(Buffer.from(lines.slice(0, 5).join('\n')), 'five.jsonl'), purpose: 'fine-tune' });
  const vlines = jsonlLines(VALID).map((l) => JSON.parse(l));
  vlines[3].messages[2].weight = 2; // weight only 0 or 1
  const badValid = await oa.files.create({ file: await toFile(Buffer.from(vlines.map((v) => JSON.stringify(v)).join('\n')), 'bad_weight.jsonl'), purpose: 'fine-tune' });
  await check('files that are bad for training still upload (validation fails the job, not the call)', () => {
    for (const f of [bad, few, badValid]) { assert.match(f.id, /^file-/); assert.equal(f.purpose, 'fine-tune'); }
  });

  // --- job creation errors (HTTP 400) --------------------------------------------------------------------
  const unk = await expectError(oa.fineTuning.jobs.create({ training_file: 'file-doesnotexist', model: 'gpt-4o' }), BadRequestError, 400, 'jobs.create with an unknown training file: BadRequestError 400');
  await check("  ... param 'training_file', OpenAI shape", () => {
    assert.equal(unk.param, 'training_file');
    openaiErrorShape({ error: unk.error }, 'unknown file');
    wireOk(unk.headers, 'unknown file');
  });
  const unkv = await expectError(oa.fineTuning.jobs.create({ training_file: tf.id, validation_file: 'file-nope', model: 'gpt-4o' }), BadRequestError, 400, 'unknown validation file: 400');
  await check("  ... param 'validation_file'", () => assert.equal(unkv.param, 'validation_file'));
  await expectError(az.fineTuning.jobs.create({ training_file: 'file-doesnotexist', model: 'gpt-4o' }), BadRequestError, 400, 'the same on the Azure path: 400');
  const noModel = await expectError(oa.fineTuning.jobs.create({ training_file: tf.id }), BadRequestError, 400, 'jobs.create without a model: 400');
  await check("  ... param 'model'", () => assert.equal(noModel.param, 'model'));
  await expectError(oa.fineTuning.jobs.create({ model: 'gpt-4o' }), BadRequestError, 400, 'jobs.create without a training file: 400');
  await expectError(oa.fineTuning.jobs.create({ training_file: tf.id, model: 'gpt-4o', hyperparameters: { n_epochs: 51 } }), BadRequestError, 400, 'n_epochs 51 (the range is 1-50): 400');
  await expectError(oa.fineTuning.jobs.create({ training_file: tf.id, model: 'gpt-4o', hyperparameters: { n_epochs: 0 } }), BadRequestError, 400, 'n_epochs 0: 400');
  await expectError(oa.fineTuning.jobs.create({ training_file: tf.id, model: 'gpt-4o', suffix: 'x'.repeat(65) }), BadRequestError, 400, 'a 65-character suffix: 400');
  try {
    await oa.fineTuning.jobs.create({ training_file: tf.id, model: 'no-such-model', hyperparameters: { n_epochs: 1 } });
    assert.fail('a job on an unknown model was created');
  } catch (e) {
    assert.ok(e instanceof APIError && [400, 404].includes(e.status), `unknown model: ${e?.constructor?.name} ${e?.status} ${e?.message}`);
    ok(`jobs.create on an unknown model: ${e.status}`);
  }
  await check('none of the refused creates made a job', async () => {
    assert.deepEqual(await listAll(oa.fineTuning.jobs.list()), []);
  });

  // --- bad data: the job fails, naming the line --------------------------------------------------------
  const jBad = await oa.fineTuning.jobs.create({ training_file: bad.id, model: 'gpt-4o', hyperparameters: { n_epochs: 1 } });
  const jFew = await oa.fineTuning.jobs.create({ training_file: few.id, model: 'gpt-4o', hyperparameters: { n_epochs: 1 } });
  const jBadV = await oa.fineTuning.jobs.create({ training_file: tf.id, validation_file: badValid.id, model: 'gpt-4o', hyperparameters: { n_epochs: 1 } });
  const fBad = await waitJob(oa, jBad.id, 'failed', { server: srv });
  await check(`line 3 not JSON: failed, invalid_training_file, line 3 named, param training_file ("${fBad.error?.message}")`, () => {
    assert.equal(fBad.error?.code, 'invalid_training_file');
    assert.match(fBad.error.message, /line 3\b/i);
    assert.equal(fBad.error.param, 'training_file');
    assert.equal(fBad.fine_tuned_model, null);
    assert.ok(Number.isInteger(fBad.finished_at), `finished_at ${fBad.finished_at}`);
  });
  const fFew = await waitJob(oa, jFew.id, 'failed', { server: srv });
  await check(`5 examples: failed, param training_file, names the minimum of 10 ("${fFew.error?.message}")`, () => {
    assert.match(fFew.error?.code || '', /invalid/);
    assert.equal(fFew.error.param, 'training_file');
    assert.match(fFew.error.message, /\b10\b/);
  });
  const fBadV = await waitJob(oa, jBadV.id, 'failed', { server: srv });
  await check(`weight 2 in the validation file: failed, param validation_file, line 4 named ("${fBadV.error?.message}")`, () => {
    assert.equal(fBadV.error?.param, 'validation_file');
    assert.match(fBadV.error.message, /line 4\b/i);
    assert.match(fBadV.error.message, /weight/i);
  });
  await check('a failed job has an error-level event', async () => {
    const evs = await listAll(oa.fineTuning.jobs.listEvents(jBad.id));
    assert.ok(evs.some((e) => e.level === 'error'), `events: ${evs.map((e) => `${e.level} ${e.message}`).join(' | ')}`);
  });
  await check('failed jobs stay failed', async () => {
    await sleep(1000);
    for (const id of [jBad.id, jFew.id, jBadV.id]) assert.equal((await oa.fineTuning.jobs.retrieve(id)).status, 'failed');
  });

  // --- unknown ids -----------------------------------------------------------------------------------
  const nf = await expectError(oa.fineTuning.jobs.retrieve('ftjob-doesnotexist'), NotFoundError, 404, 'jobs.retrieve of an unknown job: NotFoundError 404');
  await check('  ... OpenAI shape, JSON, x-request-id', () => { openaiErrorShape({ error: nf.error }, '404'); wireOk(nf.headers, '404'); });
  await expectError(az.fineTuning.jobs.retrieve('ftjob-doesnotexist'), NotFoundError, 404, 'Azure jobs.retrieve of an unknown job: 404');
  await expectError(oa.fineTuning.jobs.listEvents('ftjob-doesnotexist'), NotFoundError, 404, 'events of an unknown job: 404');
  await expectError(oa.fineTuning.jobs.checkpoints.list('ftjob-doesnotexist'), NotFoundError, 404, 'checkpoints of an unknown job: 404');
  await expectError(oa.fineTuning.jobs.cancel('ftjob-doesnotexist'), NotFoundError, 404, 'cancel of an unknown job: 404');
  await expectError(oa.files.retrieve('file-doesnotexist'), NotFoundError, 404, 'files.retrieve of an unknown file: 404');
  await expectError(oa.files.content('file-doesnotexist'), NotFoundError, 404, 'files.content of an unknown file: 404');
  await expectError(oa.files.delete('file-doesnotexist'), NotFoundError, 404, 'files.delete of an unknown file: 404');
  await expectError(oa.models.retrieve('ft:gpt-4o:forja::doesnotexist'), NotFoundError, 404, 'models.retrieve of an unknown model: 404');
  await check('an unknown path: 404 JSON', async () => {
    const r = await srv.fetch('/v1/no/such/path', { headers: bearer });
    assert.equal(r.status, 404);
    wireOk(r.headers, 'unknown path');
    openaiErrorShape(r.json, 'unknown path');
  });

  // --- malformed requests --------------------------------------------------------------------------------
  await check('malformed JSON body to POST /v1/fine_tuning/jobs: 400 JSON error', async () => {
    const r = await srv.fetch('/v1/fine_tuning/jobs', { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: '{"training_file": "' + tf.id + '", "model": ' });
    assert.equal(r.status, 400, r.text);
    wireOk(r.headers, 'malformed JSON');
    openaiErrorShape(r.json, 'malformed JSON');
  });
  await check('a JSON body that is not an object: 400', async () => {
    const r = await srv.fetch('/v1/fine_tuning/jobs', { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: '[1,2,3]' });
    assert.equal(r.status, 400, r.text);
    openaiErrorShape(r.json, 'array body');
  });
  await check('a multipart upload without the file part: 400', async () => {
    const fd = new FormData();
    fd.append('purpose', 'fine-tune');
    const r = await srv.fetch('/v1/files', { method: 'POST', headers: bearer, body: fd });
    assert.equal(r.status, 400, r.text);
    openaiErrorShape(r.json, 'no file part');
  });
  await check('an upload without purpose: 400', async () => {
    const fd = new FormData();
    fd.append('file', new Blob([fs.readFileSync(TRAIN)]), 'training_set.jsonl');
    const r = await srv.fetch('/v1/files', { method: 'POST', headers: bearer, body: fd });
    assert.equal(r.status, 400, r.text);
    openaiErrorShape(r.json, 'no purpose');
  });
  await check('nothing was stored by the refused uploads', async () => {
    const ids = (await listAll(oa.files.list())).map((f) => f.id).sort();
    assert.deepEqual(ids, [tf.id, bad.id, few.id, badValid.id].sort());
  });

  // --- content-type and x-request-id on answers; one log line per request -----------------------------
  await check('200 answers: content-type JSON, an x-request-id, distinct per request', async () => {
    const got = [];
    for (const p of ['/v1/files', `/v1/files/${tf.id}`, '/v1/fine_tuning/jobs', `/v1/fine_tuning/jobs/${jBad.id}`, `/v1/fine_tuning/jobs/${jBad.id}/events`, `/v1/fine_tuning/jobs/${jBad.id}/checkpoints`, '/v1/models', '/v1/models/forja-base']) {
      const r = await srv.fetch(p, { headers: bearer });
      assert.equal(r.status, 200, `${p}: ${r.text}`);
      wireOk(r.headers, p);
      got.push(r.headers.get('x-request-id'));
    }
    const c = await fetch(`${srv.url}/v1/files/${tf.id}/content`, { headers: bearer });
    assert.equal(c.status, 200);
    assert.ok(c.headers.get('x-request-id'), 'content: x-request-id');
    assert.ok(Buffer.from(await c.arrayBuffer()).equals(fs.readFileSync(TRAIN)));
    assert.equal(new Set(got).size, got.length, `x-request-id values repeat: ${got}`);
  });
  await check('stderr: one log line per request', async () => {
    const count = () => srv.stderr.split('\n').filter((l) => l.includes('/healthz')).length;
    const n0 = count();
    for (let i = 0; i < 5; i++) assert.equal((await srv.fetch('/healthz')).status, 200);
    await sleep(300);
    assert.equal(count() - n0, 5, `stderr lines mentioning /healthz went from ${n0} to ${count()}`);
  });

  // --- the Azure job DELETE ---------------------------------------------------------------------------
  await check('DELETE /openai/fine_tuning/jobs/{id} (a failed job): 204, then 404', async () => {
    const r = await srv.fetch(`/openai/fine_tuning/jobs/${jFew.id}?api-version=${AZURE_API_VERSION}`, { method: 'DELETE', headers: { 'api-key': key } });
    assert.equal(r.status, 204, r.text);
    assert.equal(r.text, '');
    const g = await srv.fetch(`/openai/fine_tuning/jobs/${jFew.id}?api-version=${AZURE_API_VERSION}`, { headers: { 'api-key': key } });
    assert.equal(g.status, 404);
    const ids = (await listAll(oa.fineTuning.jobs.list())).map((j) => j.id);
    assert.ok(!ids.includes(jFew.id), 'the deleted job is still listed');
  });

  // --- upload limit -----------------------------------------------------------------------------------
  const dir2 = h.dataDir('small-uploads');
  const key3 = h.createKey(dir2, 'limit');
  const small = await h.startServer(dir2, ['--max-upload-mb', '1'], 'server --max-upload-mb 1');
  const so = small.openai(key3);
  const big = syntheticJsonl(2 * 1024 * 1024, 'big');
  const e413 = await expectError(so.files.create({ file: await toFile(big, 'big.jsonl'), purpose: 'fine-tune' }), APIError, 413, `a ${big.length}-byte upload to --max-upload-mb 1: 413`);
  await check('  ... OpenAI error shape, JSON, x-request-id', () => {
    openaiErrorShape({ error: e413.error }, '413');
    wireOk(e413.headers, '413');
  });
  const e413az = await expectError(small.azure(key3).files.create({ file: await toFile(big, 'big.jsonl'), purpose: 'fine-tune' }), APIError, 413, 'the same on the Azure path: 413');
  await check('  ... Azure error shape', () => azureErrorShape({ error: e413az.error }, 'azure 413'));
  const fits = syntheticJsonl(500_000, 'fits');
  const sf = await so.files.create({ file: await toFile(fits, 'fits.jsonl'), purpose: 'fine-tune' });
  await check(`a ${fits.length}-byte upload fits; the refused ones left nothing behind`, async () => {
    assert.equal(sf.bytes, fits.length);
    assert.ok((await contentBytes(so, sf.id)).equals(fits));
    assert.deepEqual((await listAll(so.files.list())).map((f) => f.id), [sf.id]);
    const stored = fs.readdirSync(path.join(dir2, 'files')).filter((n) => n.startsWith('file-'));
    assert.deepEqual(stored, [sf.id], `DIR/files holds ${stored}`);
  });
  await h.stopServer(small);

  // --- still healthy ----------------------------------------------------------------------------------
  await check('the server is still healthy after all of it', async () => {
    assert.ok(srv.running, 'the server exited');
    assert.equal((await srv.fetch('/healthz')).status, 200);
    const files = await listAll(oa.files.list());
    assert.equal(files.length, 4);
    assert.ok((await contentBytes(oa, tf.id)).equals(fs.readFileSync(TRAIN)));
    const jobs = await listAll(az.fineTuning.jobs.list());
    assert.deepEqual(jobs.map((j) => j.status), ['failed', 'failed']);
  });
  await h.stopServer(srv);
});
