// A model repo from the Hugging Face Hub (or a mirror at HF_ENDPOINT) into the shared cache:
// the revision is resolved to a commit and the repo listed with @huggingface/hub, then each file
// the decoder needs is streamed to blobs/<etag> (resumable, checked against its sha256 or git sha1)
// and linked from snapshots/<commit>/. A snapshot already in the cache (from Python or an earlier
// pull) is used in place; without the network, a cached ref still resolves.
import { mkdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { HubApiError, listFiles, modelInfo } from '@huggingface/hub';
import { COMMIT, cachedCommit, completeSnapshot, type Env, hubCacheDir, REPO_ID, repoFolder } from './cache';
import { type Digest, DownloadError, downloadToFile } from './download';
import { withFileLock } from './lock';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubOptions {
  revision?: string;
  env?: Env;
  fetch?: typeof fetch;
  /** called once per file actually downloaded */
  onFile?: (f: { path: string; bytes: number; resumed: boolean }) => void;
  onWait?: (message: string) => void;
}

export class HubError extends Error {
  constructor(
    readonly code: 'model_not_found' | 'model_access_denied' | 'model_download_failed' | 'model_invalid',
    message: string,
    readonly retryable = false,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Files a decoder checkpoint needs; weights only as safetensors (no pickles are ever fetched). */
export function wantedFile(path: string): boolean {
  if (path.includes('/')) return false;
  return (
    /\.safetensors$/.test(path) ||
    [
      'config.json',
      'generation_config.json',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer_config.json',
      'special_tokens_map.json',
      'chat_template.jinja',
      'LICENSE',
      'README.md',
    ].includes(path)
  );
}

function accessHint(repo: string, env: Env): string {
  return env.HF_TOKEN
    ? `the token in HF_TOKEN has no access to ${repo}: accept the model's terms on its Hub page with that account, or use a token that can read it`
    : `${repo} is gated or private: set HF_TOKEN to a Hub access token (hf_…) of an account that has accepted its terms`;
}

function hubFailure(e: unknown, repo: string, revision: string, endpoint: string, env: Env): HubError {
  const status = e instanceof HubApiError ? e.statusCode : e instanceof DownloadError ? e.status : undefined;
  if (status === 401 || status === 403)
    return new HubError('model_access_denied', `model.id: ${repo}: ${accessHint(repo, env)}`);
  if (status === 404) {
    return new HubError(
      'model_not_found',
      `model.id: ${repo}@${revision}: no such model or revision on ${endpoint} (check the id and model.revision; a private repo also answers 404 without HF_TOKEN)`,
    );
  }
  if (e instanceof DownloadError && e.code !== 'download_http') {
    return new HubError('model_download_failed', `model.id: ${repo}: ${e.message}`, true);
  }
  const m = e instanceof Error ? e.message : String(e);
  return new HubError(
    'model_download_failed',
    `model.id: ${repo}: ${endpoint} did not answer (${m}); check the network or HF_ENDPOINT, or pull the model while online`,
    true,
  );
}

function link(snapshot: string, path: string, blob: string): void {
  const at = join(snapshot, path);
  mkdirSync(dirname(at), { recursive: true });
  const target = relative(dirname(at), blob);
  try {
    if (readlinkSync(at) === target) return;
  } catch {
    // absent or not a link
  }
  rmSync(at, { force: true });
  symlinkSync(target, at);
}

/**
 * The snapshot folder of `repo` at `revision` (default main), downloading what the cache lacks.
 * HF_HUB_OFFLINE=1 never touches the network.
 */
export async function pullModel(repo: string, o: HubOptions = {}): Promise<string> {
  const env = o.env ?? process.env;
  const revision = o.revision ?? 'main';
  const endpoint = (env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  if (!REPO_ID.test(repo)) {
    throw new HubError('model_not_found', `model.id: ${repo} is not a Hub repo id (org/name)`);
  }
  const cache = hubCacheDir(env);
  const root = repoFolder(cache, repo);
  const cached = cachedCommit(cache, repo, revision);
  const offline = env.HF_HUB_OFFLINE === '1' || env.HF_HUB_OFFLINE === 'true';
  // a commit is immutable: a complete snapshot of it needs no network at all
  if (cached && (COMMIT.test(revision) || offline) && completeSnapshot(join(root, 'snapshots', cached))) {
    return join(root, 'snapshots', cached);
  }
  if (offline) {
    throw new HubError(
      'model_not_found',
      `model.id: ${repo}@${revision} is not in the Hugging Face cache at ${cache} and HF_HUB_OFFLINE is set; pull it first (cgrpo-runner models pull ${repo})`,
    );
  }
  const token = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN;
  const credentials = token ? { accessToken: token } : {};
  const api = { hubUrl: endpoint, fetch: o.fetch, ...credentials };
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  let commit: string;
  let files: { path: string; size: number; digest: Digest; etag: string }[];
  try {
    const info = await modelInfo({ name: repo, revision, additionalFields: ['sha'], ...api });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== 'string' || !COMMIT.test(sha)) throw new Error(`no commit sha for ${revision}`);
    commit = sha;
    files = [];
    for await (const f of listFiles({
      repo: { type: 'model', name: repo },
      revision: commit,
      recursive: true,
      ...api,
    })) {
      if (f.type !== 'file' || !wantedFile(f.path)) continue;
      const digest: Digest = f.lfs
        ? { algorithm: 'sha256', hex: f.lfs.oid }
        : { algorithm: 'git-sha1', hex: f.oid ?? '' };
      if (!/^[0-9a-f]{40,64}$/.test(digest.hex)) throw new Error(`${f.path}: the listing has no oid`);
      files.push({ path: f.path, size: f.lfs?.size ?? f.size, digest, etag: digest.hex });
    }
  } catch (e) {
    // the network is down but the ref was resolved before: use that snapshot, as Python does
    const status = e instanceof HubApiError ? e.statusCode : undefined;
    if (status === undefined && cached && completeSnapshot(join(root, 'snapshots', cached))) {
      return join(root, 'snapshots', cached);
    }
    throw hubFailure(e, repo, revision, endpoint, env);
  }
  if (!files.some((f) => f.path === 'config.json') || !files.some((f) => f.path.endsWith('.safetensors'))) {
    throw new HubError(
      'model_invalid',
      `model.id: ${repo}@${revision}: the repo has no config.json or no *.safetensors weights; the runner loads safetensors checkpoints only`,
    );
  }
  const snapshot = join(root, 'snapshots', commit);
  const lockFile = join(cache, '.locks', `models--${repo.replaceAll('/', '--')}`, 'cgrpo.lock');
  await withFileLock(
    lockFile,
    async () => {
      mkdirSync(join(root, 'blobs'), { recursive: true });
      for (const f of files) {
        const blob = join(root, 'blobs', f.etag);
        if (sizeOf(blob) !== f.size) {
          const url = `${endpoint}/${repo}/resolve/${commit}/${encodeURIComponent(f.path)}`;
          const partial = sizeOf(`${blob}.incomplete`) ?? 0;
          try {
            const bytes = await downloadToFile(url, blob, {
              headers,
              size: f.size,
              digest: f.digest,
              fetch: o.fetch,
            });
            o.onFile?.({ path: f.path, bytes, resumed: partial > 0 && bytes < f.size });
          } catch (e) {
            throw hubFailure(e, repo, revision, endpoint, env);
          }
        }
        link(snapshot, f.path, blob);
      }
      if (!COMMIT.test(revision)) {
        mkdirSync(dirname(join(root, 'refs', revision)), { recursive: true });
        writeFileSync(join(root, 'refs', revision), commit);
      }
    },
    {
      onWait: (pid) =>
        o.onWait?.(`waiting for process ${pid ?? '?'} that is downloading ${repo} into ${cache}`),
    },
  );
  return snapshot;
}

function sizeOf(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null;
  }
}
