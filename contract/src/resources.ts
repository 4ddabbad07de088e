import { z } from 'zod';
import { ApiKeyScopeSchema } from './budgets';
import { DatasetFieldsSchema } from './job-spec';
import { PluginKindSchema, PluginManifestSchema } from './plugins';
import { num, str } from './zod-helpers';

// Accounts, API keys, runner registration keys, artifacts and plugin registry entries as the
// API returns them.

export const API_KEY_PREFIX = 'cgrpo_sk_';
export const RUNNER_TOKEN_PREFIX = 'cgrpo_rt_';
export const RUNNER_REGISTRATION_KEY_PREFIX = 'cgrpo_rk_';

const KeyFields = {
  id: z.string(),
  name: z.string(),
  /** The first characters of the key, to recognise it; the key itself is shown once. */
  prefix: z.string(),
  created_at: z.string(),
  last_used_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
};

export const ApiKeySchema = z
  .object({
    ...KeyFields,
    /** What the key may do (docs/api.md, "API keys"). */
    scopes: z.array(ApiKeyScopeSchema),
    /** USD the key's jobs may cost in all; null = no limit. */
    spend_limit_usd: z.number().nullable(),
    /** USD the key's jobs have cost so far (their live `budget/cost`). */
    spent_usd: z.number(),
  })
  .meta({ id: 'ApiKey' });
export type ApiKey = z.infer<typeof ApiKeySchema>;

export const CreateApiKeySchema = z
  .strictObject({
    name: str(0, 200).default(''),
    /** Scopes of the new key; left out = every scope (what keys could do before scopes existed). */
    scopes: z
      .array(ApiKeyScopeSchema)
      .min(1, 'name at least one scope, or leave scopes out for all')
      .optional(),
    /**
     * USD the key's jobs may cost in all (priced with the deployment's PRICE_TABLE, else each job's
     * budgets.prices); left out = no limit.
     */
    spend_limit_usd: num(0, undefined, { exclusiveMin: true }).nullable().default(null),
  })
  .meta({ id: 'CreateApiKey' });

/** PATCH /v1/keys/{id}: a new spend limit (null removes it); it applies at each job's next metrics report. */
export const UpdateApiKeySchema = z
  .strictObject({
    spend_limit_usd: num(0, undefined, { exclusiveMin: true }).nullable(),
  })
  .meta({ id: 'UpdateApiKey' });
export type UpdateApiKey = z.infer<typeof UpdateApiKeySchema>;
export const CreatedApiKeySchema = ApiKeySchema.extend({
  /** The secret, shown only in this response. */
  key: z.string(),
}).meta({ id: 'CreatedApiKey' });
export type CreatedApiKey = z.infer<typeof CreatedApiKeySchema>;

export const CreateRunnerKeySchema = z
  .strictObject({ name: str(0, 200).default('') })
  .meta({ id: 'CreateRunnerRegistrationKey' });
export const RunnerKeySchema = z.object(KeyFields).meta({ id: 'RunnerRegistrationKey' });
export type RunnerKey = z.infer<typeof RunnerKeySchema>;
export const CreatedRunnerKeySchema = RunnerKeySchema.extend({ key: z.string() }).meta({
  id: 'CreatedRunnerRegistrationKey',
});

export const AccountSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    /** The `<owner>` of the account's plugins. */
    handle: z.string(),
    created_at: z.string(),
  })
  .meta({ id: 'Account' });

export const HANDLE_PATTERN = /^[a-z0-9][a-z0-9-]{0,38}$/;

/** POST /v1/bootstrap: the first account of a deployment (dev, or with the BOOTSTRAP_TOKEN secret). */
export const BootstrapRequestSchema = z
  .strictObject({
    handle: str(1, 39).regex(HANDLE_PATTERN, 'must be lowercase letters, digits and -').default('local'),
    name: str(0, 200).default('Local account'),
  })
  .meta({ id: 'BootstrapRequest' });

export const BootstrapResponseSchema = z
  .object({
    account: AccountSchema,
    /** `cgrpo_sk_…`, shown once. */
    api_key: z.string(),
    /** `cgrpo_rk_…`, shown once: give it to `cgrpo-runner --registration-key`. */
    registration_key: z.string(),
  })
  .meta({ id: 'BootstrapResponse' });
export type Account = z.infer<typeof AccountSchema>;

// ---- artifacts --------------------------------------------------------------------------------

export const ARTIFACT_KINDS = ['dataset', 'model', 'file'] as const;
export const ArtifactKindSchema = z.enum(ARTIFACT_KINDS);
export type ArtifactKind = z.infer<typeof ArtifactKindSchema>;

export const ArtifactSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    kind: ArtifactKindSchema,
    status: z.enum(['uploading', 'ready']),
    size: z.number().int().nullable(),
    sha256: z.string().nullable(),
    content_type: z.string(),
    /** For datasets: the number of JSONL rows. */
    rows: z.number().int().nullable(),
    /** For datasets: the field mapping the rows were validated against. */
    fields: z.record(z.string(), z.string()).nullable(),
    created_at: z.string(),
  })
  .meta({ id: 'Artifact' });
export type Artifact = z.infer<typeof ArtifactSchema>;

/** Starts a multipart upload for a file larger than one request. */
export const CreateMultipartArtifactSchema = z
  .strictObject({
    name: str(1, 500),
    kind: ArtifactKindSchema.default('file'),
    content_type: str(1, 200).default('application/octet-stream'),
    /** For datasets: the JSONL field mapping every row is validated against when the upload completes. */
    fields: DatasetFieldsSchema.optional(),
  })
  .meta({ id: 'CreateMultipartArtifact' });

export const MultipartUploadSchema = z
  .object({
    artifact: ArtifactSchema,
    /** PUT each part to this path, replacing {part_number} (1-based); parts ≥ 5 MiB except the last. */
    part_url: z.string(),
    complete_url: z.string(),
    min_part_size: z.number().int(),
  })
  .meta({ id: 'MultipartUpload' });

export const ArtifactListSchema = z
  .object({ data: z.array(ArtifactSchema), next_cursor: z.string().nullable() })
  .meta({ id: 'ArtifactList' });

export const UploadedPartSchema = z.strictObject({
  part_number: z.number().int().min(1).max(10_000),
  etag: z.string().min(1),
});
export type UploadedPart = z.infer<typeof UploadedPartSchema>;

export const CompleteMultipartSchema = z
  .strictObject({
    parts: z.array(UploadedPartSchema).min(1).max(10_000),
    /** sha256 (hex) of the whole file, computed by the uploader (parts are hashed separately by R2). */
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'must be the hex sha256 of the whole file')
      .optional(),
  })
  .meta({ id: 'CompleteMultipart' });

// ---- plugin registry --------------------------------------------------------------------------

export const PluginVersionSchema = z
  .object({
    /** `builtin:<name>` or `<owner>/<name>@<version>`. */
    ref: z.string(),
    name: z.string(),
    version: z.string(),
    kind: PluginKindSchema,
    description: z.string(),
    builtin: z.boolean(),
    sha256: z.string().nullable(),
    size: z.number().int().nullable(),
    deprecated: z.boolean(),
    deprecation_message: z.string().nullable(),
    manifest: PluginManifestSchema.nullable(),
    created_at: z.string().nullable(),
  })
  .meta({ id: 'PluginVersion' });
export type PluginVersion = z.infer<typeof PluginVersionSchema>;

export const DeprecatePluginSchema = z
  .strictObject({ message: str(0, 2000).default('') })
  .meta({ id: 'DeprecatePlugin' });

/** The built-in plugins every runner ships, listed by the registry as `builtin:<name>`. */
/** The metrics of builtin:text-similarity (its config's `metric`), which the OpenAI surface maps
 *  `text_similarity` graders onto. */
export const TEXT_SIMILARITY_METRICS = [
  'fuzzy_match',
  'bleu',
  'gleu',
  'rouge_1',
  'rouge_2',
  'rouge_3',
  'rouge_4',
  'rouge_5',
  'rouge_l',
] as const;

export const BUILTIN_PLUGINS: readonly {
  name: string;
  kind: z.infer<typeof PluginKindSchema>;
  description: string;
}[] = [
  {
    name: 'math',
    kind: 'verifier',
    description: 'Extracts the final answer and checks math equivalence with the reference.',
  },
  { name: 'exact', kind: 'verifier', description: 'Normalised string match against the reference.' },
  {
    name: 'regex',
    kind: 'verifier',
    description: 'Matches the response against a configured regular expression.',
  },
  { name: 'choice', kind: 'verifier', description: 'Multiple-choice letter match.' },
  {
    name: 'text-similarity',
    kind: 'verifier',
    description: 'Fuzzy match, BLEU, GLEU or ROUGE against the reference.',
  },
  {
    name: 'score-model',
    kind: 'verifier',
    description: 'An LLM judge scores the response (config.endpoint_url).',
  },
  {
    name: 'multi',
    kind: 'verifier',
    description: 'Built-in verifiers combined by a formula over their scores.',
  },
  { name: 'indicative', kind: 'critic', description: 'States only whether the response is correct.' },
  { name: 'ground-truth', kind: 'critic', description: 'Correctness plus the reference answer.' },
  {
    name: 'llm',
    kind: 'critic',
    description: 'Chain-of-thought critique written by an LLM endpoint (needs llm.chat).',
  },
  { name: 'self', kind: 'critic', description: 'The policy model critiques its own response.' },
  {
    name: 'expression',
    kind: 'shaping',
    description: 'Declarative expression over p, default p / (p + gamma).',
  },
];
