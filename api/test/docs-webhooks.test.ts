import { describe, expect, it } from 'vitest';
import doc from '../../docs/webhooks.md?raw';
import { PAYLOAD_EXAMPLES, SUBSCRIBABLE_EVENT_TYPES } from '../src/webhooks/payloads';

// docs/webhooks.md shows payloads generated from PAYLOAD_EXAMPLES, which the real payload builders
// (jobEventPayload, metricsDigest) make; a hand edit of either that makes them differ fails here.

describe('docs/webhooks.md payload examples', () => {
  it('are exactly what the payload builder produces', () => {
    const section = /<!-- payload-examples:[\s\S]*?-->([\s\S]*?)<!-- \/payload-examples -->/.exec(doc)?.[1];
    expect(section).toBeDefined();
    const blocks = [...(section as string).matchAll(/```json\n([\s\S]*?)\n```/g)].map((m) => m[1] as string);
    const shown = blocks.map((block) => {
      const { type } = JSON.parse(block) as { type: string };
      expect(block, `the ${type} example`).toBe(JSON.stringify(PAYLOAD_EXAMPLES[type], null, 2));
      return type;
    });
    // the newer event types each have their example in the docs
    expect(shown).toEqual(
      expect.arrayContaining([
        'job.succeeded',
        'checkpoint.created',
        'job.metrics_digest',
        'job.budget_reached',
        'job.alarm',
      ]),
    );
  });

  it('name every event type an endpoint can subscribe to, in the event_types list and the table', () => {
    const list = /`event_types` takes any of ([\s\S]*?)An account has/.exec(doc)?.[1] ?? '';
    for (const type of SUBSCRIBABLE_EVENT_TYPES) expect(list, type).toContain(`\`${type}\``);
    for (const type of SUBSCRIBABLE_EVENT_TYPES.filter((t) => t !== 'job.*')) {
      expect(doc, type).toMatch(new RegExp(`^\\| \`${type.replace('.', '\\.')}\` +\\|`, 'm'));
    }
  });
});
