import { drizzle } from 'drizzle-orm/d1';
import * as schema from './db/schema';
import type { Env } from './env';
import { expireLeases } from './lifecycle';
import { sweepWebhookDeliveries } from './webhooks/engine';

// The cron (every minute, wrangler.toml): leases whose runner stopped sending heartbeats are
// released — requeued with attempt + 1 while retries remain, failed with the reason after.
// Other periodic work (webhook retries) hooks in here too.

export type ScheduledTask = (
  env: Env,
  ctx: ExecutionContext,
  controller: ScheduledController,
) => Promise<unknown>;

export const scheduledTasks: Record<string, ScheduledTask> = {
  expireLeases: (env) => expireLeases(drizzle(env.DB, { schema }), env),
  webhooks: (env) => sweepWebhookDeliveries(env),
};

export async function handleScheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext) {
  const results = await Promise.allSettled(
    Object.values(scheduledTasks).map((task) => task(env, ctx, controller)),
  );
  for (const [index, result] of results.entries()) {
    if (result.status === 'rejected')
      console.error(`scheduled task ${Object.keys(scheduledTasks)[index]} failed:`, result.reason);
  }
}
