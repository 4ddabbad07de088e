// The runner's plugin resolution: built-ins natively, published plugins downloaded (by sha256) and
// run in the real sandbox of @cgrpo/plugins, ctx.llm.chat served over real HTTP on loopback by a
// scripted OpenAI-compatible server. The "download" is a function over in-memory bundles here; the
// end-to-end test (plugins.e2e.test.ts) downloads them from the real API.
import type { PluginManifest, ResolvedPlugin } from '@cgrpo/contract';
import { parseJobSpec, RunnerEventSchema } from '@cgrpo/contract';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChatServer, startChatServer } from '../../plugins/builtin/critics/chat-server';
import { bundleSource, manifestFor } from '../../plugins/sandbox/test-support';
import {
  PLUGIN_LOG_BURST,
  type PluginLogEvent,
  pluginLogLimiter,
  type ResolveOptions,
  resolvePlugins,
} from '../src/job/plugins';
import { Logger } from '../src/log';
import { jobFailure } from './job-error';

const spec = (extra: Record<string, unknown>) => {
  const r = parseJobSpec({
    model: { id: 'tiny-llama' },
    datasets: { train: { uri: 'file:x.jsonl' } },
    ...extra,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.fields));
  return r.spec;
};

interface Published {
  ref: string;
  bundle: string;
  manifest: PluginManifest;
}

async function publish(
  ref: string,
  kind: PluginManifest['kind'],
  source: string,
  extra: Partial<PluginManifest> = {},
): Promise<Published> {
  const bundle = await bundleSource(source);
  const [name, version] = ref.split('@');
  return { ref, bundle, manifest: manifestFor(bundle, { kind, name, version, ...extra }) };
}

/** What the lease carries for these plugins, and a download over the same bytes. */
function host(
  uses: {
    role: ResolvedPlugin['role'];
    plugin: Published;
    config?: Record<string, unknown>;
    grants?: string[];
  }[],
  extra: Partial<ResolveOptions> = {},
): ResolveOptions & { downloads: string[] } {
  const byUrl = new Map(uses.map((u) => [`/v1/runner/bundles/${u.plugin.manifest.sha256}`, u.plugin.bundle]));
  const downloads: string[] = [];
  return {
    downloads,
    resolved: uses.map((u) => ({
      role: u.role,
      ref: u.plugin.ref,
      builtin: false,
      config: u.config ?? {},
      grants: u.grants ?? [],
      sha256: u.plugin.manifest.sha256,
      manifest: u.plugin.manifest,
      bundle_url: `/v1/runner/bundles/${u.plugin.manifest.sha256}`,
    })),
    download: async (path) => {
      downloads.push(path);
      const bundle = byUrl.get(path);
      if (bundle === undefined) throw new Error(`404 ${path}`);
      return new TextEncoder().encode(bundle);
    },
    ...extra,
  };
}

const CONTAINS = `
import { defineVerifier } from '@cgrpo/plugins/sdk';
import * as z from '@cgrpo/plugins/sdk/zod';
export default defineVerifier({
  config: z.object({ bonus: z.number().min(0).max(1).default(0) }),
  verify(input, ctx) {
    ctx.log.info('checking ' + input.question);
    const correct = input.response.includes(input.reference);
    return { score: correct ? 1 : ctx.config.bonus, correct, details: { length: input.response.length } };
  },
});`;

let chat: ChatServer;
beforeAll(async () => {
  chat = await startChatServer({ content: 'The last step is wrong: 3 + 4 is 7.' });
});
afterAll(() => chat.close());

describe('job plugins: built-ins', () => {
  it('runs the built-in verifier and critic natively', async () => {
    const plugins = await resolvePlugins(spec({ critic: { plugin: 'builtin:ground-truth' } }));
    const ok = await plugins.verify({
      question: '3 + 4',
      response: 'so \\boxed{7}',
      reference: '7',
      metadata: {},
    });
    expect(ok.ok && ok.value.correct).toBe(true);
    const c = await plugins.critique?.({
      question: '3 + 4',
      response: '8',
      reference: '7',
      verification: { score: 0, correct: false, details: {} },
    });
    expect(c?.ok && c.value.critique).toBe('The generated solution is incorrect, the ground truth is 7.');
    expect(plugins.sandboxed).toEqual([]);
    expect(plugins.shaping).toBeNull();
  });

  it('fails the job up front, naming the field, for bad configs, missing grants and unknown plugins', async () => {
    const code = (extra: Record<string, unknown>) => jobFailure(resolvePlugins(spec(extra)));
    expect(await code({ verifier: { plugin: 'builtin:regex', config: { pattern: '(' } } })).toMatch(
      /^plugin_config_invalid: verifier\.config\.pattern/,
    );
    expect(
      await code({
        critic: { plugin: 'builtin:llm', config: { model: 'x', base_url: 'http://127.0.0.1:1/v1' } },
      }),
    ).toMatch(/^plugin_capability_not_granted: critic\.grants/);
    // published, but the lease carries no bundle for it (an API that could not resolve it)
    expect(await code({ verifier: { plugin: 'acme/grader@1.0.0' } })).toMatch(
      /^plugin_unknown: verifier\.plugin: acme\/grader@1\.0\.0: the API has no published bundle/,
    );
  });
});

describe('job plugins: ctx.log lines become job.log events', () => {
  it('each line of a published plugin reaches onPluginLog with plugin, role, call and level', async () => {
    const verifier = await publish('acme/contains@1.0.0', 'verifier', CONTAINS);
    const events: PluginLogEvent[] = [];
    const plugins = await resolvePlugins(
      spec({ verifier: { plugin: 'acme/contains@1.0.0' } }),
      host([{ role: 'verifier', plugin: verifier }], { onPluginLog: (e) => events.push(e) }),
    );
    try {
      await Promise.all(
        ['7', 'x'].map((response) =>
          plugins.verify({ question: 'q', response, reference: '7', metadata: {} }),
        ),
      );
      expect(events.sort((a, b) => a.call - b.call)).toEqual([
        { plugin: 'acme/contains@1.0.0', role: 'verifier', call: 0, level: 'info', message: 'checking q' },
        { plugin: 'acme/contains@1.0.0', role: 'verifier', call: 1, level: 'info', message: 'checking q' },
      ]);
      // what the executor sends to POST /v1/runner/jobs/{id}/events is a valid runner event
      expect(RunnerEventSchema.safeParse({ seq: 0, type: 'job.log', data: events[0] }).success).toBe(true);
    } finally {
      plugins.dispose();
    }
  });

  it('the rate limit lets a burst through, then 5 a second, and says how many it dropped', () => {
    let t = 0;
    const out: PluginLogEvent[] = [];
    const limit = pluginLogLimiter(
      (e) => out.push(e),
      () => t,
    );
    const line = {
      plugin: 'acme/p@1.0.0',
      role: 'critic',
      call: 0,
      level: 'info' as const,
      message: 'x'.repeat(5000),
    };
    for (let i = 0; i < 1000; i++) limit(line);
    expect(out).toHaveLength(PLUGIN_LOG_BURST);
    expect(out[0].message).toHaveLength(1000);
    t = 1000; // one second later: 5 more tokens
    for (let i = 0; i < 10; i++) limit(line);
    expect(out).toHaveLength(PLUGIN_LOG_BURST + 5);
    expect(out[PLUGIN_LOG_BURST].dropped).toBe(1000 - PLUGIN_LOG_BURST);
    expect(out[PLUGIN_LOG_BURST + 1].dropped).toBeUndefined();
  });
});

describe('job plugins: published, in the sandbox', () => {
  it('downloads the bundle, checks it, applies the config and runs a tick of calls as one batch', async () => {
    const verifier = await publish('acme/contains@1.0.0', 'verifier', CONTAINS);
    const lines: string[] = [];
    const log = new Logger({ format: 'json', level: 'debug', write: (l) => lines.push(l) });
    const h = host([{ role: 'verifier', plugin: verifier }], { log });
    const plugins = await resolvePlugins(
      spec({ verifier: { plugin: 'acme/contains@1.0.0', config: { bonus: 0.25 } } }),
      h,
    );
    try {
      expect(h.downloads).toEqual([`/v1/runner/bundles/${verifier.manifest.sha256}`]);
      expect(plugins.sandboxed).toEqual(['verifier: acme/contains@1.0.0']);
      const outs = await Promise.all(
        ['7', 'x', 'the answer is 7', ''].map((response) =>
          plugins.verify({ question: 'q3+4', response, reference: '7', metadata: {} }),
        ),
      );
      expect(outs.map((o) => (o.ok ? o.value.score : o.reason))).toEqual([1, 0.25, 1, 0.25]);
      expect(outs.every((o) => o.ms >= 0)).toBe(true);
      // the four calls went into the sandbox as one batch: their log lines carry calls 0..3
      const calls = lines
        .map((l) => JSON.parse(l) as { msg: string; call?: number; plugin?: string })
        .filter((l) => l.msg === 'checking q3+4');
      expect(calls.map((l) => l.call).sort()).toEqual([0, 1, 2, 3]);
      expect(calls[0].plugin).toBe('acme/contains@1.0.0');
    } finally {
      plugins.dispose();
    }
  });

  it('refuses a tampered download, a config the plugin rejects and an ungranted capability', async () => {
    const verifier = await publish('acme/contains@1.0.0', 'verifier', CONTAINS);
    const tampered = host([{ role: 'verifier', plugin: verifier }]);
    const real = tampered.download;
    tampered.download = async (p) => {
      const bytes = await (real as (p: string) => Promise<Uint8Array>)(p);
      return new Uint8Array([...bytes, 32]);
    };
    expect(await jobFailure(resolvePlugins(spec({ verifier: { plugin: verifier.ref } }), tampered))).toMatch(
      /^plugin_error: verifier\.plugin: acme\/contains@1\.0\.0: integrity: the downloaded bundle's sha256 is [0-9a-f]{64}, the registry says/,
    );

    expect(
      await jobFailure(
        resolvePlugins(
          spec({ verifier: { plugin: verifier.ref, config: { bonus: 2 } } }),
          host([{ role: 'verifier', plugin: verifier }]),
        ),
      ),
    ).toMatch(/^plugin_config_invalid: acme\/contains@1\.0\.0: verifier\.config\.bonus: .*1/);

    const asker = await publish(
      'acme/asker@1.0.0',
      'critic',
      `import { defineCritic } from '@cgrpo/plugins/sdk';
       export default defineCritic({ async critique(input, ctx) {
         return { critique: (await ctx.llm.chat([{ role: 'user', content: input.response }])).content };
       } });`,
      { capabilities: ['llm.chat'] },
    );
    expect(
      await jobFailure(
        resolvePlugins(spec({ critic: { plugin: asker.ref } }), host([{ role: 'critic', plugin: asker }])),
      ),
    ).toMatch(/^plugin_error: critic\.plugin: plugin acme\/asker@1\.0\.0: capability: .*'llm\.chat'.*grants/);
  });

  it('a hanging plugin gives failed calls with plugin_error naming it, and the host carries on', async () => {
    const spin = await publish(
      'acme/spin@2.0.0',
      'verifier',
      `import { defineVerifier } from '@cgrpo/plugins/sdk';
       export default defineVerifier({ verify() { for (;;) {} } });`,
      { limits: { timeout_ms: 200, memory_mb: 32 } },
    );
    const plugins = await resolvePlugins(
      spec({ verifier: { plugin: spin.ref } }),
      host([{ role: 'verifier', plugin: spin }]),
    );
    try {
      const outs = await Promise.all(
        [1, 2].map(() => plugins.verify({ question: 'q', response: 'r', reference: '7', metadata: {} })),
      );
      for (const o of outs) {
        expect(o.ok).toBe(false);
        if (!o.ok) {
          expect(o.code).toBe('plugin_error');
          expect(o.reason).toMatch(/^plugin acme\/spin@2\.0\.0: timeout: /);
        }
      }
    } finally {
      plugins.dispose();
    }
  });

  it("serves ctx.llm.chat from the job's endpoint with the runner's token, which the plugin never sees", async () => {
    const asker = await publish(
      'acme/asker@1.0.0',
      'critic',
      `import { defineCritic } from '@cgrpo/plugins/sdk';
       export default defineCritic({ async critique(input, ctx) {
         const out = await ctx.llm.chat([{ role: 'user', content: 'critique: ' + input.response }], { max_tokens: 5000 });
         return { critique: out.content + ' [' + typeof globalThis.process + ']' };
       } });`,
      { capabilities: ['llm.chat'] },
    );
    const use = {
      plugin: asker.ref,
      grants: ['llm.chat'],
      llm: { endpoint_url: chat.url, model: 'judge-1', token_env: 'JUDGE_TOKEN', max_tokens: 64 },
    };
    const before = chat.requests.length;
    const plugins = await resolvePlugins(
      spec({ critic: use }),
      host([{ role: 'critic', plugin: asker, grants: ['llm.chat'] }], { env: { JUDGE_TOKEN: 'sk-secret' } }),
    );
    try {
      const out = await plugins.critique?.({
        question: '3 + 4',
        response: '8',
        reference: '7',
        verification: { score: 0, correct: false, details: {} },
      });
      expect(out?.ok && out.value.critique).toBe('The last step is wrong: 3 + 4 is 7. [undefined]');
      const req = chat.requests[before];
      expect(req.headers.authorization).toBe('Bearer sk-secret');
      expect(req.body.model).toBe('judge-1');
      expect(req.body.max_tokens).toBe(64); // the job's cap beats the plugin's 5000
      expect(req.body.messages).toEqual([{ role: 'user', content: 'critique: 8' }]);
    } finally {
      plugins.dispose();
    }

    // the token variable must exist on the runner
    expect(
      await jobFailure(
        resolvePlugins(
          spec({ critic: use }),
          host([{ role: 'critic', plugin: asker, grants: ['llm.chat'] }], { env: {} }),
        ),
      ),
    ).toMatch(
      /^plugin_error: critic\.plugin: acme\/asker@1\.0\.0: llm\.token_env: the runner has no environment variable JUDGE_TOKEN/,
    );
    // granted, but neither the job nor the runner names an endpoint
    expect(
      await jobFailure(
        resolvePlugins(
          spec({ critic: { plugin: asker.ref, grants: ['llm.chat'] } }),
          host([{ role: 'critic', plugin: asker, grants: ['llm.chat'] }]),
        ),
      ),
    ).toMatch(/^plugin_error: critic\.plugin: .*capability: .*no LLM endpoint/);
    // the runner's default endpoint (--llm-endpoint) serves a job that names none
    const fallback = await resolvePlugins(
      spec({ critic: { plugin: asker.ref, grants: ['llm.chat'] } }),
      host([{ role: 'critic', plugin: asker, grants: ['llm.chat'] }], {
        llm: { endpointUrl: chat.url, model: 'runner-default' },
      }),
    );
    try {
      const out = await fallback.critique?.({
        question: 'q',
        response: 'r',
        reference: '7',
        verification: { score: 0, correct: false, details: {} },
      });
      expect(out?.ok).toBe(true);
      expect(chat.requests.at(-1)?.body.model).toBe('runner-default');
      expect(chat.requests.at(-1)?.headers.authorization).toBeUndefined();
    } finally {
      fallback.dispose();
    }
  });

  it("a published shaping plugin's expression, with the job's params, replaces the spec's", async () => {
    const sharp = await publish(
      'acme/sharp@1.0.0',
      'shaping',
      `import { defineShaping } from '@cgrpo/plugins/sdk';
       export default defineShaping({ expression: 'p ^ alpha / (p ^ alpha + gamma)', params: { alpha: 0.5, gamma: 0.1 } });`,
    );
    const plugins = await resolvePlugins(
      spec({ shaping: { plugin: sharp.ref, config: { params: { gamma: 0.2 } } } }),
      host([{ role: 'shaping', plugin: sharp }]),
    );
    expect(plugins.shaping).toEqual({
      expression: 'p ^ alpha / (p ^ alpha + gamma)',
      params: { alpha: 0.5, gamma: 0.2 },
    });
    plugins.dispose();
    expect(
      await jobFailure(
        resolvePlugins(
          spec({ shaping: { plugin: sharp.ref, config: { expresion: 'p' } } }),
          host([{ role: 'shaping', plugin: sharp }]),
        ),
      ),
    ).toBe(
      'plugin_config_invalid: shaping.config.expresion: unknown field (a shaping plugin takes only params)',
    );
  });
});
