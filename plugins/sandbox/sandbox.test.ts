// Hostile and well-behaved plugins in the real sandbox, on both engines (QuickJS in WASM and V8
// isolates through isolated-vm). Every hostile case must end as a
// PluginError (code plugin_error, naming plugin, version and cause) with this process alive and the
// same SandboxedPlugin still able to serve the next call.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PluginManifest } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  inferenceChat,
  PluginError,
  type PluginLogEntry,
  SandboxedPlugin,
  type SandboxOptions,
} from './index';
import { bundleSource, manifestFor } from './test-support';

const VERIFIER_INPUT = { question: 'What is 2+2?', response: '{"answer": 4}', reference: '4', metadata: {} };
const CRITIC_INPUT = {
  question: 'What is 2+2?',
  response: 'It is 5.',
  reference: '4',
  verification: { score: 0, correct: false, details: {} },
};

/** A plugin object written by hand (no SDK, no zod): tiny bundles keep the hostile tests fast. */
function raw(kind: 'verifier' | 'critic', body: string, prelude = ''): string {
  return `${prelude}
export default {
  __cgrpo_plugin: 1, kind: '${kind}', sdk_version: '0.1.0', shaping: null,
  parseConfig: (c) => ({ ok: true, value: c }),
  configJsonSchema: () => ({ type: 'object' }),
  run(input, ctx) { ${body} },
};`;
}

const GOOD_VERIFIER = `const ok = JSON.parse(input.response).answer === Number(input.reference);
  return { score: ok ? 1 : 0, correct: ok, details: {} };`;

async function load(
  bundle: string,
  kind: PluginManifest['kind'],
  options: SandboxOptions = {},
  manifest: Partial<PluginManifest> = {},
) {
  return SandboxedPlugin.load(
    bundle,
    manifestFor(bundle, { kind, limits: { timeout_ms: 500, memory_mb: 32 }, ...manifest }),
    options,
  );
}

/** One call that must fail; returns its PluginError after checking the common shape. */
async function failing(plugin: SandboxedPlugin, input: unknown = VERIFIER_INPUT) {
  const [outcome] =
    plugin.manifest.kind === 'critic'
      ? await plugin.critiqueBatch([input as typeof CRITIC_INPUT])
      : await plugin.verifyBatch([input as typeof VERIFIER_INPUT]);
  expect(outcome.ok).toBe(false);
  if (outcome.ok) throw new Error('unreachable');
  expect(outcome.error).toBeInstanceOf(PluginError);
  expect(outcome.error.code).toBe('plugin_error');
  expect(outcome.error.message).toContain('acme/test-plugin@1.0.0');
  return outcome.error;
}

/** The sandbox (a fresh instance if the old one died) still answers a normal call afterwards. */
async function stillServes(plugin: SandboxedPlugin, body: string, kind: 'verifier' | 'critic' = 'verifier') {
  const healthy = await load(raw(kind, body), kind);
  const [outcome] = await healthy.verifyBatch([VERIFIER_INPUT]);
  expect(outcome).toEqual({ ok: true, value: { score: 1, correct: true, details: {} } });
  healthy.dispose();
  plugin.dispose();
}

/** Every test below runs once per engine (the engine comes from CGRPO_SANDBOX_ENGINE, set per block). */
function suite(engine: 'quickjs' | 'isolated-vm'): void {
  it('loads plugins into the requested engine', async () => {
    const plugin = await load(raw('verifier', GOOD_VERIFIER), 'verifier');
    expect(plugin.engine).toBe(engine);
    plugin.dispose();
  });

  describe('hostile plugins fail cleanly', () => {
    it('an infinite loop times out, and the same plugin serves the next call in a fresh instance', async () => {
      const plugin = await load(
        raw('verifier', `if (input.response === 'loop') { for (;;) {} } ${GOOD_VERIFIER}`),
        'verifier',
      );
      const started = Date.now();
      const error = await failing(plugin, { ...VERIFIER_INPUT, response: 'loop' });
      expect(error.reason).toBe('timeout');
      expect(error.message).toMatch(/ran past the 500 ms limit/);
      expect(Date.now() - started).toBeLessThan(10_000);
      const [after] = await plugin.verifyBatch([VERIFIER_INPUT]);
      expect(after).toEqual({ ok: true, value: { score: 1, correct: true, details: {} } });
      expect(plugin.instancesCreated).toBe(2);
      plugin.dispose();
    });

    it('a loop inside a batch fails only that call; the others are answered', async () => {
      const plugin = await load(
        raw('verifier', `if (input.response === 'loop') { for (;;) {} } ${GOOD_VERIFIER}`),
        'verifier',
      );
      const outcomes = await plugin.verifyBatch([
        VERIFIER_INPUT,
        { ...VERIFIER_INPUT, response: 'loop' },
        VERIFIER_INPUT,
        VERIFIER_INPUT,
      ]);
      expect(outcomes.map((o) => o.ok)).toEqual([true, false, true, true]);
      if (!outcomes[1].ok) expect(outcomes[1].error.reason).toBe('timeout');
      plugin.dispose();
    });

    it('deep recursion fails with `stack`', async () => {
      const plugin = await load(raw('verifier', 'const f = (n) => f(n + 1) + 1; return f(0);'), 'verifier');
      const error = await failing(plugin);
      expect(error.reason).toBe('stack');
      await stillServes(plugin, GOOD_VERIFIER);
    });

    it('a 2 GB allocation, a 1.5 GB buffer and unbounded growth hit the memory limit', async () => {
      for (const body of [
        'new Uint8Array(2 * 1024 * 1024 * 1024); return 1;',
        'new ArrayBuffer(1.5 * 1024 * 1024 * 1024); return 1;',
        'const a = []; for (;;) a.push(new Array(10000).fill(a.length));',
      ]) {
        const plugin = await load(
          raw('verifier', body),
          'verifier',
          {},
          { limits: { timeout_ms: 5000, memory_mb: 32 } },
        );
        const error = await failing(plugin);
        expect(error.reason, body).toBe('memory');
        expect(error.message).toMatch(/32 MB memory limit/);
        plugin.dispose();
      }
      expect(process.memoryUsage().rss).toBeLessThan(2 * 1024 ** 3);
    });

    it.each([
      ['require', "require('fs'); return 1;", /'?require'? is not defined/],
      ['process', 'return process.env.HOME;', /'?process'? is not defined/],
      ['fetch', "fetch('http://127.0.0.1/'); return 1;", /'?fetch'? is not defined/],
      ['setTimeout', 'setTimeout(() => {}, 1); return 1;', /'?setTimeout'? is not defined/],
      [
        'dynamic import',
        "return import('node:fs').then(() => ({ score: 1, correct: true }));",
        /node:fs|module|not supported/i,
      ],
    ])('%s does not exist in the sandbox', async (_name, body, message) => {
      const plugin = await load(raw('verifier', body), 'verifier');
      const error = await failing(plugin);
      expect(error.reason).toBe('threw');
      expect(error.detail).toMatch(message);
      plugin.dispose();
    });

    it('a static import of a Node module fails at load, naming the plugin', async () => {
      const bundle = raw('verifier', GOOD_VERIFIER, "import fs from 'node:fs';");
      const error = await load(bundle, 'verifier').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PluginError);
      expect((error as PluginError).reason).toBe('load');
      expect((error as PluginError).message).toMatch(
        /^plugin acme\/test-plugin@1\.0\.0: load: the bundle did not load/,
      );
    });

    it('globalThis and Function-constructor tricks only reach the sandbox global', async () => {
      const plugin = await load(
        raw(
          'verifier',
          `const viaFunction = Function('return this')();
         const viaConstructor = (() => {}).constructor('return globalThis')();
         const viaArray = [].constructor.constructor('return typeof process + typeof require + typeof Buffer')();
         const names = Object.getOwnPropertyNames(viaFunction).concat(Object.getOwnPropertyNames(viaConstructor));
         return { score: 1, correct: true, details: { names, viaArray, same: viaFunction === globalThis } };`,
        ),
        'verifier',
      );
      const [outcome] = await plugin.verifyBatch([VERIFIER_INPUT]);
      if (!outcome.ok) throw outcome.error;
      const { names, viaArray, same } = outcome.value.details as {
        names: string[];
        viaArray: string;
        same: boolean;
      };
      expect(same).toBe(true);
      expect(viaArray).toBe('undefinedundefinedundefined');
      for (const hostThing of [
        'process',
        'require',
        'Buffer',
        'fetch',
        'setTimeout',
        'module',
        'global',
        '__cgrpo_host',
      ]) {
        expect(names).not.toContain(hostThing);
      }
      plugin.dispose();
    });

    it('prototype pollution stays inside the sandbox and does not break the harness', async () => {
      const plugin = await load(
        raw(
          'verifier',
          `Object.prototype.polluted = 'yes';
         Array.prototype.map = () => { throw new Error('map hijacked'); };
         JSON.stringify = () => '{"score": 1, "correct": true, "details": {"forged": true}}';
         JSON.parse = () => ({ forged: true });
         Promise.resolve = () => { throw new Error('hijacked'); };
         input.__proto__.fromInput = 1;
         return { score: 0.5, correct: false, details: { polluted: ({}).polluted } };`,
        ),
        'verifier',
      );
      const outcomes = await plugin.verifyBatch([VERIFIER_INPUT, VERIFIER_INPUT]);
      expect(outcomes).toEqual([
        { ok: true, value: { score: 0.5, correct: false, details: { polluted: 'yes' } } },
        { ok: true, value: { score: 0.5, correct: false, details: { polluted: 'yes' } } },
      ]);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(({} as Record<string, unknown>).fromInput).toBeUndefined();
      expect(JSON.parse('{"a":1}')).toEqual({ a: 1 });
      expect([1, 2].map((x) => x * 2)).toEqual([2, 4]);
      plugin.dispose();
    });

    it.each([
      ['a string', "return 'yes';", /returned string that is not a valid verifier result/],
      ['null', 'return null;', /returned null/],
      ['a score above 1', 'return { score: 2, correct: true };', /score: Too big/],
      ['no correct flag', 'return { score: 1 };', /correct: Invalid input: expected boolean/],
      ['undefined', 'return undefined;', /returned null/],
      [
        'a cyclic object',
        'const o = { score: 1, correct: true }; o.details = { o }; return o;',
        /cyclic|circular/i,
      ],
    ])('returning %s fails with invalid_result or threw', async (_name, body, message) => {
      const plugin = await load(raw('verifier', body), 'verifier');
      const error = await failing(plugin);
      expect(['invalid_result', 'threw']).toContain(error.reason);
      expect(error.message).toMatch(message);
      plugin.dispose();
    });

    it.each([
      ['NaN', 'NaN'],
      ['Infinity', 'Infinity'],
      ['0/0', 'NaN'],
    ])('a %s score is rejected, never passed on', async (expression, shown) => {
      const plugin = await load(
        raw('verifier', `return { score: ${expression}, correct: true };`),
        'verifier',
      );
      const error = await failing(plugin);
      expect(error.reason).toBe('invalid_result');
      expect(error.detail).toBe(`score: must be a finite number, got ${shown}`);
      expect(error.fields).toEqual([{ path: 'score', message: `must be a finite number, got ${shown}` }]);
      plugin.dispose();
    });

    it.each([
      ['a number', 'throw 42;', 'threw a non-Error value: 42'],
      ['a string', "throw 'nope';", 'threw a non-Error value: "nope"'],
      ['an object', 'throw { why: 1 };', 'threw a non-Error value: {"why":1}'],
      ['undefined', 'throw undefined;', 'threw a non-Error value: undefined'],
      ['a rejected non-Error', 'return Promise.reject(7);', 'threw a non-Error value: 7'],
      ['an Error', "throw new TypeError('bad input');", 'TypeError: bad input'],
    ])('throwing %s is reported as `threw` with what was thrown', async (_name, body, shown) => {
      const plugin = await load(raw('verifier', body), 'verifier');
      const error = await failing(plugin);
      expect(error.reason).toBe('threw');
      expect(error.detail).toBe(`call 0 threw ${shown}`);
      plugin.dispose();
    });

    it('a huge critique is truncated with a note', async () => {
      const plugin = await load(raw('critic', "return { critique: 'x'.repeat(5_000_000) };"), 'critic', {
        limits: { maxCritiqueChars: 1000 },
      });
      const [outcome] = await plugin.critiqueBatch([CRITIC_INPUT]);
      if (!outcome.ok) throw outcome.error;
      expect(outcome.value.critique.startsWith('x'.repeat(1000))).toBe(true);
      expect(outcome.value.critique).toContain('[cgrpo: critique truncated from 5000000 to 1000 characters]');
      expect(outcome.value.critique.length).toBeLessThan(1100);
      plugin.dispose();
    });

    it('a promise that can never settle fails with never_settled instead of hanging', async () => {
      const plugin = await load(raw('verifier', 'return new Promise(() => {});'), 'verifier');
      const error = await failing(plugin);
      expect(error.reason).toBe('never_settled');
      plugin.dispose();
    });

    it('a bundle that does not match its manifest sha256 is refused', async () => {
      const bundle = raw('verifier', GOOD_VERIFIER);
      const manifest = { ...manifestFor(bundle, { kind: 'verifier' }), sha256: 'a'.repeat(64) };
      const error = await SandboxedPlugin.load(bundle, manifest).catch((e: unknown) => e);
      expect((error as PluginError).reason).toBe('integrity');
    });

    it('a default export that is not a plugin, or of another kind than the manifest, is refused', async () => {
      const notPlugin = 'export default { run() { return 1 } };';
      const e1 = await load(notPlugin, 'verifier').catch((e: unknown) => e);
      expect((e1 as PluginError).reason).toBe('load');
      expect((e1 as PluginError).message).toMatch(/default export is not a plugin/);
      const e2 = await load(raw('critic', 'return { critique: "" };'), 'verifier').catch((e: unknown) => e);
      expect((e2 as PluginError).reason).toBe('manifest');
      expect((e2 as PluginError).message).toMatch(/the bundle is a critic but the manifest says verifier/);
    });

    it('an infinite loop at module top level times out at load', async () => {
      const error = await load(`for (;;) {}\n${raw('verifier', GOOD_VERIFIER)}`, 'verifier').catch(
        (e: unknown) => e,
      );
      expect((error as PluginError).reason).toBe('timeout');
    });
  });

  // ---- capabilities and llm.chat over real loopback HTTP ------------------------------------------

  /** An OpenAI-compatible chat server on loopback; answers with the rubric line it was asked about. */
  let server: Server;
  let endpointUrl: string;
  const seen: {
    authorization?: string;
    body: { messages: { role: string; content: string }[]; max_tokens?: number };
  }[] = [];

  async function readBody(request: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  beforeAll(async () => {
    server = createServer(async (request, response) => {
      const body = JSON.parse(await readBody(request));
      seen.push({ authorization: request.headers.authorization, body });
      if (request.url !== '/v1/chat/completions') {
        response.writeHead(404).end();
        return;
      }
      const last = body.messages[body.messages.length - 1].content as string;
      if (last.includes('slow')) await new Promise((r) => setTimeout(r, 2000));
      response.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: 'x',
          object: 'chat.completion',
          created: 0,
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: `critique of: ${last}` },
              finish_reason: 'stop',
            },
          ],
          usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpointUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const LLM_CRITIC = `import { defineCritic, z } from '@cgrpo/plugins/sdk';
export default defineCritic({
  config: z.object({ rubric: z.string().min(1) }),
  async critique(input, ctx) {
    ctx.log('asking about', input.response);
    const answer = await ctx.llm.chat(
      [{ role: 'system', content: ctx.config.rubric }, { role: 'user', content: input.response }],
      { max_tokens: 64 },
    );
    return { critique: answer.content };
  },
});`;

  describe('capabilities', () => {
    it('llm.chat requested but not granted by the job: load fails with a clear capability error', async () => {
      const bundle = await bundleSource(LLM_CRITIC);
      const error = await load(bundle, 'critic', { grants: [] }, { capabilities: ['llm.chat'] }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PluginError);
      expect((error as PluginError).reason).toBe('capability');
      expect((error as PluginError).message).toMatch(
        /requests the 'llm.chat' capability, which the job does not grant/,
      );
    });

    it('llm.chat not requested in the manifest: the call fails with `capability`', async () => {
      const bundle = await bundleSource(LLM_CRITIC);
      const plugin = await load(bundle, 'critic', {
        grants: ['llm.chat'],
        llm: inferenceChat({ endpointUrl }),
      });
      await plugin.configure({ rubric: 'Be strict.' });
      const error = await failing(plugin, CRITIC_INPUT);
      expect(error.reason).toBe('capability');
      expect(error.detail).toMatch(/needs the 'llm.chat' capability/);
      plugin.dispose();
    });

    it('granted: ctx.llm.chat reaches a loopback OpenAI-compatible server; the token never enters the sandbox', async () => {
      const bundle = await bundleSource(LLM_CRITIC);
      const logs: PluginLogEntry[] = [];
      const plugin = await load(
        bundle,
        'critic',
        {
          grants: ['llm.chat'],
          llm: inferenceChat({ endpointUrl, accessToken: 'secret-token-123', maxTokens: 32 }),
          onLog: (entry) => logs.push(entry),
        },
        { capabilities: ['llm.chat'], limits: { timeout_ms: 5000, memory_mb: 64 } },
      );
      await plugin.configure({ rubric: 'Be strict.' });
      seen.length = 0;
      const outcomes = await plugin.critiqueBatch([CRITIC_INPUT, { ...CRITIC_INPUT, response: 'It is 4.' }]);
      expect(outcomes).toEqual([
        { ok: true, value: { critique: 'critique of: It is 5.' } },
        { ok: true, value: { critique: 'critique of: It is 4.' } },
      ]);
      expect(seen).toHaveLength(2);
      expect(seen[0].authorization).toBe('Bearer secret-token-123');
      expect(seen[0].body.messages[0]).toEqual({ role: 'system', content: 'Be strict.' });
      expect(seen[0].body.max_tokens).toBe(32);
      expect(logs.map((l) => l.message)).toEqual(['asking about It is 5.', 'asking about It is 4.']);
      expect(logs[0]).toMatchObject({ plugin: 'acme/test-plugin', version: '1.0.0', call: 0, level: 'info' });
      plugin.dispose();
    });

    it('an llm.chat answer slower than the call limit fails the call with `llm`', async () => {
      const bundle = await bundleSource(LLM_CRITIC);
      const plugin = await load(
        bundle,
        'critic',
        { grants: ['llm.chat'], llm: inferenceChat({ endpointUrl }) },
        { capabilities: ['llm.chat'], limits: { timeout_ms: 300, memory_mb: 64 } },
      );
      await plugin.configure({ rubric: 'r' });
      const error = await failing(plugin, { ...CRITIC_INPUT, response: 'slow' });
      expect(error.reason).toBe('llm');
      expect(error.detail).toMatch(/no answer within the call's 300 ms/);
      plugin.dispose();
    });

    it("a config that fails the plugin's zod schema names each field", async () => {
      const bundle = await bundleSource(LLM_CRITIC);
      const plugin = await load(
        bundle,
        'critic',
        { grants: ['llm.chat'], llm: inferenceChat({ endpointUrl }) },
        {
          capabilities: ['llm.chat'],
        },
      );
      const error = await plugin.configure({ rubric: '' }).catch((e: unknown) => e);
      expect((error as PluginError).reason).toBe('config');
      expect((error as PluginError).fields).toEqual([
        { path: 'config.rubric', message: expect.stringMatching(/>=1/) },
      ]);
      expect(plugin.description.config_schema).toMatchObject({
        type: 'object',
        properties: { rubric: { type: 'string', minLength: 1 } },
        required: ['rubric'],
      });
      plugin.dispose();
    });
  });

  describe('batching and shaping', () => {
    it('512 calls are served by one instance (no cold start per call)', async () => {
      const bundle = await bundleSource(`import { defineVerifier } from '@cgrpo/plugins/sdk';
export default defineVerifier({ verify: (input) => ({ score: input.response === input.reference ? 1 : 0, correct: input.response === input.reference }) });`);
      const plugin = await load(bundle, 'verifier', {}, { limits: { timeout_ms: 5000, memory_mb: 64 } });
      const inputs = Array.from({ length: 512 }, (_, i) => ({
        ...VERIFIER_INPUT,
        response: String(i % 4),
        reference: '0',
      }));
      const outcomes = await plugin.verifyBatch(inputs);
      expect(outcomes.filter((o) => o.ok && o.value.correct)).toHaveLength(128);
      expect(plugin.instancesCreated).toBe(1);
      plugin.dispose();
    });

    it('a shaping plugin is read once as an expression and checked like the builtin one', async () => {
      const bundle = await bundleSource(`import { defineShaping } from '@cgrpo/plugins/sdk';
export default defineShaping({ expression: 'p ^ alpha / (p ^ alpha + gamma)', params: { alpha: 0.5, gamma: 0.1 } });`);
      const plugin = await load(bundle, 'shaping');
      expect(plugin.shaping()).toEqual({
        expression: 'p ^ alpha / (p ^ alpha + gamma)',
        params: { alpha: 0.5, gamma: 0.1 },
      });
      expect(plugin.shaping({ params: { gamma: 0.3 } }).params).toEqual({ alpha: 0.5, gamma: 0.3 });
      const error = (() => {
        try {
          plugin.shaping({ params: { gamma: -1 } });
        } catch (e) {
          return e;
        }
      })();
      expect((error as PluginError).reason).toBe('invalid_result');
      expect((error as PluginError).message).toMatch(/not finite at p = /);
      plugin.dispose();
    });
  });
}

for (const engine of ['quickjs', 'isolated-vm'] as const) {
  describe(`${engine} engine`, () => {
    beforeAll(() => {
      process.env.CGRPO_SANDBOX_ENGINE = engine;
    });
    suite(engine);
  });
}
