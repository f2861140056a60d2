// The lab's notebook cells ("Carga de archivos de optimización", "Envío del trabajo de
// optimización" and "Implementación del modelo"), in JavaScript with the official openai SDK
// (and fetch for the management call, as the lab uses requests), against forja serve:
//
//   AZURE_OPENAI_ENDPOINT=http://127.0.0.1:PORT AZURE_OPENAI_API_KEY=KEY \
//   AZURE_MANAGEMENT_TOKEN=$(forja token) \
//     node scripts/lab_flow.mjs training_set.jsonl validation_set.jsonl
//
// It prints what the lab's cells print: the file ids, the job id and status, the finished
// job's JSON, the deployment's answers and the fine-tuned model's reply to the lab's
// question; and, while it waits, the job's events as they arrive.
import fs from 'node:fs';
import { AzureOpenAI } from 'openai';

const [trainingFileName, validationFileName] = process.argv.slice(2);
if (!trainingFileName || !validationFileName) {
  console.error('usage: node scripts/lab_flow.mjs TRAINING.jsonl VALIDATION.jsonl');
  process.exit(2);
}

const client = new AzureOpenAI({
  endpoint: process.env.AZURE_OPENAI_ENDPOINT,
  apiKey: process.env.AZURE_OPENAI_API_KEY,
  apiVersion: '2024-05-01-preview', // the lab's: seed, events and checkpoints need it
});

// Cell: upload the fine-tuning files.
const trainingResponse = await client.files.create({
  file: fs.createReadStream(trainingFileName), purpose: 'fine-tune',
});
const trainingFileId = trainingResponse.id;
const validationResponse = await client.files.create({
  file: fs.createReadStream(validationFileName), purpose: 'fine-tune',
});
const validationFileId = validationResponse.id;
console.log('Training file ID:', trainingFileId);
console.log('Validation file ID:', validationFileId);

// Cell: submit the fine-tuning job.
let response = await client.fineTuning.jobs.create({
  training_file: trainingFileId,
  validation_file: validationFileId,
  model: 'gpt-4o',
  seed: 105,
});
const jobId = response.id;

// Cell: monitor the job.
console.log('Job ID:', response.id);
console.log('Status:', response.status);

// The lab waits for `succeeded` in the portal; here: poll, showing the events.
const seen = new Set();
let status = response.status;
const started = Date.now();
while (!['succeeded', 'failed', 'cancelled'].includes(status)) {
  await new Promise((r) => setTimeout(r, 1000));
  const events = await client.fineTuning.jobs.listEvents(jobId, { limit: 100 });
  for (const e of events.data.reverse()) {
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    const step = e.type === 'metrics' ? e.data.step : 0;
    // Every 10th step's metrics, and every message.
    if (e.type !== 'metrics' || step % 10 === 0) console.log(`  [${e.level}] ${e.message}`);
  }
  response = await client.fineTuning.jobs.retrieve(jobId);
  if (response.status !== status) console.log('Status:', response.status);
  status = response.status;
  if (Date.now() - started > 1800e3) throw new Error('the job did not finish in 30 minutes');
}

// Cell: the final results.
response = await client.fineTuning.jobs.retrieve(jobId);
console.log(JSON.stringify(response, null, 2));
const fineTunedModel = response.fine_tuned_model;

const checkpoints = await client.fineTuning.jobs.checkpoints.list(jobId);
for (const c of checkpoints.data)
  console.log(`checkpoint ${c.fine_tuned_model_checkpoint}: full_valid_loss ${c.metrics.full_valid_loss?.toFixed(4)}`);
console.log('fine_tuned_model:', fineTunedModel);
if (status !== 'succeeded') process.exit(1);

// Cell: deploy the fine-tuned model (the lab: requests.put to management.azure.com with the
// token of `az account get-access-token`; here the token comes from `forja token`).
const token = process.env.AZURE_MANAGEMENT_TOKEN;
const subscription = '<YOUR_SUBSCRIPTION_ID>';
const resourceGroup = '<YOUR_RESOURCE_GROUP_NAME>';
const resourceName = '<YOUR_AZURE_OPENAI_RESOURCE_NAME>';
const modelDeploymentName = 'gpt-4o-ft';
const deployData = {
  sku: { name: 'standard', capacity: 1 },
  properties: { model: { format: 'OpenAI', name: fineTunedModel, version: '1' } },
};
const requestUrl = `${process.env.AZURE_OPENAI_ENDPOINT}/subscriptions/${encodeURIComponent(subscription)}` +
  `/resourceGroups/${encodeURIComponent(resourceGroup)}/providers/Microsoft.CognitiveServices/accounts/` +
  `${encodeURIComponent(resourceName)}/deployments/${modelDeploymentName}?api-version=2023-05-01`;
console.log('Creating a new deployment...');
const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' };
let r = await fetch(requestUrl, { method: 'PUT', headers, body: JSON.stringify(deployData) });
console.log(`<Response [${r.status}]>`);
console.log(r.statusText);
console.log(JSON.stringify(await r.json()));
// The lab waits in the portal until the deployment is ready; here: poll its state.
let state = 'Creating';
while (state === 'Creating') {
  await new Promise((res) => setTimeout(res, 200));
  state = (await (await fetch(requestUrl, { headers })).json()).properties.provisioningState;
}
console.log('provisioningState:', state);
if (state !== 'Succeeded') process.exit(1);

// Cell: use the custom model in a chat completion call (api_version 2024-02-01).
const chatClient = new AzureOpenAI({
  endpoint: process.env.AZURE_OPENAI_ENDPOINT,
  apiKey: process.env.AZURE_OPENAI_API_KEY,
  apiVersion: '2024-02-01',
});
const chat = await chatClient.chat.completions.create({
  model: 'gpt-4o-ft',
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Does Azure OpenAI support customer managed keys?' },
    { role: 'assistant', content: 'Yes, customer managed keys are supported by Azure OpenAI.' },
    { role: 'user', content: 'Do other Azure AI services support this too?' },
  ],
});
console.log(chat.choices[0].message.content);

// And a question it was trained on, greedily: Clippy's trained answer.
const clippy = await chatClient.chat.completions.create({
  model: 'gpt-4o-ft',
  temperature: 0,
  messages: [
    { role: 'system', content: 'Clippy is a factual chatbot that is also sarcastic.' },
    { role: 'user', content: 'Who discovered Antarctica?' },
  ],
});
console.log('Clippy (gpt-4o-ft, temperature 0):', clippy.choices[0].message.content);
