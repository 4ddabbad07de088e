import {
  ErrorBodySchema,
  type FieldError,
  PLUGIN_RUN_LIMITS,
  PluginRunRequestSchema,
  PluginRunResponseSchema,
  type PluginRunResult,
  type PluginUse,
  type VerifierResult,
} from '@cgrpo/contract';
import type { BuiltinCritic, BuiltinPluginError, BuiltinVerifier } from '@cgrpo/plugins/builtin';
import { createRoute } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { userOf } from '../auth';
import { ApiError, describeFields, invalid } from '../errors';
import { bearerSecurity, errors, json, jsonBody, router } from '../openapi';

// POST /v1/plugins/run: the built-in verifiers and rule-based critics, run inside the Worker on a
// few cases (a dry run; nothing is stored). Plugins that need a model, an LLM endpoint or the
// sandbox run where those exist: on the user's machine through the CLI.

export const pluginRunRouter = router();

// Loaded on the first dry run, not at Worker startup: the math verifier's CAS libraries are most of
// the bundle and take ~0.3 s of CPU to evaluate, which every other route would otherwise pay on a
// cold start. (The bytes are still in the one bundle; only their evaluation waits.)
const loadBuiltins = () => import('@cgrpo/plugins/builtin');
type Builtins = Awaited<ReturnType<typeof loadBuiltins>>;

const isBuiltinError = (builtins: Builtins, error: unknown): error is BuiltinPluginError =>
  error instanceof builtins.BuiltinPluginError;

/** Built-ins that cannot run in the Worker, with where to run them instead. */
const NOT_HERE: Record<string, string> = {
  'builtin:llm': 'it calls an LLM endpoint with a token only you hold',
  'builtin:self': 'it needs the policy model, which only a runner loads',
  'builtin:score-model': 'it calls a judge LLM endpoint with a token only a runner holds',
};

const LOCAL_HINT =
  'run it locally with `cgrpo verify` / `cgrpo critique`, or test a plugin bundle with `cgrpo plugins test`';

function unsupported(use: PluginUse, role: 'verifier' | 'critic'): ApiError | null {
  const why =
    NOT_HERE[use.plugin] ??
    (use.plugin.startsWith('builtin:')
      ? null
      : 'published plugins run in the sandbox on runners, not in the API');
  if (!why) return null;
  return new ApiError(
    422,
    'dry_run_unsupported',
    `${role}.plugin ${use.plugin} cannot run in the API dry run: ${why}; ${LOCAL_HINT}`,
    [{ path: `${role}.plugin`, message: 'not available in the dry run' }],
  );
}

/** A built-in's config or name errors as a 400 whose field paths start at the request body. */
function asRequestError(builtins: Builtins, error: unknown, role: 'verifier' | 'critic'): unknown {
  if (!isBuiltinError(builtins, error)) return error;
  const fields: FieldError[] =
    error.fields.length > 0
      ? error.fields.map((f) => ({ path: `${role}.${f.path}`, message: f.message }))
      : [{ path: `${role}.plugin`, message: error.message }];
  return invalid(`${role} is invalid: ${describeFields(fields)}`, fields);
}

function caseError(
  builtins: Builtins,
  error: unknown,
  role: 'verifier' | 'critic',
): NonNullable<PluginRunResult['error']> {
  if (isBuiltinError(builtins, error)) return { code: error.code, message: error.message };
  const message = error instanceof Error ? error.message : String(error);
  return { code: `${role}_failed`, message: `the ${role} threw: ${message.slice(0, 500)}` };
}

pluginRunRouter.openapi(
  createRoute({
    method: 'post',
    path: '/plugins/run',
    tags: ['plugins'],
    summary: 'Dry-run a built-in verifier and/or rule-based critic on up to 100 cases',
    description: [
      'Runs `builtin:math`, `builtin:exact`, `builtin:regex`, `builtin:choice` (verifiers) and',
      '`builtin:indicative`, `builtin:ground-truth` (critics) inside the API and returns one result per',
      'case, in order. Nothing is stored or billed. The critic sees the verifier’s result; without a',
      'verifier, each case gives its own `verification`.',
      '',
      `Limits: ${PLUGIN_RUN_LIMITS.maxCases} cases, responses up to ${PLUGIN_RUN_LIMITS.maxResponseChars} characters,`,
      `questions and references up to ${PLUGIN_RUN_LIMITS.maxTextChars}, bodies up to ${PLUGIN_RUN_LIMITS.maxBodyBytes} bytes (else 413).`,
      '',
      '`builtin:llm`, `builtin:self` and published `<owner>/<name>@<version>` plugins answer 422',
      '`dry_run_unsupported`: run them locally with `cgrpo verify` / `cgrpo critique` or `cgrpo plugins test`.',
    ].join('\n'),
    security: bearerSecurity,
    middleware: [
      bodyLimit({
        maxSize: PLUGIN_RUN_LIMITS.maxBodyBytes,
        onError: () => {
          throw new ApiError(
            413,
            'too_large',
            `a dry-run request may be at most ${PLUGIN_RUN_LIMITS.maxBodyBytes} bytes; send fewer or shorter cases`,
          );
        },
      }),
    ] as const,
    request: { body: jsonBody(PluginRunRequestSchema) },
    responses: {
      200: json(PluginRunResponseSchema, 'One result per case, in request order'),
      ...errors,
      413: json(ErrorBodySchema, 'Body larger than the dry-run limit'),
      422: json(ErrorBodySchema, 'A plugin that only runs locally (dry_run_unsupported)'),
    },
  }),
  async (c) => {
    userOf(c);
    const body = c.req.valid('json');
    for (const [role, use] of [
      ['verifier', body.verifier],
      ['critic', body.critic],
    ] as const) {
      const refusal = use && unsupported(use, role);
      if (refusal) throw refusal;
    }
    const builtins = await loadBuiltins();
    let verifier: BuiltinVerifier | undefined;
    let critic: BuiltinCritic | undefined;
    try {
      verifier = body.verifier && builtins.getBuiltinVerifier(body.verifier.plugin, body.verifier.config);
    } catch (error) {
      throw asRequestError(builtins, error, 'verifier');
    }
    try {
      critic = body.critic && builtins.getBuiltinCritic(body.critic.plugin, body.critic.config);
    } catch (error) {
      throw asRequestError(builtins, error, 'critic');
    }

    const results: PluginRunResult[] = [];
    for (const item of body.cases) {
      const result: PluginRunResult = {};
      let verification: VerifierResult | undefined = item.verification;
      if (verifier) {
        try {
          verification = await verifier.verify({
            question: item.question,
            response: item.response,
            reference: item.reference,
            metadata: item.metadata,
          });
          result.verification = verification;
        } catch (error) {
          result.error = caseError(builtins, error, 'verifier');
          verification = undefined;
        }
      }
      if (critic && verification) {
        try {
          const { critique } = await critic.critique({
            question: item.question,
            response: item.response,
            reference: item.reference,
            verification,
          });
          result.critique = critique;
        } catch (error) {
          result.error = caseError(builtins, error, 'critic');
        }
      }
      results.push(result);
    }
    return c.json({ results }, 200);
  },
);
