// `cgrpo verify`: run a built-in verifier over a JSONL file without training. One output line per
// input line, in order: {"score", "correct", "details"}. Input errors name the line number and
// stop before any plugin runs. Uploaded (sandboxed) plugins are tried with `cgrpo plugins test`.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BuiltinPluginError, getBuiltinVerifier, isBuiltin } from '@cgrpo/plugins/builtin';
import { z } from 'zod';

export const VERIFY_USAGE = `usage: cgrpo verify --verifier builtin:<name> --input FILE [--config JSON|@file]

  Reads JSONL lines {"response": "...", "reference": "...", "question"?: "..."} from FILE
  ('-' for stdin) and writes one line {"score", "correct", "details"} per input line, in order.
  Built-in verifiers: builtin:math, builtin:exact, builtin:regex, builtin:choice.`;

export interface CommandIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Read the --input file ('-' = standard input). */
  readInput: (path: string) => string;
  env: Readonly<Record<string, string | undefined>>;
}

export const processIo: CommandIo = {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  readInput: (path) => readFileSync(path === '-' ? 0 : path, 'utf8'),
  env: process.env,
};

/** A failure the user can act on; `exitCode` 2 = usage, 1 = input or plugin error. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export function parseFlags(
  args: string[],
  names: string[],
  usage: string,
): Record<string, string | undefined> {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: Object.fromEntries(names.map((n) => [n, { type: 'string' as const }])),
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length > 0) throw new Error(`unexpected argument '${positionals[0]}'`);
    return values as Record<string, string | undefined>;
  } catch (error) {
    throw new CommandError(`${(error as Error).message}\n\n${usage}`, 2);
  }
}

export function readJsonConfig(value: string | undefined, flag: string, io: CommandIo): unknown {
  if (value === undefined) return {};
  const text = value.startsWith('@') ? io.readInput(value.slice(1)) : value;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CommandError(
      `${flag} is not JSON (${(error as Error).message}); pass JSON text or @path/to/config.json`,
    );
  }
}

export function requireBuiltin(name: string | undefined, flag: string, usage: string): string {
  if (!name) throw new CommandError(`${flag} is required\n\n${usage}`, 2);
  if (!isBuiltin(name)) {
    throw new CommandError(
      `${flag} ${name}: not a built-in plugin; to try an uploaded or local plugin use 'cgrpo plugins test'`,
      2,
    );
  }
  return name;
}

/** Parses every non-blank JSONL line with `schema`; errors name the line and the field. */
export function readLines<S extends z.ZodType>(
  text: string,
  schema: S,
): { line: number; value: z.output<S> }[] {
  const out: { line: number; value: z.output<S> }[] = [];
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    if (raw.trim() === '') continue;
    const line = i + 1;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (error) {
      throw new CommandError(`line ${line}: not valid JSON (${(error as Error).message})`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
      throw new CommandError(`line ${line}: ${field}${issue.message}`);
    }
    out.push({ line, value: parsed.data });
  }
  return out;
}

export function pluginFailure(error: unknown, line: number): CommandError {
  if (error instanceof BuiltinPluginError)
    return new CommandError(`line ${line}: ${error.message} [${error.code}]`);
  return new CommandError(`line ${line}: ${error instanceof Error ? error.message : String(error)}`);
}

/** Runs a command body, printing a CommandError (or a config error) as one line on stderr. */
export async function runCommand(name: string, io: CommandIo, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return 0;
  } catch (error) {
    if (error instanceof CommandError) {
      io.stderr(`cgrpo ${name}: ${error.message}`);
      return error.exitCode;
    }
    if (error instanceof BuiltinPluginError) {
      io.stderr(`cgrpo ${name}: ${error.message} [${error.code}]`);
      return 1;
    }
    throw error;
  }
}

const VerifyLineSchema = z.object({
  response: z.string({ error: 'must be a string (the model response)' }),
  reference: z.string({ error: 'must be a string (the reference answer)' }),
  question: z.string().default(''),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

export async function verify(args: string[], io: CommandIo = processIo): Promise<number> {
  return runCommand('verify', io, async () => {
    const flags = parseFlags(args, ['verifier', 'config', 'input'], VERIFY_USAGE);
    const name = requireBuiltin(flags.verifier, '--verifier', VERIFY_USAGE);
    if (!flags.input) throw new CommandError(`--input is required\n\n${VERIFY_USAGE}`, 2);
    const verifier = getBuiltinVerifier(name, readJsonConfig(flags.config, '--config', io));
    const cases = readLines(io.readInput(flags.input), VerifyLineSchema);
    for (const { line, value } of cases) {
      try {
        const result = await verifier.verify(value);
        io.stdout(JSON.stringify({ score: result.score, correct: result.correct, details: result.details }));
      } catch (error) {
        throw pluginFailure(error, line);
      }
    }
  });
}
