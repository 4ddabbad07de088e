// `cgrpo critique`: run a built-in critic over a JSONL file without training. Each line carries the
// question, response and reference, and either a `verification` or a --verifier computes it.
import { getBuiltinCritic, getBuiltinVerifier } from '@cgrpo/plugins/builtin';
import { z } from 'zod';
import {
  CommandError,
  type CommandIo,
  parseFlags,
  pluginFailure,
  processIo,
  readJsonConfig,
  readLines,
  requireBuiltin,
  runCommand,
} from './verify';

export const CRITIQUE_USAGE = `usage: cgrpo critique --critic builtin:<name> --input FILE [--config JSON|@file]
                      [--verifier builtin:<name> [--verifier-config JSON|@file]]

  Reads JSONL lines {"question", "response", "reference", "verification"?: {"score", "correct"}}
  from FILE ('-' for stdin) and writes one line {"critique", "verification", "details"} per input
  line, in order. Lines without "verification" need --verifier. Built-in critics: builtin:indicative,
  builtin:ground-truth, builtin:llm (token from the variable named by config.token_env).`;

const CritiqueLineSchema = z.object({
  question: z.string({ error: 'must be a string (the question)' }),
  response: z.string({ error: 'must be a string (the model response)' }),
  reference: z.string({ error: 'must be a string (the reference answer)' }),
  verification: z
    .object({
      score: z.number().min(0).max(1),
      correct: z.boolean(),
      details: z.record(z.string(), z.unknown()).default({}),
    })
    .optional(),
});

/** Critiques run concurrently up to this many lines ahead (the critic's own `concurrency` still applies). */
const WINDOW = 16;

export async function critique(args: string[], io: CommandIo = processIo): Promise<number> {
  return runCommand('critique', io, async () => {
    const flags = parseFlags(
      args,
      ['critic', 'config', 'input', 'verifier', 'verifier-config'],
      CRITIQUE_USAGE,
    );
    const name = requireBuiltin(flags.critic, '--critic', CRITIQUE_USAGE);
    if (!flags.input) throw new CommandError(`--input is required\n\n${CRITIQUE_USAGE}`, 2);
    const verifierName = flags.verifier
      ? requireBuiltin(flags.verifier, '--verifier', CRITIQUE_USAGE)
      : undefined;
    const critic = getBuiltinCritic(name, readJsonConfig(flags.config, '--config', io), { env: io.env });
    const verifier = verifierName
      ? getBuiltinVerifier(verifierName, readJsonConfig(flags['verifier-config'], '--verifier-config', io))
      : undefined;
    const cases = readLines(io.readInput(flags.input), CritiqueLineSchema);
    const unverified = cases.find((c) => !c.value.verification);
    if (unverified && !verifier) {
      throw new CommandError(
        `line ${unverified.line}: verification: missing; add it to the line or pass --verifier`,
      );
    }

    const run = async ({ line, value }: (typeof cases)[number]) => {
      try {
        const verification =
          value.verification ??
          (await (verifier as NonNullable<typeof verifier>).verify({ ...value, metadata: {} }));
        const outcome = await critic.critique({ ...value, verification });
        return JSON.stringify({ critique: outcome.critique, verification, details: outcome.details });
      } catch (error) {
        throw pluginFailure(error, line);
      }
    };
    // Keep up to WINDOW lines in flight and print in input order; stop at the first failure.
    const pending: Promise<string>[] = [];
    let next = 0;
    const fill = () => {
      while (next < cases.length && pending.length < WINDOW) {
        const task = run(cases[next++]);
        task.catch(() => {}); // awaited below, in order
        pending.push(task);
      }
    };
    fill();
    while (pending.length > 0) {
      io.stdout(await (pending.shift() as Promise<string>));
      fill();
    }
  });
}
