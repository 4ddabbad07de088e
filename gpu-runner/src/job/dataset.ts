// A job's datasets: downloaded (uploaded artifacts through the API, http(s) URLs) or read from the
// runner's disk (`file:`), parsed as JSONL and mapped through the spec's field names.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { delimiter, isAbsolute, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DatasetRef } from '@cgrpo/contract';
import { ApiError, RUNNER_ROUTES, type RunnerApi } from '../api-client';
import { JobError } from './types';

export interface Example {
  /** Row number in the file (1-based), for messages and rollouts. */
  line: number;
  question: string;
  reference: string;
  solution?: string;
  /** The target completion of an SFT row (fields.completion). */
  completion?: string;
}

/**
 * The runner's data roots: its working directory and the folders in CGRPO_DATA_ROOTS (separated
 * by the platform's path delimiter). A `file:` dataset must resolve, symlinks followed, inside one.
 */
export function dataRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const extra = (env.CGRPO_DATA_ROOTS ?? '').split(delimiter).filter(Boolean);
  return [process.cwd(), ...extra].map((r) => resolve(r));
}

/** The file a `file:` URI names, refused unless it lies inside a data root. */
export function confinedPath(uri: string, field: string, roots = dataRoots()): string {
  const raw = uri.startsWith('file://') ? fileURLToPath(uri) : uri.slice('file:'.length);
  const abs = resolve(raw);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    throw new JobError('dataset_download_failed', `${field}.uri: ${uri}: no such file on this runner`);
  }
  const inside = roots.some((root) => {
    const r = existsSync(root) ? realpathSync(root) : root;
    const rel = relative(r, real);
    return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
  });
  if (!inside) {
    throw new JobError(
      'dataset_path_refused',
      `${field}.uri: ${uri} is outside this runner's data roots (${roots.join(', ')}); put the file under one or add its folder to CGRPO_DATA_ROOTS`,
    );
  }
  return real;
}

async function fetchBytes(ref: DatasetRef, api: RunnerApi, field: string): Promise<Uint8Array> {
  const uri = ref.uri;
  try {
    if (uri.startsWith('artifact://'))
      return await api.download(RUNNER_ROUTES.artifact(uri.slice('artifact://'.length)));
    if (/^https?:\/\//.test(uri)) {
      const res = await fetch(uri, { signal: AbortSignal.timeout(300_000) });
      if (!res.ok)
        throw new JobError(
          'dataset_download_failed',
          `${field}.uri: ${uri} answered ${res.status}`,
          res.status >= 500,
        );
      return new Uint8Array(await res.arrayBuffer());
    }
    if (uri.startsWith('file:')) return readFileSync(confinedPath(uri, field));
  } catch (e) {
    if (e instanceof JobError) throw e;
    const retryable = e instanceof ApiError ? e.retryable : false;
    throw new JobError(
      'dataset_download_failed',
      `${field}.uri: ${uri}: ${e instanceof Error ? e.message : String(e)}`,
      retryable,
    );
  }
  throw new JobError(
    'dataset_source_not_supported',
    `${field}.uri: ${uri}: Hugging Face dataset paths need network access this runner does not use; upload the file as an artifact instead`,
  );
}

/** Parses JSONL and applies the field mapping; names the first bad line. */
export function parseDataset(
  text: string,
  ref: DatasetRef,
  field: string,
  completionRequired = false,
): Example[] {
  const out: Example[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (!raw) continue;
    let row: unknown;
    try {
      row = JSON.parse(raw);
    } catch {
      throw new JobError('dataset_invalid', `${field}: line ${i + 1} is not valid JSON`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new JobError('dataset_invalid', `${field}: line ${i + 1} is not a JSON object`);
    }
    const r = row as Record<string, unknown>;
    const get = (name: string, required: boolean): string | undefined => {
      const v = r[name];
      if (v === undefined || v === null) {
        if (required)
          throw new JobError(
            'dataset_invalid',
            `${field}: line ${i + 1} has no field '${name}' (see ${field}.fields)`,
          );
        return undefined;
      }
      return typeof v === 'string' ? v : JSON.stringify(v);
    };
    out.push({
      line: i + 1,
      question: get(ref.fields.prompt, true) as string,
      reference: get(ref.fields.reference, !completionRequired) ?? '',
      ...(ref.fields.solution ? { solution: get(ref.fields.solution, false) } : {}),
      ...(ref.fields.completion ? { completion: get(ref.fields.completion, completionRequired) } : {}),
    });
    if (ref.limit !== undefined && out.length >= ref.limit) break;
  }
  if (out.length === 0) throw new JobError('dataset_empty', `${field}: no rows`);
  return out;
}

export async function loadDataset(
  ref: DatasetRef,
  api: RunnerApi,
  field: string,
  completionRequired = false,
): Promise<Example[]> {
  const bytes = await fetchBytes(ref, api, field);
  return parseDataset(new TextDecoder().decode(bytes), ref, field, completionRequired);
}
