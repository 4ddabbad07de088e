import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook, WebhookVerificationError } from '../../client/src/webhooks';

// The receiver helpers of @cgrpo/client (client/src/webhooks.ts), run here in workerd: an empty
// signed body verifies, and signing refuses timestamps no receiver could reproduce.

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const TS = 1614265330;

describe('webhook helpers', () => {
  it('verifyWebhook accepts a correctly signed empty payload and still refuses a wrong one', async () => {
    const headers = {
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(TS),
      'webhook-signature': await signWebhook(SECRET, 'msg_1', TS, ''),
    };
    const empty = { type: '', timestamp: new Date(TS * 1000).toISOString(), data: {} };
    expect(await verifyWebhook(SECRET, headers, '', { now: TS * 1000 })).toEqual(empty);
    expect(await verifyWebhook(SECRET, headers, new Uint8Array(0), { now: TS * 1000 })).toEqual(empty);
    await expect(verifyWebhook(SECRET, headers, '{}', { now: TS * 1000 })).rejects.toSatisfy(
      (e) => e instanceof WebhookVerificationError && e.code === 'no_matching_signature',
    );
  });

  it('signWebhook refuses non-integer, negative and unsafe timestamps', async () => {
    for (const ts of [1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      await expect(signWebhook(SECRET, 'msg_1', ts, '{}'), String(ts)).rejects.toSatisfy(
        (e) => e instanceof WebhookVerificationError && e.code === 'invalid_timestamp',
      );
    }
    expect(await signWebhook(SECRET, 'msg_1', 0, '{}')).toMatch(/^v1,/);
  });
});
