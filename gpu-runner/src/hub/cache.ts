// The Hugging Face cache layout, shared with Python's huggingface_hub so a checkpoint downloaded
// by either is used by both without a copy:
//   $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
//     models--<org>--<name>/
//       blobs/<etag>                        file contents (etag: sha256 for LFS files, git sha1 otherwise)
//       refs/<revision>                     the commit a branch or tag pointed at when last resolved
//       snapshots/<commit>/<path> -> ../../blobs/<etag>
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type Env = Readonly<Record<string, string | undefined>>;

export function hubCacheDir(env: Env = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

export const COMMIT = /^[0-9a-f]{40}$/;
/** `org/name` or `name`: what the Hub accepts as a model repo id */
export const REPO_ID = /^(?:[A-Za-z0-9][\w.-]{0,95}\/)?[A-Za-z0-9][\w.-]{0,95}$/;

export function repoFolder(cache: string, repo: string): string {
  return join(cache, `models--${repo.replaceAll('/', '--')}`);
}

/** The commit a revision names in the cache: itself when it is a commit, else refs/<revision>. */
export function cachedCommit(cache: string, repo: string, revision: string): string | null {
  if (COMMIT.test(revision)) return revision;
  const ref = join(repoFolder(cache, repo), 'refs', revision);
  if (!existsSync(ref)) return null;
  const commit = readFileSync(ref, 'utf8').trim();
  return COMMIT.test(commit) ? commit : null;
}

/** A snapshot the decoder can load: config.json and every safetensors file the index names. */
export function completeSnapshot(dir: string): boolean {
  if (!existsSync(join(dir, 'config.json'))) return false;
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> })
      .weight_map;
    return Object.values(map ?? {}).every((f) => existsSync(join(dir, f)));
  }
  return existsSync(join(dir, 'model.safetensors'));
}

export interface CachedModel {
  repo: string;
  commit: string;
  /** branches/tags in refs/ pointing at this commit */
  refs: string[];
  dir: string;
  /** bytes of the snapshot's files (blobs may be shared with other snapshots) */
  bytes: number;
  complete: boolean;
}

/** Every model snapshot in the cache, Python-downloaded ones included. */
export function listCachedModels(cache: string): CachedModel[] {
  if (!existsSync(cache)) return [];
  const out: CachedModel[] = [];
  for (const entry of readdirSync(cache).sort()) {
    if (!entry.startsWith('models--')) continue;
    const repo = entry.slice('models--'.length).replace('--', '/');
    const root = join(cache, entry);
    const refs = new Map<string, string[]>();
    const refsDir = join(root, 'refs');
    if (existsSync(refsDir)) {
      for (const r of readdirSync(refsDir, { recursive: true }) as string[]) {
        const p = join(refsDir, r);
        if (!statSync(p).isFile()) continue;
        const c = readFileSync(p, 'utf8').trim();
        refs.set(c, [...(refs.get(c) ?? []), r]);
      }
    }
    const snaps = join(root, 'snapshots');
    if (!existsSync(snaps)) continue;
    for (const commit of readdirSync(snaps).sort()) {
      const dir = join(snaps, commit);
      let bytes = 0;
      for (const f of readdirSync(dir, { recursive: true }) as string[]) {
        try {
          const s = statSync(join(dir, f));
          if (s.isFile()) bytes += s.size;
        } catch {
          // a dangling link (blob removed): the snapshot is incomplete
        }
      }
      out.push({ repo, commit, refs: refs.get(commit) ?? [], dir, bytes, complete: completeSnapshot(dir) });
    }
  }
  return out;
}
