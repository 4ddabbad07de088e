// Decoded text is text: special tokens (reserved, end-of-turn, …) never reach verifiers, critics or
// the rollout store as their names, whatever the finish reason (HF's skip_special_tokens). The
// random tiny Llama samples its 256 reserved special tokens often, so a batch shows it.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, type Engine } from '../src/engine';
import { CausalLM } from '../src/model/model';
import { generate } from '../src/rollout/generate';
import { ROOT } from './harness';

let engine: Engine;
let model: CausalLM;
beforeAll(async () => {
  engine = await createEngine({ device: 'cpu', threads: 1 });
  model = await CausalLM.load(join(ROOT, 'gpu-runner', 'models', 'tiny-llama'), { engine });
});
afterAll(async () => {
  await model?.close();
  await engine?.close();
});

describe('response text', () => {
  it('has no special-token names, whether a response ends by length, eos or a stop string', async () => {
    const prompt = model.tokenizer.encode('1 + 2 =');
    const out = await generate(model, [prompt], {
      n: 48,
      maxNewTokens: 12,
      temperature: 1.5,
      seed: 3,
      stop: ['\n\n'],
    });
    const specials = out.filter((c) => c.tokens.some((t) => /^<\|.*\|>$/.test(model.tokenizer.decode([t]))));
    // the check below means something only if special tokens were sampled
    expect(specials.length).toBeGreaterThan(5);
    expect(new Set(out.map((c) => c.finishReason)).has('length')).toBe(true);
    for (const c of out) {
      expect(c.text).not.toMatch(/<\|[a-z_0-9]+\|>/);
      expect(c.text).toBe(
        c.finishReason === 'stop' ? c.text : model.tokenizer.decode(c.tokens, { skipSpecialTokens: true }),
      );
    }
  }, 60_000);
});
