// The online training loop of critique-grpo.md §1.2 on one runner:
//   draw prompts → n rollouts → verify → (critique → refine → verify → select) → score π_old →
//   advantages → mini-batch AdamW updates → metrics, evaluation, checkpoints.
// Every random choice is a counter-based stream of (seed, purpose, step, …), so the same seed on
// the same hardware gives the same run, and a resumed run needs only the step to continue exactly.
import type { JobSpec, VerifierResult } from '@cgrpo/contract';
import { aggregationWeights, type SequenceKind } from '../algo/aggregate';
import type { AlgoConfig } from '../algo/config';
import { dynamicSamplingDecision, dynamicSamplingFilter } from '../algo/dapo';
import { type AssembledGroup, assembleGroup } from '../algo/group';
import { buildPromptMessages, buildRefinementMessages } from '../algo/prompt';
import { type MaybeReward, needsRefinement } from '../algo/rewards';
import { createRng, shuffledIndices } from '../algo/rng';
import type { Feed } from '../engine';
import type { CausalLM, ModelTrainer, ScoredSequence, TokenScores } from '../model/model';
import { type Completion, type GenerateStats, generate } from '../rollout/generate';
import type { Example } from './dataset';
import { KL_INPUT, LOSS_INPUTS } from './loss-graph';
import type { JobPlugins, Outcome } from './plugins';
import { JobError } from './types';

/** Calls, failures and latencies of one plugin in one step; `first` is the first failure's reason. */
interface PluginCounters {
  failures: number;
  calls: number;
  ms: number[];
  first?: { reason: string; code?: string };
}

/** A critique skipped because the response it would critique failed verification. */
const NO_VERIFICATION = 'no verification to critique';

export type Phase = 'rollout' | 'verify' | 'critique' | 'refine' | 'score' | 'train';
export const PHASES: readonly Phase[] = ['rollout', 'verify', 'critique', 'refine', 'score', 'train'];

/** One sequence that enters the loss. */
export interface TrainSequence {
  kind: SequenceKind;
  question: number;
  tokens: number[];
  /** Index of the first response token in `tokens`. */
  start: number;
  advantage: number;
  /** Index of the sample within its question (initial responses or refinements). */
  sample: number;
  logpOld?: Float32Array;
  /** Log-probs under the reference model (klCoef > 0). */
  logpRef?: Float32Array;
}

export interface RolloutRecord {
  step: number;
  prompt_index: number;
  row: number;
  kind: SequenceKind;
  sample: number;
  prompt: string;
  response: string;
  reward: number | null;
  correct: boolean | null;
  verifier: Record<string, unknown> | null;
  missing_reason?: string;
  critique?: string | null;
  selected?: boolean;
  advantage: number | null;
  length: number;
  finish_reason: string;
}

export interface StepResult {
  step: number;
  values: Record<string, number | null>;
  rollouts: RolloutRecord[];
  /** Wall time of the step's engine calls (generation, scoring, training), ms. */
  engineMs: number;
}

/** Seed for one named stream of one step, as a 31-bit integer (generation takes integers). */
export function streamSeed(seed: number, ...parts: (number | string)[]): number {
  return Math.floor(createRng(seed, ...parts).next() * 2 ** 31);
}

/** `count` distinct rows drawn from the training set (all of them when it is smaller). */
export function sampleRows(rows: number, count: number, rng: { next(): number }): number[] {
  return shuffledIndices(rows, rng).slice(0, Math.min(count, rows));
}

/** Which dataset rows step `step` (1-based) trains on: a seeded shuffle per epoch. */
export function batchRows(
  step: number,
  rows: number,
  perStep: number,
  seed: number,
  dropLast: boolean,
): { rows: number[]; epoch: number; batchInEpoch: number } {
  const perEpoch = dropLast ? Math.floor(rows / perStep) : Math.ceil(rows / perStep);
  if (perEpoch < 1) {
    throw new JobError(
      'dataset_too_small',
      `hyperparameters.prompts_per_step: ${perStep} is more than the ${rows} training rows (drop_last is on); lower it or add rows`,
    );
  }
  const epoch = Math.floor((step - 1) / perEpoch);
  const batchInEpoch = (step - 1) % perEpoch;
  const order = shuffledIndices(rows, createRng(seed, 'data', epoch));
  return { rows: order.slice(batchInEpoch * perStep, (batchInEpoch + 1) * perStep), epoch, batchInEpoch };
}

function mean(xs: readonly number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}

function std(xs: readonly number[]): number | null {
  const m = mean(xs);
  if (m === null) return null;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
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

export class TrainingLoop {
  private readonly promptCache = new Map<number, { text: string; tokens: number[] }>();

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
  }

  private get hp() {
    return this.spec.hyperparameters;
  }

  /** Wall time with a model call in flight (generate, score, train; they may overlap). */
  private readonly modelBusy = new Busy();
  /** Wall time with a verifier or critic call in flight. */
  private readonly pluginBusy = new Busy();
  /** Wall time with either in flight; the rest of a step is the runner's own work. */
  private readonly anyBusy = new Busy();

  private timed<T>(p: Promise<T>): Promise<T> {
    return this.modelBusy.track(this.anyBusy.track(p));
  }

  private plugin<T>(p: Promise<T>): Promise<T> {
    return this.pluginBusy.track(this.anyBusy.track(p));
  }

  /** Chat-formatted prompt tokens of a training question (left-truncated to max_prompt_tokens). */
  promptTokens(row: number, examples: Example[] = this.train): { text: string; tokens: number[] } {
    const cached = examples === this.train ? this.promptCache.get(row) : undefined;
    if (cached) return cached;
    const messages = buildPromptMessages(examples[row].question, {
      systemPrompt: this.hp.system_prompt,
      template: this.hp.prompt_template,
    });
    const text = this.model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const tokens = this.model.tokenizer.encode(text).slice(-this.hp.max_prompt_tokens);
    const out = { text, tokens };
    if (examples === this.train) this.promptCache.set(row, out);
    return out;
  }

  private async verifyAll(
    items: { question: string; response: string; reference: string }[],
    counters: PluginCounters,
  ) {
    const results = await Promise.all(
      items.map((i) =>
        this.plugin(
          this.plugins.verify({
            question: i.question,
            response: i.response,
            reference: i.reference,
            metadata: {},
          }),
        ),
      ),
    );
    for (const r of results) {
      counters.calls++;
      counters.ms.push(r.ms);
      if (!r.ok) {
        counters.failures++;
        counters.first ??= { reason: r.reason, code: r.code };
      }
    }
    return results;
  }

  /** The step being computed (0 before the first). */
  currentStep = 0;

  /** One training step (1-based). */
  async step(step: number): Promise<StepResult> {
    this.currentStep = step;
    const hp = this.hp;
    const seed = this.spec.seed;
    const times: Record<Phase, number> = {
      rollout: 0,
      verify: 0,
      critique: 0,
      refine: 0,
      score: 0,
      train: 0,
    };
    const clock = (phase: Phase, t0: number) => {
      times[phase] += performance.now() - t0;
    };
    const busyAtStart = { model: this.modelBusy.ms, plugin: this.pluginBusy.ms, any: this.anyBusy.ms };
    const t0 = performance.now();
    const first = batchRows(step, this.train.length, hp.prompts_per_step, seed, hp.drop_last).rows;
    const n = hp.group_size;
    const sampling = {
      temperature: hp.temperature,
      topP: hp.top_p,
      topK: hp.top_k,
      maxNewTokens: hp.max_response_tokens,
    };
    const genStats: GenerateStats = { prefillMs: 0, decodeMs: 0, steps: 0, generatedTokens: 0 };
    const verifier: PluginCounters = { failures: 0, calls: 0, ms: [] };
    const rolloutRound = async (roundRows: number[], roundSeed: number) => {
      const t = performance.now();
      const roundPrompts = roundRows.map((r) => this.promptTokens(r));
      const completions = await this.timed(
        generate(
          this.model,
          roundPrompts.map((p) => p.tokens),
          { ...sampling, n, seed: roundSeed },
          genStats,
        ),
      );
      clock('rollout', t);
      return { prompts: roundPrompts, completions };
    };
    const verifyRound = async (roundRows: number[], completions: Completion[]) => {
      const t = performance.now();
      const results = await this.verifyAll(
        completions.map((c) => ({
          question: this.train[roundRows[c.prompt]].question,
          response: c.text,
          reference: this.train[roundRows[c.prompt]].reference,
        })),
        verifier,
      );
      clock('verify', t);
      return results;
    };
    const scoreInitial = (ps: { tokens: number[] }[], cs: Completion[]) => {
      const p = this.timed(
        this.model.score(
          cs.map((c) => ({
            tokens: [...ps[c.prompt].tokens, ...c.tokens],
            start: ps[c.prompt].tokens.length,
          })),
          { temperature: hp.temperature },
        ),
      );
      p.catch(() => undefined); // awaited below; a failure surfaces there
      return p;
    };

    const rewardOf = (r: Outcome<{ score: number }>): MaybeReward =>
      r.ok ? r.value.score : { missing: true, reason: `verifier: ${r.reason}` };

    // 1–3. initial rollouts and their verification. π_old log-probs need only the initial
    // responses: they are scored in the engine's worker while this thread verifies, critiques and
    // builds refinement prompts (awaited before training, step 10).
    let rows = first;
    let prompts: { text: string; tokens: number[] }[];
    let initial: Completion[];
    let initialResults: Outcome<VerifierResult>[];
    let scoring: Promise<TokenScores[]>;
    const dynamic = { rounds: 0, dropped: 0 };
    if (!this.algo.dynamicSampling) {
      ({ prompts, completions: initial } = await rolloutRound(rows, streamSeed(seed, 'rollout', step)));
      scoring = scoreInitial(prompts, initial);
      initialResults = await verifyRound(rows, initial);
    } else {
      // DAPO dynamic sampling (§3): groups whose rewards are all equal carry no gradient; sample
      // more prompts (a seeded draw from the training set, so the data order stays as it is)
      // until prompts_per_step groups have mixed rewards or max_extra_rounds is spent
      const kept: {
        row: number;
        prompt: { text: string; tokens: number[] };
        cs: Completion[];
        rs: Outcome<VerifierResult>[];
      }[] = [];
      let roundRows = first;
      for (let round = 0; ; round++) {
        const r = await rolloutRound(
          roundRows,
          streamSeed(seed, 'rollout', step, ...(round ? ['dynamic', round] : [])),
        );
        const results = await verifyRound(roundRows, r.completions);
        const groups = roundRows.map((_, q) => results.slice(q * n, (q + 1) * n));
        const mixed = new Set(dynamicSamplingFilter(groups.map((rs) => rs.map(rewardOf))));
        roundRows.forEach((row, q) => {
          if (mixed.has(q)) {
            kept.push({
              row,
              prompt: r.prompts[q],
              cs: r.completions.slice(q * n, (q + 1) * n),
              rs: groups[q],
            });
          } else dynamic.dropped++;
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
        dynamic.rounds = round + 1;
        roundRows = sampleRows(
          this.train.length,
          hp.prompts_per_step,
          createRng(seed, 'dynamic', step, round + 1),
        );
      }
      rows = kept.map((k) => k.row);
      prompts = kept.map((k) => k.prompt);
      initial = kept.flatMap((k, q) => k.cs.map((c) => ({ ...c, prompt: q })));
      initialResults = kept.flatMap((k) => k.rs);
      scoring = scoreInitial(prompts, initial);
    }
    const byQuestion = (q: number) => initial.slice(q * n, (q + 1) * n);
    let t = performance.now();

    const initialRewards = rows.map((_, q) => initialResults.slice(q * n, (q + 1) * n).map(rewardOf));

    // 4–7. critique, refine, verify refinements (critique-grpo only)
    const critic: PluginCounters = { failures: 0, calls: 0, ms: [] };
    const triggered = rows.map(
      (_, q) =>
        this.algo.algorithm === 'critique-grpo' &&
        this.algo.refinementsPerGroup > 0 &&
        this.plugins.critique !== null &&
        needsRefinement(initialRewards[q], this.algo.refineTrigger),
    );
    const critiques = new Map<number, (string | null)[]>();
    const refinements = new Map<number, (Completion | null)[]>();
    const refinementRewards = new Map<number, MaybeReward[]>();
    const refinementResults = new Map<
      number,
      (Outcome<{ score: number; correct: boolean; details: Record<string, unknown> }> | null)[]
    >();
    if (triggered.some(Boolean) && this.plugins.critique) {
      t = performance.now();
      const critique = this.plugins.critique;
      const jobs: { q: number; i: number; c: Completion }[] = [];
      for (let q = 0; q < rows.length; q++)
        if (triggered[q]) for (const [i, c] of byQuestion(q).entries()) jobs.push({ q, i, c });
      const outs = await Promise.all(
        jobs.map(({ q, i, c }) => {
          const res = initialResults[q * n + i];
          const ex = this.train[rows[q]];
          // a response whose verification failed has nothing to critique against
          if (!res.ok) return Promise.resolve({ ok: false as const, reason: NO_VERIFICATION, ms: 0 });
          return this.plugin(
            critique({
              question: ex.question,
              response: c.text,
              reference: ex.reference,
              verification: res.value,
            }),
          );
        }),
      );
      for (const [j, { q, i }] of jobs.entries()) {
        const o = outs[j];
        critic.calls++;
        critic.ms.push(o.ms);
        if (!o.ok) {
          critic.failures++;
          // a skipped critique is the verifier's failure, already named
          if (o.reason !== NO_VERIFICATION)
            critic.first ??= { reason: o.reason, code: 'code' in o ? o.code : undefined };
        }
        const list = critiques.get(q) ?? Array(n).fill(null);
        list[i] = o.ok ? o.value.critique : null;
        critiques.set(q, list);
      }
      clock('critique', t);

      // refinement prompts: question + previous solution + critique; one sample each
      t = performance.now();
      const refineJobs = jobs.filter(({ q, i }) => critiques.get(q)?.[i] != null);
      const refinePrompts = refineJobs.map(({ q, i, c }) => {
        const messages = buildRefinementMessages(
          {
            question: this.train[rows[q]].question,
            previousSolution: c.text,
            critique: critiques.get(q)?.[i] as string,
          },
          { template: hp.refinement_prompt_template, systemPrompt: hp.system_prompt },
        );
        const text = this.model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
        return this.model.tokenizer.encode(text).slice(-hp.max_prompt_tokens);
      });
      const refined =
        refinePrompts.length > 0
          ? await this.timed(
              generate(
                this.model,
                refinePrompts,
                { ...sampling, n: 1, seed: streamSeed(seed, 'refine', step) },
                genStats,
              ),
            )
          : [];
      clock('refine', t);
      t = performance.now();
      const refinedResults = await this.verifyAll(
        refined.map((c) => {
          const ex = this.train[rows[refineJobs[c.prompt].q]];
          return { question: ex.question, response: c.text, reference: ex.reference };
        }),
        verifier,
      );
      clock('verify', t);
      for (let q = 0; q < rows.length; q++) {
        if (!triggered[q]) continue;
        refinements.set(q, Array(n).fill(null));
        refinementResults.set(q, Array(n).fill(null));
        refinementRewards.set(
          q,
          Array.from({ length: n }, (_, i) => ({
            missing: true as const,
            reason: critiques.get(q)?.[i] == null ? 'critique failed' : 'refinement missing',
          })),
        );
      }
      refined.forEach((c, j) => {
        const { q, i } = refineJobs[j];
        (refinements.get(q) as (Completion | null)[])[i] = c;
        (refinementResults.get(q) as unknown[])[i] = refinedResults[j];
        (refinementRewards.get(q) as MaybeReward[])[i] = rewardOf(refinedResults[j]);
      });
    }

    const calls = verifier.calls + critic.calls;
    const failures = verifier.failures + critic.failures;
    if (calls > 0 && failures / calls > hp.max_plugin_failure_ratio) {
      // a sandboxed plugin's failure names the plugin, version and cause (`plugin_error`)
      const first = verifier.first ?? critic.first;
      throw new JobError(
        first?.code ?? 'plugin_failure_ratio_exceeded',
        `step ${step}: ${failures} of ${calls} verifier/critic calls failed (more than hyperparameters.max_plugin_failure_ratio = ${hp.max_plugin_failure_ratio})${first ? `; first: ${first.reason}` : ''}; see the job's rollouts for every reason`,
      );
    }

    // 8–9, 11. groups and advantages
    const groups: AssembledGroup[] = rows.map((_, q) =>
      assembleGroup(
        {
          initialRewards: initialRewards[q],
          ...(triggered[q] ? { refinementRewards: refinementRewards.get(q) } : {}),
          initialLengths: byQuestion(q).map((c) => c.tokens.length),
          ...(triggered[q]
            ? { refinementLengths: (refinements.get(q) ?? []).map((c) => c?.tokens.length ?? 0) }
            : {}),
        },
        this.algo,
        createRng(seed, 'select', step, q),
      ),
    );
    const sequences: TrainSequence[] = [];
    groups.forEach((g, q) => {
      const prompt = prompts[q].tokens;
      for (const s of g.sequences) {
        const c =
          s.kind === 'initial' ? byQuestion(q)[s.index] : (refinements.get(q)?.[s.index] as Completion);
        // the refinement is trained as a response to the original prompt (§1.2 step 9)
        sequences.push({
          kind: s.kind,
          question: q,
          tokens: [...prompt, ...c.tokens],
          start: prompt.length,
          advantage: s.advantage,
          sample: s.index,
        });
      }
    });

    // 10. (started after the rollouts) wait for the π_old log-probs
    t = performance.now();
    const scored = await scoring;
    for (const seq of sequences) {
      if (seq.kind === 'initial') seq.logpOld = scored[seq.question * n + seq.sample].logp;
    }
    // the KL term's reference log-probs, for every sequence the update trains on
    if (this.reference && this.algo.klCoef > 0 && sequences.length > 0) {
      const refScores = await this.timed(
        this.reference.score(sequences as ScoredSequence[], { temperature: hp.temperature }),
      );
      sequences.forEach((seq, i) => {
        seq.logpRef = refScores[i].logp;
      });
    }
    clock('score', t);

    // 12. mini-batches by question, epochs_per_step passes, one AdamW step per mini-batch
    t = performance.now();
    const train = await this.update(sequences, rows.length);
    clock('train', t);

    const stepSeconds = (performance.now() - t0) / 1000;
    const initialScores = initialResults.filter((r) => r.ok).map((r) => (r.ok ? r.value.score : 0));
    const initialCorrect = initialResults.filter((r) => r.ok).map((r) => (r.ok && r.value.correct ? 1 : 0));
    const refinedAll = [...refinementResults.values()].flat().filter((r) => r !== null);
    const refinedOk = refinedAll.filter((r) => r?.ok);
    const lengths = initial.map((c) => c.tokens.length);
    const values: Record<string, number | null> = {
      'reward/mean': mean(initialScores),
      'reward/std': std(initialScores),
      'pass@1/train': mean(initialCorrect),
      'refinement/triggered': triggered.filter(Boolean).length,
      'refinement/generated': refinedAll.length,
      'refinement/success_rate':
        refinedOk.length > 0
          ? refinedOk.filter((r) => r?.ok && r.value.correct).length / refinedOk.length
          : null,
      'refinement/selected': groups.reduce((a, g) => a + g.admittedRefinements.length, 0),
      'critique/calls': critic.calls,
      'critique/failures': critic.failures,
      'critique/latency_ms': mean(critic.ms),
      'verifier/calls': verifier.calls,
      'verifier/failures': verifier.failures,
      'verifier/latency_ms': mean(verifier.ms),
      'response_length/mean': mean(lengths),
      'response_length/max': lengths.length ? Math.max(...lengths) : null,
      'groups/zero_signal': groups.filter((g) => g.zeroSignal).length,
      clip_ratio: train.clipRatio,
      entropy: train.entropy,
      ...(this.algo.klCoef > 0 ? { kl: train.kl } : {}),
      ...(this.algo.dynamicSampling
        ? {
            'dynamic_sampling/extra_rounds': dynamic.rounds,
            'dynamic_sampling/dropped_groups': dynamic.dropped,
            'dynamic_sampling/kept_groups': rows.length,
          }
        : {}),
      loss: train.loss,
      grad_norm: train.gradNorm,
      lr: train.lr,
      tokens_per_second: genStats.generatedTokens / stepSeconds,
      step_seconds: stepSeconds,
      ...Object.fromEntries(PHASES.map((p) => [`time/${p}`, times[p] / 1000])),
      'time/engine': (this.modelBusy.ms - busyAtStart.model) / 1000,
      'time/plugins': (this.pluginBusy.ms - busyAtStart.plugin) / 1000,
      'time/runner': stepSeconds - (this.anyBusy.ms - busyAtStart.any) / 1000,
    };
    const rollouts = this.rolloutRecords(
      step,
      rows,
      prompts,
      initial,
      initialResults,
      groups,
      critiques,
      refinements,
      refinementResults,
    );
    return { step, values, rollouts, engineMs: this.modelBusy.ms - busyAtStart.model };
  }

  private async update(sequences: TrainSequence[], questions: number) {
    const hp = this.hp;
    const out = {
      loss: null as number | null,
      gradNorm: null as number | null,
      lr: null as number | null,
      entropy: null as number | null,
      clipRatio: null as number | null,
      kl: null as number | null,
    };
    if (sequences.length === 0) return out;
    const m = Math.min(hp.mini_batches_per_step, questions);
    const losses: number[] = [];
    const norms: number[] = [];
    const entropies: number[] = [];
    const clips: number[] = [];
    const kls: number[] = [];
    for (let epoch = 0; epoch < hp.epochs_per_step; epoch++) {
      for (let b = 0; b < m; b++) {
        const lo = Math.floor((b * questions) / m);
        const hi = Math.floor(((b + 1) * questions) / m);
        const mb = sequences.filter((s) => s.question >= lo && s.question < hi);
        if (mb.length === 0) continue;
        const r = await this.timed(this.trainer.step(mb as ScoredSequence[], lossFeeds(mb, this.algo)));
        losses.push(r.loss);
        if (r.gradNorm !== null) norms.push(r.gradNorm);
        out.lr = r.lr;
        if (r.metrics.entropy_mean) entropies.push(r.metrics.entropy_mean[0]);
        if (r.metrics.clip_frac) clips.push(r.metrics.clip_frac[0]);
        if (r.metrics.kl_mean) kls.push(r.metrics.kl_mean[0]);
      }
    }
    out.loss = mean(losses);
    out.gradNorm = mean(norms);
    out.entropy = mean(entropies);
    out.clipRatio = this.algo.clipInitial ? mean(clips) : 0;
    out.kl = this.algo.klCoef > 0 ? mean(kls) : null;
    return out;
  }

  private rolloutRecords(
    step: number,
    rows: number[],
    prompts: { text: string }[],
    initial: Completion[],
    initialResults: Outcome<{ score: number; correct: boolean; details: Record<string, unknown> }>[],
    groups: AssembledGroup[],
    critiques: Map<number, (string | null)[]>,
    refinements: Map<number, (Completion | null)[]>,
    refinementResults: Map<
      number,
      (Outcome<{ score: number; correct: boolean; details: Record<string, unknown> }> | null)[]
    >,
  ): RolloutRecord[] {
    const n = this.hp.group_size;
    const out: RolloutRecord[] = [];
    groups.forEach((g, q) => {
      const advOf = (kind: SequenceKind, index: number) =>
        g.sequences.find((s) => s.kind === kind && s.index === index)?.advantage ?? null;
      for (let i = 0; i < n; i++) {
        const c = initial[q * n + i];
        const r = initialResults[q * n + i];
        out.push({
          step,
          prompt_index: q,
          row: this.train[rows[q]].line,
          kind: 'initial',
          sample: i,
          prompt: prompts[q].text,
          response: c.text,
          reward: r.ok ? r.value.score : null,
          correct: r.ok ? r.value.correct : null,
          verifier: r.ok ? r.value.details : null,
          ...(r.ok ? {} : { missing_reason: r.reason }),
          critique: critiques.get(q)?.[i] ?? null,
          advantage: advOf('initial', i),
          length: c.tokens.length,
          finish_reason: c.finishReason,
        });
      }
      const refs = refinements.get(q);
      if (!refs) return;
      refs.forEach((c, i) => {
        if (!c) return;
        const r = refinementResults.get(q)?.[i];
        out.push({
          step,
          prompt_index: q,
          row: this.train[rows[q]].line,
          kind: 'refinement',
          sample: i,
          prompt: prompts[q].text,
          response: c.text,
          reward: r?.ok ? r.value.score : null,
          correct: r?.ok ? r.value.correct : null,
          verifier: r?.ok ? r.value.details : null,
          ...(r && !r.ok ? { missing_reason: r.reason } : {}),
          critique: critiques.get(q)?.[i] ?? null,
          selected: g.admittedRefinements.includes(i),
          advantage: advOf('refinement', i),
          length: c.tokens.length,
          finish_reason: c.finishReason,
        });
      });
    });
    return out;
  }

  /** pass@1 and pass@k on validation questions (k = samples_per_prompt). */
  async evaluate(examples: Example[], step: number): Promise<Record<string, number | null>> {
    const ev = this.spec.evaluation;
    const rows = examples.slice(0, ev.max_prompts ?? examples.length);
    const k = ev.samples_per_prompt;
    const prompts = rows.map((_, i) => this.promptTokens(i, rows).tokens);
    const t0 = performance.now();
    const completions = await generate(this.model, prompts, {
      maxNewTokens: this.hp.max_response_tokens,
      n: k,
      temperature: ev.temperature,
      topP: ev.top_p,
      seed: streamSeed(this.spec.seed, 'eval', step),
    });
    const results = await Promise.all(
      completions.map((c) =>
        this.plugins.verify({
          question: rows[c.prompt].question,
          response: c.text,
          reference: rows[c.prompt].reference,
          metadata: {},
        }),
      ),
    );
    const correct = results.map((r) => (r.ok && r.value.correct ? 1 : 0));
    const anyCorrect = rows.map((_, q) => (correct.slice(q * k, (q + 1) * k).some((x) => x === 1) ? 1 : 0));
    const values: Record<string, number | null> = {
      'eval/pass@1': mean(correct),
      'eval/reward/mean': mean(results.filter((r) => r.ok).map((r) => (r.ok ? r.value.score : 0))),
      'eval/prompts': rows.length,
      'eval/seconds': (performance.now() - t0) / 1000,
    };
    if (k > 1) values[`eval/pass@${k}`] = mean(anyCorrect);
    return values;
  }
}

/** The per-token inputs of the loss graph, laid out as the model packs sequences. */
export function lossFeeds(mb: readonly TrainSequence[], algo: AlgoConfig): Record<string, Feed> {
  const batch = mb.length;
  const seq = Math.max(...mb.map((s) => s.tokens.length)) - 1;
  const names = algo.klCoef > 0 ? [...LOSS_INPUTS, KL_INPUT] : LOSS_INPUTS;
  const arrays = Object.fromEntries(names.map((n) => [n, new Float32Array(batch * seq)])) as Record<
    (typeof LOSS_INPUTS)[number] | typeof KL_INPUT,
    Float32Array
  >;
  const weights = aggregationWeights(
    mb.map((s) => ({ kind: s.kind, question: s.question, length: s.tokens.length - s.start })),
    algo.lossAggregation,
    algo.maxResponseLength,
  );
  const responseTokens = mb.reduce((a, s) => a + s.tokens.length - s.start, 0);
  mb.forEach((s, b) => {
    for (let idx = s.start; idx < s.tokens.length; idx++) {
      const at = b * seq + idx - 1; // position idx−1 predicts token idx
      arrays.adv[at] = s.advantage;
      arrays.weight[at] = weights[b];
      arrays.is_initial[at] = s.kind === 'initial' ? 1 : 0;
      arrays.is_refinement[at] = s.kind === 'refinement' ? 1 : 0;
      arrays.logp_old[at] = s.logpOld ? s.logpOld[idx - s.start] : 0;
      arrays.ent_weight[at] = 1 / responseTokens;
      if (arrays.logp_ref && s.logpRef) arrays.logp_ref[at] = s.logpRef[idx - s.start];
    }
  });
  return Object.fromEntries(Object.entries(arrays).map(([k, data]) => [k, { dims: [batch, seq], data }]));
}
