import {
  BUILTIN_PLUGINS,
  DeprecatePluginSchema,
  ErrorBodySchema,
  type FieldError,
  fieldErrorsFromZod,
  PluginKindSchema,
  PluginManifestSchema,
  type PluginVersion,
  PluginVersionSchema,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { and, asc, desc, eq, sql } from 'drizzle-orm';
import type { Context } from 'hono';
import { z } from 'zod';
import { userOf } from '../auth';
import { accounts, type PluginRow, plugins } from '../db/schema';
import type { AppEnv, Db } from '../env';
import { ApiError, conflict, describeFields, invalid, notFound } from '../errors';
import { iso, newId, sha256Hex } from '../ids';
import { MANIFEST_LIMITS, parseBoundedJson } from '../json-limits';
import { limits } from '../limits';
import { bearerSecurity, binaryResponse, conflictError, errors, json, router } from '../openapi';
import { configSchemaProblems, pluginNameProblems, readStoredManifest } from '../plugin-manifest';

// The plugin registry. A version is published once (bundle + manifest) and never changes: the
// bundle is stored by its sha256 and the (owner, name, version) triple is unique. Only the account
// whose handle is the owner publishes or deprecates; every account can read and use any plugin.

export const pluginsRouter = router();
const tags = ['plugins'];

const SEMVER = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/;

export function toPluginVersion(row: PluginRow): PluginVersion {
  // A row that cannot be served whole (written before the publish bounds) is listed without its
  // manifest rather than failing the whole listing for every account.
  const manifest = readStoredManifest(row.manifest);
  return {
    ref: `${row.owner}/${row.name}@${row.version}`,
    name: `${row.owner}/${row.name}`,
    version: row.version,
    kind: row.kind as PluginVersion['kind'],
    description: typeof manifest?.description === 'string' ? manifest.description.slice(0, 2000) : '',
    builtin: false,
    sha256: row.sha256,
    size: row.size,
    deprecated: row.deprecated,
    deprecation_message: row.deprecationMessage,
    manifest,
    created_at: iso(row.createdAt),
  };
}

function builtinVersion(b: (typeof BUILTIN_PLUGINS)[number]): PluginVersion {
  return {
    ref: `builtin:${b.name}`,
    name: `builtin:${b.name}`,
    version: 'builtin',
    kind: b.kind,
    description: b.description,
    builtin: true,
    sha256: null,
    size: null,
    deprecated: false,
    deprecation_message: null,
    manifest: null,
    created_at: null,
  };
}

export const bundleKey = (sha256: string) => `plugins/${sha256}.mjs`;

pluginsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/plugins',
    tags,
    summary: 'Publish a plugin version (multipart form: `manifest` JSON + `bundle` file)',
    description:
      "The manifest's sha256 must be the bundle's. A version is immutable: publishing the same bytes again returns the existing version; different bytes for a published version are a 409.",
    security: bearerSecurity,
    request: {
      body: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: z.object({
              manifest: z.string().meta({ description: 'The PluginManifest as JSON' }),
              bundle: z
                .any()
                .meta({ type: 'string', format: 'binary', description: 'The bundled ES module' }),
            }),
          },
        },
      },
    },
    responses: {
      201: json(PluginVersionSchema, 'The published version'),
      200: json(PluginVersionSchema, 'This exact version was already published'),
      ...errors,
      ...conflictError,
      413: json(ErrorBodySchema, 'Bundle or manifest too large'),
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const max = limits(c.env).maxPluginBundleBytes;
    const length = Number(c.req.header('content-length') ?? Number.NaN);
    if (Number.isFinite(length) && length > max + 64 * 1024) {
      throw new ApiError(413, 'too_large', `a plugin bundle may be at most ${max} bytes`);
    }
    const form = c.req.valid('form');
    const bundle = form.bundle as unknown;
    if (!(bundle instanceof File)) {
      throw invalid('bundle must be a file part', [{ path: 'bundle', message: 'must be a file' }]);
    }
    if (bundle.size > max)
      throw new ApiError(413, 'too_large', `a plugin bundle may be at most ${max} bytes`);
    if (typeof form.manifest !== 'string' || form.manifest.length > MANIFEST_LIMITS.maxBytes) {
      throw new ApiError(413, 'too_large', `the manifest may be at most ${MANIFEST_LIMITS.maxBytes} bytes`, [
        { path: 'manifest', message: `larger than ${MANIFEST_LIMITS.maxBytes} bytes` },
      ]);
    }
    // Depth, lengths and forbidden keys first: nothing unbounded reaches zod, R2 or D1.
    const manifestJson = parseBoundedJson(form.manifest, 'manifest', MANIFEST_LIMITS);
    const parsed = PluginManifestSchema.safeParse(manifestJson);
    if (!parsed.success) {
      const fields: FieldError[] = fieldErrorsFromZod(parsed.error, 'manifest');
      throw invalid('the manifest is invalid', fields);
    }
    const manifest = parsed.data;
    const problems = [
      ...pluginNameProblems(manifest.name, manifest.version, {
        name: 'manifest.name',
        version: 'manifest.version',
      }),
      ...configSchemaProblems(manifest.config_schema),
    ];
    if (problems.length > 0) throw invalid(`the manifest is invalid: ${describeFields(problems)}`, problems);
    const bytes = await bundle.arrayBuffer();
    const sha256 = await sha256Hex(bytes);
    if (sha256 !== manifest.sha256) {
      throw invalid(`manifest.sha256 is ${manifest.sha256} but the bundle hashes to ${sha256}`, [
        { path: 'manifest.sha256', message: 'does not match the bundle' },
      ]);
    }
    const [owner, name] = manifest.name.split('/') as [string, string];
    const account = await db.select().from(accounts).where(eq(accounts.id, accountId)).get();
    if (!account || account.handle !== owner) {
      throw new ApiError(
        403,
        'forbidden',
        `only the account '${owner}' publishes ${owner}/*; yours is '${account?.handle}'`,
        [{ path: 'manifest.name', message: `use your own handle: '${account?.handle}/<name>'` }],
      );
    }
    const existing = await findVersion(db, owner, name, manifest.version);
    if (existing) {
      if (existing.sha256 === sha256) return c.json(toPluginVersion(existing), 200);
      throw conflict(
        'version_exists',
        `${manifest.name}@${manifest.version} is already published with other bytes; bump the version`,
      );
    }
    await c.env.ARTIFACTS.put(bundleKey(sha256), bytes, { httpMetadata: { contentType: 'text/javascript' } });
    const [, major, minor, patch, prerelease] = SEMVER.exec(manifest.version)!;
    const row: PluginRow = {
      id: newId('plg'),
      accountId,
      owner,
      name,
      version: manifest.version,
      major: Number(major),
      minor: Number(minor),
      patch: Number(patch),
      prerelease: prerelease ?? '',
      kind: manifest.kind,
      sha256,
      size: bytes.byteLength,
      manifest: JSON.stringify(manifest),
      deprecated: false,
      deprecationMessage: null,
      createdAt: Date.now(),
    };
    const [inserted] = await db.insert(plugins).values(row).onConflictDoNothing().returning();
    if (!inserted) {
      const winner = (await findVersion(db, owner, name, manifest.version))!;
      if (winner.sha256 === sha256) return c.json(toPluginVersion(winner), 200);
      throw conflict(
        'version_exists',
        `${manifest.name}@${manifest.version} is already published with other bytes`,
      );
    }
    return c.json(toPluginVersion(inserted), 201);
  },
);

async function findVersion(db: Db, owner: string, name: string, version: string) {
  return db
    .select()
    .from(plugins)
    .where(and(eq(plugins.owner, owner), eq(plugins.name, name), eq(plugins.version, version)))
    .get();
}

const ListQuery = z.strictObject({ kind: PluginKindSchema.optional() });

pluginsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/plugins',
    tags,
    summary: 'List plugins: the built-ins and the latest version of each published plugin',
    security: bearerSecurity,
    request: { query: ListQuery },
    responses: { 200: json(z.object({ data: z.array(PluginVersionSchema) }), 'Plugins'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const { kind } = c.req.valid('query');
    const rows = await c
      .get('db')
      .select()
      .from(plugins)
      .where(kind ? eq(plugins.kind, kind) : undefined)
      .orderBy(
        asc(plugins.owner),
        asc(plugins.name),
        desc(plugins.major),
        desc(plugins.minor),
        desc(plugins.patch),
      )
      .all();
    const latest = new Map<string, PluginRow>();
    for (const row of rows) {
      const key = `${row.owner}/${row.name}`;
      const seen = latest.get(key);
      // Prefer a release over a prerelease of the same numbers (rows are already newest-first).
      if (!seen || (seen.prerelease !== '' && row.prerelease === '' && sameNumbers(seen, row)))
        latest.set(key, row);
    }
    const builtins = BUILTIN_PLUGINS.filter((b) => !kind || b.kind === kind).map(builtinVersion);
    return c.json({ data: [...builtins, ...[...latest.values()].map(toPluginVersion)] }, 200);
  },
);

const sameNumbers = (a: PluginRow, b: PluginRow) =>
  a.major === b.major && a.minor === b.minor && a.patch === b.patch;

const NameParams = z.object({
  owner: z.string().min(1).max(100),
  name: z.string().min(1).max(100),
});
const VersionParams = NameParams.extend({ version: z.string().min(1).max(100) });

pluginsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/plugins/{owner}/{name}',
    tags,
    summary: "A plugin's versions, newest first (owner `builtin` lists one built-in)",
    security: bearerSecurity,
    request: { params: NameParams },
    responses: { 200: json(z.object({ data: z.array(PluginVersionSchema) }), 'Versions'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const { owner, name } = c.req.valid('param');
    if (owner === 'builtin') {
      const b = BUILTIN_PLUGINS.find((p) => p.name === name);
      if (!b) throw notFound(`plugin builtin:${name}`);
      return c.json({ data: [builtinVersion(b)] }, 200);
    }
    const rows = await c
      .get('db')
      .select()
      .from(plugins)
      .where(and(eq(plugins.owner, owner), eq(plugins.name, name)))
      // Semver: a release sorts above its prereleases.
      .orderBy(
        desc(plugins.major),
        desc(plugins.minor),
        desc(plugins.patch),
        desc(sql`${plugins.prerelease} = ''`),
        desc(plugins.prerelease),
      )
      .all();
    if (rows.length === 0) throw notFound(`plugin ${owner}/${name}`);
    return c.json({ data: rows.map(toPluginVersion) }, 200);
  },
);

async function getVersion(c: Context<AppEnv>, owner: string, name: string, version: string) {
  const row = await findVersion(c.get('db'), owner, name, version);
  if (!row) throw notFound(`plugin ${owner}/${name}@${version}`);
  return row;
}

pluginsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/plugins/{owner}/{name}/{version}',
    tags,
    summary: 'One plugin version with its manifest',
    security: bearerSecurity,
    request: { params: VersionParams },
    responses: { 200: json(PluginVersionSchema, 'The version'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const { owner, name, version } = c.req.valid('param');
    return c.json(toPluginVersion(await getVersion(c, owner, name, version)), 200);
  },
);

/** Streams a bundle by sha256 (shared with the runner route). */
export async function bundleResponse(bucket: R2Bucket, sha256: string): Promise<Response> {
  const object = await bucket.get(bundleKey(sha256));
  if (!object) throw notFound(`bundle ${sha256}`);
  return new Response(object.body, {
    headers: { 'content-type': 'text/javascript', 'content-length': String(object.size), 'x-sha256': sha256 },
  });
}

pluginsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/plugins/{owner}/{name}/{version}/bundle',
    tags,
    summary: "Download a version's bundle",
    security: bearerSecurity,
    request: { params: VersionParams },
    responses: { 200: binaryResponse('The bundled ES module'), ...errors },
  }),
  async (c) => {
    userOf(c);
    const { owner, name, version } = c.req.valid('param');
    const row = await getVersion(c, owner, name, version);
    return bundleResponse(c.env.ARTIFACTS, row.sha256) as never;
  },
);

pluginsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/plugins/{owner}/{name}/{version}/deprecate',
    tags,
    summary: 'Deprecate a version (it stays downloadable; jobs that use it still run)',
    security: bearerSecurity,
    request: {
      params: VersionParams,
      body: { required: false, content: { 'application/json': { schema: DeprecatePluginSchema } } },
    },
    responses: { 200: json(PluginVersionSchema, 'The deprecated version'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { owner, name, version } = c.req.valid('param');
    const row = await getVersion(c, owner, name, version);
    if (row.accountId !== accountId)
      throw new ApiError(403, 'forbidden', `only the owner '${owner}' deprecates its plugins`);
    const { message } = c.req.valid('json') as { message?: string };
    const [updated] = await c
      .get('db')
      .update(plugins)
      .set({ deprecated: true, deprecationMessage: message ?? '' })
      .where(eq(plugins.id, row.id))
      .returning();
    return c.json(toPluginVersion(updated!), 200);
  },
);
