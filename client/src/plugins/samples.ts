// `cgrpo plugins test --input samples.jsonl`: runs the built bundle in the same sandbox the runner
// uses, over every sample, and checks each sample's optional `expect`.
import { readFileSync } from 'node:fs';
import {
  CriticInputSchema,
  fieldErrorsFromZod,
  type PluginCapability,
  type PluginManifest,
  VerifierInputSchema,
} from '@cgrpo/contract';
import {
  type LlmChat,
  type PluginLogEntry,
  type PluginOutcome,
  SandboxedPlugin,
} from '@cgrpo/plugins/sandbox';
import { z } from 'zod';
import { CliError } from './project';

const ExpectSchema = z.strictObject({
  correct: z.boolean().optional(),
  score: z.number().optional(),
  /** Critic: the critique must contain this text. */
  contains: z.string().optional(),
  /** The call must fail (a hostile or malformed sample). */
  fails: z.boolean().optional(),
});
export type SampleExpectation = z.infer<typeof ExpectSchema>;

export interface Sample {
  line: number;
  input: unknown;
  expect?: SampleExpectation;
}

/** One sample per line: either `{"input": {...}, "expect": {...}}` or the input object itself. */
export function parseSamples(text: string, kind: PluginManifest['kind']): Sample[] {
  const inputSchema = kind === 'critic' ? CriticInputSchema : VerifierInputSchema;
  const samples: Sample[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    if (!raw.trim()) return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw new CliError('invalid_samples', `samples line ${line}: not valid JSON`);
    }
    const wrapped = value !== null && typeof value === 'object' && 'input' in value;
    const input = wrapped ? (value as { input: unknown }).input : value;
    const parsed = inputSchema.safeParse(input);
    if (!parsed.success) {
      const fields = fieldErrorsFromZod(parsed.error, 'input')
        .map((f) => `${f.path}: ${f.message}`)
        .join('; ');
      throw new CliError('invalid_samples', `samples line ${line}: not a ${kind} input (${fields})`);
    }
    let expect: SampleExpectation | undefined;
    if (wrapped && 'expect' in (value as object)) {
      const e = ExpectSchema.safeParse((value as { expect: unknown }).expect);
      if (!e.success) throw new CliError('invalid_samples', `samples line ${line}: invalid expect`);
      expect = e.data;
    }
    samples.push({ line, input: parsed.data, ...(expect ? { expect } : {}) });
  });
  if (samples.length === 0) throw new CliError('invalid_samples', 'the samples file has no samples');
  return samples;
}

export interface SampleReport {
  line: number;
  outcome: PluginOutcome<unknown>;
  /** Why the outcome does not match the sample's `expect`; empty when it matches. */
  mismatches: string[];
}

export interface RunSamplesOptions {
  config?: unknown;
  grants?: PluginCapability[];
  llm?: LlmChat;
  onLog?: (entry: PluginLogEntry) => void;
}

function mismatches(outcome: PluginOutcome<unknown>, expect: SampleExpectation | undefined): string[] {
  if (!expect) return outcome.ok ? [] : [`failed: ${outcome.error.message}`];
  const problems: string[] = [];
  if (expect.fails) {
    if (outcome.ok) problems.push('expected the call to fail, but it succeeded');
    return problems;
  }
  if (!outcome.ok) return [`failed: ${outcome.error.message}`];
  const value = outcome.value as { correct?: boolean; score?: number; critique?: string };
  if (expect.correct !== undefined && value.correct !== expect.correct)
    problems.push(`expected correct=${expect.correct}, got ${value.correct}`);
  if (expect.score !== undefined && Math.abs((value.score ?? Number.NaN) - expect.score) > 1e-9)
    problems.push(`expected score=${expect.score}, got ${value.score}`);
  if (expect.contains !== undefined && !(value.critique ?? '').includes(expect.contains))
    problems.push(`expected the critique to contain ${JSON.stringify(expect.contains)}`);
  return problems;
}

export async function runSamples(
  bundle: string,
  manifest: PluginManifest,
  samplesPath: string,
  options: RunSamplesOptions = {},
): Promise<SampleReport[]> {
  const samples = parseSamples(readFileSync(samplesPath, 'utf8'), manifest.kind);
  if (manifest.kind === 'shaping') {
    throw new CliError(
      'not_supported',
      'a shaping plugin has no samples to run; `cgrpo plugins build` checks it',
    );
  }
  const plugin = await SandboxedPlugin.load(bundle, manifest, {
    ...(options.grants ? { grants: options.grants } : {}),
    ...(options.llm ? { llm: options.llm } : {}),
    ...(options.onLog ? { onLog: options.onLog } : {}),
  });
  try {
    await plugin.configure(options.config ?? {});
    const inputs = samples.map((s) => s.input);
    const outcomes: PluginOutcome<unknown>[] =
      manifest.kind === 'critic'
        ? await plugin.critiqueBatch(inputs as z.infer<typeof CriticInputSchema>[])
        : await plugin.verifyBatch(inputs as z.infer<typeof VerifierInputSchema>[]);
    return samples.map((sample, i) => ({
      line: sample.line,
      outcome: outcomes[i],
      mismatches: mismatches(outcomes[i], sample.expect),
    }));
  } finally {
    plugin.dispose();
  }
}
