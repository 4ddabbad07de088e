import { z } from 'zod';
import { PluginUseSchema, VerifierResultSchema } from './plugins';

// POST /v1/plugins/run: a dry run of built-in verifiers and rule-based critics on a few cases, so a
// user can test a grader before paying for a job. The limits bound the Worker's CPU time per request.

export const PLUGIN_RUN_LIMITS = {
  /** Cases per request. */
  maxCases: 100,
  /** Characters of one response (the math verifier only reads the end of longer ones anyway). */
  maxResponseChars: 20_000,
  /** Characters of a question or a reference. */
  maxTextChars: 10_000,
  /** The whole JSON body; larger requests are answered 413 before they are parsed. */
  maxBodyBytes: 1024 * 1024,
} as const;

const text = (max: number) => z.string().max(max, `must be at most ${max} characters`);

export const PluginRunCaseSchema = z.strictObject({
  question: text(PLUGIN_RUN_LIMITS.maxTextChars).default(''),
  response: text(PLUGIN_RUN_LIMITS.maxResponseChars),
  reference: text(PLUGIN_RUN_LIMITS.maxTextChars),
  metadata: z.record(z.string(), z.unknown()).default({}),
  /** The verdict a critic sees when the request has no verifier (ignored when it has one). */
  verification: VerifierResultSchema.optional(),
});
export type PluginRunCase = z.infer<typeof PluginRunCaseSchema>;

export const PluginRunRequestSchema = z
  .strictObject({
    verifier: PluginUseSchema.optional(),
    critic: PluginUseSchema.optional(),
    cases: z
      .array(PluginRunCaseSchema)
      .min(1, 'give at least one case')
      .max(PLUGIN_RUN_LIMITS.maxCases, `at most ${PLUGIN_RUN_LIMITS.maxCases} cases per request`),
  })
  .superRefine((body, ctx) => {
    if (!body.verifier && !body.critic) {
      ctx.addIssue({ code: 'custom', path: ['verifier'], message: 'give a verifier, a critic or both' });
    }
    if (body.critic && !body.verifier) {
      body.cases.forEach((c, i) => {
        if (!c.verification) {
          ctx.addIssue({
            code: 'custom',
            path: ['cases', i, 'verification'],
            message: 'required when a critic runs without a verifier ({score, correct})',
          });
        }
      });
    }
  })
  .meta({ id: 'PluginRunRequest' });
export type PluginRunRequest = z.input<typeof PluginRunRequestSchema>;

export const PluginRunResultSchema = z.object({
  /** The verifier's result, when a verifier ran and did not fail. */
  verification: VerifierResultSchema.optional(),
  /** The critic's critique, when a critic ran and did not fail. */
  critique: z.string().optional(),
  /** Why this case has no verification or critique; other cases still ran. */
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type PluginRunResult = z.infer<typeof PluginRunResultSchema>;

export const PluginRunResponseSchema = z
  .object({ results: z.array(PluginRunResultSchema) })
  .meta({ id: 'PluginRunResponse' });
export type PluginRunResponse = z.infer<typeof PluginRunResponseSchema>;
