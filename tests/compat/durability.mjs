// tests/compat/durability.mjs - what survives `kill -9` of `forja serve`:
//   (a) killed during a slow upload (another upload acknowledged meanwhile): after a restart on
//       the same data dir every acknowledged file is listed, byte-identical; the partial one is
//       not;
//   (b) killed with one job just created (validating or running) and one queued behind it
//       (--max-jobs 1): after a restart both run to success, each step once; their seeds differ
//       and so do their weights;
//   (c) killed during training, after epoch 1's checkpoint (the lab's files, 3 epochs, seed
//       7): after a restart the job resumes and succeeds with the weights (sha256), results and
//       trained_tokens of an uninterrupted job with the same inputs and seed; and a third job
//       with the same inputs and seed, on another server and data dir, gives the same weights
//       (the lab's seed promise).
// Also: no worker outlives a killed server, and SIGTERM stops the server and its workers.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import assert from 'node:assert/strict';
import { toFile } from 'openai';
import {
  forjaTest, check, ok, TRAIN, VALID, waitJob, waitFor, listAll, allEvents, contentBytes, parseResults, assertSteps,
  sha256File, syntheticJsonl, sleep,
} from './lib.mjs';

const weights = (dir, id) => path.join(dir, 'jobs', id, 'model', 'model.safetensors');

/**
 * POST /v1/files with a multipart body sent slowly (chunk bytes every delayMs) over node:http
 * with a Content-Length, so that the server can be killed while it is reading the body.
 */
function slowUpload(srv, key, bytes, { chunk = 64 * 1024, delayMs = 25 } = {}) {
  const boundary = `----forja-compat-${crypto.randomBytes(8).toString('hex')}`;
  const pre = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n`
    + `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="partial.jsonl"\r\n`
    + 'Content-Type: application/octet-stream\r\n\r\n');
  const post = Buffer.from(`\r\n--${boundary}--\r\n`);
  const body = syntheticJsonl(bytes, 'partial');
  const st = { sent: 0, total: body.length, response: null, error: null };
  const req = http.request({
    host: '127.0.0.1', port: srv.port, path: '/v1/files', method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': pre.length + body.length + post.length },
  });
  const closed = new Promise((r) => req.on('close', r));
  req.on('response', (res) => { st.response = res.statusCode; res.resume(); });
  req.on('error', (e) => { st.error = e; });
  st.done = (async () => {
    req.write(pre);
    while (st.sent < body.length && !st.error && st.response === null) {
      const c = body.subarray(st.sent, st.sent + chunk);
      const flushed = req.write(c);
      st.sent += c.length;
      if (!flushed) await Promise.race([once(req, 'drain'), closed]);
      await sleep(delayMs);
    }
    if (!st.error && st.response === null) req.end(post);
    await closed;
    return st;
  })();
  return st;
}

forjaTest('durability: kill -9 during an upload, a queued job, training; seed reproducibility', async (h) => {
  const dir = h.dataDir('main');
  const key = h.createKey(dir, 'durability');
  const trainBytes = fs.readFileSync(TRAIN);
  const validBytes = fs.readFileSync(VALID);
  const common = { model: 'gpt-4o', seed: 7, hyperparameters: { n_epochs: 3 } };

  // The seed reference: same files and settings on another data dir and server, running while
  // the rest happens.
  const dirB = h.dataDir('reference');
  const keyB = h.createKey(dirB, 'reference');
  const srvB = await h.startServer(dirB, [], 'reference server');
  const ob = srvB.openai(keyB);
  const tB = await ob.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' });
  const vB = await ob.files.create({ file: fs.createReadStream(VALID), purpose: 'fine-tune' });
  const R2 = await ob.fineTuning.jobs.create({ training_file: tB.id, validation_file: vB.id, ...common });

  // --- (a) kill -9 during an upload ----------------------------------------------------------------
  let srv = await h.startServer(dir, [], 'server 1');
  let oa = srv.openai(key);
  const A = await oa.files.create({ file: fs.createReadStream(TRAIN), purpose: 'fine-tune' });
  const B = await oa.files.create({ file: await toFile(validBytes, 'validation_set.jsonl'), purpose: 'fine-tune' });
  const cBytes = syntheticJsonl(300_000, 'c');
  const C = await oa.files.create({ file: await toFile(cBytes, 'c.jsonl'), purpose: 'fine-tune' });
  const up = slowUpload(srv, key, 8 * 1024 * 1024);
  await waitFor('1 MiB of the slow upload sent', () => up.sent >= 1024 * 1024 || up.error || up.response !== null, { timeoutMs: 60_000, pollMs: 20 });
  const dBytes = syntheticJsonl(50_000, 'd');
  const D = await oa.files.create({ file: await toFile(dBytes, 'd.jsonl'), purpose: 'fine-tune' });
  await check(`an upload acknowledged while a slow one is in flight (${up.sent} of ${up.total} bytes sent, no answer yet)`, () => {
    assert.equal(up.error, null, `the slow upload failed: ${up.error?.message}`);
    assert.equal(up.response, null, `the server answered the unfinished upload: ${up.response}`);
    assert.ok(up.sent < up.total);
  });
  await h.kill9(srv);
  await up.done;
  await check('the partial upload got no answer (connection dropped)', () => {
    assert.equal(up.response, null, `answered ${up.response}`);
    assert.ok(up.error, 'no connection error');
  });
  srv = await h.startServer(dir, [], 'server 2 (after kill -9 during an upload)');
  oa = srv.openai(key);
  const acked = [[A, trainBytes], [B, validBytes], [C, cBytes], [D, dBytes]];
  await check('after the restart: exactly the acknowledged files are listed, with the same objects and bytes', async () => {
    const listed = await listAll(oa.files.list());
    assert.deepEqual(listed.map((f) => f.id).sort(), acked.map(([f]) => f.id).sort(), `listed: ${listed.map((f) => `${f.id} ${f.filename}`)}`);
    assert.ok(!listed.some((f) => f.filename === 'partial.jsonl'), 'the partial upload is listed');
    for (const [f, bytes] of acked) {
      assert.deepEqual(await oa.files.retrieve(f.id), f);
      assert.ok((await contentBytes(oa, f.id)).equals(bytes), `${f.filename}: content differs`);
      assert.ok(fs.readFileSync(path.join(dir, 'files', f.id)).equals(bytes), `DIR/files/${f.id} differs`);
    }
  });
  {
    const strays = fs.readdirSync(path.join(dir, 'files')).filter((n) => !acked.some(([f]) => f.id === n));
    if (strays.length) console.log(`# note: DIR/files also holds ${strays.join(', ')} (the partial upload's leftovers?)`);
  }
  await check('uploads work after the restart', async () => {
    const eBytes = syntheticJsonl(1000, 'e');
    const E = await oa.files.create({ file: await toFile(eBytes, 'e.jsonl'), purpose: 'fine-tune' });
    assert.equal(E.bytes, eBytes.length);
    assert.ok((await contentBytes(oa, E.id)).equals(eBytes));
    assert.ok(!acked.some(([f]) => f.id === E.id), 'a new upload reused an id');
    await oa.files.delete(E.id);
  });
  await h.stopServer(srv);

  // --- (b) kill -9 with a job validating and one queued ---------------------------------------------
  srv = await h.startServer(dir, ['--max-jobs', '1'], 'server 3 (--max-jobs 1)');
  oa = srv.openai(key);
  const J1 = await oa.fineTuning.jobs.create({ training_file: A.id, model: 'gpt-4o', seed: 7, hyperparameters: { n_epochs: 1 } });
  const J2 = await oa.fineTuning.jobs.create({ training_file: A.id, model: 'gpt-4o', seed: 8, hyperparameters: { n_epochs: 1 } });
  const j2now = await oa.fineTuning.jobs.retrieve(J2.id);
  console.log(`# killing with ${J1.id} created as ${J1.status}, ${J2.id} ${j2now.status}`);
  await check('the second job is still validating or queued when the server is killed', () => {
    assert.ok(['validating_files', 'queued'].includes(j2now.status), `status ${j2now.status}`);
  });
  await h.kill9(srv);
  srv = await h.startServer(dir, ['--max-jobs', '1'], 'server 4 (after kill -9 with queued jobs)');
  oa = srv.openai(key);
  const j1 = await waitJob(oa, J1.id, 'succeeded', { server: srv });
  const j2 = await waitJob(oa, J2.id, 'succeeded', { server: srv });
  await check('both jobs succeeded after the restart; each step once in results.csv; their seeds kept', async () => {
    for (const j of [j1, j2]) {
      const { rows } = parseResults((await contentBytes(oa, j.result_files[0])).toString('utf8'));
      assertSteps(rows, 10, `results of ${j.id}`);
      assert.ok(fs.existsSync(weights(dir, j.id)), `${weights(dir, j.id)} missing`);
    }
    assert.equal(j1.seed, 7);
    assert.equal(j2.seed, 8);
  });
  await check('another seed, other weights', () => assert.notEqual(sha256File(weights(dir, j1.id)), sha256File(weights(dir, j2.id))));

  // --- (c) kill -9 during training, after epoch 1's checkpoint --------------------------------------
  const K = await oa.fineTuning.jobs.create({ training_file: A.id, validation_file: B.id, ...common });
  let firstCkpt = null;
  const lastStep = await waitFor(`${K.id} past its first checkpoint`, async () => {
    if (!srv.running) throw new Error('the server exited');
    const evs = await allEvents(oa, K.id);
    const ck = evs.map((e) => /Checkpoint created at step (\d+)/i.exec(e.message)).filter(Boolean).map((m) => Number(m[1]));
    if (!ck.length) return null;
    firstCkpt = Math.min(...ck);
    const steps = evs.filter((e) => e.type === 'metrics').map((e) => e.data.step);
    const last = Math.max(...steps);
    return last > firstCkpt ? last : null;
  }, { pollMs: 100 });
  const kNow = await oa.fineTuning.jobs.retrieve(K.id);
  await check(`training is under way when the server is killed (${kNow.status}, step ${lastStep} of 30, checkpoint at ${firstCkpt})`, () => {
    assert.equal(kNow.status, 'running');
    assert.ok(lastStep < 30, `step ${lastStep}`);
  });
  await h.kill9(srv);
  srv = await h.startServer(dir, [], 'server 5 (after kill -9 during training)');
  oa = srv.openai(key);
  const k = await waitJob(oa, K.id, 'succeeded', { server: srv });
  const R = await oa.fineTuning.jobs.create({ training_file: A.id, validation_file: B.id, ...common });
  const r = await waitJob(oa, R.id, 'succeeded', { server: srv });
  const kText = (await contentBytes(oa, k.result_files[0])).toString('utf8');
  const rText = (await contentBytes(oa, r.result_files[0])).toString('utf8');
  await check('the resumed job: 30 steps, each once; results.csv identical to the uninterrupted job\'s', () => {
    assertSteps(parseResults(kText).rows, 30, 'resumed job');
    assertSteps(parseResults(rText).rows, 30, 'uninterrupted job');
    assert.equal(kText, rText);
  });
  const shaK = sha256File(weights(dir, k.id));
  const shaR = sha256File(weights(dir, r.id));
  await check(`the resumed job's weights equal the uninterrupted job's (sha256 ${shaK.slice(0, 16)}...)`, () => {
    assert.equal(shaK, shaR);
  });
  await check('same trained_tokens and hyperparameters; the checkpoints kept at the same steps', async () => {
    assert.equal(k.trained_tokens, r.trained_tokens);
    assert.deepEqual(k.hyperparameters, r.hyperparameters);
    assert.equal(k.hyperparameters.n_epochs, 3);
    const ks = (await listAll(oa.fineTuning.jobs.checkpoints.list(k.id))).map((c) => c.step_number);
    const rs = (await listAll(oa.fineTuning.jobs.checkpoints.list(r.id))).map((c) => c.step_number);
    assert.ok(ks.length >= 2, `checkpoints ${ks}`);
    assert.deepEqual(ks, rs);
    assert.notEqual(k.fine_tuned_model, r.fine_tuned_model);
  });

  // --- the seed promise across servers and data dirs --------------------------------------------
  const r2 = await waitJob(ob, R2.id, 'succeeded', { server: srvB });
  await check('same inputs and seed on another server and data dir: the same weights and results', async () => {
    assert.equal(sha256File(weights(dirB, r2.id)), shaR);
    assert.equal((await contentBytes(ob, r2.result_files[0])).toString('utf8'), rText);
    assert.equal(r2.trained_tokens, r.trained_tokens);
  });
  await h.stopServer(srvB);
  await h.stopServer(srv);
  ok('durability done');
});
