import type { ErrorBody, FieldError } from '@cgrpo/contract';
import type { z } from 'zod';

export type BuiltinErrorCode =
  /** No built-in of that name and kind. */
  | 'unknown_plugin'
  /** The config failed the built-in's schema; `fields` names each field. */
  | 'invalid_config'
  /** The critic's LLM endpoint could not be reached (connection refused, DNS, reset) after retries. */
  | 'critic_unreachable'
  /** Every attempt ran past timeout_ms. */
  | 'critic_timeout'
  /** The endpoint answered with an HTTP error (after retries for 429/5xx). */
  | 'critic_http_error'
  /** builtin:self was used where the runner provides no generate() function. */
  | 'critic_no_generator'
  /** builtin:score-model (or a builtin:multi using it) was built where no runner environment is given. */
  | 'verifier_needs_runner';

/** The error every built-in plugin throws: a code, the plugin, what to do, and field paths. */
export class BuiltinPluginError extends Error {
  constructor(
    readonly code: BuiltinErrorCode,
    readonly plugin: string,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(`${plugin}: ${message}`);
    this.name = 'BuiltinPluginError';
  }

  toErrorBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, fields: this.fields } };
  }
}

/** Parses a built-in's config, or throws invalid_config naming every bad field (`config.<path>`). */
export function parseConfig<S extends z.ZodType>(plugin: string, schema: S, raw: unknown): z.output<S> {
  const parsed = schema.safeParse(raw ?? {});
  if (parsed.success) return parsed.data;
  const fields = parsed.error.issues.flatMap((issue) => {
    const keys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined];
    return keys.map((key) => ({
      path: ['config', ...issue.path.map(String), ...(key ? [key] : [])].join('.'),
      message: issue.code === 'unrecognized_keys' ? 'unknown field (check the spelling)' : issue.message,
    }));
  });
  const summary = fields.map((f) => `${f.path}: ${f.message}`).join('; ');
  throw new BuiltinPluginError('invalid_config', plugin, `invalid config: ${summary}`, fields);
}
