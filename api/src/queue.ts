import type { Env } from './env';
import { handleWebhookDeliverMessage, WEBHOOK_DELIVER_KIND } from './webhooks/engine';

// Background work arrives on one Queue; each message body is `{kind, ...}` and is dispatched to the
// handler registered for its kind. Queues deliver at least once, so every handler is idempotent.
// Add a kind by adding an entry to `queueHandlers` (webhook delivery registers its own).

export interface QueueMessageBody {
  kind: string;
  [field: string]: unknown;
}

export type QueueHandler = (body: QueueMessageBody, env: Env, ctx: ExecutionContext) => Promise<void>;

export const queueHandlers: Record<string, QueueHandler> = {
  [WEBHOOK_DELIVER_KIND]: (body, env) => handleWebhookDeliverMessage(env, body),
};

export async function handleQueueBatch(
  batch: MessageBatch<unknown>,
  env: Env,
  ctx: ExecutionContext,
): Promise<void> {
  for (const message of batch.messages) {
    const body = message.body as Partial<QueueMessageBody> | null;
    const handler = body && typeof body.kind === 'string' ? queueHandlers[body.kind] : undefined;
    if (!handler) {
      // Unknown kinds can never succeed: drop them (with a log line) instead of retrying forever.
      console.error(`queue: no handler for message kind ${JSON.stringify(body?.kind)}; dropped`);
      message.ack();
      continue;
    }
    try {
      await handler(body as QueueMessageBody, env, ctx);
      message.ack();
    } catch (error) {
      console.error(`queue: ${body?.kind} failed, will retry:`, error);
      message.retry();
    }
  }
}
