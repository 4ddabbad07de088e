// The CLI's pure parts with hand-checked numbers: the follow line (ETA), metrics CSV, the model
// folder tar (read back by the system's tar), the 0600 config file, YAML/JSON specs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLogin, resolveLogin, saveLogin } from '../src/commands/common';
import { FOLLOW_EXIT, followLine, metricsCsv, readSpec } from '../src/commands/jobs';
import { tarFolder } from '../src/commands/resources';

describe('cgrpo CLI parts', () => {
  it('follow line: ETA is the steps left times the last step time', () => {
    expect(followLine({ step: 1, total: 4, reward: 0.25, pass: 0.5, evalPass: null, stepSeconds: 2 })).toBe(
      'step 1/4 | reward 0.25 | pass@1 0.5 | ETA 6s',
    );
    expect(followLine({ step: 4, total: 4, reward: 1 / 3, pass: null, evalPass: 0.75, stepSeconds: 2 })).toBe(
      'step 4/4 | reward 0.333 | pass@1 - (eval 0.75) | ETA 0s',
    );
    expect(FOLLOW_EXIT).toEqual({ succeeded: 0, failed: 1, cancelled: 3 });
  });

  it('metrics CSV: one row per step, every metric a column, missing values empty', () => {
    const csv = metricsCsv([
      { step: 1, attempt: 1, values: { 'reward/mean': 0.5, loss: 1.25 }, time: '' },
      { step: 2, attempt: 2, values: { 'reward/mean': 0.75, 'a,b': 3 }, time: '' },
    ]);
    expect(csv).toBe('step,attempt,"a,b",loss,reward/mean\n1,1,,1.25,0.5\n2,2,3,,0.75\n');
  });

  it('a model folder becomes a tar the system tar reads back byte for byte', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-model-'));
    mkdirSync(join(dir, 'sub'));
    const weights = Buffer.alloc(1300, 7);
    writeFileSync(join(dir, 'config.json'), '{"model_type":"llama"}');
    writeFileSync(join(dir, 'sub', 'model.safetensors'), weights);
    const tar = tarFolder(dir);
    expect(tar.length).toBe(512 + 512 + 512 + 1536 + 1024);
    const out = mkdtempSync(join(tmpdir(), 'cgrpo-untar-'));
    writeFileSync(join(out, 'm.tar'), tar);
    execFileSync('tar', ['xf', 'm.tar'], { cwd: out });
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe('{"model_type":"llama"}');
    expect(readFileSync(join(out, 'sub', 'model.safetensors')).equals(weights)).toBe(true);
  });

  it('the login file is 0600, and env vars beat it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-conf-'));
    const env = { CGRPO_CONFIG: join(dir, 'c', 'config.json') };
    saveLogin({ api_url: 'http://a', api_key: 'cgrpo_sk_a' }, env);
    expect(statSync(env.CGRPO_CONFIG).mode & 0o777).toBe(0o600);
    expect(readLogin(env)).toEqual({ api_url: 'http://a', api_key: 'cgrpo_sk_a' });
    expect(resolveLogin({}, { ...env, CGRPO_API_KEY: 'cgrpo_sk_env' })).toEqual({
      api_url: 'http://a',
      api_key: 'cgrpo_sk_env',
    });
    expect(resolveLogin({ key: 'cgrpo_sk_flag' }, { ...env, CGRPO_API_KEY: 'cgrpo_sk_env' }).api_key).toBe(
      'cgrpo_sk_flag',
    );
    expect(() => resolveLogin({}, { CGRPO_CONFIG: join(dir, 'none.json') })).toThrow(/cgrpo login/);
  });

  it('specs load from YAML and JSON; a bad file says what is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cgrpo-spec-'));
    writeFileSync(join(dir, 'a.yaml'), 'name: a\nhyperparameters:\n  group_size: 4\n');
    writeFileSync(join(dir, 'b.json'), '{"name":"b"}');
    writeFileSync(join(dir, 'c.json'), '{"name":');
    expect(readSpec(join(dir, 'a.yaml'))).toEqual({ name: 'a', hyperparameters: { group_size: 4 } });
    expect(readSpec(join(dir, 'b.json'))).toEqual({ name: 'b' });
    expect(() => readSpec(join(dir, 'c.json'))).toThrow(/not valid JSON/);
    expect(() => readSpec(join(dir, 'missing.json'))).toThrow(/cannot read/);
  });
});
