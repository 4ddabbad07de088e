import {
  BUILTIN_PLUGINS,
  CHECKPOINT_MODEL_PREFIX,
  type FieldError,
  type JobSpec,
  type JobWarning,
  PLUGIN_REF_PATTERN,
  type PluginKind,
  pluginUsesOf,
} from '@cgrpo/contract';
import { checkShaping } from '@cgrpo/plugins/shaping';
import { and, eq, gte, isNull } from 'drizzle-orm';
import { artifacts, checkpoints, jobs, plugins, runners } from './db/schema';
import type { Db } from './env';
import { configValidator, pluginNameProblems, readStoredManifest } from './plugin-manifest';

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
    if (uri?.startsWith('file:')) {
      const problem = fileUriProblem(uri);
      if (problem) fields.push({ path, message: problem });
      continue;
    }
    if (!uri?.startsWith('artifact://')) continue;
    const id = uri.slice('artifact://'.length);
    const row = await db
      .select({ kind: artifacts.kind, status: artifacts.status, rows: artifacts.rows })
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
    else if (path === 'datasets.train.uri' && row.rows !== null) {
      // The runner refuses a step it cannot fill (drop_last); say so now instead of after a lease.
      const { prompts_per_step: perStep, drop_last: dropLast } = spec.hyperparameters;
      if (dropLast && perStep > row.rows)
        fields.push({
          path: 'hyperparameters.prompts_per_step',
          message: `${perStep} is more than the ${row.rows} rows of ${id} (drop_last is on); lower it to at most ${row.rows} or add rows`,
        });
    }
  }
  if (spec.model.id.startsWith(CHECKPOINT_MODEL_PREFIX)) {
    const id = spec.model.id.slice(CHECKPOINT_MODEL_PREFIX.length);
    const row = await db
      .select({ status: checkpoints.status })
      .from(checkpoints)
      .innerJoin(jobs, eq(jobs.id, checkpoints.jobId))
      .where(and(eq(checkpoints.id, id), eq(jobs.accountId, accountId)))
      .get();
    if (!row)
      fields.push({
        path: 'model.id',
        message: `checkpoint ${id} not found in this account; list a job's checkpoints with GET /v1/jobs/{id}/checkpoints`,
      });
    else if (row.status !== 'complete')
      fields.push({
        path: 'model.id',
        message: `checkpoint ${id} is still uploading; retry when it is complete`,
      });
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
    if (!('builtin' in ref)) {
      const bounds = pluginNameProblems(`${ref.owner}/${ref.name}`, ref.version, {
        name: path,
        version: path,
      });
      if (bounds.length > 0) {
        fields.push(...bounds);
        continue;
      }
    }
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
      } else if (kind !== 'shaping' && Object.keys(use.config).length > 0) {
        // The same check POST /v1/plugins/run makes (loaded lazily: the math verifier is heavy).
        const { validateBuiltinConfig } = await import('@cgrpo/plugins/builtin');
        for (const f of validateBuiltinConfig(ref.builtin, kind, use.config))
          fields.push({ path: `${role}.${f.path}`, message: f.message });
      }
    } else {
      const row = await db
        .select({ kind: plugins.kind, manifest: plugins.manifest })
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
      else fields.push(...publishedConfigProblems(row.manifest, use.config, role, use.plugin));
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

/** A published plugin's config against its manifest's config_schema (paths `<role>.config.…`). */
function publishedConfigProblems(
  manifestText: string,
  config: Record<string, unknown>,
  role: string,
  ref: string,
): FieldError[] {
  const manifest = readStoredManifest(manifestText);
  if (!manifest)
    return [{ path: `${role}.plugin`, message: `${ref} has an unreadable manifest; publish a new version` }];
  try {
    return configValidator(manifest.config_schema ?? { type: 'object' }).validate(config, `${role}.config`);
  } catch {
    return [
      {
        path: `${role}.plugin`,
        message: `${ref} has a config_schema that does not compile; publish a new version`,
      },
    ];
  }
}

/**
 * Why a `file:` dataset URI is refused, or undefined. The runner reads `file:` paths relative to
 * its data root (its working directory), so only relative paths that stay inside it are accepted:
 * no absolute paths (`file:/…`, `file:///…`, `C:\…`, `~`), no `..` segments, also when
 * percent-encoded, and no backslashes or NUL bytes.
 */
export function fileUriProblem(uri: string): string | undefined {
  const raw = uri.slice('file:'.length);
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    return 'the file: path is not valid percent-encoding';
  }
  const hint = "use a path relative to the runner's data root, like file:datasets/train.jsonl";
  if (path === '') return `the file: path is empty; ${hint}`;
  if (path.startsWith('/') || path.startsWith('~') || /^[A-Za-z]:/.test(path))
    return `absolute paths are refused; ${hint}`;
  if (path.includes('\\') || path.includes('\0')) return `backslashes and NUL bytes are refused; ${hint}`;
  if (path.split('/').some((segment) => segment === '..')) return `'..' would leave the data root; ${hint}`;
  return undefined;
}

/** Capabilities a runner must have for this job: every capability the job grants its plugins. */
export function requiredCapabilities(spec: JobSpec): string[] {
  return [...new Set(pluginUsesOf(spec).flatMap(({ use }) => use.grants))].sort();
}

/** A runner counts as present when it called the API within this window (it long-polls every ≤ 60 s). */
export const RUNNER_RECENT_MS = 15 * 60_000;
/** A runner that lists `model:<id>` capabilities runs only those models; one that lists none runs any. */
export const MODEL_CAPABILITY_PREFIX = 'model:';

/**
 * Warnings for a job that can be queued but that no runner is likely to take: no runner of the
 * account seen within RUNNER_RECENT_MS advertises `spec.model.id`. A runner advertises a model with
 * a `model:<id>` capability; a runner without any `model:` capability loads whatever id it is given
 * (its model folders, the Hub, artifacts, checkpoints), so it advertises every model.
 */
export async function modelWarnings(
  db: Db,
  accountId: string,
  spec: JobSpec,
  now: number,
): Promise<JobWarning[]> {
  const seen = await db
    .select({ capabilities: runners.capabilities })
    .from(runners)
    .where(
      and(
        eq(runners.accountId, accountId),
        isNull(runners.revokedAt),
        gte(runners.lastSeenAt, now - RUNNER_RECENT_MS),
      ),
    )
    .all();
  const modelId = spec.model.id;
  const advertised = seen.some(({ capabilities }) => {
    const models = capabilities.filter((c) => c.startsWith(MODEL_CAPABILITY_PREFIX));
    return models.length === 0 || models.includes(`${MODEL_CAPABILITY_PREFIX}${modelId}`);
  });
  if (advertised) return [];
  const minutes = RUNNER_RECENT_MS / 60_000;
  const message =
    seen.length === 0
      ? `no runner of this account was seen in the last ${minutes} minutes, so the job waits in the queue; start one (cgrpo-runner --api URL --token cgrpo_rt_…, see docs/runner.md)`
      : `none of the ${seen.length} runner(s) seen in the last ${minutes} minutes advertises model ${modelId} (capability ${MODEL_CAPABILITY_PREFIX}${modelId}), so the job waits in the queue; start a runner that has this model, or use a model one of them lists`;
  return [{ code: 'no_runner_for_model', field: 'model.id', message }];
}
