// The online training loop of critique-grpo.md §1.2 (Algorithm 1) on one runner. A step is:
//   sample → verify → critique → refine → verify refinements → assemble groups → score → update
// with one QuestionGroup record per question travelling between the phases (question-group.ts).
// Every random choice is a counter-based stream of (seed, purpose, step, …), so the same seed on
// the same hardware gives the same run, and a resumed run needs only the step to continue exactly.
import type { JobSpec, VerifierResult } from '@cgrpo/contract';
import type { AlgoConfig } from '../algo/config';
import { dynamicSamplingDecision, dynamicSamplingFilter } from '../algo/dapo';
import { assembleGroup, trainingSequences } from '../algo/group';
import { buildPromptMessages } from '../algo/prompt';
import { needsRefinement } from '../algo/rewards';
import { createRng } from '../algo/rng';
import type { CausalLM, ModelTrainer, ScoredSequence, TokenScores } from '../model/model';
import { type Completion, type GenerateStats, generate } from '../rollout/generate';
import { batchRows, lossFeeds, miniBatchRange, sampleRows, streamSeed, type TrainSequence } from './batch';
import type { Example } from './dataset';
import type { JobPlugins, Outcome } from './plugins';
import {
  type Critique,
  countOutcome,
  groupMetrics,
  initialRewards,
  mean,
  newCounters,
  type PluginCounters,
  type PromptTokens,
  type QuestionGroup,
  type RolloutRecord,
  refinementRewards,
  rewardOf,
  rolloutRecords,
} from './question-group';
import { buildRefinementPrompt, type RefinementBudget, refinementBudget } from './refinement-prompt';
import { JobError } from './types';

export { batchRows, lossFeeds, sampleRows, streamSeed, type TrainSequence } from './batch';
export type { RolloutRecord } from './question-group';

export type Phase = 'rollout' | 'verify' | 'critique' | 'refine' | 'score' | 'train';
export const PHASES: readonly Phase[] = ['rollout', 'verify', 'critique', 'refine', 'score', 'train'];

export interface StepResult {
  step: number;
  values: Record<string, number | null>;
  rollouts: RolloutRecord[];
  /** Wall time of the step's engine calls (generation, scoring, training), ms. */
  engineMs: number;
}

/** The ground-truth template (builtin:ground-truth's default), the critique when the critic fails. */
export function groundTruthFallback(verification: VerifierResult, reference: string): string {
  return `The generated solution is ${verification.correct ? 'correct' : 'incorrect'}, the ground truth is ${reference}.`;
}

/** Accumulates the wall time during which at least one tracked promise is pending. */
export class Busy {
  ms = 0;
  private inflight = 0;
  private since = 0;
  track<T>(p: Promise<T>): Promise<T> {
    if (this.inflight++ === 0) this.since = performance.now();
    return p.finally(() => {
      if (--this.inflight === 0) this.ms += performance.now() - this.since;
    });
  }
}

/** What one step accumulates besides its question groups. */
interface StepState {
  step: number;
  times: Record<Phase, number>;
  generation: GenerateStats;
  verifier: PluginCounters;
  critic: PluginCounters;
  dynamic: { rounds: number; dropped: number };
}

export class TrainingLoop {
  private readonly promptCache = new Map<number, PromptTokens>();
  private readonly budget: RefinementBudget | null;
  /** Wall time with a model call in flight (generate, score, train; they may overlap). */
  private readonly modelBusy = new Busy();
  /** Wall time with a verifier or critic call in flight. */
  private readonly pluginBusy = new Busy();
  /** Wall time with either in flight; the rest of a step is the runner's own work. */
  private readonly anyBusy = new Busy();
  /** The step being computed (0 before the first). */
  currentStep = 0;

  constructor(
    private readonly spec: JobSpec,
    private readonly algo: AlgoConfig,
    private readonly model: CausalLM,
    private readonly trainer: ModelTrainer,
    private readonly plugins: JobPlugins,
    private readonly train: Example[],
    /** The frozen reference policy for the KL term (only when klCoef > 0). */
    private readonly reference: CausalLM | null = null,
  ) {
    if (algo.klCoef > 0 && !reference) throw new RangeError('klCoef > 0 needs a reference model');
    // checked before the first step: a template that cannot fit fails the job at once
    this.budget = this.refines ? refinementBudget(model.tokenizer, spec.hyperparameters) : null;
  }

  private get hp() {
    return this.spec.hyperparameters;
  }

  private get refines(): boolean {
    return (
      this.algo.algorithm === 'critique-grpo' &&
      this.algo.refinementsPerGroup > 0 &&
      this.plugins.critique !== null
    );
  }

  /** One training step (1-based): Algorithm 1 of critique-grpo.md, phase by phase. */
  async step(step: number): Promise<StepResult> {
    this.currentStep = step;
    const t0 = performance.now();
    const busyAtStart = { model: this.modelBusy.ms, plugin: this.pluginBusy.ms, any: this.anyBusy.ms };
    const state = newStepState(step);

    const { groups, oldLogp } = await this.sampleAndVerify(state);
    await this.phase(state, 'critique', () => this.critique(state, groups));
    await this.phase(state, 'refine', () => this.refine(state, groups));
    await this.phase(state, 'verify', () => this.verifyRefinements(state, groups));
    this.checkPluginFailures(state);
    this.assembleGroups(step, groups);
    const sequences = this.trainingBatch(groups);
    await this.phase(state, 'score', () => this.scoreSequences(sequences, oldLogp));
    const update = await this.phase(state, 'train', () => this.update(sequences, groups.length));

    const seconds = (performance.now() - t0) / 1000;
    const values: Record<string, number | null> = {
      ...groupMetrics(groups, state),
      ...update,
      ...(this.algo.dynamicSampling
        ? {
            'dynamic_sampling/extra_rounds': state.dynamic.rounds,
            'dynamic_sampling/dropped_groups': state.dynamic.dropped,
            'dynamic_sampling/kept_groups': groups.length,
          }
        : {}),
      // budgets (issue: cost caps) and the learning bench count these
      'tokens/generated': state.generation.generatedTokens,
      'tokens/trained': sequences.reduce((n, q) => n + q.tokens.length - q.start, 0),
      tokens_per_second: state.generation.generatedTokens / seconds,
      step_seconds: seconds,
      ...Object.fromEntries(PHASES.map((p) => [`time/${p}`, state.times[p] / 1000])),
      'time/engine': (this.modelBusy.ms - busyAtStart.model) / 1000,
      'time/plugins': (this.pluginBusy.ms - busyAtStart.plugin) / 1000,
      'time/runner': seconds - (this.anyBusy.ms - busyAtStart.any) / 1000,
    };
    if (this.algo.klCoef <= 0) delete values.kl;
    return {
      step,
      values,
      rollouts: rolloutRecords(step, groups),
      engineMs: this.modelBusy.ms - busyAtStart.model,
    };
  }

  // ---- phases ---------------------------------------------------------------------------------

  /**
   * 1–3. Initial rollouts and their verdicts (with DAPO's extra rounds when dynamic sampling is on).
   * π_old log-probs need only the initial responses: they are scored in the engine's worker while
   * this thread critiques and refines, and awaited before the update.
   */
  private async sampleAndVerify(
    state: StepState,
  ): Promise<{ groups: QuestionGroup[]; oldLogp: Promise<TokenScores[]> }> {
    const hp = this.hp;
    const first = batchRows(
      state.step,
      this.train.length,
      hp.prompts_per_step,
      this.spec.seed,
      hp.drop_last,
    ).rows;
    if (!this.algo.dynamicSampling) {
      const groups = await this.sampleGroups(state, first, streamSeed(this.spec.seed, 'rollout', state.step));
      const oldLogp = this.scoreInitial(groups);
      await this.phase(state, 'verify', () => this.verifyInitial(state, groups));
      return { groups, oldLogp };
    }
    // DAPO dynamic sampling (§3): groups whose rewards are all equal carry no gradient; sample
    // more prompts (a seeded draw from the training set, so the data order stays as it is) until
    // prompts_per_step groups have mixed rewards or max_extra_rounds is spent
    const kept: QuestionGroup[] = [];
    let rows = first;
    for (let round = 0; ; round++) {
      const seed = streamSeed(this.spec.seed, 'rollout', state.step, ...(round ? ['dynamic', round] : []));
      const groups = await this.sampleGroups(state, rows, seed);
      await this.phase(state, 'verify', () => this.verifyInitial(state, groups));
      const mixed = new Set(dynamicSamplingFilter(groups.map(initialRewards)));
      groups.forEach((g, q) => {
        if (mixed.has(q)) kept.push(g);
        else state.dynamic.dropped++;
      });
      const decision = dynamicSamplingDecision(
        kept.length,
        hp.prompts_per_step,
        round,
        this.algo.dynamicSamplingMaxRounds,
      );
      if (decision.action === 'train') {
        kept.length = decision.use;
        break;
      }
      state.dynamic.rounds = round + 1;
      rows = sampleRows(
        this.train.length,
        hp.prompts_per_step,
        createRng(this.spec.seed, 'dynamic', state.step, round + 1),
      );
    }
    kept.forEach((g, q) => {
      g.index = q;
    });
    return { groups: kept, oldLogp: this.scoreInitial(kept) };
  }

  /** n samples for each of `rows`, as question groups (verdicts still pending). */
  private async sampleGroups(state: StepState, rows: number[], seed: number): Promise<QuestionGroup[]> {
    const n = this.hp.group_size;
    const prompts = rows.map((r) => this.promptTokens(r));
    const completions = await this.phase(state, 'rollout', () =>
      this.timed(
        generate(
          this.model,
          prompts.map((p) => p.tokens),
          { ...this.sampling(), n, seed },
          state.generation,
        ),
      ),
    );
    return rows.map((row, q) => ({
      index: q,
      row,
      example: this.train[row],
      prompt: prompts[q],
      initial: completions.slice(q * n, (q + 1) * n).map((completion) => ({ completion, result: PENDING })),
      triggered: false,
      critiques: Array(n).fill(null),
      refinements: Array(n).fill(null),
      refinementMissing: Array(n).fill(null),
      assembled: null,
    }));
  }

  private async verifyInitial(state: StepState, groups: QuestionGroup[]): Promise<void> {
    const samples = groups.flatMap((g) => g.initial.map((s) => ({ g, s })));
    const results = await this.verifyAll(
      samples.map(({ g, s }) => ({ example: g.example, response: s.completion.text })),
      state.verifier,
    );
    samples.forEach(({ s }, j) => {
      s.result = results[j];
    });
  }

  /**
   * 4–5. Critiques of every initial response of the triggered questions. A response whose
   * verification failed has nothing to critique (no call, no failure counted twice); a failed
   * critic call falls back to the ground-truth template or drops the refinement (critic_fallback).
   */
  private async critique(state: StepState, groups: QuestionGroup[]): Promise<void> {
    const critic = this.plugins.critique;
    if (!this.refines || !critic) return;
    for (const g of groups) g.triggered = needsRefinement(initialRewards(g), this.algo.refineTrigger);
    const calls = groups
      .filter((g) => g.triggered)
      .flatMap((g) => g.initial.map((s, i) => ({ g, s, i })))
      .filter(({ g, s, i }) => {
        if (s.result.ok) return true;
        g.refinementMissing[i] = 'no verification to critique';
        return false;
      });
    const outcomes = await Promise.all(
      calls.map(({ g, s }) =>
        this.plugin(
          critic({
            question: g.example.question,
            response: s.completion.text,
            reference: g.example.reference,
            verification: (s.result as { value: VerifierResult }).value,
            ...(g.example.solution !== undefined ? { solution: g.example.solution } : {}),
          }),
        ),
      ),
    );
    calls.forEach(({ g, s, i }, j) => {
      const o = outcomes[j];
      countOutcome(state.critic, o);
      g.critiques[i] = this.critiqueOf(o, g.example.reference, (s.result as { value: VerifierResult }).value);
      if (!g.critiques[i]) g.refinementMissing[i] = `critique failed: ${o.ok ? '' : o.reason}`;
    });
  }

  /**
   * Tokens an LLM critic (builtin:llm, or a plugin granted llm.chat) spent on a critique, counted
   * as the critique's length in the policy's tokenizer: the critic's answer is all the runner sees.
   */
  private llmTokensOf(critique: string): number {
    const critic = 'critic' in this.spec ? this.spec.critic : null;
    const llm = critic !== null && (critic.plugin === 'builtin:llm' || critic.grants.includes('llm.chat'));
    return llm ? this.model.tokenizer.encode(critique).length : 0;
  }

  private critiqueOf(
    o: Outcome<{ critique: string }>,
    reference: string,
    verification: VerifierResult,
  ): Critique | null {
    if (o.ok)
      return { text: o.value.critique, source: 'critic', llmTokens: this.llmTokensOf(o.value.critique) };
    if (this.hp.critic_fallback === 'ground-truth')
      return { text: groundTruthFallback(verification, reference), source: 'fallback', llmTokens: 0 };
    return null;
  }

  /** 6. One refinement per critique, sampled from the budgeted refinement prompt. */
  private async refine(state: StepState, groups: QuestionGroup[]): Promise<void> {
    const budget = this.budget;
    if (!budget) return;
    const jobs: {
      g: QuestionGroup;
      i: number;
      prompt: NonNullable<ReturnType<typeof buildRefinementPrompt>>;
    }[] = [];
    for (const g of groups) {
      g.critiques.forEach((c, i) => {
        if (!c) return;
        const prompt = buildRefinementPrompt(this.model.tokenizer, budget, {
          question: g.example.question,
          previousSolution: g.initial[i].completion.text,
          critique: c.text,
        });
        if (prompt) jobs.push({ g, i, prompt });
        else g.refinementMissing[i] = 'the question and critique alone exceed max_refinement_prompt_tokens';
      });
    }
    if (jobs.length === 0) return;
    const completions = await this.timed(
      generate(
        this.model,
        jobs.map((j) => j.prompt.tokens),
        { ...this.sampling(), n: 1, seed: streamSeed(this.spec.seed, 'refine', state.step) },
        state.generation,
      ),
    );
    completions.forEach((completion, j) => {
      const { g, i, prompt } = jobs[j];
      g.refinements[i] = { prompt, completion, result: PENDING };
    });
  }

  /** 7. Verdicts of the refinements. */
  private async verifyRefinements(state: StepState, groups: QuestionGroup[]): Promise<void> {
    const pending = groups.flatMap((g) => g.refinements.flatMap((r) => (r ? [{ g, r }] : [])));
    const results = await this.verifyAll(
      pending.map(({ g, r }) => ({ example: g.example, response: r.completion.text })),
      state.verifier,
    );
    pending.forEach(({ r }, j) => {
      r.result = results[j];
    });
  }

  /** Fails the job when more verifier/critic calls failed than max_plugin_failure_ratio allows. */
  private checkPluginFailures(state: StepState): void {
    const { verifier, critic } = state;
    const calls = verifier.calls + critic.calls;
    const failures = verifier.failures + critic.failures;
    if (calls === 0 || failures / calls <= this.hp.max_plugin_failure_ratio) return;
    // a sandboxed plugin's failure names the plugin, version and cause (`plugin_error`)
    const first = verifier.first ?? critic.first;
    throw new JobError(
      first?.code ?? 'plugin_failure_ratio_exceeded',
      `step ${state.step}: ${failures} of ${calls} verifier/critic calls failed (more than hyperparameters.max_plugin_failure_ratio = ${this.hp.max_plugin_failure_ratio})${first ? `; first: ${first.reason}` : ''}; see the job's rollouts for every reason`,
    );
  }

  /** 8–9, 11. Which samples enter training, with which advantages (algo/group.ts, pure). */
  private assembleGroups(step: number, groups: QuestionGroup[]): void {
    for (const g of groups) {
      g.assembled = assembleGroup(
        {
          initialRewards: initialRewards(g),
          initialLengths: g.initial.map((s) => s.completion.tokens.length),
          ...(g.triggered
            ? {
                refinementRewards: refinementRewards(g),
                refinementLengths: g.refinements.map((r) => r?.completion.tokens.length ?? 0),
              }
            : {}),
        },
        this.algo,
        createRng(this.spec.seed, 'select', step, g.index),
      );
    }
  }

  /** The sequences of the update: every one, refinements included, under the original prompt (§1.2 step 9). */
  private trainingBatch(groups: QuestionGroup[]): TrainSequence[] {
    return groups.flatMap((g) =>
      trainingSequences(
        g.assembled!,
        g.index,
        g.initial.map((s) => s.completion),
        g.refinements.map((r) => r?.completion ?? EMPTY_COMPLETION),
      ).map((s) => ({
        kind: s.kind,
        question: g.index,
        tokens: [...g.prompt.tokens, ...s.sample.tokens],
        start: g.prompt.tokens.length,
        advantage: s.advantage,
        sample: s.index,
      })),
    );
  }

  /** 10. π_old log-probs of the initial responses (started after sampling), and π_ref's for the KL term. */
  private async scoreSequences(sequences: TrainSequence[], oldLogp: Promise<TokenScores[]>): Promise<void> {
    const n = this.hp.group_size;
    const scored = await oldLogp;
    for (const seq of sequences) {
      if (seq.kind === 'initial') seq.logpOld = scored[seq.question * n + seq.sample].logp;
    }
    if (!this.reference || this.algo.klCoef <= 0 || sequences.length === 0) return;
    const refScores = await this.timed(
      this.reference.score(sequences as ScoredSequence[], { temperature: this.hp.temperature }),
    );
    sequences.forEach((seq, i) => {
      seq.logpRef = refScores[i].logp;
    });
  }

  /**
   * 12. Mini-batches by question, epochs_per_step passes, one AdamW step per mini-batch (each
   * accumulated over micro_batch_size micro-batches). Always mini_batches_per_step × epochs_per_step
   * optimizer steps: an empty mini-batch is a zero-gradient step, so the learning-rate schedule
   * (counted in optimizer steps, algo/config scheduleForJob) matches the steps taken.
   */
  private async update(
    sequences: TrainSequence[],
    questions: number,
  ): Promise<Record<string, number | null>> {
    const hp = this.hp;
    const m = hp.mini_batches_per_step;
    const steps: Awaited<ReturnType<ModelTrainer['step']>>[] = [];
    for (let epoch = 0; epoch < hp.epochs_per_step; epoch++) {
      for (let b = 0; b < m; b++) {
        const { lo, hi } = miniBatchRange(b, m, questions);
        const mb = sequences.filter((s) => s.question >= lo && s.question < hi);
        if (mb.length === 0) {
          await this.timed(this.trainer.emptyStep());
          continue;
        }
        const feeds = lossFeeds(mb, this.algo);
        steps.push(
          await this.timed(
            this.trainer.step(mb as ScoredSequence[], feeds, { microBatchSize: hp.micro_batch_size }),
          ),
        );
      }
    }
    const metric = (name: string) =>
      mean(steps.flatMap((r) => (r.metrics[name] ? [r.metrics[name][0]] : [])));
    return {
      clip_ratio: this.algo.clipInitial ? metric('clip_frac') : 0,
      entropy: metric('entropy_mean'),
      kl: this.algo.klCoef > 0 ? metric('kl_mean') : null,
      loss: mean(steps.map((r) => r.loss)),
      grad_norm: mean(steps.flatMap((r) => (r.gradNorm !== null ? [r.gradNorm] : []))),
      lr: steps.length ? steps[steps.length - 1].lr : null,
    };
  }

  // ---- helpers --------------------------------------------------------------------------------

  private sampling() {
    const hp = this.hp;
    return {
      temperature: hp.temperature,
      topP: hp.top_p,
      topK: hp.top_k,
      maxNewTokens: hp.max_response_tokens,
    };
  }

  /** Chat-formatted prompt tokens of a training question (left-truncated to max_prompt_tokens). */
  promptTokens(row: number): PromptTokens {
    const cached = this.promptCache.get(row);
    if (cached) return cached;
    const messages = buildPromptMessages(this.train[row].question, {
      systemPrompt: this.hp.system_prompt,
      template: this.hp.prompt_template,
    });
    const text = this.model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const out = { text, tokens: this.model.tokenizer.encode(text).slice(-this.hp.max_prompt_tokens) };
    this.promptCache.set(row, out);
    return out;
  }

  private scoreInitial(groups: QuestionGroup[]): Promise<TokenScores[]> {
    const p = this.timed(
      this.model.score(
        groups.flatMap((g) =>
          g.initial.map((s) => ({
            tokens: [...g.prompt.tokens, ...s.completion.tokens],
            start: g.prompt.tokens.length,
          })),
        ),
        { temperature: this.hp.temperature },
      ),
    );
    p.catch(() => undefined); // awaited in scoreSequences; a failure surfaces there
    return p;
  }

  private async verifyAll(items: { example: Example; response: string }[], counters: PluginCounters) {
    const results = await Promise.all(
      items.map(({ example, response }) =>
        this.plugin(
          this.plugins.verify({
            question: example.question,
            response,
            reference: example.reference,
            metadata: {},
          }),
        ),
      ),
    );
    for (const r of results) countOutcome(counters, r);
    return results;
  }

  private async phase<T>(state: StepState, name: Phase, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      state.times[name] += performance.now() - t;
    }
  }

  private timed<T>(p: Promise<T>): Promise<T> {
    return this.modelBusy.track(this.anyBusy.track(p));
  }

  private plugin<T>(p: Promise<T>): Promise<T> {
    return this.pluginBusy.track(this.anyBusy.track(p));
  }
}

/** A verdict not yet in (replaced before any phase reads it). */
const PENDING: Outcome<VerifierResult> = { ok: false, reason: 'not verified yet', ms: 0 };
const EMPTY_COMPLETION: Completion = { prompt: -1, sample: -1, tokens: [], text: '', finishReason: 'length' };

function newStepState(step: number): StepState {
  return {
    step,
    times: { rollout: 0, verify: 0, critique: 0, refine: 0, score: 0, train: 0 },
    generation: { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 },
    verifier: newCounters(),
    critic: newCounters(),
    dynamic: { rounds: 0, dropped: 0 },
  };
}

export { rewardOf };
