import {
  BudgetsSchema,
  JobEstimateSchema,
  JobSchema,
  type JobSpec,
  JobSpecInputSchema,
  PriceTableSchema,
  resolveJobSpec,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { userOf } from '../auth';
import {
  assertKeyHasRoom,
  checkJobHealth,
  deploymentPrices,
  estimateJob,
  priceTableFor,
  RUNNER_CLASSES,
  type RunnerClass,
} from '../budgets';
import { invalid } from '../errors';
import { getAccountJob, requestResume, toJob } from '../lifecycle';
import { bearerSecurity, conflictError, errors, json, jsonBody, router, spendLimitError } from '../openapi';

// Budgets as users see them: an estimate before a run, and raising a job's caps (optionally
// resuming it) after it paused on one. Enforcement is in ../budgets.ts.

export const budgetsRouter = router();
const tags = ['jobs'];

const runnerClasses = Object.keys(RUNNER_CLASSES) as [RunnerClass, ...RunnerClass[]];

budgetsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/estimate',
    tags,
    summary: 'Estimate tokens, runner time and cost of a spec before submitting it',
    description:
      "A simple model (docs/budgets-and-alarms.md): responses fill `response_fill` of max_response_tokens; throughput by runner class; cost from the deployment's price table (`GET /v1/jobs/prices`), else from `spec.budgets.prices`.",
    security: bearerSecurity,
    request: {
      body: jsonBody(
        z.strictObject({
          spec: JobSpecInputSchema,
          runner_class: z.enum(runnerClasses).default('gpu-small'),
          response_fill: z.number().gt(0).max(1).default(0.5),
        }),
      ),
    },
    responses: { 200: json(JobEstimateSchema, 'The estimate'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const body = c.req.valid('json');
    const resolved = resolveJobSpec(body.spec);
    if (!resolved.ok)
      throw invalid(
        'the job spec is invalid',
        resolved.fields.map((f) => ({ ...f, path: `spec.${f.path}` })),
      );
    const table = priceTableFor(c.env, resolved.spec);
    return c.json(estimateJob(resolved.spec, body.runner_class, body.response_fill, table), 200);
  },
);

const PricesSchema = z
  .object({
    /** `deployment`: the PRICE_TABLE setting prices every job; `job`: each job's own budgets.prices. */
    source: z.enum(['deployment', 'job']),
    /** The deployment's table, or null when it has none (or its setting is invalid). */
    table: PriceTableSchema.nullable(),
    /** Why a PRICE_TABLE setting is ignored, or what a missing one means for key spend limits. */
    warning: z.string().nullable(),
  })
  .meta({ id: 'Prices' });

budgetsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/jobs/prices',
    tags,
    summary: 'The price table that prices jobs on this deployment, and any problem with it',
    security: bearerSecurity,
    responses: { 200: json(PricesSchema, 'The deployment prices'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const { table, warning } = deploymentPrices(c.env);
    return c.json(
      {
        source: table ? ('deployment' as const) : ('job' as const),
        table,
        warning:
          warning ??
          (table
            ? null
            : 'this deployment has no PRICE_TABLE: each job is priced with its own budgets.prices, which its submitter chooses, so API key spend limits only hold for jobs that name honest prices; set PRICE_TABLE (docs/budgets-and-alarms.md, "Deployment prices")'),
      },
      200,
    );
  },
);

budgetsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/jobs/{id}/budgets',
    tags,
    summary: "Change a job's caps (e.g. raise the one it paused on), optionally resuming it",
    security: bearerSecurity,
    request: {
      params: z.object({ id: z.string().min(1).max(100) }),
      body: jsonBody(z.strictObject({ budgets: BudgetsSchema, resume: z.boolean().default(false) })),
    },
    responses: {
      200: json(JobSchema, 'The job with its new caps'),
      ...errors,
      ...conflictError,
      ...spendLimitError,
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const job = await getAccountJob(db, accountId, id);
    // a resume the key's spend limit would undo at once is refused before anything is written
    if (body.resume) await assertKeyHasRoom(c.env, id);
    const spec = JSON.parse(job.spec) as JobSpec;
    spec.budgets = body.budgets;
    await c.env.DB.prepare('UPDATE jobs SET spec = ?1, updated_at = ?2 WHERE id = ?3')
      .bind(JSON.stringify(spec), Date.now(), id)
      .run();
    let row = await getAccountJob(db, accountId, id);
    if (body.resume) row = await requestResume(db, c.env, row);
    // a lowered cap may already be reached
    await checkJobHealth(db, c.env, id);
    return c.json(toJob(await getAccountJob(db, accountId, row.id)), 200);
  },
);
