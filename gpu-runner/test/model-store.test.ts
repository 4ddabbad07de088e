// Uploaded models: real archives made by the system `tar` (what a user runs), extracted by the
// runner's model cache. The download function stands in for the API route (the e2e test in
// uploads.e2e.test.ts goes through the real API).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fetchModelArtifact, resolveModelDir } from '../src/job/model-store';
import { createTar } from '../src/job/tar';
import { ROOT } from './harness';
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
