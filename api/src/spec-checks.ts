import {
  BUILTIN_PLUGINS,
  type FieldError,
  type JobSpec,
  PLUGIN_REF_PATTERN,
  type PluginKind,
  pluginUsesOf,
} from '@cgrpo/contract';
import { checkShaping } from '@cgrpo/plugins/shaping';
import { and, eq } from 'drizzle-orm';
import { artifacts, plugins } from './db/schema';
import type { Db } from './env';

// Checks of a resolved spec against the world: the artifacts and plugins it names exist for this
// account and have the right kind, and the shaping expression parses and stays finite. Each
// problem names the spec field it comes from.

export function parsePluginRef(
  ref: string,
): { builtin: string } | { owner: string; name: string; version: string } {
  if (ref.startsWith('builtin:')) return { builtin: ref.slice('builtin:'.length) };
  const [path, version] = ref.split('@') as [string, string];
  const [owner, name] = path.split('/') as [string, string];
  return { owner, name, version };
}

export async function checkSpecReferences(db: Db, accountId: string, spec: JobSpec): Promise<FieldError[]> {
  const fields: FieldError[] = [];
  const datasets = [
    ['datasets.train.uri', spec.datasets.train.uri],
    ['datasets.validation.uri', spec.datasets.validation?.uri],
  ] as const;
  for (const [path, uri] of datasets) {
    if (!uri?.startsWith('artifact://')) continue;
    const id = uri.slice('artifact://'.length);
    const row = await db
      .select({ kind: artifacts.kind, status: artifacts.status })
      .from(artifacts)
      .where(and(eq(artifacts.id, id), eq(artifacts.accountId, accountId)))
      .get();
    if (!row)
      fields.push({
        path,
        message: `artifact ${id} not found; upload it with POST /v1/artifacts?kind=dataset`,
      });
    else if (row.kind !== 'dataset')
      fields.push({ path, message: `artifact ${id} is a ${row.kind}, not a dataset` });
    else if (row.status !== 'ready') fields.push({ path, message: `artifact ${id} is still uploading` });
  }
  if (spec.model.id.startsWith('artifact://')) {
    const id = spec.model.id.slice('artifact://'.length);
    const row = await db
      .select({ kind: artifacts.kind, status: artifacts.status })
      .from(artifacts)
      .where(and(eq(artifacts.id, id), eq(artifacts.accountId, accountId)))
      .get();
    if (!row)
      fields.push({
        path: 'model.id',
        message: `artifact ${id} not found; upload a tar(.gz) of the model folder with POST /v1/artifacts?kind=model`,
      });
    else if (row.kind !== 'model')
      fields.push({ path: 'model.id', message: `artifact ${id} is a ${row.kind}, not a model` });
    else if (row.status !== 'ready')
      fields.push({ path: 'model.id', message: `artifact ${id} is still uploading` });
  }

  for (const { role, use } of pluginUsesOf(spec)) {
    const path = `${role}.plugin`;
    const kind: PluginKind = role;
    if (!PLUGIN_REF_PATTERN.test(use.plugin)) continue;
    const ref = parsePluginRef(use.plugin);
    if ('builtin' in ref) {
      const builtin = BUILTIN_PLUGINS.find((b) => b.name === ref.builtin);
      const same = BUILTIN_PLUGINS.filter((b) => b.kind === kind).map((b) => `builtin:${b.name}`);
      if (!builtin)
        fields.push({ path, message: `no built-in plugin '${ref.builtin}'; ${kind}s: ${same.join(', ')}` });
      else if (builtin.kind !== kind) {
        fields.push({
          path,
          message: `builtin:${ref.builtin} is a ${builtin.kind}, not a ${kind}; ${kind}s: ${same.join(', ')}`,
        });
      }
    } else {
      const row = await db
        .select({ kind: plugins.kind })
        .from(plugins)
        .where(
          and(eq(plugins.owner, ref.owner), eq(plugins.name, ref.name), eq(plugins.version, ref.version)),
        )
        .get();
      if (!row)
        fields.push({
          path,
          message: `plugin ${use.plugin} is not published; publish it with POST /v1/plugins`,
        });
      else if (row.kind !== kind)
        fields.push({ path, message: `${use.plugin} is a ${row.kind}, not a ${kind}` });
    }
  }

  if (spec.shaping?.plugin === 'builtin:expression') {
    const config = spec.shaping.config;
    const expression = config.expression ?? 'p / (p + gamma)';
    const params = config.params ?? { gamma: 0.1 };
    const unknown = Object.keys(config).filter((k) => k !== 'expression' && k !== 'params');
    for (const key of unknown)
      fields.push({ path: `shaping.config.${key}`, message: 'unknown field (check the spelling)' });
    if (typeof expression !== 'string') {
      fields.push({ path: 'shaping.config.expression', message: 'must be a string like "p / (p + gamma)"' });
    } else if (
      typeof params !== 'object' ||
      params === null ||
      Array.isArray(params) ||
      Object.values(params).some((v) => typeof v !== 'number')
    ) {
      fields.push({
        path: 'shaping.config.params',
        message: 'must be an object of numbers, e.g. {"gamma": 0.1}',
      });
    } else {
      const checked = checkShaping(expression, params as Record<string, number>);
      if (!checked.ok) {
        fields.push({ path: `shaping.config.${checked.problem.field}`, message: checked.problem.message });
      }
    }
  }
  return fields;
}

/** Capabilities a runner must have for this job: every capability the job grants its plugins. */
export function requiredCapabilities(spec: JobSpec): string[] {
  return [...new Set(pluginUsesOf(spec).flatMap(({ use }) => use.grants))].sort();
}
