// builtin:llm over real HTTP on loopback: a node:http server speaking the chat-completions
// protocol stands in for the remote LLM (the public internet is not reachable from tests).
import type { CriticInput } from '@cgrpo/contract';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BuiltinPluginError, getBuiltinCritic } from '../index';
import { type ChatServer, closedPort, startChatServer } from './chat-server';

const wrong: CriticInput = {
  question: 'What is 6 * 7?',
  response: '6 * 7 = 48, so the answer is \\boxed{48}.',
  reference: '42',
  verification: { score: 0, correct: false, details: {} },
};
const right: CriticInput = {
  ...wrong,
  response: '6 * 7 = 42. \\boxed{42}',
  verification: { score: 1, correct: true, details: {} },
};

const CRITIQUE = 'Step 1: 6 * 7 is 42, not 48; the multiplication is wrong.\nConclusion: incorrect [END]';

let server: ChatServer;
beforeAll(async () => {
  server = await startChatServer();
});
afterAll(() => server.close());
beforeEach(() => {
  server.requests.length = 0;
  server.script.length = 0;
  server.maxInFlight = 0;
  server.fallback = { content: CRITIQUE };
});

const critic = (config: Record<string, unknown> = {}, env: Record<string, string> = {}) =>
  getBuiltinCritic('builtin:llm', { endpoint_url: `${server.url}/v1`, backoff_ms: 5, ...config }, { env });

async function rejection(promise: Promise<unknown>): Promise<BuiltinPluginError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof BuiltinPluginError) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

describe('builtin:llm', () => {
  it('asks the endpoint with the paper sampling settings and returns the cleaned critique', async () => {
    const outcome = await critic(
      { token_env: 'CRITIC_TOKEN', model: 'my-critic' },
      { CRITIC_TOKEN: 'secret-1' },
    ).critique(wrong);
    expect(outcome.critique).toBe(
      'Step 1: 6 * 7 is 42, not 48; the multiplication is wrong.\nConclusion: incorrect',
    );
    expect(outcome.details).toMatchObject({ source: 'llm', attempts: 1, conclusion: 'incorrect' });
    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request.path).toBe('/v1/chat/completions');
    expect(request.headers.authorization).toBe('Bearer secret-1');
    expect(request.body).toMatchObject({
      model: 'my-critic',
      temperature: 0.7,
      top_p: 0.75,
      max_tokens: 4096,
    });
    const prompt = request.body.messages.at(-1)?.content ?? '';
    expect(prompt).toContain('What is 6 * 7?');
    expect(prompt).toContain('\\boxed{48}');
    expect(prompt).toContain('Conclusion: correct [END]');
    expect(prompt).not.toContain('Reference answer');
  });

  it('shows the reference only when show_reference is set, and uses a custom template and system prompt', async () => {
    await critic({ show_reference: true }).critique(wrong);
    expect(server.requests[0].body.messages.at(-1)?.content).toContain('Reference answer:\n42');
    await critic({
      prompt_template: 'Q={question} A={response} R={reference}',
      system_prompt: 'Be terse.',
    }).critique(wrong);
    expect(server.requests[1].body.messages).toEqual([
      { role: 'system', content: 'Be terse.' },
      { role: 'user', content: `Q=${wrong.question} A=${wrong.response} R=42` },
    ]);
  });

  it('retries 500s with backoff, then succeeds', async () => {
    server.script.push({ status: 500 }, { status: 503 });
    const outcome = await critic().critique(wrong);
    expect(outcome.details).toMatchObject({ source: 'llm' });
    expect(server.requests).toHaveLength(3);
  });

  it('gives up after max_retries with a clear HTTP error', async () => {
    server.fallback = { status: 500 };
    const error = await rejection(critic({ max_retries: 2 }).critique(wrong));
    expect(error.code).toBe('critic_http_error');
    expect(error.message).toContain('HTTP 500');
    expect(error.message).toContain('3 attempts');
    expect(server.requests).toHaveLength(3);
  });

  it('does not retry a 401', async () => {
    server.fallback = { status: 401, body: { error: 'bad token' } };
    const error = await rejection(critic().critique(wrong));
    expect(error.code).toBe('critic_http_error');
    expect(error.message).toMatch(/HTTP 401.*bad token/);
    expect(server.requests).toHaveLength(1);
  });

  it('times out slow responses and retries them', async () => {
    server.fallback = { content: CRITIQUE, delayMs: 2_000 };
    const started = Date.now();
    const error = await rejection(critic({ timeout_ms: 150, max_retries: 1 }).critique(wrong));
    expect(error.code).toBe('critic_timeout');
    expect(error.message).toContain('timeout_ms = 150');
    expect(server.requests).toHaveLength(2);
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('a slow first answer then a fast one succeeds', async () => {
    server.script.push({ content: CRITIQUE, delayMs: 2_000 });
    const outcome = await critic({ timeout_ms: 150 }).critique(wrong);
    expect(outcome.details).toMatchObject({ source: 'llm' });
    expect(server.requests).toHaveLength(2);
  });

  it('retries a critique whose conclusion disagrees with the verifier', async () => {
    server.script.push({ content: 'Looks fine.\nConclusion: correct [END]' });
    const outcome = await critic().critique(wrong);
    expect(outcome.details).toMatchObject({ source: 'llm', attempts: 2, conclusion: 'incorrect' });
    expect(server.requests).toHaveLength(2);
  });

  it('falls back to the ground-truth template after 3 wrong conclusions (§8.7)', async () => {
    server.fallback = { content: 'All steps are right.\nConclusion: correct [END]' };
    const outcome = await critic().critique(wrong);
    expect(outcome.critique).toBe('The generated solution is incorrect, the ground truth is 42.');
    expect(outcome.details).toMatchObject({
      source: 'fallback',
      attempts: 3,
      conclusions: ['correct', 'correct', 'correct'],
    });
    expect(server.requests).toHaveLength(3);
  });

  it('a critique without a conclusion line counts as a disagreement; label_check=false accepts it', async () => {
    server.fallback = { content: 'Hmm.' };
    expect((await critic({ label_attempts: 2 }).critique(wrong)).details).toMatchObject({
      source: 'fallback',
      attempts: 2,
    });
    server.requests.length = 0;
    expect(await critic({ label_check: false }).critique(wrong)).toMatchObject({
      critique: 'Hmm.',
      details: { source: 'llm' },
    });
    expect(server.requests).toHaveLength(1);
  });

  it('llm_for=incorrect_only gives correct responses the ground-truth template without a call', async () => {
    const outcome = await critic({ llm_for: 'incorrect_only' }).critique(right);
    expect(outcome.critique).toBe('The generated solution is correct, the ground truth is 42.');
    expect(server.requests).toHaveLength(0);
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    server.fallback = { content: CRITIQUE, delayMs: 60 };
    const c = critic({ concurrency: 2 });
    const outcomes = await Promise.all(Array.from({ length: 6 }, () => c.critique(wrong)));
    expect(outcomes.every((o) => o.details.source === 'llm')).toBe(true);
    expect(server.requests).toHaveLength(6);
    expect(server.maxInFlight).toBe(2);
  });

  it('an unreachable endpoint fails with a clear error after the retries', async () => {
    const port = await closedPort();
    const c = getBuiltinCritic('builtin:llm', {
      endpoint_url: `http://127.0.0.1:${port}`,
      backoff_ms: 5,
      max_retries: 2,
    });
    const error = await rejection(c.critique(wrong));
    expect(error.code).toBe('critic_unreachable');
    expect(error.message).toContain(`http://127.0.0.1:${port}`);
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.message).toContain('3 attempts');
    expect(error.message).toContain('check config.endpoint_url');
  });

  it('an aborted call stops at once', async () => {
    server.fallback = { hang: true };
    const controller = new AbortController();
    const pending = critic().critique(wrong, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('job cancelled')), 50);
    await expect(pending).rejects.toThrow('job cancelled');
  });

  it('rejects bad config naming the field, and a missing token variable', () => {
    expect(() => getBuiltinCritic('builtin:llm', {})).toThrow(/config\.endpoint_url: give endpoint_url/);
    expect(() => getBuiltinCritic('builtin:llm', { endpoint_url: 'ftp://x' })).toThrow(
      /config\.endpoint_url/,
    );
    expect(() => getBuiltinCritic('builtin:llm', { endpoint_url: server.url, temperature: 5 })).toThrow(
      /config\.temperature/,
    );
    expect(() =>
      getBuiltinCritic('builtin:llm', { endpoint_url: server.url, prompt_template: 'no fields' }),
    ).toThrow(/config\.prompt_template: must contain the placeholder \{question\}/);
    expect(() =>
      getBuiltinCritic('builtin:llm', { endpoint_url: server.url, token_env: 'NOPE_NOT_SET' }, { env: {} }),
    ).toThrow(/NOPE_NOT_SET/);
  });
});

describe('builtin:self', () => {
  it('critiques through the runner-provided generate() with the same label check', async () => {
    const calls: { messages: unknown; temperature: number }[] = [];
    const replies = ['Conclusion: correct [END]', 'Step 2 is wrong. Conclusion: incorrect [END]'];
    const self = getBuiltinCritic(
      'builtin:self',
      { max_tokens: 256 },
      {
        generate: async (messages, options) => {
          calls.push({ messages, temperature: options.temperature });
          expect(options.max_tokens).toBe(256);
          return replies[calls.length - 1];
        },
      },
    );
    const outcome = await self.critique(wrong);
    expect(outcome.critique).toBe('Step 2 is wrong. Conclusion: incorrect');
    expect(calls).toHaveLength(2);
    expect(calls[0].temperature).toBe(0.7);
  });

  it('needs a generator', () => {
    expect(() => getBuiltinCritic('builtin:self', {})).toThrow(/self-critique needs the policy model/);
  });
});
