// tests/compat/jobs_pagination.mjs - fine-tuning job lists and job control through the OpenAI
// class on /v1: three one-epoch jobs with metadata (each through another alias, the deprecated
// top-level hyperparameters or method.supervised), jobs.list with limit 1 paged by the SDK's
// auto-pagination and by hand with `after`, the metadata[k]=v filter, cancel (stays
// cancelled), pause a running job after a step and resume it to success, and the refusals
// OpenAI gives for cancelling / pausing / resuming a job in the wrong state.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { APIError, NotFoundError, PermissionDeniedError } from 'openai';
import {
  forjaTest, check, ok, TRAIN, VALID, JOB_KEYS, assertKeys, waitJob, waitFor, listAll, allEvents, contentBytes,
  parseResults, assertSteps, sleep, TERMINAL, expectError,
} from './lib.mjs';

/** The call fails with a 4xx other than 404 (the job exists; its state forbids it). */
async function refused(promise, msg) {
  try {
    const v = await promise;
    console.log(`FAIL ${msg}`);
    assert.fail(`${msg}: expected a 4xx error, got ${JSON.stringify(v).slice(0, 300)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    const good = e instanceof APIError && e.status >= 400 && e.status < 500 && e.status !== 404;
    if (!good) console.log(`FAIL ${msg}`);
    assert.ok(good, `${msg}: expected a 4xx (not 404) error, got ${e?.constructor?.name} ${e?.status} ${e?.message}`);
    assert.equal(typeof e.error?.message, 'string', `${msg}: OpenAI error shape: ${JSON.stringify(e.error)}`);
    ok(`${msg} (${e.status} ${e.error.message})`);
  }
}

forjaTest('jobs: list pagination, metadata filter, cancel, pause/resume', async (h) => {
  const dir = h.dataDir('jobs');
  const key = h.createKey(dir, 'jobs');
  const srv = await h.startServer(dir, [], 'jobs server');
  const oa = srv.openai(key);
  const tf = await oa.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' });
  const vf = await oa.files.create({ file: fs.createReadStream(VALID), purpose: 'fine-tune' });

  // --- three short jobs, one more to cancel --------------------------------------------------------
  const A = await oa.fineTuning.jobs.create({
    training_file: tf.id, model: 'gpt-4o-mini', suffix: 'pag-a', seed: 1,
    hyperparameters: { n_epochs: 1 }, metadata: { group: 'x', n: '0' },
  });
  const B = await oa.fineTuning.jobs.create({
    training_file: tf.id, validation_file: vf.id, model: 'gpt-35-turbo', seed: 2,
    method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 1 } } }, metadata: { group: 'x', n: '1' },
  });
  const C = await oa.fineTuning.jobs.create({
    training_file: tf.id, model: 'gpt-4.1-mini', hyperparameters: { n_epochs: 1 }, metadata: { group: 'y', n: '2' },
  });
  const E = await oa.fineTuning.jobs.create({
    training_file: tf.id, model: 'gpt-4o', hyperparameters: { n_epochs: 2 }, metadata: { group: 'z', n: '3' },
  });
  const cancelled = await oa.fineTuning.jobs.cancel(E.id);
  await check('created jobs echo metadata, seed, suffix, model, method; no seed given -> an integer one', () => {
    for (const j of [A, B, C, E]) assertKeys(j, JOB_KEYS, `job ${j.id}`);
    assert.deepEqual(A.metadata, { group: 'x', n: '0' });
    assert.deepEqual(C.metadata, { group: 'y', n: '2' });
    assert.equal(A.seed, 1);
    assert.equal(B.seed, 2);
    assert.ok(Number.isInteger(C.seed), `generated seed ${C.seed}`);
    assert.equal(A.suffix, 'pag-a');
    assert.equal(A.model, 'gpt-4o-mini');
    assert.equal(B.model, 'gpt-35-turbo');
    assert.equal(B.method?.type, 'supervised');
    assert.equal(B.method?.supervised?.hyperparameters?.n_epochs, 1);
    assert.equal(new Set([A.id, B.id, C.id, E.id]).size, 4);
  });
  await check(`cancel answers the job with status cancelled (was ${E.status})`, () => {
    assert.equal(cancelled.id, E.id);
    assert.equal(cancelled.status, 'cancelled');
  });

  // --- listing ------------------------------------------------------------------------------------
  const newestFirst = [E.id, C.id, B.id, A.id];
  await check('jobs.list(): every job, newest first, list object', async () => {
    const page = await oa.fineTuning.jobs.list();
    assert.equal(page.body.object, 'list');
    assert.deepEqual(page.data.map((j) => j.id), newestFirst);
    assert.equal(page.has_more, false);
    assert.equal(page.body.first_id, E.id);
    assert.equal(page.body.last_id, A.id);
  });
  await check('jobs.list({limit:1}) auto-pagination (for await) yields each job once, in order', async () => {
    const seen = [];
    for await (const j of oa.fineTuning.jobs.list({ limit: 1 })) seen.push(j.id);
    assert.deepEqual(seen, newestFirst);
  });
  await check('jobs.list({limit:1, after}) by hand: has_more until the last page', async () => {
    const seen = [];
    let after;
    for (let i = 0; i < 10; i++) {
      const page = await oa.fineTuning.jobs.list(after ? { limit: 1, after } : { limit: 1 });
      assert.equal(page.data.length, 1);
      seen.push(page.data[0].id);
      after = page.data[0].id;
      assert.equal(page.has_more, seen.length < 4, `has_more on page ${seen.length}`);
      if (!page.has_more) break;
    }
    assert.deepEqual(seen, newestFirst);
    const beyond = await oa.fineTuning.jobs.list({ limit: 1, after: A.id });
    assert.deepEqual(beyond.data, []);
    assert.equal(beyond.has_more, false);
  });
  await check('jobs.list({limit:2}): two pages', async () => {
    const p1 = await oa.fineTuning.jobs.list({ limit: 2 });
    assert.deepEqual(p1.data.map((j) => j.id), newestFirst.slice(0, 2));
    assert.equal(p1.has_more, true);
    const p2 = await p1.getNextPage();
    assert.deepEqual(p2.data.map((j) => j.id), newestFirst.slice(2));
    assert.equal(p2.has_more, false);
  });
  await check('metadata[k]=v filter (the SDK sends metadata:{k:v} as metadata[k]=v)', async () => {
    assert.deepEqual((await listAll(oa.fineTuning.jobs.list({ metadata: { group: 'x' } }))).map((j) => j.id), [B.id, A.id]);
    assert.deepEqual((await listAll(oa.fineTuning.jobs.list({ metadata: { group: 'y' } }))).map((j) => j.id), [C.id]);
    assert.deepEqual((await listAll(oa.fineTuning.jobs.list({ metadata: { group: 'x', n: '1' } }))).map((j) => j.id), [B.id]);
    assert.deepEqual((await listAll(oa.fineTuning.jobs.list({ metadata: { group: 'nope' } }))).map((j) => j.id), []);
    assert.deepEqual((await listAll(oa.fineTuning.jobs.list({ metadata: { group: 'x' }, limit: 1 }))).map((j) => j.id), [B.id, A.id]);
  });

  // --- the short jobs finish; the cancelled one stays cancelled --------------------------------------
  const done = {};
  for (const j of [A, B, C]) done[j.id] = await waitJob(oa, j.id, 'succeeded', { server: srv });
  await check('the three one-epoch jobs succeeded: 10 steps, the fine-tuned model names carry base and suffix', async () => {
    assert.match(done[A.id].fine_tuned_model, /^ft:gpt-4o-mini:forja:pag-a:[A-Za-z0-9_-]+$/);
    assert.match(done[B.id].fine_tuned_model, /^ft:gpt-35-turbo:forja::[A-Za-z0-9_-]+$/);
    assert.match(done[C.id].fine_tuned_model, /^ft:gpt-4.1-mini:forja::[A-Za-z0-9_-]+$/);
    for (const j of Object.values(done)) {
      assert.equal(j.hyperparameters.n_epochs, 1);
      const { rows } = parseResults((await contentBytes(oa, j.result_files[0])).toString('utf8'));
      assertSteps(rows, 10, `results of ${j.id}`);
    }
    assert.equal(new Set(Object.values(done).map((j) => j.fine_tuned_model)).size, 3, 'distinct model names');
  });
  await check('the cancelled job stayed cancelled, no model, no new steps', async () => {
    const e = await oa.fineTuning.jobs.retrieve(E.id);
    assert.equal(e.status, 'cancelled');
    assert.equal(e.fine_tuned_model, null);
    assert.ok(!fs.existsSync(path.join(dir, 'jobs', E.id, 'model', 'model.safetensors')), 'a cancelled job wrote a final model');
  });

  // --- pause a running job after a step, resume it --------------------------------------------------
  const D = await oa.fineTuning.jobs.create({
    training_file: tf.id, model: 'forja-base', seed: 4, hyperparameters: { n_epochs: 2 }, metadata: { group: 'p' },
  });
  await waitFor(`a metrics event of ${D.id}`, async () => {
    const evs = await listAll(oa.fineTuning.jobs.listEvents(D.id, { limit: 100 }));
    return evs.some((e) => e.type === 'metrics');
  }, { pollMs: 100 });
  const pausedNow = await oa.fineTuning.jobs.pause(D.id);
  await check(`pause after a step: answers the job (status ${pausedNow.status})`, () => {
    assert.equal(pausedNow.id, D.id);
    assert.ok(['paused', 'running'].includes(pausedNow.status), `status ${pausedNow.status}`);
  });
  await waitJob(oa, D.id, 'paused', { server: srv });
  const stepsAt = async () => (await allEvents(oa, D.id)).filter((e) => e.type === 'metrics').map((e) => e.data.step);
  const before = await stepsAt();
  await sleep(3000);
  const after = await stepsAt();
  await check(`paused: no steps for 3 s (last step ${before[0]} of 20), status still paused`, async () => {
    assert.deepEqual(after, before, `metrics events for steps ${after.filter((s) => !before.includes(s))} arrived after the job reported 'paused' (steps newest first, then: ${before}; 3 s later: ${after})`);
    assert.ok(before[0] < 20, `the job was paused before its end: last step ${before[0]}`);
    assert.equal((await oa.fineTuning.jobs.retrieve(D.id)).status, 'paused');
  });
  await refused(oa.fineTuning.jobs.pause(D.id), 'pausing a paused job is refused');
  const resumed = await oa.fineTuning.jobs.resume(D.id);
  await check(`resume answers the job back in queued/running (${resumed.status})`, () => {
    assert.equal(resumed.id, D.id);
    assert.ok(['queued', 'running'].includes(resumed.status), `status ${resumed.status}`);
  });
  const dDone = await waitJob(oa, D.id, 'succeeded', { server: srv });
  await check('the resumed job succeeded: results have each of its 20 steps once; ft:forja-base:... model', async () => {
    const { rows } = parseResults((await contentBytes(oa, dDone.result_files[0])).toString('utf8'));
    assertSteps(rows, 20, 'results of the paused job');
    assert.match(dDone.fine_tuned_model, /^ft:forja-base:forja::[A-Za-z0-9_-]+$/);
    const msgs = (await allEvents(oa, D.id)).map((e) => e.message);
    assert.ok(msgs.some((m) => /Job succeeded/i.test(m)), 'Job succeeded event');
    assert.ok(msgs.some((m) => /paused/i.test(m)), 'an event says the job was paused');
    assert.ok(msgs.some((m) => /resumed/i.test(m)), 'an event says the job was resumed');
  });

  // --- state errors ---------------------------------------------------------------------------------
  await refused(oa.fineTuning.jobs.cancel(A.id), 'cancelling a succeeded job is refused');
  await refused(oa.fineTuning.jobs.pause(A.id), 'pausing a succeeded job is refused');
  await refused(oa.fineTuning.jobs.resume(B.id), 'resuming a job that is not paused is refused');
  await refused(oa.fineTuning.jobs.resume(E.id), 'resuming a cancelled job is refused');
  await check('the refused calls changed nothing (terminal states never change)', async () => {
    assert.equal((await oa.fineTuning.jobs.retrieve(A.id)).status, 'succeeded');
    assert.equal((await oa.fineTuning.jobs.retrieve(B.id)).status, 'succeeded');
    assert.equal((await oa.fineTuning.jobs.retrieve(E.id)).status, 'cancelled');
    const all = await listAll(oa.fineTuning.jobs.list());
    assert.deepEqual(all.map((j) => j.id), [D.id, ...newestFirst]);
    for (const j of all) assert.ok(TERMINAL.has(j.status), `${j.id} ${j.status}`);
  });
  // --- deleting models -------------------------------------------------------------------------------
  const aDone = await oa.fineTuning.jobs.retrieve(A.id);
  const aModel = aDone.fine_tuned_model;
  const aWeights = path.join(dir, 'jobs', A.id, 'model');
  const aCkpts = (await oa.fineTuning.jobs.checkpoints.list(A.id)).data.map((c) => c.fine_tuned_model_checkpoint);
  await check(`${aModel} and its checkpoints are listed, its weights on disk`, async () => {
    const ids = (await listAll(oa.models.list())).map((m) => m.id);
    assert.ok(ids.includes(aModel), `models: ${ids}`);
    assert.ok(aCkpts.length > 0 && aCkpts.every((c) => ids.includes(c)), `checkpoints ${aCkpts}`);
    assert.ok(fs.existsSync(path.join(aWeights, 'model.safetensors')));
  });
  await expectError(oa.models.delete('forja-base'), PermissionDeniedError, 403, 'deleting a base model: 403');
  await expectError(oa.models.delete('gpt-4o'), PermissionDeniedError, 403, 'deleting an alias: 403');
  const del = await oa.models.delete(aModel);
  await check(`deleting ${aModel}: deleted, gone from the list with its checkpoints, weights removed`, async () => {
    assert.deepEqual(del, { id: aModel, object: 'model', deleted: true });
    const ids = (await listAll(oa.models.list())).map((m) => m.id);
    assert.ok(!ids.includes(aModel) && !aCkpts.some((c) => ids.includes(c)), `models: ${ids}`);
    assert.ok(!fs.existsSync(aWeights), `${aWeights} still there`);
    assert.ok(!fs.existsSync(path.join(dir, 'jobs', A.id, 'checkpoints')));
    assert.equal((await oa.fineTuning.jobs.retrieve(A.id)).status, 'succeeded');
  });
  await expectError(oa.models.retrieve(aModel), NotFoundError, 404, 'the deleted model: 404');
  await expectError(oa.models.delete(aModel), NotFoundError, 404, 'deleting it again: 404');
  const bModel = (await oa.fineTuning.jobs.retrieve(B.id)).fine_tuned_model;
  await check(`${bModel} (another job's) is still there`, async () => {
    assert.equal((await oa.models.retrieve(bModel)).id, bModel);
  });

  try {
    await oa.fineTuning.jobs.cancel('ftjob-doesnotexist');
    assert.fail('cancel of an unknown job succeeded');
  } catch (e) {
    assert.ok(e instanceof NotFoundError, `cancel of an unknown job: ${e?.constructor?.name} ${e?.status}`);
    ok('cancel of an unknown job: 404');
  }
});
