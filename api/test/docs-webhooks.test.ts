import { describe, expect, it } from 'vitest';
import doc from '../../docs/webhooks.md?raw';
import { PAYLOAD_EXAMPLES } from '../src/webhooks/payloads';

// docs/webhooks.md shows payloads generated from PAYLOAD_EXAMPLES, which the real payload builder
// (jobEventPayload) makes; a hand edit of either that makes them differ fails here.

describe('docs/webhooks.md payload examples', () => {
  it('are exactly what the payload builder produces', () => {
    const section = /<!-- payload-examples:[\s\S]*?-->([\s\S]*?)<!-- \/payload-examples -->/.exec(doc)?.[1];
    expect(section).toBeDefined();
    const blocks = [...(section as string).matchAll(/```json\n([\s\S]*?)\n```/g)].map((m) => m[1] as string);
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const block of blocks) {
      const shown = JSON.parse(block) as { type: string };
      expect(block).toBe(JSON.stringify(PAYLOAD_EXAMPLES[shown.type], null, 2));
    }
  });
});
