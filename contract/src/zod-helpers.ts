import { z } from 'zod';

// Field validators whose messages say what is wrong and what was sent
// (`must be >= 2, got 1`), so an error at the edge can be acted on without reading code.

function describe(input: unknown): string {
  if (typeof input === 'string') return JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input);
  if (input === undefined) return 'nothing';
  try {
    return JSON.stringify(input) ?? String(input);
  } catch {
    return String(input);
  }
}

/** An integer in [min, max] (max optional). */
export function int(min: number, max?: number) {
  let schema = z.number({ error: (issue) => `must be an integer, got ${describe(issue.input)}` }).int({
    error: (issue) => `must be an integer, got ${describe(issue.input)}`,
  });
  schema = schema.min(min, { error: (issue) => `must be >= ${min}, got ${describe(issue.input)}` });
  if (max !== undefined) {
    schema = schema.max(max, { error: (issue) => `must be <= ${max}, got ${describe(issue.input)}` });
  }
  return schema;
}

/** A finite number in [min, max]; `exclusiveMin` makes the lower bound strict. */
export function num(min?: number, max?: number, options: { exclusiveMin?: boolean } = {}) {
  let schema = z.number({ error: (issue) => `must be a number, got ${describe(issue.input)}` });
  if (min !== undefined) {
    schema = options.exclusiveMin
      ? schema.gt(min, { error: (issue) => `must be > ${min}, got ${describe(issue.input)}` })
      : schema.gte(min, { error: (issue) => `must be >= ${min}, got ${describe(issue.input)}` });
  }
  if (max !== undefined) {
    schema = schema.lte(max, { error: (issue) => `must be <= ${max}, got ${describe(issue.input)}` });
  }
  return schema;
}

/** One of the given strings, naming the choices when the value is not one of them. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, {
    error: (issue) =>
      `must be one of ${values.map((v) => `'${v}'`).join(', ')}, got ${describe(issue.input)}`,
  });
}

export function bool() {
  return z.boolean({ error: (issue) => `must be true or false, got ${describe(issue.input)}` });
}

export function str(min = 0, max = 10_000) {
  return z
    .string({ error: (issue) => `must be a string, got ${describe(issue.input)}` })
    .min(min, { error: min === 1 ? 'must not be empty' : `must be at least ${min} characters` })
    .max(max, { error: `must be at most ${max} characters` });
}
