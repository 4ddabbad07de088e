// Supervised fine-tuning (`algorithm: 'sft'`): each row is a prompt and a completion. The prompt is
// rendered exactly as RL jobs render it (system prompt, prompt_template, the checkpoint's chat
// template with the generation prompt), the completion follows it and ends with the model's end
// token, and the loss is the mean negative log-likelihood of the completion tokens alone.
// One optimizer step per step over `prompts_per_step` rows, drawn in the same seeded per-epoch
// order as RL jobs (train.ts batchRows), so a resumed job continues exactly.
import type { JobSpec } from '@cgrpo/contract';
import { buildPromptMessages } from '../algo/prompt';
import { cast, div, less, maximum, mul, neg, reduceMax, reduceSum, sub } from '../engine';
import type { CausalLM, LossHook, ModelTrainer, ScoredSequence } from '../model/model';
import type { ModelTokenizer } from '../model/tokenizer';
import type { Example } from './dataset';
import { batchRows, type StepResult } from './train';
import { JobError } from './types';

export interface SftFormat {
  systemPrompt: string;
  promptTemplate: string;
  maxPromptTokens: number;
  maxCompletionTokens: number;
}

export interface SftSequence extends ScoredSequence {
  /** the completion was cut to maxCompletionTokens (its end token is then missing) */
  truncated: boolean;
}

/** Prompt tokens (left-truncated like RL prompts) + completion tokens + the end-of-turn token. */
export function sftSequence(tokenizer: ModelTokenizer, eos: number, row: Example, f: SftFormat): SftSequence {
  if (row.completion === undefined)
    throw new JobError('dataset_invalid', `datasets.train: line ${row.line} has no completion`);
  const promptText = tokenizer.applyChatTemplate(
    buildPromptMessages(row.question, { systemPrompt: f.systemPrompt, template: f.promptTemplate }),
    { addGenerationPrompt: true },
  );
  const prompt = tokenizer.encode(promptText).slice(-f.maxPromptTokens);
  const full = [...tokenizer.encode(row.completion), eos];
  const completion = full.slice(0, f.maxCompletionTokens);
  return {
    tokens: [...prompt, ...completion],
    start: prompt.length,
    truncated: completion.length < full.length,
  };
}

/** Mean NLL over the completion tokens of the batch; token_accuracy = share where the argmax is the target. */
export const sftLoss: LossHook = (ctx) => {
  const count = maximum(reduceSum(ctx.mask, undefined, false), 1);
  const loss = div(neg(reduceSum(mul(ctx.logp, ctx.mask), undefined, false)), count);
  if (!ctx.logProbs) throw new Error("sftLoss needs the train graph's log-probs (LossContext.logProbs)");
  const best = reduceMax(ctx.logProbs, [-1], false);
  const hit = sub(1, cast(less(ctx.logp, best), 'float32'));
  const tokenAccuracy = div(reduceSum(mul(hit, ctx.mask), undefined, false), count);
  return { loss, metrics: { token_accuracy: tokenAccuracy, completion_tokens: count } };
};

export function sftFormat(spec: JobSpec): SftFormat {
  const hp = spec.hyperparameters;
  return {
    systemPrompt: hp.system_prompt,
    promptTemplate: hp.prompt_template,
    maxPromptTokens: hp.max_prompt_tokens,
    maxCompletionTokens: hp.max_response_tokens,
  };
}

/** The SFT counterpart of TrainingLoop: one optimizer step per `step()`. */
export class SftLoop {
  currentStep = 0;
  private readonly sequences = new Map<number, SftSequence>();

  constructor(
    private readonly model: CausalLM,
    private readonly trainer: ModelTrainer,
    private readonly train: readonly Example[],
    private readonly format: SftFormat,
    private readonly batch: { perStep: number; seed: number; dropLast: boolean },
  ) {}

  private sequence(row: number): SftSequence {
    let s = this.sequences.get(row);
    if (!s) {
      s = sftSequence(this.model.tokenizer, this.model.eosTokenIds[0], this.train[row], this.format);
      this.sequences.set(row, s);
    }
    return s;
  }

  async step(step: number): Promise<StepResult> {
    this.currentStep = step;
    const t0 = performance.now();
    const { rows, epoch } = batchRows(
      step,
      this.train.length,
      this.batch.perStep,
      this.batch.seed,
      this.batch.dropLast,
    );
    const seqs = rows.map((r) => this.sequence(r));
    const r = await this.trainer.step(seqs);
    const seconds = (performance.now() - t0) / 1000;
    const tokens = r.metrics.completion_tokens?.[0] ?? 0;
    return {
      step,
      values: {
        'train/loss': r.loss,
        'train/token_accuracy': r.metrics.token_accuracy?.[0] ?? null,
        'train/completion_tokens': tokens,
        'tokens/generated': 0,
        'tokens/trained': tokens,
        'train/truncated_fraction': seqs.filter((s) => s.truncated).length / seqs.length,
        'train/epoch': epoch,
        loss: r.loss,
        grad_norm: r.gradNorm,
        lr: r.lr,
        tokens_per_second: seqs.reduce((a, s) => a + s.tokens.length, 0) / seconds,
        step_seconds: seconds,
      },
      rollouts: [],
      engineMs: r.ms,
    };
  }
}
