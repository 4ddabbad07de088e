// `cgrpo plugins`: init → build → test on real files with the real sandbox, then publish / list /
// show / download against the real local API (wrangler dev with local D1 + R2), and the downloaded
// bundle loaded into the sandbox the way a runner does.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PluginManifestSchema, PluginVersionSchema } from '@cgrpo/contract';
import { SandboxedPlugin } from '@cgrpo/plugins/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApi, startLocalApi } from '../../scripts/start.mjs';
import { plugins } from '../src/commands/plugins';

const work = mkdtempSync(path.join(tmpdir(), 'cgrpo-plugins-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function cli(...args: string[]) {
  const lines: string[] = [];
  const errors: string[] = [];
  const code = await plugins(args, { log: (l) => lines.push(l), error: (l) => errors.push(l) });
  return { code, out: lines.join('\n'), err: errors.join('\n') };
}

describe('cgrpo plugins init / build / test', () => {
  it('scaffolds a verifier whose samples pass in the sandbox, and a broken expectation fails with exit 1', async () => {
    const dir = path.join(work, 'exact');
    expect((await cli('init', 'exact', '--kind', 'verifier', '--owner', 'acme', '--dir', dir)).code).toBe(0);
    const built = await cli('build', '--dir', dir);
    expect(built.err).toBe('');
    expect(built.out).toMatch(
      /^built acme\/exact@0\.1\.0 \(verifier\): .*plugin\.mjs \d+ bytes, sha256 [0-9a-f]{64}$/,
    );
    const manifest = PluginManifestSchema.parse(
      JSON.parse(readFileSync(path.join(dir, 'dist/manifest.json'), 'utf8')),
    );
    expect(manifest.config_schema).toMatchObject({
      properties: { ignore_case: { type: 'boolean', default: true } },
    });

    const tested = await cli('test', '--dir', dir, '--input', path.join(dir, 'samples.jsonl'), '--no-build');
    expect(tested.out).toContain('2 passed, 0 failed');
    expect(tested.code).toBe(0);

    const wrong = path.join(dir, 'wrong.jsonl');
    writeFileSync(
      wrong,
      `${JSON.stringify({ input: { question: 'q', response: 'Paris', reference: 'PARIS', metadata: {} }, expect: { correct: true } })}\n`,
    );
    const strict = await cli(
      'test',
      '--dir',
      dir,
      '--input',
      wrong,
      '--no-build',
      '--config',
      '{"ignore_case": false}',
    );
    expect(strict.out).toContain('expected correct=true, got false');
    expect(strict.out).toContain('0 passed, 1 failed');
    expect(strict.code).toBe(1);

    const badConfig = await cli(
      'test',
      '--dir',
      dir,
      '--input',
      wrong,
      '--no-build',
      '--config',
      '{"ignore_case": 1}',
    );
    expect(badConfig.code).toBe(1);
    expect(badConfig.err).toMatch(
      /plugin acme\/exact@0\.1\.0: config: .*config\.ignore_case: Invalid input: expected boolean/,
    );
  });

  it('scaffolds a critic; kind mismatches, Node imports and unknown commands are clear errors', async () => {
    const dir = path.join(work, 'hint');
    await cli('init', 'hint', '--kind', 'critic', '--owner', 'acme', '--dir', dir);
    const tested = await cli('test', '--dir', dir, '--input', path.join(dir, 'samples.jsonl'));
    expect(tested.out).toContain('2 passed, 0 failed');
    // the bundle holds only the zod the critic uses (all of zod and its locales was ~455 KB)
    const bundleBytes = statSync(path.join(dir, 'dist/plugin.mjs')).size;
    expect(bundleBytes).toBeGreaterThan(20_000);
    expect(bundleBytes).toBeLessThan(120_000);

    const project = JSON.parse(readFileSync(path.join(dir, 'plugin.json'), 'utf8'));
    writeFileSync(path.join(dir, 'plugin.json'), JSON.stringify({ ...project, kind: 'verifier' }));
    const mismatch = await cli('build', '--dir', dir);
    expect(mismatch.code).toBe(1);
    expect(mismatch.err).toMatch(/plugin\.json says kind 'verifier' but src\/index\.ts exports a critic/);

    writeFileSync(path.join(dir, 'plugin.json'), JSON.stringify(project));
    writeFileSync(
      path.join(dir, 'src/index.ts'),
      "import { readFileSync } from 'node:fs';\nimport { defineCritic } from '@cgrpo/plugins/sdk';\nexport default defineCritic({ critique: () => ({ critique: readFileSync('/etc/passwd', 'utf8') }) });\n",
    );
    const nodeImport = await cli('build', '--dir', dir);
    expect(nodeImport.code).toBe(1);
    expect(nodeImport.err).toMatch(/Could not resolve "node:fs".*sandbox without Node built-ins/);

    expect((await cli('frobnicate')).code).toBe(2);
    expect((await cli('init', 'x', '--kind', 'shaping')).err).toMatch(/--kind must be critic or verifier/);
    expect((await cli('publish', '--dir', dir, '--api', 'http://127.0.0.1:9')).err).toMatch(/no API key/);
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('publish / list / show against the local API', () => {
  let api: LocalApi;
  let key: string;
  const stateDir = path.join(work, 'state');

  beforeAll(async () => {
    api = await startLocalApi({
      port: await freePort(),
      inspectorPort: await freePort(),
      stateDir,
      log: () => {},
      timeoutMs: 100_000,
    });
    const res = await fetch(`${api.url}/v1/bootstrap`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handle: 'acme', name: 'Acme' }),
    });
    expect(res.status).toBe(201);
    key = ((await res.json()) as { api_key: string }).api_key;
  }, 120_000);

  afterAll(async () => {
    await api?.stop();
  });

  it('init → build → test → publish → a job references it; republish is idempotent; list, show and the runner download load in the sandbox', async () => {
    const dir = path.join(work, 'published');
    await cli('init', 'json-answer', '--kind', 'verifier', '--owner', 'acme', '--dir', dir);
    expect((await cli('test', '--dir', dir, '--input', path.join(dir, 'samples.jsonl'))).code).toBe(0);

    const published = await cli('publish', '--dir', dir, '--no-build', '--api', api.url, '--key', key);
    expect(published.err).toBe('');
    expect(published.out).toMatch(/^published acme\/json-answer@0\.1\.0 sha256 [0-9a-f]{64}/);
    expect(published.out).toContain('"verifier": { "plugin": "acme/json-answer@0.1.0", "config": {} }');

    process.env.CGRPO_API_URL = api.url;
    process.env.CGRPO_API_KEY = key;
    try {
      const again = await cli('publish', '--dir', dir, '--no-build');
      expect(again.out).toMatch(/^already published \(same bytes\) acme\/json-answer@0\.1\.0/);

      const listed = await cli('list', '--kind', 'verifier');
      expect(listed.out).toMatch(/acme\/json-answer@0\.1\.0\s+verifier\s+A custom verifier\./);
      expect(listed.out).toContain('builtin:math');

      const shown = await cli('show', 'acme/json-answer@0.1.0');
      const version = PluginVersionSchema.parse(JSON.parse(shown.out));
      expect(version.manifest?.sha256).toBe(version.sha256);

      const notFound = await cli('show', 'acme/nope');
      expect(notFound.code).toBe(1);
      expect(notFound.err).toMatch(/404 not_found/);

      // Another owner's namespace is refused by the API with its own error body.
      const project = JSON.parse(readFileSync(path.join(dir, 'plugin.json'), 'utf8'));
      writeFileSync(path.join(dir, 'plugin.json'), JSON.stringify({ ...project, name: 'other/json-answer' }));
      const forbidden = await cli('publish', '--dir', dir);
      expect(forbidden.code).toBe(1);
      expect(forbidden.err).toMatch(/403 forbidden: only the account 'other' publishes other\/\*/);

      // A job can reference the published version (the runner-side run of it comes with the runner).
      const submit = (plugin: string) =>
        fetch(`${api.url}/v1/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            algorithm: 'critique-grpo',
            model: { id: 'Qwen/Qwen3-0.6B' },
            datasets: { train: { uri: 'https://example.com/train.jsonl' } },
            verifier: { plugin, config: { ignore_case: false } },
          }),
        });
      const accepted = await submit('acme/json-answer@0.1.0');
      expect(accepted.status).toBe(201);
      const job = (await accepted.json()) as { spec: { verifier: { plugin: string } } };
      expect(job.spec.verifier.plugin).toBe('acme/json-answer@0.1.0');
      const refused = await submit('acme/json-answer@9.9.9');
      expect(refused.status).toBe(400);
      expect(JSON.stringify(await refused.json())).toContain('verifier.plugin');

      // What a runner does: download the bundle and run it in the sandbox with the stored manifest.
      const res = await fetch(`${api.url}/v1/plugins/acme/json-answer/0.1.0/bundle`, {
        headers: { authorization: `Bearer ${key}` },
      });
      expect(res.status).toBe(200);
      const plugin = await SandboxedPlugin.load(await res.text(), version.manifest);
      const result = await plugin.verify({
        question: 'q',
        response: 'paris',
        reference: 'Paris',
        metadata: {},
      });
      expect(result).toEqual({ score: 1, correct: true, details: { answer: 'paris' } });
      plugin.dispose();
    } finally {
      delete process.env.CGRPO_API_URL;
      delete process.env.CGRPO_API_KEY;
    }
  }, 90_000);
});
