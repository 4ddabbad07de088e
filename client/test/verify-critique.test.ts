// `cgrpo verify` and `cgrpo critique` as users run them: the real CLI in a child process (Node 22
// from node_modules/.bin), real files, and for builtin:llm a chat-completions server on loopback.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChatServer, startChatServer } from '../../plugins/builtin/critics/chat-server';

const root = path.resolve(import.meta.dirname, '../..');
const node = path.join(root, 'node_modules/.bin/node');
const bin = path.join(root, 'client/bin/cgrpo.mjs');
const work = mkdtempSync(path.join(tmpdir(), 'cgrpo-verify-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function file(name: string, lines: (object | string)[]): string {
  const p = path.join(work, name);
  writeFileSync(p, `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`);
  return p;
}

function cgrpo(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string[]; err: string }> {
  return new Promise((resolve) => {
    execFile(
      node,
      ['--no-node-snapshot', bin, ...args],
      { env: { ...process.env, ...env }, cwd: root },
      (error, stdout, stderr) => {
        resolve({
          code: error ? ((error as { code?: number }).code ?? 1) : 0,
          out: stdout.split('\n').filter((l) => l !== ''),
          err: stderr.trim(),
        });
      },
    );
  });
}

describe('cgrpo verify', () => {
  it('writes one result line per input line, in order', async () => {
    const input = file('math.jsonl', [
      { response: 'Thus the answer is \\boxed{\\frac{1}{2}}.', reference: '0.5' },
      '',
      { response: 'I get \\boxed{3}', reference: '4' },
      { response: '\\boxed{x^2+2x+1}', reference: '(x+1)^2', question: 'Expand.' },
    ]);
    const { code, out, err } = await cgrpo(['verify', '--verifier', 'builtin:math', '--input', input]);
    expect(err).toBe('');
    expect(code).toBe(0);
    const results = out.map((l) => JSON.parse(l));
    expect(results.map((r) => [r.score, r.correct])).toEqual([
      [1, true],
      [0, false],
      [1, true],
    ]);
    expect(results[0].details.extracted).toBe('\\frac{1}{2}');
  });

  it('names the line of a bad input and prints no results', async () => {
    const input = file('bad.jsonl', [{ response: 'a', reference: 'a' }, '', { response: 'b' }]);
    const { code, out, err } = await cgrpo(['verify', '--verifier', 'builtin:exact', '--input', input]);
    expect(code).toBe(1);
    expect(out).toEqual([]);
    expect(err).toMatch(/^cgrpo verify: line 3: reference: must be a string/);
  });

  it('rejects bad config naming the field, and non-builtin verifiers with a pointer', async () => {
    const input = file('one.jsonl', [{ response: 'a', reference: 'a' }]);
    const bad = await cgrpo([
      'verify',
      '--verifier',
      'builtin:regex',
      '--config',
      '{"pattern":"("}',
      '--input',
      input,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('config.pattern: not a valid regular expression');
    const other = await cgrpo(['verify', '--verifier', 'acme/grader@1.0.0', '--input', input]);
    expect(other.code).toBe(2);
    expect(other.err).toContain('cgrpo plugins test');
  });
});

describe('cgrpo critique', () => {
  let server: ChatServer;
  beforeAll(async () => {
    server = await startChatServer({ content: 'Step 1 multiplies wrongly.\nConclusion: incorrect [END]' });
  });
  afterAll(() => server.close());

  it('computes the verification with --verifier or takes it from the line', async () => {
    const input = file('gt.jsonl', [
      { question: '6*7?', response: '\\boxed{42}', reference: '42' },
      {
        question: '6*7?',
        response: 'maybe 41',
        reference: '42',
        verification: { score: 0, correct: false },
      },
    ]);
    const { code, out, err } = await cgrpo([
      'critique',
      '--critic',
      'builtin:ground-truth',
      '--verifier',
      'builtin:exact',
      '--input',
      input,
    ]);
    expect(err).toBe('');
    expect(code).toBe(0);
    const lines = out.map((l) => JSON.parse(l));
    expect(lines.map((l) => l.critique)).toEqual([
      'The generated solution is correct, the ground truth is 42.',
      'The generated solution is incorrect, the ground truth is 42.',
    ]);
    expect(lines[0].verification).toMatchObject({ score: 1, correct: true });
  });

  it('builtin:llm against an OpenAI-compatible endpoint, token from the named variable', async () => {
    const input = file('llm.jsonl', [
      { question: '6*7?', response: '6*7 = 48', reference: '42', verification: { score: 0, correct: false } },
      { question: '2+2?', response: '5', reference: '4', verification: { score: 0, correct: false } },
    ]);
    const config = JSON.stringify({
      endpoint_url: server.url,
      model: 'critic',
      token_env: 'MY_CRITIC_TOKEN',
    });
    const { code, out, err } = await cgrpo(
      ['critique', '--critic', 'builtin:llm', '--config', config, '--input', input],
      {
        MY_CRITIC_TOKEN: 'tok-123',
      },
    );
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out.map((l) => JSON.parse(l).critique)).toEqual([
      'Step 1 multiplies wrongly.\nConclusion: incorrect',
      'Step 1 multiplies wrongly.\nConclusion: incorrect',
    ]);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[0].headers.authorization).toBe('Bearer tok-123');
    expect(server.requests.map((r) => r.body.messages.at(-1)?.content).join('\n')).toContain('6*7 = 48');
  });

  it('a line without verification and no --verifier names the line', async () => {
    const input = file('noverif.jsonl', [
      { question: 'q', response: 'r', reference: 'x', verification: { score: 1, correct: true } },
      { question: 'q', response: 'r', reference: 'x' },
    ]);
    const { code, out, err } = await cgrpo(['critique', '--critic', 'builtin:indicative', '--input', input]);
    expect(code).toBe(1);
    expect(out).toEqual([]);
    expect(err).toBe('cgrpo critique: line 2: verification: missing; add it to the line or pass --verifier');
  });
});
