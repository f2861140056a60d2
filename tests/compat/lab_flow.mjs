// tests/compat/lab_flow.mjs - the lab's client code (shared/seed/000_03f1501ccebb40ec.txt,
// "Carga de archivos" and "Envío del trabajo") through the official openai SDK's AzureOpenAI
// class with api-version 2024-05-01-preview: upload training_set.jsonl and
// validation_set.jsonl, create a gpt-4o job with seed 105, poll it to succeeded, read it back
// (model_dump_json), then its results file, events, checkpoints and the models list; and the
// same uploads and file calls with the OpenAI class on /v1. Expected values come from
// docs/API.md, the lab's files and OpenAI's published auto rule (10 examples -> 10 epochs).
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { toFile, ConflictError, NotFoundError } from 'openai';
import { spawnSync } from 'node:child_process';
import {
  forjaTest, check, ok, expectError, TRAIN, VALID, JOB_KEYS, FILE_KEYS, METRIC_KEYS, RESULTS_HEADER, ALIASES,
  assertKeys, assertTimestamp, nowSec, waitJob, listAll, allEvents, contentBytes, parseResults, assertSteps,
  jsonlLines, isInt, managementToken, putDeployment, FORJA_BIN, waitDeployment, streamChat, armPath,
} from './lib.mjs';

// The lab's chat request ("Implementación del modelo", step 2), word for word.
const LAB_MESSAGES = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Does Azure OpenAI support customer managed keys?' },
  { role: 'assistant', content: 'Yes, customer managed keys are supported by Azure OpenAI.' },
  { role: 'user', content: 'Do other Azure AI services support this too?' },
];

/** The first training example: its question and the answer the model was trained to give. */
function trainedExample() {
  const ex = JSON.parse(jsonlLines(TRAIN)[1]).messages;
  return { prompt: ex.slice(0, 2), answer: ex[2].content };
}

function checkFile(f, { name, bytes, purpose = 'fine-tune', t0 }) {
  assertKeys(f, FILE_KEYS, `file ${f.id}`);
  assert.match(f.id, /^file-[A-Za-z0-9_-]+$/, 'file id');
  assert.equal(f.object, 'file');
  assert.equal(f.bytes, bytes, `${name}: bytes = the file's size`);
  assert.equal(f.filename, name);
  assert.equal(f.purpose, purpose);
  assert.equal(f.status, 'processed');
  assertTimestamp(f.created_at, `${name}: created_at`, t0);
}

forjaTest('lab flow: AzureOpenAI files + fine-tuning job (gpt-4o, seed 105), OpenAI /v1 files', async (h) => {
  const dir = h.dataDir('lab');
  const key = h.createKey(dir, 'lab');
  const srv = await h.startServer(dir, [], 'lab server');
  const az = srv.azure(key);
  const oa = srv.openai(key);
  const trainBytes = fs.readFileSync(TRAIN);
  const validBytes = fs.readFileSync(VALID);
  assert.equal(jsonlLines(TRAIN).length, 10, 'the lab has 10 training examples');
  const t0 = nowSec();

  // --- uploads, as the lab does them (files.create(file=open(...,"rb"), purpose="fine-tune")) --
  const { data: tf, response: tres } = await az.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' }).withResponse();
  // purpose before file this time: the multipart parts may come in any order
  const { data: vf, response: vres } = await az.files
    .create({ purpose: 'fine-tune', file: await toFile(fs.readFileSync(VALID), 'validation_set.jsonl') }).withResponse();
  console.log('Training file ID:', tf.id);
  console.log('Validation file ID:', vf.id);
  await check('Azure files.create: file objects (id, object, bytes, filename, purpose, status processed)', () => {
    checkFile(tf, { name: 'training_set.jsonl', bytes: trainBytes.length, t0 });
    checkFile(vf, { name: 'validation_set.jsonl', bytes: validBytes.length, t0 });
    assert.notEqual(tf.id, vf.id);
  });
  await check('Azure files.create answers 201 with a Location naming the file', () => {
    for (const [res, f] of [[tres, tf], [vres, vf]]) {
      assert.equal(res.status, 201);
      assert.ok((res.headers.get('location') || '').includes(`/files/${f.id}`), `Location: ${res.headers.get('location')}`);
      assert.match(res.headers.get('content-type') || '', /^application\/json/);
    }
  });
  await check('Azure files.retrieve returns the same objects', async () => {
    assert.deepEqual(await az.files.retrieve(tf.id), tf);
    assert.deepEqual(await az.files.retrieve(vf.id), vf);
  });
  await check('files.content returns the uploaded bytes, and DIR/files/<id> holds them', async () => {
    assert.ok((await contentBytes(az, tf.id)).equals(trainBytes), 'training content differs');
    assert.ok((await contentBytes(az, vf.id)).equals(validBytes), 'validation content differs');
    assert.ok(fs.readFileSync(path.join(dir, 'files', tf.id)).equals(trainBytes), 'stored training file differs');
    assert.ok(fs.readFileSync(path.join(dir, 'files', vf.id)).equals(validBytes), 'stored validation file differs');
  });

  // --- the job ----------------------------------------------------------------------------------
  const { data: created, response: jres } = await az.fineTuning.jobs
    .create({ training_file: tf.id, validation_file: vf.id, model: 'gpt-4o', seed: 105 }).withResponse();
  console.log('Job ID:', created.id);
  console.log('Status:', created.status);
  await check('jobs.create: 201 + Location; the job object has every key, nulls where nothing applies yet', () => {
    assert.equal(jres.status, 201);
    assert.ok((jres.headers.get('location') || '').includes(`/fine_tuning/jobs/${created.id}`), `Location: ${jres.headers.get('location')}`);
    assertKeys(created, JOB_KEYS, 'new job');
    assert.match(created.id, /^ftjob-[A-Za-z0-9_-]+$/);
    assert.equal(created.object, 'fine_tuning.job');
    assert.equal(created.model, 'gpt-4o');
    assert.equal(created.seed, 105);
    assert.equal(created.training_file, tf.id);
    assert.equal(created.validation_file, vf.id);
    assert.ok(['validating_files', 'queued', 'running'].includes(created.status), `status ${created.status}`);
    assertTimestamp(created.created_at, 'created_at', t0);
    assert.equal(created.finished_at, null);
    assert.equal(created.fine_tuned_model, null);
    assert.equal(created.error, null);
    assert.equal(created.suffix, null);
    assert.equal(created.metadata, null);
    assert.deepEqual(created.result_files, []);
    assert.ok(Array.isArray(created.integrations), 'integrations is a list');
    assert.equal(typeof created.organization_id, 'string');
    assert.ok(created.hyperparameters && typeof created.hyperparameters === 'object', 'hyperparameters object');
    for (const k of ['n_epochs', 'batch_size', 'learning_rate_multiplier']) assert.ok(k in created.hyperparameters, `hyperparameters.${k}`);
    assert.equal(created.method?.type, 'supervised');
    assert.ok(created.trained_tokens === null || created.trained_tokens === 0, `trained_tokens before training: ${created.trained_tokens}`);
  });
  await check('the job is listed on the Azure path', async () => {
    const ids = (await listAll(az.fineTuning.jobs.list())).map((j) => j.id);
    assert.deepEqual(ids, [created.id]);
  });

  // while it trains: its files cannot be deleted
  await waitJob(az, created.id, ['running'], { server: srv });
  const conflict = await expectError(az.files.delete(tf.id), ConflictError, 409, 'deleting the training file of a running job: 409');
  await check('  ... with the Azure error shape {error:{code, message}}', () => {
    assert.equal(typeof conflict.error?.message, 'string');
    assert.ok(conflict.error?.code !== undefined, `code: ${JSON.stringify(conflict.error)}`);
  });
  const conflict2 = await expectError(oa.files.delete(vf.id), ConflictError, 409, 'deleting the validation file of a running job (/v1): 409');
  await check('  ... with the OpenAI error shape {error:{message, type, param, code}}', () => {
    assertKeys(conflict2.error, ['message', 'type', 'param', 'code'], 'error');
  });
  await check('both files are still there', async () => {
    assert.equal((await az.files.retrieve(tf.id)).id, tf.id);
    assert.equal((await az.files.retrieve(vf.id)).id, vf.id);
  });

  const job = await waitJob(az, created.id, 'succeeded', { server: srv });
  const finished = await az.fineTuning.jobs.retrieve(created.id);
  console.log(JSON.stringify(finished, null, 2)); // the lab's response.model_dump_json(indent=2)
  const ftm = job.fine_tuned_model;
  await check('succeeded job: fine_tuned_model ft:gpt-4o:forja::<id>, trained_tokens, finished_at, resolved hyperparameters', () => {
    assertKeys(finished, JOB_KEYS, 'finished job');
    assert.equal(finished.status, 'succeeded');
    assert.match(ftm, /^ft:gpt-4o:forja::[A-Za-z0-9_-]+$/);
    assert.equal(finished.fine_tuned_model, ftm);
    assert.ok(isInt(finished.trained_tokens) && finished.trained_tokens > 0, `trained_tokens ${finished.trained_tokens}`);
    assert.equal(finished.trained_tokens % 10, 0, `10 epochs over the same examples: trained_tokens ${finished.trained_tokens} is a multiple of 10`);
    assertTimestamp(finished.finished_at, 'finished_at', finished.created_at);
    assert.equal(finished.error, null);
    assert.equal(finished.seed, 105);
    assert.equal(finished.hyperparameters.n_epochs, 10, '10 examples: auto epochs = min(25, 100 // 10)');
    assert.equal(finished.hyperparameters.batch_size, 1);
    const lr = finished.hyperparameters.learning_rate_multiplier;
    assert.ok(typeof lr === 'number' && lr > 0, `learning_rate_multiplier ${lr}`);
    assert.equal(finished.result_files.length, 1);
  });
  await check('the same job on /v1', async () => {
    const j = await oa.fineTuning.jobs.retrieve(created.id);
    assert.equal(j.status, 'succeeded');
    assert.equal(j.fine_tuned_model, ftm);
    assert.deepEqual(j.result_files, finished.result_files);
  });

  // --- results file ------------------------------------------------------------------------------
  const rid = finished.result_files[0];
  const rf = await az.files.retrieve(rid);
  const rtext = (await contentBytes(az, rid)).toString('utf8');
  const results = parseResults(rtext);
  await check('results file: purpose fine-tune-results, results.csv, header, a row per step (100)', () => {
    assert.match(rid, /^file-/);
    assert.equal(rf.purpose, 'fine-tune-results');
    assert.equal(rf.filename, 'results.csv');
    assert.equal(rf.status, 'processed');
    assert.equal(rf.bytes, Buffer.byteLength(rtext), 'bytes = the content length');
    assert.equal(results.header, RESULTS_HEADER);
    assertSteps(results.rows, 100, 'results.csv');
    for (const r of results.rows) assert.ok(Number.isFinite(r.train_loss) && r.train_loss >= 0, `train_loss at step ${r.step}: ${r.train_loss}`);
  });
  await check('results.csv: the loss fell (mean of the last 10 steps < half of the first 10)', () => {
    const mean = (a) => a.reduce((s, r) => s + r.train_loss, 0) / a.length;
    const first = mean(results.rows.slice(0, 10));
    const last = mean(results.rows.slice(-10));
    assert.ok(last < first / 2, `first 10 steps ${first}, last 10 ${last}`);
    const end = results.rows[99];
    assert.ok(Number.isFinite(end.full_valid_loss), `a validation file was given: the last row has full_valid_loss (${end.full_valid_loss})`);
  });
  await check('results file equals DIR/jobs/<id>/results.csv; the weights are a safetensors file', () => {
    assert.equal(fs.readFileSync(path.join(dir, 'jobs', job.id, 'results.csv'), 'utf8'), rtext);
    const st = fs.readFileSync(path.join(dir, 'jobs', job.id, 'model', 'model.safetensors'));
    const n = Number(st.readBigUInt64LE(0));
    assert.ok(n > 2 && 8 + n <= st.length, `safetensors header length ${n}`);
    const header = JSON.parse(st.subarray(8, 8 + n).toString('utf8'));
    assert.ok(Object.keys(header).filter((k) => k !== '__metadata__').length > 0, 'has tensors');
  });

  // --- events ------------------------------------------------------------------------------------
  const events = await allEvents(az, job.id);
  const msgs = events.map((e) => e.message);
  await check(`events (${events.length}): ids, object, level, type, integer created_at, newest first`, () => {
    assert.ok(events.length > 20, `only ${events.length} events`);
    for (const e of events) {
      assertKeys(e, ['id', 'object', 'created_at', 'level', 'message', 'type', 'data'], 'event');
      assert.match(e.id, /^ftevent-/);
      assert.equal(e.object, 'fine_tuning.job.event');
      assert.ok(['info', 'warn', 'error'].includes(e.level), `level ${e.level}`);
      assert.ok(['message', 'metrics'].includes(e.type), `type ${e.type}`);
      assertTimestamp(e.created_at, 'event created_at', t0);
    }
    assert.equal(new Set(events.map((e) => e.id)).size, events.length, 'event ids are unique');
    for (let i = 1; i < events.length; i++) assert.ok(events[i - 1].created_at >= events[i].created_at, 'newest first');
    assert.ok(!events.some((e) => e.level === 'error'), 'no error events in a job that succeeded');
  });
  // in the order they happened (the list is newest first)
  const order = [
    ['Validating training file', /Validating training file/i],
    ['enqueued', /enqueued|queued/i],
    ['Job started', /Job started/i],
    ['first checkpoint', /Checkpoint created at step \d+/i],
    ['New fine-tuned model created', /New fine-tuned model created/i],
    ['Job succeeded', /Job succeeded/i],
  ];
  await check('events: validating, enqueued, started, checkpoints, new model, succeeded - in that order', () => {
    const chrono = [...msgs].reverse();
    let prev = -1;
    for (const [name, re] of order) {
      const i = chrono.findIndex((m, k) => k > prev && re.test(m));
      assert.ok(i >= 0, `no '${name}' event after the previous ones; messages (oldest first):\n${chrono.filter((m, k) => !events[events.length - 1 - k].type.startsWith('metrics')).join('\n')}`);
      prev = i;
    }
    assert.ok(msgs.some((m) => /gpt-4o/.test(m) && /forja-base/.test(m)), 'an event says gpt-4o resolved to the built-in model forja-base');
  });
  const metrics = events.filter((e) => e.type === 'metrics');
  await check(`metrics events (${metrics.length}): data with the metric keys, steps 1..100, newest first`, () => {
    assert.ok(metrics.length >= 10, `${metrics.length} metrics events`);
    for (const e of metrics) {
      assert.ok(e.data && typeof e.data === 'object', 'metrics data');
      for (const k of METRIC_KEYS) assert.ok(k in e.data, `metrics event lacks '${k}': ${JSON.stringify(e.data)}`);
      assert.ok(isInt(e.data.step) && e.data.step >= 1 && e.data.step <= 100, `step ${e.data.step}`);
      assert.ok(Number.isFinite(e.data.train_loss), `train_loss ${e.data.train_loss}`);
    }
    const steps = metrics.map((e) => e.data.step);
    assert.equal(steps[0], 100, 'the newest metrics event is step 100');
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i - 1] > steps[i], `metrics steps decrease in the newest-first list: ${steps.slice(0, 12)}`);
    const row = results.rows[99];
    assert.ok(Math.abs(metrics[0].data.train_loss - row.train_loss) <= 1e-4 * Math.max(1, Math.abs(row.train_loss)),
      `step 100 train_loss: event ${metrics[0].data.train_loss}, results.csv ${row.train_loss}`);
  });
  await check('events: default page is 20; limit + after page through the same list', async () => {
    const p0 = await az.fineTuning.jobs.listEvents(job.id);
    assert.equal(p0.data.length, 20);
    assert.equal(p0.has_more, true);
    const p1 = await az.fineTuning.jobs.listEvents(job.id, { limit: 7 });
    assert.equal(p1.data.length, 7);
    assert.equal(p1.has_more, true);
    assert.equal(p1.body.object, 'list');
    assert.equal(p1.body.first_id, p1.data[0].id);
    assert.equal(p1.body.last_id, p1.data[6].id);
    const p2 = await az.fineTuning.jobs.listEvents(job.id, { limit: 7, after: p1.data[6].id });
    assert.deepEqual([...p1.data, ...p2.data].map((e) => e.id), events.slice(0, 14).map((e) => e.id));
    assert.deepEqual(p0.data.map((e) => e.id), events.slice(0, 20).map((e) => e.id));
    const last = await az.fineTuning.jobs.listEvents(job.id, { limit: 100, after: events[events.length - 2].id });
    assert.deepEqual(last.data.map((e) => e.id), [events[events.length - 1].id]);
    assert.equal(last.has_more, false);
  });

  // --- checkpoints ------------------------------------------------------------------------------
  const ckpts = await listAll(az.fineTuning.jobs.checkpoints.list(job.id));
  await check(`checkpoints (${ckpts.length}): at most 3, the newest ones, named <fine_tuned_model>:ckpt-step-N, with metrics`, () => {
    assert.ok(ckpts.length >= 1 && ckpts.length <= 3, `${ckpts.length} checkpoints`);
    for (const c of ckpts) {
      assertKeys(c, ['id', 'object', 'created_at', 'fine_tuned_model_checkpoint', 'fine_tuning_job_id', 'step_number', 'metrics'], 'checkpoint');
      assert.match(c.id, /^ftckpt-/);
      assert.equal(c.object, 'fine_tuning.job.checkpoint');
      assert.equal(c.fine_tuning_job_id, job.id);
      assert.equal(c.fine_tuned_model_checkpoint, `${ftm}:ckpt-step-${c.step_number}`);
      assert.equal(c.step_number % 10, 0, `one per epoch of 10 steps: step ${c.step_number}`);
      for (const k of METRIC_KEYS) assert.ok(k in c.metrics, `checkpoint metrics lack '${k}'`);
      assert.equal(c.metrics.step, c.step_number);
      assertTimestamp(c.created_at, 'checkpoint created_at', t0);
    }
    const steps = ckpts.map((c) => c.step_number);
    for (let i = 1; i < steps.length; i++) assert.ok(steps[i - 1] > steps[i], `newest first: ${steps}`);
    // the kept ones are the newest of those the events announced
    const announced = msgs.map((m) => /Checkpoint created at step (\d+)/i.exec(m)).filter(Boolean).map((m) => Number(m[1])).sort((a, b) => b - a);
    assert.ok(announced.length >= 9, `one checkpoint per epoch: events announce ${announced}`);
    assert.deepEqual(steps, announced.slice(0, Math.min(3, announced.length)), 'the newest three are kept');
    for (const s of steps) assert.ok(fs.existsSync(path.join(dir, 'jobs', job.id, 'checkpoints', `ckpt-step-${s}`)), `DIR/jobs/<id>/checkpoints/ckpt-step-${s}`);
    const onDisk = fs.readdirSync(path.join(dir, 'jobs', job.id, 'checkpoints')).filter((d) => /^ckpt-step-\d+$/.test(d));
    assert.ok(onDisk.length <= 3, `checkpoint folders on disk: ${onDisk}`);
  });
  await check('checkpoints: limit 1 pages through the same list', async () => {
    const paged = await listAll(az.fineTuning.jobs.checkpoints.list(job.id, { limit: 1 }));
    assert.deepEqual(paged.map((c) => c.id), ckpts.map((c) => c.id));
  });

  // --- models (GET /v1/models) -----------------------------------------------------------------
  await check('models.list: the fine-tuned model, forja-base and the aliases', async () => {
    const models = await listAll(oa.models.list());
    const ids = models.map((m) => m.id);
    for (const want of [ftm, 'forja-base', ...ALIASES]) assert.ok(ids.includes(want), `models.list lacks ${want}: ${ids}`);
    for (const m of models) {
      assertKeys(m, ['id', 'object', 'created', 'owned_by'], 'model');
      assert.equal(m.object, 'model');
    }
    const m = await oa.models.retrieve(ftm);
    assert.equal(m.id, ftm);
  });

  // --- deploy (the lab's requests.put with a Bearer token) and chat ----------------------------
  const token = managementToken(dir);
  const put = await putDeployment(srv, token, 'gpt-4o-ft', ftm, 1);
  await check('PUT deployment gpt-4o-ft (api-version 2023-05-01): 201, ARM object, provisioningState Creating', () => {
    assert.equal(put.status, 201, put.text);
    assert.equal(put.json.name, 'gpt-4o-ft');
    assert.equal(put.json.id, armPath('gpt-4o-ft'));
    assert.equal(put.json.type, 'Microsoft.CognitiveServices/accounts/deployments');
    assert.deepEqual(put.json.sku, { name: 'standard', capacity: 1 });
    assert.equal(put.json.properties.model.name, ftm);
    assert.ok(['Creating', 'Succeeded'].includes(put.json.properties.provisioningState), put.text);
  });
  const dep = await waitDeployment(srv, token, 'gpt-4o-ft');
  await check('the deployment reaches provisioningState Succeeded', () => assert.equal(dep.properties.provisioningState, 'Succeeded', JSON.stringify(dep)));
  await check('management routes refuse the data-plane key, data-plane routes refuse the token', async () => {
    const r1 = await srv.fetch(`${armPath('gpt-4o-ft')}?api-version=2023-05-01`, { headers: { Authorization: `Bearer ${key}` } });
    assert.equal(r1.status, 401, r1.text);
    assert.equal(r1.json.error.code, 'InvalidAuthenticationToken');
    const r2 = await srv.fetch('/v1/models', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r2.status, 401, r2.text);
    const r3 = await srv.fetch(`${armPath()}?api-version=2023-05-01`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r3.status, 200, r3.text);
    assert.deepEqual(r3.json.value.map((d) => d.name), ['gpt-4o-ft']);
  });
  // the lab's chat client, with the Python SDK's default of 2 retries: the lab's request sets
  // no max_tokens, so on a capacity-1 deployment a long answer spends the minute's budget
  const lab = srv.azure(key, { apiVersion: '2024-02-01', maxRetries: 2 });
  const response = await lab.chat.completions.create({ model: 'gpt-4o-ft', messages: LAB_MESSAGES });
  console.log(response.choices[0].message.content);
  await check('the lab\'s chat request (AzureOpenAI, 2024-02-01, deployment gpt-4o-ft): a chat.completion with exact usage', () => {
    assert.equal(response.object, 'chat.completion');
    assert.match(response.id, /^chatcmpl-/);
    assertTimestamp(response.created, 'created', t0);
    assert.equal(response.choices.length, 1);
    const c = response.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, 'assistant');
    assert.equal(typeof c.message.content, 'string');
    assert.ok(['stop', 'length'].includes(c.finish_reason), c.finish_reason);
    const u = response.usage;
    assert.ok(u.prompt_tokens > 30 && u.completion_tokens >= 1, JSON.stringify(u));
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  });
  await check('usage.prompt_tokens is the rendered prompt (forja render --generation-prompt: the training template)', () => {
    const r = spawnSync(FORJA_BIN, ['render', '--data-dir', dir, '--generation-prompt', '--json'], { input: JSON.stringify(LAB_MESSAGES), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(response.usage.prompt_tokens, JSON.parse(r.stdout).ids.length);
  });
  const streamed = await streamChat(lab, { model: 'gpt-4o-ft', messages: LAB_MESSAGES, stream_options: { include_usage: true } });
  await check('the same request streamed: role first, deltas, finish_reason, usage chunk, the same text (greedy is not the default, so compare at temperature 0 below)', () => {
    const first = streamed.chunks[0];
    assert.equal(first.object, 'chat.completion.chunk');
    assert.equal(first.choices[0].delta.role, 'assistant');
    assert.ok(streamed.finish, 'a chunk carries finish_reason');
    assert.ok(streamed.usage && streamed.usage.prompt_tokens === response.usage.prompt_tokens, JSON.stringify(streamed.usage));
    assert.equal(streamed.usage.completion_tokens >= 1, true);
  });
  const update = await putDeployment(srv, token, 'gpt-4o-ft', ftm, 100);
  await check('PUT again with capacity 100: 200, an update of the same deployment', () => {
    assert.equal(update.status, 200, update.text);
    assert.equal(update.json.sku.capacity, 100);
    assert.equal(update.json.properties.provisioningState, 'Succeeded');
  });
  const greedy = { messages: LAB_MESSAGES, temperature: 0, max_tokens: 40 };
  const g1 = await lab.chat.completions.create({ model: 'gpt-4o-ft', ...greedy });
  const g2 = await streamChat(lab, { model: 'gpt-4o-ft', ...greedy });
  await check('at temperature 0 the streamed text equals the non-streamed text', () => {
    assert.equal(g2.text, g1.choices[0].message.content);
    assert.equal(g2.finish, g1.choices[0].finish_reason);
  });
  const { prompt, answer } = trainedExample();
  const oaFt = await oa.chat.completions.create({ model: ftm, messages: prompt, temperature: 0 });
  console.log(`${ftm}: ${oaFt.choices[0].message.content}`);
  await check('OpenAI path with the ft: name: the trained answer to a training question, stopping by itself', () => {
    assert.equal(oaFt.choices[0].message.content, answer);
    assert.equal(oaFt.choices[0].finish_reason, 'stop');
    assert.equal(oaFt.model, ftm);
  });
  await check('OpenAI path with a checkpoint name answers too', async () => {
    const r = await oa.chat.completions.create({ model: ckpts[0].fine_tuned_model_checkpoint, messages: prompt, temperature: 0, max_tokens: 30 });
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.usage.completion_tokens >= 1);
  });
  await expectError(oa.models.delete(ftm), ConflictError, 409, 'a deployed model cannot be deleted (409)');

  // --- the OpenAI class on /v1: files -------------------------------------------------------------
  const t1 = nowSec();
  const { data: of1, response: ores } = await oa.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' }).withResponse();
  const of2 = await oa.files.create({ file: await toFile(fs.readFileSync(VALID), 'validation_set.jsonl'), purpose: 'fine-tune' });
  await check('/v1 files.create: 200, file objects, content round-trips', async () => {
    assert.equal(ores.status, 200);
    checkFile(of1, { name: 'training_set.jsonl', bytes: trainBytes.length, t0: t1 });
    checkFile(of2, { name: 'validation_set.jsonl', bytes: validBytes.length, t0: t1 });
    assert.ok((await contentBytes(oa, of1.id)).equals(trainBytes));
    assert.ok((await contentBytes(oa, of2.id)).equals(validBytes));
    assert.deepEqual(await oa.files.retrieve(of2.id), of2);
  });
  await check('/v1 files.list: purpose filter, limit 1 pagination', async () => {
    const fineTune = [tf.id, vf.id, of1.id, of2.id].sort();
    const all = await listAll(oa.files.list({ purpose: 'fine-tune' }));
    assert.deepEqual(all.map((f) => f.id).sort(), fineTune);
    for (const f of all) assert.equal(f.purpose, 'fine-tune');
    const res = await listAll(oa.files.list({ purpose: 'fine-tune-results' }));
    assert.deepEqual(res.map((f) => f.id), [rid]);
    const page = await oa.files.list({ purpose: 'fine-tune', limit: 1 });
    assert.equal(page.data.length, 1);
    assert.equal(page.has_more, true);
    const paged = await listAll(oa.files.list({ purpose: 'fine-tune', limit: 1 }));
    assert.equal(paged.length, 4, `limit 1 pages: ${paged.map((f) => f.id)}`);
    assert.deepEqual(paged.map((f) => f.id).sort(), fineTune);
    const everything = await listAll(oa.files.list());
    assert.deepEqual(everything.map((f) => f.id).sort(), [...fineTune, rid].sort());
  });
  await check('/v1 files.delete of an unused file: {id, object, deleted:true}, then 404', async () => {
    const d = await oa.files.delete(of2.id);
    assert.deepEqual({ id: d.id, object: d.object, deleted: d.deleted }, { id: of2.id, object: 'file', deleted: true });
    const ids = (await listAll(oa.files.list())).map((f) => f.id);
    assert.ok(!ids.includes(of2.id), 'deleted file still listed');
  });
  await expectError(oa.files.retrieve(of2.id), NotFoundError, 404, 'files.retrieve of the deleted file: 404');
  await expectError(oa.files.content(of2.id), NotFoundError, 404, 'files.content of the deleted file: 404');
  await expectError(oa.files.delete(of2.id), NotFoundError, 404, 'files.delete again: 404');
  await check('the other files are untouched', async () => {
    assert.ok((await contentBytes(oa, of1.id)).equals(trainBytes));
    assert.ok((await contentBytes(oa, tf.id)).equals(trainBytes));
  });
  // --- cleanup, as the lab's last section asks: the deployment, then the model and files ------
  await check('DELETE the deployment (204), then it is gone (404) and its chats 404', async () => {
    const d = await srv.fetch(`${armPath('gpt-4o-ft')}?api-version=2023-05-01`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
    assert.equal(d.status, 204, d.text);
    const g = await srv.fetch(`${armPath('gpt-4o-ft')}?api-version=2023-05-01`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(g.status, 404, g.text);
    await assert.rejects(lab.chat.completions.create({ model: 'gpt-4o-ft', messages: LAB_MESSAGES }), (e) => e.status === 404);
  });
  await check('then the model and the files can be deleted', async () => {
    const m = await oa.models.delete(ftm);
    assert.equal(m.deleted, true);
    for (const id of [tf.id, vf.id, of1.id]) assert.equal((await oa.files.delete(id)).deleted, true);
  });
  ok(`lab flow done: ${ftm}`);
});
