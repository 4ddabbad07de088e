import { describe, expect, it } from 'vitest';
import {
  BUILTINS,
  BuiltinPluginError,
  getBuiltinCritic,
  getBuiltinShaping,
  getBuiltinVerifier,
  isBuiltin,
  validateBuiltinConfig,
} from './index';
import { DEFAULT_SHAPING_EXPRESSION, DEFAULT_SHAPING_PARAMS } from './shaping/expression';

const wrong = {
  question: 'q',
  response: 'r',
  reference: '42',
  verification: { score: 0, correct: false, details: {} },
};

describe('builtin registry', () => {
  it('lists every builtin with a description, a JSON config schema and a valid example config', () => {
    expect(BUILTINS.map((b) => b.name)).toEqual([
      'builtin:math',
      'builtin:exact',
      'builtin:regex',
      'builtin:choice',
      'builtin:text-similarity',
      'builtin:score-model',
      'builtin:multi',
      'builtin:indicative',
      'builtin:ground-truth',
      'builtin:llm',
      'builtin:self',
      'builtin:expression',
    ]);
    for (const b of BUILTINS) {
      expect(b.description.length).toBeGreaterThan(20);
      expect(b.config_schema.type).toBe('object');
      expect(validateBuiltinConfig(b.name, b.kind, b.example_config)).toEqual([]);
    }
    const llm = BUILTINS.find((b) => b.name === 'builtin:llm');
    expect(Object.keys((llm?.config_schema.properties ?? {}) as object)).toContain('endpoint_url');
    // every built-in's config keys are snake_case, like job specs
    for (const b of BUILTINS) {
      for (const key of Object.keys((b.config_schema.properties ?? {}) as object)) {
        expect(key, `${b.name} config key ${key}`).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
      }
    }
    const math = BUILTINS.find((b) => b.name === 'builtin:math');
    expect(Object.keys((math?.config_schema.properties ?? {}) as object)).toEqual([
      'extraction_order',
      'float_rounding',
      'cas',
      'strict_variables',
      'allow_set_relation_comparison',
      'timeout_ms',
      'max_response_chars',
      'max_cas_nodes',
    ]);
  });

  it('names unknown plugins and wrong kinds', () => {
    expect(isBuiltin('exact')).toBe(true);
    expect(isBuiltin('builtin:nope')).toBe(false);
    try {
      getBuiltinVerifier('builtin:indicative');
      throw new Error('expected an error');
    } catch (error) {
      expect(error).toBeInstanceOf(BuiltinPluginError);
      expect((error as BuiltinPluginError).code).toBe('unknown_plugin');
      expect((error as Error).message).toContain('the built-in verifiers are builtin:math, builtin:exact');
    }
  });

  it('reports config errors as field paths', () => {
    expect(validateBuiltinConfig('builtin:exact', 'verifier', { extract: 'middle', colour: 1 })).toEqual([
      { path: 'config.extract', message: expect.stringContaining('auto') },
      { path: 'config.colour', message: 'unknown field (check the spelling)' },
    ]);
    const [field] = validateBuiltinConfig('builtin:expression', 'shaping', { expression: 'p / (p + gama)' });
    expect(field.path).toBe('config.expression');
    expect(field.message).toContain('at position 9');
  });

  it('rule-based critics produce the §1.3 templates', async () => {
    expect((await getBuiltinCritic('indicative').critique(wrong)).critique).toBe(
      'The generated solution is incorrect.',
    );
    expect(
      (
        await getBuiltinCritic('indicative').critique({
          ...wrong,
          verification: { ...wrong.verification, correct: true },
        })
      ).critique,
    ).toBe('The generated solution is correct.');
    expect((await getBuiltinCritic('ground-truth').critique({ ...wrong, reference: '$&1' })).critique).toBe(
      'The generated solution is incorrect, the ground truth is $&1.',
    );
    const custom = getBuiltinCritic('ground-truth', { incorrect_text: 'Wrong; expected {reference}.' });
    expect((await custom.critique(wrong)).critique).toBe('Wrong; expected 42.');
  });

  it('shaping: default and custom expressions', () => {
    const shaping = getBuiltinShaping('builtin:expression', {});
    expect(shaping).toMatchObject({ expression: 'p / (p + gamma)', params: { gamma: 0.1 } });
    // the contract's schema supplies the defaults; they must match the expression module's
    expect(shaping.expression).toBe(DEFAULT_SHAPING_EXPRESSION);
    expect(shaping.params).toEqual(DEFAULT_SHAPING_PARAMS);
    const schema = BUILTINS.find((b) => b.name === 'builtin:expression')?.config_schema;
    expect(Object.keys((schema?.properties ?? {}) as object)).toEqual(['expression', 'params']);
    expect(validateBuiltinConfig('builtin:expression', 'shaping', { expression: 'p', colour: 1 })).toEqual([
      { path: 'config.colour', message: 'unknown field (check the spelling)' },
    ]);
    expect(getBuiltinShaping('expression', { expression: 'p ^ a', params: { a: 2 } }).ast.type).toBe(
      'binary',
    );
    expect(() => getBuiltinShaping('expression', { expression: 'log(p - 1)', params: {} })).toThrow(
      /not finite/,
    );
  });
});
