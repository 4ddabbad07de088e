// The SDK's browser-safe modules (api.ts, webhooks.ts) carry no runtime dependency, so they repeat
// a few lists of the contract instead of importing zod with it. These tests keep them in step.
import {
  WEBHOOK_EVENT_TYPES as contractEventTypes,
  JOB_STATUSES as contractStatuses,
  TERMINAL_JOB_STATUSES as contractTerminal,
} from '@cgrpo/contract';
import { describe, expect, it } from 'vitest';
import { JOB_STATUSES, TERMINAL_JOB_STATUSES } from '../src/api';
import { WEBHOOK_EVENT_TYPES } from '../src/webhooks';

describe('the SDK agrees with the contract', () => {
  it('job statuses and which of them are final', () => {
    expect([...JOB_STATUSES]).toEqual([...contractStatuses]);
    expect([...TERMINAL_JOB_STATUSES]).toEqual([...contractTerminal]);
  });

  it('knows every webhook event type the API can deliver', () => {
    const known: readonly string[] = WEBHOOK_EVENT_TYPES;
    expect(contractEventTypes.filter((t) => !known.includes(t))).toEqual([]);
  });
});
