// Where a job's model comes from: a local checkpoint folder named by path (`/models/x`,
// `file:///models/x`) or by id, looked up in the runner's model folders (`<dir>/<id>`, then
// `<dir>/<owner>--<name>` and `<dir>/<name>`); a Hub repo id (`Qwen/Qwen2.5-0.5B-Instruct` +
// revision) resolved in the Hugging Face cache and downloaded into it when missing (see hub/);
// or a model the user uploaded to the API as an artifact (`artifact://art_…`: a tar or tar.gz of
// the Hugging Face folder), downloaded once per runner into its model cache.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extract } from 'tar';
import type { FileDownload } from '../download';
import { REPO_ID } from '../hub/cache';
import { HubError, pullModel } from '../hub/pull';
import type { Logger } from '../log';
import { JobError } from './types';

function isCheckpoint(dir: string): boolean {
  return existsSync(join(dir, 'config.json'));
}

export function resolveModelDir(id: string, modelDirs: readonly string[]): string {
  if (id.startsWith('artifact://')) {
    throw new JobError(
      'runner_error',
      `model.id: ${id}: artifact models are fetched with fetchModelArtifact`,
    );
  }
  const path = id.startsWith('file://') ? fileURLToPath(id) : id.startsWith('file:') ? id.slice(5) : id;
  if (path.startsWith('/') || path.startsWith('.')) {
    if (isCheckpoint(path)) return path;
    throw new JobError(
      'model_not_found',
      `model.id: ${path} is not a checkpoint folder (no config.json) on this runner`,
    );
  }
  const names = [id, id.replace('/', '--'), id.split('/').pop() ?? id];
  for (const dir of modelDirs) {
    for (const name of names) {
      const candidate = join(dir, name);
      if (isCheckpoint(candidate)) return candidate;
    }
  }
  throw new JobError(
    'model_not_found',
    `model.id: '${id}' is not in this runner's model folders (${modelDirs.join(', ')}); place the checkpoint folder in one of them, start the runner with --models-dir, or name a Hub repo (org/name)`,
  );
}

/**
 * A job's model folder: a local path or model-folder entry first, then the Hugging Face cache and
 * Hub for repo ids (`org/name`). Hub failures become job errors with the variable to set.
 */
export async function resolveModel(
  model: { id: string; revision?: string },
  modelDirs: readonly string[],
  o: { env?: Readonly<Record<string, string | undefined>>; fetch?: typeof fetch; log?: Logger } = {},
): Promise<string> {
  const { id } = model;
  const isPath = /^(file:|\/|\.)/.test(id);
  if (isPath || !id.includes('/') || !REPO_ID.test(id) || model.revision === undefined) {
    try {
      return resolveModelDir(id, modelDirs);
    } catch (e) {
      if (isPath || !REPO_ID.test(id)) throw e;
    }
  }
  const t0 = performance.now();
  try {
    const dir = await pullModel(id, {
      revision: model.revision,
      env: o.env,
      fetch: o.fetch,
      onFile: (f) => o.log?.info('model file downloaded', { model: id, ...f }),
      onWait: (message) => o.log?.info(message),
    });
    o.log?.info('model ready', {
      model: id,
      dir,
      seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
    });
    return dir;
  } catch (e) {
    if (e instanceof HubError) throw new JobError(e.code, e.message.slice(e.code.length + 2), e.retryable);
    throw e;
  }
}

const ARCHIVE_HINT =
  'upload a tar or tar.gz of the Hugging Face folder (config.json, tokenizer.json, *.safetensors), e.g. `tar czf model.tgz -C my-model .`, with POST /v1/artifacts?kind=model';

/**
 * An uploaded model (`artifact://art_…`) as a checkpoint folder in `cacheDir/<artifact id>`: the
 * archive is downloaded and extracted once per runner (node-tar: no absolute paths, no `..`, no
 * links out of the folder) and reused by later jobs. A folder with one top-level directory holding
 * the checkpoint is accepted too.
 */
export async function fetchModelArtifact(
  id: string,
  download: ((path: string) => Promise<Uint8Array>) | { toFile: FileDownload },
  cacheDir: string,
  log?: Logger,
): Promise<string> {
  const artifact = id.slice('artifact://'.length);
  if (!/^art_[A-Za-z0-9]+$/.test(artifact)) {
    throw new JobError('model_not_found', `model.id: ${id} is not an artifact id (artifact://art_…)`);
  }
  const target = join(cacheDir, artifact);
  const ready = join(target, '.cgrpo-complete');
  if (existsSync(ready)) return checkpointIn(target, id);
  mkdirSync(cacheDir, { recursive: true });
  const staging = join(cacheDir, `.${artifact}-${process.pid}-${Date.now()}`);
  mkdirSync(staging, { recursive: true });
  try {
    const t0 = performance.now();
    const archive = join(staging, '.archive');
    const path = `/v1/runner/artifacts/${artifact}/content`;
    let bytes: number;
    try {
      // streamed to disk when the caller can (archives of real checkpoints are GBs)
      if (typeof download === 'function') {
        const body = await download(path);
        writeFileSync(archive, body);
        bytes = body.length;
      } else {
        bytes = (await download.toFile(path, archive)).bytes;
      }
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const status = (e as { status?: unknown }).status;
      if (status === 404)
        throw new JobError('model_not_found', `model.id: ${id}: no such artifact in this account`);
      throw new JobError('model_download_failed', `model.id: ${id}: download failed: ${message}`, true);
    }
    const files = join(staging, 'files');
    mkdirSync(files);
    try {
      // gzip is detected from the bytes; strict turns warnings (bad headers) into errors
      await extract({ file: archive, cwd: files, strict: true, preservePaths: false });
    } catch (e) {
      throw new JobError(
        'model_invalid',
        `model.id: ${id}: the artifact is not a readable tar archive (${e instanceof Error ? e.message : String(e)}); ${ARCHIVE_HINT}`,
      );
    }
    rmSync(archive);
    checkpointIn(files, id);
    writeFileSync(join(files, '.cgrpo-complete'), `${artifact}\n`);
    rmSync(target, { recursive: true, force: true });
    renameSync(files, target);
    log?.info('model artifact ready', {
      artifact,
      bytes,
      seconds: Number(((performance.now() - t0) / 1000).toFixed(2)),
    });
    return checkpointIn(target, id);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The checkpoint folder inside an extracted archive: its top level, or its one directory. */
function checkpointIn(dir: string, id: string): string {
  if (isCheckpoint(dir)) return dir;
  const dirs = readdirSync(dir).filter((n) => !n.startsWith('.') && statSync(join(dir, n)).isDirectory());
  if (dirs.length === 1 && isCheckpoint(join(dir, dirs[0]))) return join(dir, dirs[0]);
  throw new JobError(
    'model_invalid',
    `model.id: ${id}: the archive has no config.json at its top level; ${ARCHIVE_HINT}`,
  );
}
