// Uploaded models: real archives made by the system `tar` (what a user runs), extracted by the
// runner's model cache. The download function stands in for the API route (the e2e test in
// uploads.e2e.test.ts goes through the real API).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiFileDownload, cachedBundles } from '../src/download';
import { listCachedModels } from '../src/hub/cache';
import { modelsCommand } from '../src/hub/cli';
import { pullModel } from '../src/hub/pull';
import { fetchModelArtifact, resolveModel, resolveModelDir } from '../src/job/model-store';
import { createTar } from '../src/job/tar';
import { CausalLM } from '../src/model/model';
import { ROOT } from './harness';
import { LoopbackHub } from './hub-server';
import { jobFailure } from './job-error';

const TINY = join(ROOT, 'gpu-runner', 'models', 'tiny-llama');

function tar(args: string[]): Uint8Array {
  const out = join(mkdtempSync(join(tmpdir(), 'cgrpo-tar-')), 'a.tar');
  const r = spawnSync('tar', ['-cf', out, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return readFileSync(out);
}

function gz(args: string[]): Uint8Array {
  const out = join(mkdtempSync(join(tmpdir(), 'cgrpo-tar-')), 'a.tgz');
  const r = spawnSync('tar', ['-czf', out, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return readFileSync(out);
}

describe('uploaded models (artifact://)', () => {
  it('extracts a tar.gz of the folder once per runner and reuses it', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'cgrpo-cache-'));
    const bytes = gz(['-C', TINY, '.']);
    const paths: string[] = [];
    const download = async (p: string) => {
      paths.push(p);
      return bytes;
    };
    const dir = await fetchModelArtifact('artifact://art_tiny1', download, cache);
    expect(dir).toBe(join(cache, 'art_tiny1'));
    expect(readFileSync(join(dir, 'config.json'), 'utf8')).toBe(
      readFileSync(join(TINY, 'config.json'), 'utf8'),
    );
    expect(
      readFileSync(join(dir, 'model.safetensors')).equals(readFileSync(join(TINY, 'model.safetensors'))),
    ).toBe(true);
    expect(await fetchModelArtifact('artifact://art_tiny1', download, cache)).toBe(dir);
    expect(paths).toEqual(['/v1/runner/artifacts/art_tiny1/content']);
  });

  it('accepts a plain tar whose files sit in one top-level folder', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'cgrpo-cache-'));
    const bytes = tar(['-C', join(TINY, '..'), 'tiny-llama']);
    const dir = await fetchModelArtifact('artifact://art_nested', async () => bytes, cache);
    expect(dir).toBe(join(cache, 'art_nested', 'tiny-llama'));
    expect(existsSync(join(dir, 'tokenizer.json'))).toBe(true);
  });

  it('refuses what is not a model archive, and never writes outside the cache', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'cgrpo-cache-'));
    const notTar = new TextEncoder().encode('{"not": "a tar"}\n'.repeat(100));
    expect(await jobFailure(fetchModelArtifact('artifact://art_json', async () => notTar, cache))).toMatch(
      /^model_invalid: model\.id: artifact:\/\/art_json: .*tar czf model\.tgz -C my-model \./,
    );

    const noConfig = mkdtempSync(join(tmpdir(), 'cgrpo-noconfig-'));
    writeFileSync(join(noConfig, 'weights.bin'), 'x');
    expect(
      await jobFailure(
        fetchModelArtifact('artifact://art_cfg', async () => tar(['-C', noConfig, '.']), cache),
      ),
    ).toMatch(/^model_invalid: model\.id: artifact:\/\/art_cfg: the archive has no config\.json/);

    // archives whose names climb out (`../`) or are absolute are refused whole (node-tar, strict),
    // and nothing lands outside the cache
    const config = readFileSync(join(TINY, 'config.json'));
    for (const name of ['../escape.txt', '/tmp/cgrpo-absolute-escape.txt']) {
      const evil = createTar([
        { name: 'config.json', data: config },
        { name, data: new TextEncoder().encode('out') },
      ]);
      expect(await jobFailure(fetchModelArtifact('artifact://art_evil', async () => evil, cache))).toMatch(
        /^model_invalid: model\.id: artifact:\/\/art_evil: the artifact is not a readable tar archive \(/,
      );
    }
    expect(existsSync(join(cache, 'escape.txt'))).toBe(false);
    expect(existsSync(join(cache, '..', 'escape.txt'))).toBe(false);
    expect(existsSync('/tmp/cgrpo-absolute-escape.txt')).toBe(false);

    const missing = Object.assign(new Error('404 not_found'), { status: 404 });
    expect(
      await jobFailure(
        fetchModelArtifact(
          'artifact://art_gone',
          async () => {
            throw missing;
          },
          cache,
        ),
      ),
    ).toBe('model_not_found: model.id: artifact://art_gone: no such artifact in this account');
    expect(await jobFailure(fetchModelArtifact('artifact://../x', async () => notTar, cache))).toMatch(
      /^model_not_found: .*not an artifact id/,
    );
    // only complete extractions stay in the cache
    expect(existsSync(join(cache, 'art_json'))).toBe(false);
  });

  it('local ids and paths still resolve without downloading', () => {
    expect(resolveModelDir('tiny-llama', [join(ROOT, 'gpu-runner', 'models')])).toBe(TINY);
    expect(() => resolveModelDir('nope/nothing', [join(ROOT, 'gpu-runner', 'models')])).toThrow(
      /model folders/,
    );
  });
});

const COMMIT = 'c0ffee0000000000000000000000000000000001';
const MODELS = join(ROOT, 'gpu-runner', 'models');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('models from the Hugging Face Hub (loopback hub, HF cache layout)', () => {
  let hub: LoopbackHub;
  beforeAll(async () => {
    // the real weights with one byte changed: same size, another sha256
    const badWeights = Uint8Array.from(readFileSync(join(MODELS, 'tiny-qwen3', 'model.safetensors')));
    badWeights[badWeights.length - 1] ^= 0xff;
    hub = new LoopbackHub({
      'cgrpo-test/tiny-qwen3': { dir: join(MODELS, 'tiny-qwen3'), commit: COMMIT },
      'cgrpo-test/tiny-llama': { dir: join(MODELS, 'tiny-llama'), commit: COMMIT },
      'gated-org/tiny-llama': { dir: join(MODELS, 'tiny-llama'), commit: COMMIT, token: 'hf_loopback' },
      'bad-mirror/tiny-qwen3': {
        dir: join(MODELS, 'tiny-qwen3'),
        commit: COMMIT,
        corrupt: { 'model.safetensors': badWeights },
      },
    });
    await hub.start();
  });
  afterAll(() => hub.stop());
  const envFor = (home: string, extra: Record<string, string> = {}) => ({
    HF_HOME: home,
    HF_ENDPOINT: hub.url,
    ...extra,
  });

  it('downloads into models--org--name/{blobs,snapshots,refs}, loads from there, and reuses the cache', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
    const env = envFor(home);
    hub.requests.length = 0;
    const dir = await resolveModel({ id: 'cgrpo-test/tiny-qwen3' }, [], { env });
    const repo = join(home, 'hub', 'models--cgrpo-test--tiny-qwen3');
    expect(dir).toBe(join(repo, 'snapshots', COMMIT));
    expect(readFileSync(join(repo, 'refs', 'main'), 'utf8')).toBe(COMMIT);
    const weights = readFileSync(join(MODELS, 'tiny-qwen3', 'model.safetensors'));
    // LFS files are stored under their sha256, linked relatively like huggingface_hub does
    expect(lstatSync(join(dir, 'model.safetensors')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, 'model.safetensors'))).toBe(`../../blobs/${sha256(weights)}`);
    expect(readFileSync(join(dir, 'model.safetensors')).equals(weights)).toBe(true);
    expect(readdirSync(join(repo, 'blobs')).some((f) => f.endsWith('.incomplete'))).toBe(false);
    const local = await CausalLM.load(join(MODELS, 'tiny-qwen3'));
    const hubModel = await CausalLM.load(dir, { engine: local.engine });
    const ids = [3, 14, 159, 265, 358];
    expect(Array.from(await hubModel.fullLogits(ids))).toEqual(Array.from(await local.fullLogits(ids)));
    await hubModel.close();
    await local.close();
    const files = hub.resolves().length;
    expect(files).toBe(readdirSync(join(MODELS, 'tiny-qwen3')).length);
    // a second resolve downloads nothing; a pinned commit does not even ask the Hub
    expect(await resolveModel({ id: 'cgrpo-test/tiny-qwen3' }, [], { env })).toBe(dir);
    expect(hub.resolves().length).toBe(files);
    const before = hub.requests.length;
    expect(await resolveModel({ id: 'cgrpo-test/tiny-qwen3', revision: COMMIT }, [], { env })).toBe(dir);
    expect(hub.requests.length).toBe(before);
    expect(listCachedModels(join(home, 'hub'))).toEqual([
      expect.objectContaining({
        repo: 'cgrpo-test/tiny-qwen3',
        commit: COMMIT,
        refs: ['main'],
        complete: true,
      }),
    ]);
  });

  it('uses a checkpoint Python put in the cache in place (offline, or with the Hub down)', async () => {
    const cache = mkdtempSync(join(tmpdir(), 'cgrpo-hfcache-'));
    // what huggingface_hub writes: blobs named by etag, relative links from snapshots, refs/main
    const repo = join(cache, 'models--py-org--tiny-llama');
    const commit = 'abcdef0123456789abcdef0123456789abcdef01';
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(join(repo, 'snapshots', commit), { recursive: true });
    mkdirSync(join(repo, 'refs'));
    writeFileSync(join(repo, 'refs', 'main'), commit);
    for (const f of readdirSync(join(MODELS, 'tiny-llama'))) {
      const bytes = readFileSync(join(MODELS, 'tiny-llama', f));
      copyFileSync(join(MODELS, 'tiny-llama', f), join(repo, 'blobs', sha256(bytes)));
      symlinkSync(`../../blobs/${sha256(bytes)}`, join(repo, 'snapshots', commit, f));
    }
    const want = join(repo, 'snapshots', commit);
    hub.requests.length = 0;
    expect(
      await resolveModel({ id: 'py-org/tiny-llama' }, [], {
        env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' },
      }),
    ).toBe(want);
    expect(hub.requests.length).toBe(0);
    hub.down = true;
    try {
      expect(
        await resolveModel({ id: 'py-org/tiny-llama' }, [], {
          env: { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url },
        }),
      ).toBe(want);
      // nothing cached and no Hub: a retryable error that names the endpoint
      await expect(
        resolveModel({ id: 'cgrpo-test/tiny-llama' }, [], {
          env: { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url },
        }),
      ).rejects.toMatchObject({
        code: 'model_download_failed',
        retryable: true,
        message: expect.stringContaining(`${hub.url} did not answer`),
      });
    } finally {
      hub.down = false;
    }
    await expect(
      resolveModel({ id: 'other/model' }, [], { env: { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' } }),
    ).rejects.toThrow(
      /other\/model@main is not in the Hugging Face cache .* HF_HUB_OFFLINE is set; pull it first \(cgrpo-runner models pull other\/model\)/,
    );
  });

  it('resumes a partial download with a Range request and checks it against the sha256', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
    const weights = readFileSync(join(MODELS, 'tiny-llama', 'model.safetensors'));
    const blobs = join(home, 'hub', 'models--cgrpo-test--tiny-llama', 'blobs');
    mkdirSync(blobs, { recursive: true });
    const half = Math.floor(weights.length / 2);
    writeFileSync(join(blobs, `${sha256(weights)}.incomplete`), weights.subarray(0, half));
    hub.requests.length = 0;
    const got: { path: string; bytes: number; resumed: boolean }[] = [];
    const dir = await pullModel('cgrpo-test/tiny-llama', { env: envFor(home), onFile: (f) => got.push(f) });
    expect(hub.resolves().find((r) => r.path.endsWith('model.safetensors'))?.range).toBe(`bytes=${half}-`);
    expect(got.find((f) => f.path === 'model.safetensors')).toEqual({
      path: 'model.safetensors',
      bytes: weights.length - half,
      resumed: true,
    });
    expect(readFileSync(join(dir, 'model.safetensors')).equals(weights)).toBe(true);

    // a mirror serving other bytes under the same name: refused, nothing kept
    const home2 = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
    await expect(pullModel('bad-mirror/tiny-qwen3', { env: envFor(home2) })).rejects.toThrow(
      /^model_download_failed: model\.id: bad-mirror\/tiny-qwen3: download_digest: .*sha256 [0-9a-f]{64} does not match/,
    );
    const badBlobs = join(home2, 'hub', 'models--bad-mirror--tiny-qwen3', 'blobs');
    expect(
      readdirSync(badBlobs).filter((f) => f.length === 64 + '.incomplete'.length || f.length === 64),
    ).not.toContain(sha256(readFileSync(join(MODELS, 'tiny-qwen3', 'model.safetensors'))));
    expect(readdirSync(badBlobs).some((f) => f.endsWith('.incomplete'))).toBe(false);
  });

  it('gated and missing repos fail with the variable to set', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
    await expect(
      resolveModel({ id: 'gated-org/tiny-llama' }, [], { env: envFor(home) }),
    ).rejects.toMatchObject({
      code: 'model_access_denied',
      message: expect.stringMatching(
        /gated-org\/tiny-llama is gated or private: set HF_TOKEN to a Hub access token/,
      ),
    });
    await expect(
      resolveModel({ id: 'gated-org/tiny-llama' }, [], { env: envFor(home, { HF_TOKEN: 'hf_wrong' }) }),
    ).rejects.toThrow(/the token in HF_TOKEN has no access to gated-org\/tiny-llama/);
    const dir = await resolveModel({ id: 'gated-org/tiny-llama' }, [], {
      env: envFor(home, { HF_TOKEN: 'hf_loopback' }),
    });
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
    expect(
      hub
        .resolves()
        .filter((r) => r.path.startsWith('/gated-org/'))
        .every((r) => r.auth === 'Bearer hf_loopback'),
    ).toBe(true);
    await expect(resolveModel({ id: 'nobody/nothing' }, [], { env: envFor(home) })).rejects.toMatchObject({
      code: 'model_not_found',
      message: expect.stringContaining('nobody/nothing@main: no such model or revision on'),
    });
    await expect(
      resolveModel({ id: 'cgrpo-test/tiny-llama', revision: 'v9' }, [], { env: envFor(home) }),
    ).rejects.toThrow(/model_not_found|tiny-llama@v9/);
  });

  it('two pulls of one repo at once share the cache: every file is downloaded once', async () => {
    const home = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
    hub.requests.length = 0;
    const [a, b] = await Promise.all([
      pullModel('cgrpo-test/tiny-llama', { env: envFor(home) }),
      pullModel('cgrpo-test/tiny-llama', { env: envFor(home) }),
    ]);
    expect(a).toBe(b);
    expect(hub.resolves().length).toBe(readdirSync(join(MODELS, 'tiny-llama')).length);
    expect(existsSync(join(home, 'hub', '.locks', 'models--cgrpo-test--tiny-llama', 'cgrpo.lock'))).toBe(
      false,
    );
  });
});

describe('large artifacts: streamed to disk, bundles cached by sha256', () => {
  /** a loopback file server standing in for the API's download routes */
  async function serve(files: Record<string, Uint8Array>) {
    const hits: string[] = [];
    const server = createServer((req, res) => {
      hits.push(req.url ?? '');
      const body = files[req.url ?? ''];
      if (!body) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const send = async (_m: string, path: string) => {
      const res = await fetch(`${base}${path}`);
      if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
      return res;
    };
    const get = async (path: string) => new Uint8Array(await (await send('GET', path)).arrayBuffer());
    return { hits, send, get, close: () => new Promise((r) => server.close(r)) };
  }

  it('a model archive is streamed to disk, checked, extracted', async () => {
    const archive = gz(['-C', TINY, '.']);
    const api = await serve({ '/v1/runner/artifacts/art_stream/content': archive });
    try {
      const cache = mkdtempSync(join(tmpdir(), 'cgrpo-cache-'));
      const dir = await fetchModelArtifact('artifact://art_stream', { toFile: apiFileDownload(api) }, cache);
      expect(
        readFileSync(join(dir, 'model.safetensors')).equals(readFileSync(join(TINY, 'model.safetensors'))),
      ).toBe(true);
      const dest = join(cache, 'copy.tgz');
      const got = await apiFileDownload(api)('/v1/runner/artifacts/art_stream/content', dest, {
        sha256: sha256(archive),
      });
      expect(got).toEqual({ bytes: archive.length, sha256: sha256(archive) });
      await expect(
        apiFileDownload(api)('/v1/runner/artifacts/art_stream/content', join(cache, 'bad.tgz'), {
          sha256: '0'.repeat(64),
        }),
      ).rejects.toThrow(/^download_integrity: .*expected 0{64}; the file was discarded/);
      expect(existsSync(join(cache, 'bad.tgz')) || existsSync(join(cache, 'bad.tgz.part'))).toBe(false);
    } finally {
      await api.close();
    }
  });

  it('plugin bundles are downloaded once per runner and re-checked on every read', async () => {
    const bundle = new TextEncoder().encode('export default { verify: () => 1 };');
    const digest = sha256(bundle);
    const evil = new TextEncoder().encode('export default { verify: () => 0 };');
    const api = await serve({
      [`/v1/runner/bundles/${digest}`]: bundle,
      [`/v1/runner/bundles/${'a'.repeat(64)}`]: evil,
    });
    try {
      const dir = mkdtempSync(join(tmpdir(), 'cgrpo-bundles-'));
      const download = cachedBundles(dir, api.get);
      expect(await download(`/v1/runner/bundles/${digest}`)).toEqual(bundle);
      expect(await download(`/v1/runner/bundles/${digest}`)).toEqual(bundle);
      expect(api.hits.length).toBe(1);
      // a cached file changed on disk is not trusted: downloaded again
      writeFileSync(join(dir, `${digest}.js`), evil);
      expect(await download(`/v1/runner/bundles/${digest}`)).toEqual(bundle);
      expect(api.hits.length).toBe(2);
      await expect(download(`/v1/runner/bundles/${'a'.repeat(64)}`)).rejects.toThrow(/download_integrity/);
      expect(existsSync(join(dir, `${'a'.repeat(64)}.js`))).toBe(false);
    } finally {
      await api.close();
    }
  });
});

describe('cgrpo-runner models pull / list', () => {
  it('pulls into the cache and lists it; errors are one line naming what to do', async () => {
    const hub = new LoopbackHub({
      'cgrpo-test/tiny-qwen2': { dir: join(MODELS, 'tiny-qwen2'), commit: COMMIT },
    });
    await hub.start();
    try {
      const home = mkdtempSync(join(tmpdir(), 'cgrpo-hf-'));
      const env = { HF_HOME: home, HF_ENDPOINT: hub.url };
      const lines: string[] = [];
      const out = (l: string) => lines.push(l);
      expect(await modelsCommand(['pull', 'cgrpo-test/tiny-qwen2', '--revision', 'main'], out, env)).toBe(0);
      expect(lines.at(-1)).toMatch(
        new RegExp(
          `^cgrpo-test/tiny-qwen2: ${join(home, 'hub')}/models--cgrpo-test--tiny-qwen2/snapshots/${COMMIT} \\(\\d+\\.\\d MiB downloaded`,
        ),
      );
      lines.length = 0;
      expect(await modelsCommand(['list'], out, env)).toBe(0);
      expect(lines).toEqual([
        `Hugging Face cache: ${join(home, 'hub')}`,
        expect.stringMatching(/^cgrpo-test\/tiny-qwen2 {2}c0ffee000000 \(main\) {2}\d+\.\d MiB$/),
      ]);
      lines.length = 0;
      expect(await modelsCommand(['pull', 'nobody/nothing'], out, env)).toBe(1);
      expect(lines).toEqual([
        expect.stringMatching(/^model_not_found: model\.id: nobody\/nothing@main: no such model/),
      ]);
      expect(await modelsCommand(['pull'], out, env)).toBe(2);
    } finally {
      await hub.stop();
    }
  });
});
