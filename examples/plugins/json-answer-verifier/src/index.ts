import { defineVerifier } from '@cgrpo/plugins/sdk';
import * as z from '@cgrpo/plugins/sdk/zod';

// The response must end with a JSON object (optionally in a ```json fence); the reference is the
// expected JSON object. Each expected key is one "unit test"; the score is the share that pass.
interface Check {
  name: string;
  pass: boolean;
  why?: string;
}

function lastJsonObject(text: string): unknown {
  const fenced = [...text.matchAll(/```(?:json)?\s*([\s\S]*?)```/g)].pop();
  const candidate = fenced ? fenced[1] : text.slice(text.lastIndexOf('{', text.lastIndexOf('}')));
  const start = candidate.indexOf('{');
  const end = candidate.lastIndexOf('}');
  if (start < 0 || end < start) return undefined;
  try {
    return JSON.parse(candidate.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

function sameValue(expected: unknown, actual: unknown, tolerance: number, unordered: boolean): string | null {
  if (typeof expected === 'number') {
    if (typeof actual !== 'number') return `expected a number, got ${typeof actual}`;
    const scale = Math.max(1, Math.abs(expected));
    return Math.abs(expected - actual) <= tolerance * scale ? null : `expected ${expected}, got ${actual}`;
  }
  if (typeof expected === 'string') {
    if (typeof actual !== 'string') return `expected a string, got ${typeof actual}`;
    return expected.trim().toLowerCase() === actual.trim().toLowerCase() ? null : `expected "${expected}"`;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return 'expected an array';
    if (expected.length !== actual.length) return `expected ${expected.length} items, got ${actual.length}`;
    const a = unordered
      ? [...actual].map((x) => JSON.stringify(x)).sort()
      : actual.map((x) => JSON.stringify(x));
    const e = unordered
      ? [...expected].map((x) => JSON.stringify(x)).sort()
      : expected.map((x) => JSON.stringify(x));
    return a.every((x, i) => x === e[i]) ? null : 'items differ';
  }
  return JSON.stringify(expected) === JSON.stringify(actual) ? null : 'values differ';
}

export default defineVerifier({
  config: z.object({
    /** Relative tolerance for numbers. */
    tolerance: z.number().min(0).max(1).default(1e-6),
    /** Compare arrays as multisets. */
    unordered_arrays: z.boolean().default(false),
    /** Keys the answer must not contain beyond the reference's (strict schema). */
    forbid_extra_keys: z.boolean().default(false),
  }),
  verify(input, ctx) {
    let reference: Record<string, unknown>;
    try {
      reference = JSON.parse(input.reference) as Record<string, unknown>;
    } catch {
      throw new Error(`the reference is not JSON: ${input.reference.slice(0, 80)}`);
    }
    const answer = lastJsonObject(input.response);
    if (answer === undefined || answer === null || typeof answer !== 'object' || Array.isArray(answer)) {
      return {
        score: 0,
        correct: false,
        details: { checks: [{ name: 'parses', pass: false, why: 'no JSON object' }] },
      };
    }
    const got = answer as Record<string, unknown>;
    const checks: Check[] = [{ name: 'parses', pass: true }];
    for (const [key, expected] of Object.entries(reference)) {
      if (!(key in got)) {
        checks.push({ name: key, pass: false, why: 'missing' });
        continue;
      }
      const why = sameValue(expected, got[key], ctx.config.tolerance, ctx.config.unordered_arrays);
      checks.push(why ? { name: key, pass: false, why } : { name: key, pass: true });
    }
    if (ctx.config.forbid_extra_keys) {
      const extra = Object.keys(got).filter((k) => !(k in reference));
      checks.push(
        extra.length
          ? { name: 'no extra keys', pass: false, why: extra.join(', ') }
          : { name: 'no extra keys', pass: true },
      );
    }
    const passed = checks.filter((c) => c.pass).length;
    return { score: passed / checks.length, correct: passed === checks.length, details: { checks } };
  },
});
