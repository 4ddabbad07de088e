// The verifiers behind OpenAI's text_similarity, score_model and multi graders, against values
// computed by hand (worked out in the comments) and a real chat server on loopback for the judge.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChatServer, startChatServer } from '../critics/chat-server';
import { BuiltinPluginError, getBuiltinVerifier, validateBuiltinConfig } from '../index';
import { compileFormula } from './multi';
import { parseJudgeScore } from './score-model';
import { bleu, fuzzyMatch, gleu, rouge } from './text-similarity';

const HYP = 'the cat sat on the mat';
const REF = 'the cat sat on a mat';
const input = (response: string, reference: string, question = '') => ({
  question,
  response,
  reference,
  metadata: {},
});

describe('text similarity metrics', () => {
  it('BLEU-4 of a known pair', () => {
    // clipped precisions: 1-grams 5/6 ("the" twice, once in the reference), 2-grams 3/5,
    // 3-grams 2/4, 4-grams 1/3; equal lengths so no brevity penalty: (5/6·3/5·1/2·1/3)^(1/4) = (1/12)^(1/4)
    expect(bleu(HYP, REF)).toBeCloseTo((1 / 12) ** 0.25, 12);
    expect(bleu(REF, REF)).toBe(1);
    // a shorter hypothesis pays exp(1 - r/c): 4 tokens against 6 → exp(1 - 6/4), all precisions 1
    expect(bleu('the cat sat on', REF)).toBeCloseTo(Math.exp(1 - 6 / 4), 12);
    // no 4-gram match and no smoothing → 0 (NLTK's default)
    expect(bleu('cat the', REF)).toBe(0);
  });

  it('GLEU of a known pair', () => {
    // matches 5 + 3 + 2 + 1 = 11 over max(18, 18) n-grams of orders 1..4
    expect(gleu(HYP, REF)).toBeCloseTo(11 / 18, 12);
    // hypothesis "the cat": 1-grams 2/2 + 2-grams 1/1 matched = 3, reference has 6+5+4+3 = 18
    expect(gleu('the cat', REF)).toBeCloseTo(3 / 18, 12);
  });

  it('ROUGE-N and ROUGE-L F1 of a known pair', () => {
    // unigrams: the (min 2,1), cat, sat, on, mat = 5 of 6 either way → F1 5/6
    expect(rouge('rouge_1', HYP, REF)).toBeCloseTo(5 / 6, 12);
    // bigrams: "the cat", "cat sat", "sat on" = 3 of 5 → 3/5
    expect(rouge('rouge_2', HYP, REF)).toBeCloseTo(3 / 5, 12);
    expect(rouge('rouge_4', HYP, REF)).toBeCloseTo(1 / 3, 12);
    // LCS "the cat sat on mat" = 5 → P = R = 5/6
    expect(rouge('rouge_l', HYP, REF)).toBeCloseTo(5 / 6, 12);
    // rouge_score's tokenizer: case and punctuation do not count
    expect(rouge('rouge_1', 'The CAT, sat!', 'the cat sat')).toBe(1);
    // P = 1/1, R = 1/3 → F1 = 2·(1·1/3)/(1 + 1/3) = 1/2
    expect(rouge('rouge_1', 'cat', 'the cat sat')).toBeCloseTo(0.5, 12);
    expect(rouge('rouge_l', '', REF)).toBe(0);
  });

  it('fuzzy_match is WRatio / 100', () => {
    // token sets: {the cat sat on mat} ⊂ reference set → token_set_ratio 100, scaled by 0.95 in WRatio
    expect(fuzzyMatch(HYP, REF)).toBe(0.95);
    expect(fuzzyMatch('Paris', 'paris')).toBe(1);
    // "paris" vs "lyon": no common characters → 0
    expect(fuzzyMatch('paris', 'lyon')).toBe(0);
    // unicode is kept (fuzzball strips it by default)
    expect(fuzzyMatch('東京', '東京')).toBe(1);
  });
});

describe('builtin:text-similarity', () => {
  it('rewards the score and passes at pass_threshold', async () => {
    const v = getBuiltinVerifier('builtin:text-similarity', { metric: 'rouge_1', pass_threshold: 0.8 });
    const r = await v.verify(input(HYP, REF));
    expect(r.score).toBeCloseTo(5 / 6, 12);
    expect(r.correct).toBe(true);
    const strict = getBuiltinVerifier('text-similarity', { metric: 'rouge_2', pass_threshold: 0.8 });
    expect((await strict.verify(input(HYP, REF))).correct).toBe(false);
  });

  it('names an unknown metric', () => {
    expect(validateBuiltinConfig('builtin:text-similarity', 'verifier', { metric: 'meteor' })).toEqual([
      expect.objectContaining({ path: 'config.metric' }),
    ]);
  });
});

describe('builtin:multi', () => {
  it('evaluates calculate_output over the graders', async () => {
    const v = getBuiltinVerifier('builtin:multi', {
      graders: {
        exact: { plugin: 'builtin:exact', config: { extract: 'whole' } },
        rouge: { plugin: 'builtin:text-similarity', config: { metric: 'rouge_1' } },
      },
      calculate_output: '0.25 * exact + 0.75 * rouge',
    });
    const r = await v.verify(input(HYP, REF));
    // exact 0, rouge 5/6 → 0.75 · 5/6 = 0.625
    expect(r.score).toBeCloseTo(0.625, 12);
    expect(r.correct).toBe(true);
    expect((await v.verify(input(REF, REF))).score).toBe(1);
  });

  it('evaluates operators and functions with their usual precedence', () => {
    const f = compileFormula('max(a, b) - 2 ^ 2 * abs(-c) / (1 + 1) + floor(1.5)', ['a', 'b', 'c']);
    if (!f.ok) throw new Error(f.message);
    // max(0.2, 0.7) - 4 * 0.5 / 2 + 1 = 0.7 - 1 + 1
    expect(f.formula({ a: 0.2, b: 0.7, c: 0.5 })).toBeCloseTo(0.7, 12);
    expect(compileFormula('-a + +b', ['a', 'b'])).toMatchObject({ ok: true });
  });

  it('refuses anything that is not arithmetic over the graders', () => {
    for (const [src, why] of [
      ['a + b', "unknown name 'b'"],
      ['import("fs")', 'not allowed'],
      ['a = 1', 'not allowed'],
      ['a > 0.5 ? 1 : 0', 'not allowed'],
      ['"x"', 'only numbers'],
      ['evaluate("1")', "function 'evaluate'"],
      ['a.constructor', 'not allowed'],
      ['[a]', 'not allowed'],
      ['a +', 'cannot parse'],
    ] as const) {
      const f = compileFormula(src, ['a']);
      expect(f.ok, src).toBe(false);
      if (!f.ok) expect(f.message, src).toContain(why);
    }
  });

  it('validates each grader config under its path and refuses nesting', () => {
    expect(
      validateBuiltinConfig('builtin:multi', 'verifier', {
        graders: { sim: { plugin: 'builtin:text-similarity', config: { metric: 'cosine' } } },
        calculate_output: 'sim',
      }),
    ).toEqual([expect.objectContaining({ path: 'config.graders.sim.config.metric' })]);
    expect(
      validateBuiltinConfig('builtin:multi', 'verifier', {
        graders: { m: { plugin: 'builtin:multi', config: {} } },
        calculate_output: 'm',
      }),
    ).toEqual([expect.objectContaining({ path: 'config.graders.m.plugin' })]);
    expect(
      validateBuiltinConfig('builtin:multi', 'verifier', {
        graders: { a: { plugin: 'builtin:exact' } },
        calculate_output: 'a * b',
      }),
    ).toEqual([expect.objectContaining({ path: 'config.calculate_output' })]);
  });
});

describe('builtin:score-model', () => {
  let server: ChatServer;
  beforeAll(async () => {
    server = await startChatServer({ content: '8' });
  });
  afterAll(() => server.close());

  const config = () => ({
    endpoint_url: `${server.url}/v1`,
    model: 'judge',
    token_env: 'JUDGE_TOKEN',
    messages: [
      { role: 'system', content: 'You grade answers.' },
      { role: 'user', content: 'Q: {question}\nReference: {reference}\nAnswer: {response}\nScore 0-10.' },
    ],
    range: [0, 10],
    pass_threshold: 7,
    temperature: 0.2,
  });

  it('asks the judge over HTTP and scales its score to the reward', async () => {
    const v = getBuiltinVerifier('builtin:score-model', config(), { env: { JUDGE_TOKEN: 'tok' } });
    server.script.push({ content: 'The answer is close. Score: 8' }, { content: '{"result": 3}' });
    const good = await v.verify(input('Paris', 'Paris', 'Capital of France?'));
    expect(good).toMatchObject({ score: 0.8, correct: true, details: { raw_score: 8 } });
    const bad = await v.verify(input('Lyon', 'Paris', 'Capital of France?'));
    expect(bad).toMatchObject({ score: 0.3, correct: false });
    const sent = server.requests.at(-2)!;
    expect(sent.headers.authorization).toBe('Bearer tok');
    expect(sent.body.model).toBe('judge');
    expect(sent.body.temperature).toBe(0.2);
    expect(sent.body.messages).toEqual([
      { role: 'system', content: 'You grade answers.' },
      { role: 'user', content: 'Q: Capital of France?\nReference: Paris\nAnswer: Paris\nScore 0-10.' },
    ]);
  });

  it('clamps to range, scores 0 without a number, and feeds raw scores to builtin:multi', async () => {
    const v = getBuiltinVerifier('builtin:score-model', config(), { env: { JUDGE_TOKEN: 'tok' } });
    server.script.push({ content: '15' }, { content: 'no idea' });
    expect(await v.verify(input('a', 'b'))).toMatchObject({ score: 1, details: { raw_score: 10 } });
    expect(await v.verify(input('a', 'b'))).toMatchObject({ score: 0, correct: false });
    const multi = getBuiltinVerifier(
      'builtin:multi',
      {
        graders: {
          judge: { plugin: 'builtin:score-model', config: config() },
          exact: { plugin: 'builtin:exact' },
        },
        calculate_output: '(judge / 10 + exact) / 2',
      },
      { env: { JUDGE_TOKEN: 'tok' } },
    );
    server.script.push({ content: '6' });
    // judge 6 on its own scale → 0.6, exact 1 → 0.8
    expect((await multi.verify(input('Paris', 'Paris'))).score).toBeCloseTo(0.8, 12);
  });

  it('scales a range that does not start at 0', async () => {
    const v = getBuiltinVerifier(
      'builtin:score-model',
      { ...config(), range: [1, 5], pass_threshold: 4 },
      { env: { JUDGE_TOKEN: 'tok' } },
    );
    server.script.push({ content: '4' });
    // (4 - 1) / (5 - 1)
    expect(await v.verify(input('a', 'b'))).toMatchObject({ score: 0.75, correct: true });
  });

  it('parses judge answers', () => {
    expect(parseJudgeScore('{"score": 0.5}')).toBe(0.5);
    expect(parseJudgeScore('7')).toBe(7);
    expect(parseJudgeScore('between 2 and 4, say 3.5')).toBe(3.5);
    expect(parseJudgeScore('none')).toBeNull();
  });

  it('refuses to run without a runner environment, and names a missing token variable', () => {
    expect(() => getBuiltinVerifier('builtin:score-model', config())).toThrow(
      expect.objectContaining({ code: 'verifier_needs_runner' }),
    );
    try {
      getBuiltinVerifier('builtin:score-model', config(), { env: {} });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(BuiltinPluginError);
      expect((error as BuiltinPluginError).fields[0]?.path).toBe('config.token_env');
    }
    expect(
      validateBuiltinConfig('builtin:score-model', 'verifier', {
        ...config(),
        messages: [{ role: 'user', content: 'x' }],
      }),
    ).toEqual([expect.objectContaining({ path: 'config.messages' })]);
  });
});
