// SFT, evaluation and checkpoint chaining end to end, as a user runs them: the real API
// (wrangler dev, local D1/R2/Queues) and a real runner process on CPU. An SFT job on the shipped
// arithmetic task (prompt → worked solution) must lower its loss and leave a checkpoint; an
// evaluation job on that checkpoint measures it (pass@1, per-response records in the rollout
// store, no training); a Critique-GRPO job starts from the same checkpoint and trains to the end.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  jobFinished,
  jobMetrics,
  type LocalApi,
  registerRunner,
  startApi,
  startRunner,
  stopRunners,
  submitJob,
} from './harness';

let api: LocalApi;

beforeAll(async () => {
  api = await startApi();
}, 120_000);
afterEach((ctx) => stopRunners(ctx.task.result?.state === 'fail'));
afterAll(async () => {
  await api?.stop();
});

const submit = (spec: Record<string, unknown>) => submitJob(api, spec);
const finished = (id: string) => jobFinished(api, id);
const metrics = (id: string) => jobMetrics(api, id);

const ARITHMETIC = 'file:examples/datasets/arithmetic';

describe('SFT → evaluate → Critique-GRPO through the API', () => {
  it('an SFT job lowers its loss and its checkpoint is evaluated and trained on by later jobs', async () => {
    const runner = await registerRunner(api, 'sft-e2e');
    startRunner(api, runner.token);

    // SFT: the completion is the row's worked solution (fields.completion), loss on it alone
    const sftId = await submit({
      name: 'sft e2e',
      algorithm: 'sft',
      model: { id: 'tiny-qwen3', adapter: { type: 'lora', rank: 8, alpha: 16 } },
      datasets: {
        train: { uri: `${ARITHMETIC}/train.jsonl`, fields: { completion: 'solution' }, limit: 96 },
        validation: { uri: `${ARITHMETIC}/validation.jsonl`, limit: 4 },
      },
      seed: 3,
      checkpoint_every: 0,
      evaluation: { every_steps: 0, at_end: true, max_prompts: 4 },
      hyperparameters: { prompts_per_step: 8, total_steps: 10, learning_rate: 0.02, max_response_tokens: 48 },
    });
    const sft = await finished(sftId);
    expect(sft.status, JSON.stringify(sft.error)).toBe('succeeded');
    const points = await metrics(sftId);
    expect(points.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const loss = points.map((p) => p.values['train/loss'] as number);
    const early = (loss[0] + loss[1]) / 2;
    const late = (loss[8] + loss[9]) / 2;
    // from a random model a fixed completion format is quickly learnable: the loss must fall by a
    // fifth at least (measured: ~6.5 → ~3.5), far more than batch-to-batch noise
    expect(late).toBeLessThan(early * 0.8);
    for (const p of points) {
      expect(p.values['train/token_accuracy']).toBeGreaterThanOrEqual(0);
      expect(p.values['train/token_accuracy']).toBeLessThanOrEqual(1);
    }
    expect(points[9].values['eval/pass@1']).toEqual(expect.any(Number));
    const ckpts = (
      await api.request<{ data: { id: string; final: boolean; step: number }[] }>(
        'GET',
        `/v1/jobs/${sftId}/checkpoints`,
      )
    ).body.data;
    const final = ckpts.find((c) => c.final);
    expect(final?.step).toBe(10);

    // a checkpoint that does not exist is refused at submission, naming the field
    const missing = await api.request<{ error: { fields: { path: string }[] } }>('POST', '/v1/jobs', {
      algorithm: 'evaluate',
      model: { id: 'checkpoint:ckpt_doesnotexist' },
      datasets: { train: { uri: `${ARITHMETIC}/validation.jsonl` } },
    });
    expect(missing.status).toBe(400); // the API answers every spec problem with 400 and the fields
    expect(JSON.stringify(missing.body)).toContain('model.id');

    // evaluation of the SFT checkpoint: metrics at step 0, every response stored, nothing trained
    const evalId = await submit({
      name: 'evaluate e2e',
      algorithm: 'evaluate',
      model: { id: `checkpoint:${final!.id}` },
      datasets: { train: { uri: `${ARITHMETIC}/validation.jsonl`, limit: 6 } },
      seed: 5,
      evaluation: { samples_per_prompt: 2, temperature: 1, max_prompts: null },
      hyperparameters: { max_response_tokens: 24 },
    });
    const ev = await finished(evalId);
    expect(ev.status, JSON.stringify(ev.error)).toBe('succeeded');
    const evPoints = await metrics(evalId);
    expect(evPoints).toHaveLength(1);
    expect(evPoints[0].step).toBe(0);
    expect(evPoints[0].values['eval/prompts']).toBe(6);
    expect(evPoints[0].values['eval/samples']).toBe(12);
    expect(evPoints[0].values['eval/pass@2']).toEqual(expect.any(Number));
    const records = (
      await api.request<{
        data: { kind: string; response: string; reward: number | null; reference: string }[];
      }>('GET', `/v1/jobs/${evalId}/rollouts?step=0&limit=100`)
    ).body.data;
    expect(records).toHaveLength(12);
    for (const r of records) {
      expect(r.kind).toBe('evaluation');
      expect(r.reward).toEqual(expect.any(Number));
    }
    expect(
      (await api.request<{ data: unknown[] }>('GET', `/v1/jobs/${evalId}/checkpoints`)).body.data,
    ).toEqual([]);

    // Critique-GRPO from the SFT checkpoint (merged into the base, a new adapter trained on it)
    const rlId = await submit({
      name: 'critique-grpo from sft',
      algorithm: 'critique-grpo',
      model: { id: `checkpoint:${final!.id}`, adapter: { type: 'lora', rank: 4, alpha: 8 } },
      datasets: { train: { uri: `${ARITHMETIC}/train.jsonl`, limit: 16 } },
      critic: { plugin: 'builtin:ground-truth' },
      seed: 9,
      checkpoint_every: 0,
      evaluation: { every_steps: 0, at_end: false },
      hyperparameters: {
        prompts_per_step: 2,
        group_size: 3,
        max_response_tokens: 16,
        total_steps: 2,
        learning_rate: 0.001,
        mini_batches_per_step: 1,
      },
    });
    const rl = await finished(rlId);
    expect(rl.status, JSON.stringify(rl.error)).toBe('succeeded');
    const rlPoints = await metrics(rlId);
    expect(rlPoints.map((p) => p.step)).toEqual([1, 2]);
    const refinements = (
      await api.request<{ data: { kind: string; prompt: string; critique: string | null }[] }>(
        'GET',
        `/v1/jobs/${rlId}/rollouts?step=1&kind=refinement`,
      )
    ).body.data;
    for (const r of refinements) expect(r.prompt).toContain(r.critique ?? '\u0000');
  }, 600_000);
});
