import { SELF } from 'cloudflare:test';
import type { JobSpec } from '@cgrpo/contract';
import OpenAI, { toFile } from 'openai';
import { describe, expect, it } from 'vitest';
import { expectJson, lease, newAccount, newRunner } from './helpers';

// The official `openai` client against /openai/v1 of the real Worker (workerd, local D1/R2): its
// `fetch` goes to the Worker (SELF), so every byte is what the client sends and reads.

function client(apiKey: string): OpenAI {
  return new OpenAI({
    apiKey,
    baseURL: 'http://api.test/openai/v1',
    fetch: (url: string | URL | Request, init?: RequestInit) => SELF.fetch(url, init),
    maxRetries: 0,
  });
}

const rftRows = [
  { messages: [{ role: 'user', content: 'What is 2+3? Answer with the number only.' }], answer: '5' },
  { messages: [{ role: 'user', content: 'What is 4+4? Answer with the number only.' }], answer: '8' },
  { messages: [{ role: 'user', content: 'What is 9-2? Answer with the number only.' }], answer: '7' },
];
const sftRows = [
  {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Capital of France?' },
      { role: 'assistant', content: 'Paris' },
    ],
  },
  {
    messages: [
      { role: 'user', content: 'Capital of Italy?' },
      { role: 'assistant', content: 'Rome' },
    ],
  },
];
const jsonl = (rows: object[]) => `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
const stringCheck = {
  type: 'string_check',
  name: 'exact answer',
  input: '{{sample.output_text}}',
  reference: '{{item.answer}}',
  operation: 'eq',
} as const;

describe('OpenAI-compatible fine-tuning surface', () => {
  it('creates, follows and cancels a reinforcement job with a string_check grader', async () => {
    const account = await newAccount();
    const runner = await newRunner(account);
    const openai = client(account.apiKey);
    const file = await openai.files.create({
      file: await toFile(new TextEncoder().encode(jsonl(rftRows)), 'rft.jsonl'),
      purpose: 'fine-tune',
    });
    expect(file.id).toMatch(/^art_/);
    expect(file.purpose).toBe('fine-tune');

    const job = await openai.fineTuning.jobs.create({
      model: 'tiny-qwen3',
      training_file: file.id,
      method: {
        type: 'reinforcement',
        reinforcement: { grader: stringCheck, hyperparameters: { batch_size: 3, n_epochs: 2 } },
      },
      suffix: 'rft-migration',
    });
    expect(job.object).toBe('fine_tuning.job');
    expect(job.status).toBe('queued');
    expect(job.method?.type).toBe('reinforcement');
    expect(job.training_file).toBe(file.id);

    // the cgrpo job behind it: GRPO with builtin:exact on the row's `answer`, 3 prompts × 2 epochs
    const cg = await expectJson<{ spec: JobSpec }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(cg.spec.algorithm).toBe('grpo');
    expect(cg.spec.verifier).toMatchObject({ plugin: 'builtin:exact', config: { extract: 'whole' } });
    expect(cg.spec.datasets.train.fields).toMatchObject({ prompt: 'prompt', reference: 'answer' });
    expect(cg.spec.hyperparameters).toMatchObject({ prompts_per_step: 3, total_steps: 2 });
    // the stored dataset rows: the user message became the prompt, `answer` kept for the grader
    const art = await SELF.fetch(`http://api.test/v1/artifacts/${file.id}/content`, {
      headers: { authorization: `Bearer ${account.apiKey}` },
    });
    expect((await art.text()).split('\n')[0]).toBe(
      JSON.stringify({ answer: '5', prompt: 'What is 2+3? Answer with the number only.' }),
    );

    // follow: a runner leases it, the client sees it running and its events
    const leased = await lease(runner.token);
    expect(leased?.job_id).toBe(job.id);
    expect((await openai.fineTuning.jobs.retrieve(job.id)).status).toBe('running');
    const listed = await openai.fineTuning.jobs.list({ limit: 10 });
    expect(listed.data.map((j) => j.id)).toContain(job.id);
    const events = await openai.fineTuning.jobs.listEvents(job.id);
    expect(events.data.map((e) => e.message)).toEqual(['job started', 'job queued']);

    const cancelled = await openai.fineTuning.jobs.cancel(job.id);
    expect(cancelled.status).toBe('running'); // cgrpo `cancelling`: the runner stops at its next heartbeat
    const checkpoints = await openai.fineTuning.jobs.checkpoints.list(job.id);
    expect(checkpoints.data).toEqual([]);
  }, 120_000); // the first request of the file pays for loading the Worker and the client (~20 s on 2 cores)

  it('creates a supervised job (an SFT job on prompt/completion rows)', async () => {
    const account = await newAccount();
    const openai = client(account.apiKey);
    const file = await openai.files.create({
      file: await toFile(new TextEncoder().encode(jsonl(sftRows)), 'sft.jsonl'),
      purpose: 'fine-tune',
    });
    const job = await openai.fineTuning.jobs.create({
      model: 'starter',
      training_file: file.id,
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 3, batch_size: 2 } } },
    });
    expect(job.method?.type).toBe('supervised');
    const cg = await expectJson<{ spec: JobSpec }>(`/v1/jobs/${job.id}`, 200, {
      key: account.apiKey,
    });
    expect(cg.spec.algorithm).toBe('sft');
    expect(cg.spec.datasets.train.fields).toMatchObject({ prompt: 'prompt', completion: 'completion' });
    expect(cg.spec.hyperparameters).toMatchObject({ prompts_per_step: 2, total_steps: 3 });
    const art = await SELF.fetch(`http://api.test/v1/artifacts/${file.id}/content`, {
      headers: { authorization: `Bearer ${account.apiKey}` },
    });
    expect((await art.text()).split('\n')[0]).toBe(
      JSON.stringify({ prompt: 'Capital of France?', completion: 'Paris' }),
    );
    const paused = await openai.fineTuning.jobs.pause(job.id);
    expect(paused.status).toBe('paused');
    expect((await openai.fineTuning.jobs.resume(job.id)).status).toBe('queued');
    expect((await openai.fineTuning.jobs.cancel(job.id)).status).toBe('cancelled');
  });

  it('refuses python and unsupported graders with 422 naming the grader type', async () => {
    const account = await newAccount();
    const openai = client(account.apiKey);
    const file = await openai.files.create({
      file: await toFile(new TextEncoder().encode(jsonl(rftRows)), 'rft.jsonl'),
      purpose: 'fine-tune',
    });
    const create = (grader: Record<string, unknown>) =>
      openai.fineTuning.jobs.create({
        model: 'tiny-qwen3',
        training_file: file.id,
        method: { type: 'reinforcement', reinforcement: { grader: grader as never } },
      });
    const python = await create({ type: 'python', name: 'p', source: 'def grade(s, i): return 1' }).catch(
      (e: unknown) => e,
    );
    expect(python).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((python as Error).message).toContain('docs/plugins.md');
    const meteor = await create({
      type: 'text_similarity',
      name: 's',
      input: '{{sample.output_text}}',
      reference: '{{item.answer}}',
      evaluation_metric: 'meteor',
    }).catch((e: unknown) => e);
    expect(meteor).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((meteor as Error).message).toContain("evaluation_metric 'meteor'");
    // a judge needs an endpoint: cgrpo.llm
    const judgeless = await create({
      type: 'score_model',
      name: 'j',
      model: 'judge',
      input: [{ role: 'user', content: 'Score {{sample.output_text}}' }],
    }).catch((e: unknown) => e);
    expect(judgeless).toBeInstanceOf(OpenAI.UnprocessableEntityError);
    expect((judgeless as Error).message).toContain('cgrpo');
    const unsafe = await create({
      type: 'multi',
      graders: { a: stringCheck },
      calculate_output: 'a.constructor',
    }).catch((e: unknown) => e);
    expect(unsafe).toBeInstanceOf(OpenAI.BadRequestError);
    expect((unsafe as Error).message).toContain('calculate_output');
    // an unknown file is the API's own 404, passed through
    const missing = await openai.fineTuning.jobs
      .create({ model: 'tiny-qwen3', training_file: 'art_missing', method: { type: 'supervised' } })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('maps text_similarity, score_model and multi graders onto built-in verifiers', async () => {
    const account = await newAccount();
    const openai = client(account.apiKey);
    const file = await openai.files.create({
      file: await toFile(new TextEncoder().encode(jsonl(rftRows)), 'rft.jsonl'),
      purpose: 'fine-tune',
    });
    const similarity = {
      type: 'text_similarity',
      name: 'similar',
      input: '{{sample.output_text}}',
      reference: '{{item.answer}}',
      evaluation_metric: 'rouge_l',
      pass_threshold: 0.7,
    };
    const judge = {
      type: 'score_model',
      name: 'judge',
      model: 'grader-model',
      input: [
        { role: 'developer', content: 'You grade arithmetic.' },
        { role: 'user', content: 'Expected {{ item.answer }}. Got: {{sample.output_text}}. Score 0-10.' },
      ],
      range: [0, 10],
      pass_threshold: 7,
      sampling_params: { temperature: 0, max_completions_tokens: 16 },
    };
    const specOf = async (grader: object, extra: object = {}) => {
      const job = await openai.fineTuning.jobs.create({
        model: 'tiny-qwen3',
        training_file: file.id,
        method: { type: 'reinforcement', reinforcement: { grader: grader as never } },
        ...extra,
      } as never);
      const cg = await expectJson<{ spec: JobSpec }>(`/v1/jobs/${job.id}`, 200, {
        key: account.apiKey,
      });
      return cg.spec;
    };
    const llm = { cgrpo: { llm: { endpoint_url: 'http://127.0.0.1:9/v1', token_env: 'JUDGE_TOKEN' } } };

    const sim = await specOf(similarity);
    expect(sim.verifier).toMatchObject({
      plugin: 'builtin:text-similarity',
      config: { metric: 'rouge_l', pass_threshold: 0.7 },
    });
    expect(sim.datasets.train.fields.reference).toBe('answer');

    const scored = await specOf(judge, llm);
    expect(scored.verifier).toMatchObject({
      plugin: 'builtin:score-model',
      config: {
        endpoint_url: 'http://127.0.0.1:9/v1',
        model: 'grader-model',
        token_env: 'JUDGE_TOKEN',
        messages: [
          { role: 'system', content: 'You grade arithmetic.' },
          { role: 'user', content: 'Expected {reference}. Got: {response}. Score 0-10.' },
        ],
        range: [0, 10],
        pass_threshold: 7,
        temperature: 0,
        max_tokens: 16,
      },
    });
    expect(scored.datasets.train.fields.reference).toBe('answer');

    const multi = await specOf(
      {
        type: 'multi',
        graders: { exact: stringCheck, similar: similarity, judge },
        calculate_output: '0.5 * exact + 0.25 * similar + 0.25 * judge / 10',
      },
      llm,
    );
    expect(multi.verifier.plugin).toBe('builtin:multi');
    expect(multi.verifier.config).toMatchObject({
      calculate_output: '0.5 * exact + 0.25 * similar + 0.25 * judge / 10',
      graders: {
        exact: { plugin: 'builtin:exact' },
        similar: { plugin: 'builtin:text-similarity', config: { metric: 'rouge_l' } },
        judge: { plugin: 'builtin:score-model', config: { range: [0, 10] } },
      },
    });
    // the grader JSON travels back on the fine-tuning job
    const listed = await openai.fineTuning.jobs.list();
    expect(listed.data.map((j) => j.method?.reinforcement?.grader?.type).sort()).toEqual([
      'multi',
      'score_model',
      'text_similarity',
    ]);
  });
});
