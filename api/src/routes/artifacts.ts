import {
  type Artifact,
  ArtifactKindSchema,
  ArtifactListSchema,
  ArtifactSchema,
  CompleteMultipartSchema,
  CreateMultipartArtifactSchema,
  MultipartUploadSchema,
  UploadedPartSchema,
} from '@cgrpo/contract';
import { createRoute } from '@hono/zod-openapi';
import { and, desc, eq, lt, or } from 'drizzle-orm';
import type { Context } from 'hono';
import { z } from 'zod';
import { userOf } from '../auth';
import { type ArtifactRow, artifacts } from '../db/schema';
import type { AppEnv, Db, Env } from '../env';
import { ApiError, conflict, invalid, notFound } from '../errors';
import { hex, iso, newId } from '../ids';
import { type DatasetFieldMapping, DatasetLineChecker, DatasetLineError } from '../jsonl';
import { limits } from '../limits';
import {
  bearerSecurity,
  binaryBody,
  binaryResponse,
  conflictError,
  errors,
  json,
  jsonBody,
  router,
} from '../openapi';
import { decodeCursor, page } from '../pagination';

// Datasets and other files, stored in R2 under the account. A body is streamed straight into R2
// (never held in memory); datasets are validated line by line on the way, and the first bad line
// aborts the upload so nothing is stored. Files larger than one request use the multipart routes.

export const artifactsRouter = router();
const tags = ['artifacts'];

export function toArtifact(row: ArtifactRow): Artifact {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    status: row.status,
    size: row.size,
    sha256: row.sha256,
    content_type: row.contentType,
    rows: row.rows,
    fields: row.fields,
    created_at: iso(row.createdAt)!,
  };
}

export async function getAccountArtifact(db: Db, accountId: string, id: string): Promise<ArtifactRow> {
  const row = await db
    .select()
    .from(artifacts)
    .where(and(eq(artifacts.id, id), eq(artifacts.accountId, accountId)))
    .get();
  if (!row) throw notFound(`artifact ${id}`);
  return row;
}

/** Streams an artifact's bytes from R2. */
export async function artifactContent(c: Context<AppEnv>, row: ArtifactRow): Promise<Response> {
  if (row.status !== 'ready') throw conflict('artifact_not_ready', `artifact ${row.id} is still uploading`);
  const object = await c.env.ARTIFACTS.get(row.r2Key);
  if (!object) throw notFound(`content of artifact ${row.id}`);
  return new Response(object.body, {
    headers: {
      'content-type': row.contentType,
      'content-length': String(object.size),
      'content-disposition': `attachment; filename="${row.name.replace(/["\\\r\n]/g, '_')}"`,
      ...(row.sha256 ? { 'x-sha256': row.sha256 } : {}),
    },
  });
}

const UploadQuery = z.strictObject({
  name: z.string().min(1).max(500),
  kind: ArtifactKindSchema.default('file'),
  prompt_field: z.string().min(1).max(200).default('prompt'),
  reference_field: z.string().min(1).max(200).default('answer'),
  solution_field: z.string().min(1).max(200).optional(),
});

/** Reads Content-Length, refusing bodies that are missing it or larger than the limit. */
function declaredLength(c: Context<AppEnv>, max: number): number {
  const header = c.req.header('content-length');
  const length = header === undefined ? Number.NaN : Number(header);
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new ApiError(
      411,
      'length_required',
      'send a Content-Length header (or use the multipart upload routes)',
    );
  }
  if (length > max) {
    throw new ApiError(
      413,
      'too_large',
      `the body is ${length} bytes; one request takes at most ${max} bytes — use POST /v1/artifacts/uploads (multipart) for larger files`,
    );
  }
  return length;
}

/**
 * Copies `body` into R2 at `key` chunk by chunk, hashing it (and, for datasets, validating each
 * line) on the way; memory use is one chunk. On any failure the write is aborted, the object is
 * deleted and the first meaningful error is thrown.
 */
/** Reads a body to its end, discarding it. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  for (;;) if ((await reader.read()).done) return;
}

async function streamToR2(
  env: Env,
  key: string,
  body: ReadableStream<Uint8Array>,
  length: number,
  contentType: string,
  fields: DatasetFieldMapping | undefined,
): Promise<{ sha256: string; rows: number | null }> {
  const checker = fields ? new DatasetLineChecker(fields) : undefined;
  const digest = new crypto.DigestStream('SHA-256');
  // Aborting on a bad line rejects these; they are awaited only on success.
  digest.digest.catch(() => undefined);
  const hashWriter = digest.getWriter();
  hashWriter.closed.catch(() => undefined);
  const fixed = new FixedLengthStream(length);
  const storeWriter = fixed.writable.getWriter();
  storeWriter.closed.catch(() => undefined);
  const stored = env.ARTIFACTS.put(key, fixed.readable, { httpMetadata: { contentType } });
  stored.catch(() => undefined); // awaited below; this only keeps an early rejection from going unhandled
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      checker?.push(value);
      await Promise.all([hashWriter.write(value), storeWriter.write(value)]);
    }
    checker?.end();
    await Promise.all([hashWriter.close(), storeWriter.close()]);
    await stored;
  } catch (error) {
    // A refused line: read the rest of the body (bounded by its declared length) and drop it, so
    // the client, still sending, gets the 400 instead of a connection cut mid-upload.
    const rest = error instanceof DatasetLineError ? drain(reader) : reader.cancel();
    await Promise.allSettled([rest, storeWriter.abort(error), hashWriter.abort(error), stored]);
    await env.ARTIFACTS.delete(key).catch(() => undefined);
    if (error instanceof DatasetLineError) throw error;
    throw new ApiError(
      400,
      'upload_failed',
      'the upload did not complete (the body ended early or was cut); retry it',
    );
  }
  return { sha256: hex(await digest.digest), rows: checker ? checker.rows : null };
}

artifactsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/artifacts',
    tags,
    summary: 'Upload a file in one request (streamed to R2; datasets are validated line by line)',
    description:
      'The body is the raw file. For `kind=dataset` every JSONL line must be an object with the prompt and reference fields; the first bad line is reported by number and nothing is stored. Bodies over the limit get 413: use the multipart routes.',
    security: bearerSecurity,
    request: { query: UploadQuery, body: binaryBody('The file') },
    responses: {
      201: json(ArtifactSchema, 'The stored artifact'),
      ...errors,
      411: json(z.object({}), 'Content-Length missing'),
      413: json(z.object({}), 'Body larger than one request may be'),
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const query = c.req.valid('query');
    const length = declaredLength(c, limits(c.env).maxUploadBytes);
    const body = c.req.raw.body ?? new Blob([]).stream();
    const id = newId('art');
    const key = `artifacts/${accountId}/${id}`;
    const contentType = c.req.header('content-type') ?? 'application/octet-stream';
    const fields =
      query.kind === 'dataset'
        ? {
            prompt: query.prompt_field,
            reference: query.reference_field,
            ...(query.solution_field ? { solution: query.solution_field } : {}),
          }
        : undefined;
    const { sha256, rows } = await streamToR2(c.env, key, body, length, contentType, fields);
    const row: ArtifactRow = {
      id,
      accountId,
      name: query.name,
      kind: query.kind,
      status: 'ready',
      r2Key: key,
      uploadId: null,
      size: length,
      sha256,
      contentType,
      rows,
      fields: fields ?? null,
      createdAt: Date.now(),
    };
    await c.get('db').insert(artifacts).values(row).run();
    return c.json(toArtifact(row), 201);
  },
);

const ListQuery = z.strictObject({
  kind: ArtifactKindSchema.optional(),
  cursor: z.string().optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

artifactsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/artifacts',
    tags,
    summary: 'List artifacts, newest first',
    security: bearerSecurity,
    request: { query: ListQuery },
    responses: { 200: json(ArtifactListSchema, 'A page of artifacts'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { kind, cursor, limit } = c.req.valid('query');
    const after = decodeCursor(cursor);
    const rows = await c
      .get('db')
      .select()
      .from(artifacts)
      .where(
        and(
          eq(artifacts.accountId, accountId),
          kind ? eq(artifacts.kind, kind) : undefined,
          after
            ? or(
                lt(artifacts.createdAt, after.createdAt),
                and(eq(artifacts.createdAt, after.createdAt), lt(artifacts.id, after.id)),
              )
            : undefined,
        ),
      )
      .orderBy(desc(artifacts.createdAt), desc(artifacts.id))
      .limit(limit + 1)
      .all();
    const { rows: shown, next } = page(rows, limit);
    return c.json({ data: shown.map(toArtifact), next_cursor: next }, 200);
  },
);

const IdParams = z.object({ id: z.string().min(1).max(100) });

artifactsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/artifacts/{id}',
    tags,
    summary: "An artifact's metadata",
    security: bearerSecurity,
    request: { params: IdParams },
    responses: { 200: json(ArtifactSchema, 'The artifact'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    return c.json(toArtifact(await getAccountArtifact(c.get('db'), accountId, c.req.valid('param').id)), 200);
  },
);

artifactsRouter.openapi(
  createRoute({
    method: 'get',
    path: '/artifacts/{id}/content',
    tags,
    summary: "Download an artifact's bytes",
    security: bearerSecurity,
    request: { params: IdParams },
    responses: { 200: binaryResponse('The file'), ...errors, ...conflictError },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const row = await getAccountArtifact(c.get('db'), accountId, c.req.valid('param').id);
    return artifactContent(c, row) as never;
  },
);

artifactsRouter.openapi(
  createRoute({
    method: 'delete',
    path: '/artifacts/{id}',
    tags,
    summary: 'Delete an artifact (or abort its multipart upload)',
    security: bearerSecurity,
    request: { params: IdParams },
    responses: { 200: json(ArtifactSchema, 'The deleted artifact'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const row = await getAccountArtifact(db, accountId, c.req.valid('param').id);
    if (row.uploadId) {
      await c.env.ARTIFACTS.resumeMultipartUpload(row.r2Key, row.uploadId)
        .abort()
        .catch(() => undefined);
    }
    await c.env.ARTIFACTS.delete(row.r2Key);
    await db.delete(artifacts).where(eq(artifacts.id, row.id)).run();
    return c.json(toArtifact(row), 200);
  },
);

// ---- multipart --------------------------------------------------------------------------------

artifactsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/artifacts/uploads',
    tags,
    summary: 'Start a multipart upload for a file larger than one request',
    security: bearerSecurity,
    request: { body: jsonBody(CreateMultipartArtifactSchema) },
    responses: { 201: json(MultipartUploadSchema, 'Where to PUT the parts'), ...errors },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const body = c.req.valid('json');
    if (body.fields && body.kind !== 'dataset') {
      throw invalid('fields apply only to kind "dataset"', [
        { path: 'fields', message: 'only for kind "dataset"' },
      ]);
    }
    const id = newId('art');
    const key = `artifacts/${accountId}/${id}`;
    const upload = await c.env.ARTIFACTS.createMultipartUpload(key, {
      httpMetadata: { contentType: body.content_type },
    });
    const fields =
      body.kind === 'dataset' ? (body.fields ?? { prompt: 'prompt', reference: 'answer' }) : null;
    const row: ArtifactRow = {
      id,
      accountId,
      name: body.name,
      kind: body.kind,
      status: 'uploading',
      r2Key: key,
      uploadId: upload.uploadId,
      size: null,
      sha256: null,
      contentType: body.content_type,
      rows: null,
      fields,
      createdAt: Date.now(),
    };
    await c.get('db').insert(artifacts).values(row).run();
    return c.json(
      {
        artifact: toArtifact(row),
        part_url: `/v1/artifacts/${id}/parts/{part_number}`,
        complete_url: `/v1/artifacts/${id}/complete`,
        min_part_size: limits(c.env).minPartBytes,
      },
      201,
    );
  },
);

const PartParams = z.object({
  id: z.string().min(1).max(100),
  part_number: z.coerce.number().int().min(1).max(10_000),
});

/** Uploads one part of a multipart upload (shared with checkpoint uploads). */
export async function uploadPart(
  c: Context<AppEnv>,
  key: string,
  uploadId: string,
  partNumber: number,
): Promise<{ part_number: number; etag: string }> {
  declaredLength(c, limits(c.env).maxUploadBytes);
  const body = c.req.raw.body;
  if (!body) throw invalid('the part has no body');
  const part = await c.env.ARTIFACTS.resumeMultipartUpload(key, uploadId).uploadPart(partNumber, body);
  return { part_number: part.partNumber, etag: part.etag };
}

artifactsRouter.openapi(
  createRoute({
    method: 'put',
    path: '/artifacts/{id}/parts/{part_number}',
    tags,
    summary: 'Upload one part (≥ 5 MiB except the last)',
    security: bearerSecurity,
    request: { params: PartParams, body: binaryBody('The bytes of this part') },
    responses: {
      200: json(UploadedPartSchema, 'Keep the etag for the complete call'),
      ...errors,
      ...conflictError,
    },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const { id, part_number } = c.req.valid('param');
    const row = await getAccountArtifact(c.get('db'), accountId, id);
    if (row.status !== 'uploading' || !row.uploadId)
      throw conflict('upload_finished', `artifact ${id} is not uploading`);
    return c.json(await uploadPart(c, row.r2Key, row.uploadId, part_number), 200);
  },
);

/** Reads a stored object back once: its sha256 and, for datasets, validation of every line. */
export async function hashAndValidateObject(env: Env, key: string, fields: DatasetFieldMapping | null) {
  const object = await env.ARTIFACTS.get(key);
  if (!object) throw new ApiError(500, 'internal', 'the completed upload is missing from storage');
  const checker = fields ? new DatasetLineChecker(fields) : undefined;
  const digest = new crypto.DigestStream('SHA-256');
  // Aborting on a bad line rejects these; they are awaited only on success.
  digest.digest.catch(() => undefined);
  const hashWriter = digest.getWriter();
  hashWriter.closed.catch(() => undefined);
  const reader = object.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      checker?.push(value);
      await hashWriter.write(value);
    }
    checker?.end();
    await hashWriter.close();
  } catch (error) {
    await Promise.allSettled([reader.cancel(), hashWriter.abort(error)]);
    throw error;
  }
  return { sha256: hex(await digest.digest), size: object.size, rows: checker ? checker.rows : null };
}

artifactsRouter.openapi(
  createRoute({
    method: 'post',
    path: '/artifacts/{id}/complete',
    tags,
    summary: 'Complete a multipart upload (datasets are validated now; a bad line deletes the upload)',
    security: bearerSecurity,
    request: { params: IdParams, body: jsonBody(CompleteMultipartSchema) },
    responses: { 200: json(ArtifactSchema, 'The stored artifact'), ...errors, ...conflictError },
  }),
  async (c) => {
    const { accountId } = userOf(c);
    const db = c.get('db');
    const row = await getAccountArtifact(db, accountId, c.req.valid('param').id);
    if (row.status !== 'uploading' || !row.uploadId)
      throw conflict('upload_finished', `artifact ${row.id} is not uploading`);
    const { parts, sha256: claimed } = c.req.valid('json');
    const upload = c.env.ARTIFACTS.resumeMultipartUpload(row.r2Key, row.uploadId);
    try {
      await upload.complete(parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })));
    } catch {
      throw invalid(
        'R2 refused to complete the upload: check every part number and etag, and that parts are ≥ 5 MiB except the last',
      );
    }
    let result: { sha256: string; size: number; rows: number | null };
    try {
      result = await hashAndValidateObject(c.env, row.r2Key, row.fields as DatasetFieldMapping | null);
    } catch (error) {
      await c.env.ARTIFACTS.delete(row.r2Key);
      await db.delete(artifacts).where(eq(artifacts.id, row.id)).run();
      throw error;
    }
    if (claimed && claimed !== result.sha256) {
      await c.env.ARTIFACTS.delete(row.r2Key);
      await db.delete(artifacts).where(eq(artifacts.id, row.id)).run();
      throw invalid(
        `sha256 mismatch: you sent ${claimed}, the stored file hashes to ${result.sha256}; upload again`,
        [{ path: 'sha256', message: 'does not match the uploaded bytes' }],
      );
    }
    const [updated] = await db
      .update(artifacts)
      .set({ status: 'ready', uploadId: null, size: result.size, sha256: result.sha256, rows: result.rows })
      .where(and(eq(artifacts.id, row.id), eq(artifacts.status, 'uploading')))
      .returning();
    if (!updated) throw conflict('upload_finished', `artifact ${row.id} is not uploading`);
    return c.json(toArtifact(updated), 200);
  },
);
