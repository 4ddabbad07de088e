// The registry routes of the API (api/src/routes/plugins.ts): publish (multipart manifest + bundle),
// list, show. Errors come back as the contract's ErrorBody and are shown with their fields.
import {
  ErrorBodySchema,
  type PluginManifest,
  type PluginVersion,
  PluginVersionSchema,
} from '@cgrpo/contract';
import { z } from 'zod';
import { CliError } from './project';

export interface ApiTarget {
  url: string;
  key: string;
}

/** `--api`/`--key`, else CGRPO_API_URL / CGRPO_API_KEY. */
export function apiTarget(flags: { api?: string; key?: string }, env = process.env): ApiTarget {
  const url = flags.api ?? env.CGRPO_API_URL;
  const key = flags.key ?? env.CGRPO_API_KEY;
  if (!url)
    throw new CliError('missing_api', 'no API URL: pass --api http://127.0.0.1:8787 or set CGRPO_API_URL');
  if (!key) throw new CliError('missing_key', 'no API key: pass --key cgrpo_sk_... or set CGRPO_API_KEY');
  const base = url.replace(/\/+$/, '');
  return { url: base.endsWith('/v1') ? base : `${base}/v1`, key };
}

async function request(
  target: ApiTarget,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown }> {
  let response: Response;
  try {
    response = await fetch(`${target.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${target.key}`, ...(init.headers ?? {}) },
    });
  } catch (error) {
    throw new CliError('api_unreachable', `could not reach ${target.url}: ${(error as Error).message}`);
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const parsed = ErrorBodySchema.safeParse(body);
    if (parsed.success) {
      const { code, message, fields } = parsed.data.error;
      const detail = fields.map((f) => `\n  ${f.path}: ${f.message}`).join('');
      throw new CliError(code, `${response.status} ${code}: ${message}${detail}`);
    }
    throw new CliError('api_error', `${response.status} from ${path}: ${text.slice(0, 500)}`);
  }
  return { status: response.status, body };
}

export async function publishPlugin(
  target: ApiTarget,
  bundle: string,
  manifest: PluginManifest,
): Promise<{ created: boolean; version: PluginVersion }> {
  const form = new FormData();
  form.set('manifest', JSON.stringify(manifest));
  form.set('bundle', new Blob([bundle], { type: 'text/javascript' }), 'plugin.mjs');
  const { status, body } = await request(target, '/plugins', { method: 'POST', body: form });
  // The API answers 200 (not 201) when these exact bytes were already published.
  return { created: status === 201, version: PluginVersionSchema.parse(body) };
}

export async function listPlugins(target: ApiTarget, kind?: string): Promise<PluginVersion[]> {
  const query = kind ? `?kind=${encodeURIComponent(kind)}` : '';
  const { body } = await request(target, `/plugins${query}`);
  return z.object({ data: z.array(PluginVersionSchema) }).parse(body).data;
}

/** `owner/name` (all versions) or `owner/name@version`, or `builtin:name`. */
export async function showPlugin(target: ApiTarget, ref: string): Promise<PluginVersion[]> {
  const builtin = /^builtin:([a-z][a-z0-9-]*)$/.exec(ref);
  const match = builtin ? null : /^([a-z0-9][a-z0-9-]*)\/([a-z0-9][a-z0-9-]*)(?:@(.+))?$/.exec(ref);
  if (!builtin && !match) {
    throw new CliError(
      'invalid_ref',
      `'${ref}' is not a plugin reference: use owner/name, owner/name@1.2.0 or builtin:name`,
    );
  }
  const [owner, name, version] = builtin
    ? ['builtin', builtin[1], undefined]
    : [match![1], match![2], match![3]];
  const path = `/plugins/${owner}/${name}${version ? `/${encodeURIComponent(version)}` : ''}`;
  const { body } = await request(target, path);
  if (version) return [PluginVersionSchema.parse(body)];
  return z.object({ data: z.array(PluginVersionSchema) }).parse(body).data;
}
