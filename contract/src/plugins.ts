import { z } from 'zod';

/** `builtin:<name>` or `<owner>/<name>@<semver>`. */
export const PLUGIN_REF_PATTERN =
  /^(builtin:[a-z][a-z0-9-]*|[a-z0-9][a-z0-9-]*\/[a-z0-9][a-z0-9-]*@\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$/;

export const PluginRefSchema = z
  .string()
  .regex(PLUGIN_REF_PATTERN, "must be 'builtin:<name>' or '<owner>/<name>@<major.minor.patch>'");
export type PluginRef = z.infer<typeof PluginRefSchema>;

export const PluginKindSchema = z.enum(['verifier', 'critic', 'shaping']);
export type PluginKind = z.infer<typeof PluginKindSchema>;

/** A plugin reference plus its configuration, as it appears in a job spec. */
export const PluginUseSchema = z.strictObject({
  plugin: PluginRefSchema,
  config: z.record(z.string(), z.unknown()).default({}),
});
export type PluginUse = z.infer<typeof PluginUseSchema>;

/** Capabilities a plugin may request in its manifest; a job must grant them. */
export const PluginCapabilitySchema = z.enum(['llm.chat']);
export type PluginCapability = z.infer<typeof PluginCapabilitySchema>;

// ---- verifier ---------------------------------------------------------------------------------

export const VerifierInputSchema = z.object({
  question: z.string(),
  response: z.string(),
  reference: z.string(),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type VerifierInput = z.infer<typeof VerifierInputSchema>;

export const VerifierResultSchema = z.object({
  score: z.number().min(0).max(1),
  correct: z.boolean(),
  details: z.record(z.string(), z.unknown()).default({}),
});
export type VerifierResult = z.infer<typeof VerifierResultSchema>;

// ---- critic -----------------------------------------------------------------------------------

export const CriticInputSchema = z.object({
  question: z.string(),
  response: z.string(),
  reference: z.string(),
  verification: VerifierResultSchema,
  /** The dataset's worked solution, when the job maps one (datasets.train.fields.solution; §8.7). */
  solution: z.string().optional(),
});
export type CriticInput = z.infer<typeof CriticInputSchema>;

export const CriticResultSchema = z.object({
  critique: z.string(),
});
export type CriticResult = z.infer<typeof CriticResultSchema>;

// ---- shaping ----------------------------------------------------------------------------------

/** A shaping function is a declarative expression over `p` and named numeric params, never code. */
export const ShapingConfigSchema = z.strictObject({
  expression: z.string().min(1).max(500).default('p / (p + gamma)'),
  params: z.record(z.string(), z.number()).default({ gamma: 0.1 }),
});
export type ShapingConfig = z.infer<typeof ShapingConfigSchema>;

// ---- manifest ---------------------------------------------------------------------------------

export const PluginManifestSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9-]*\/[a-z0-9][a-z0-9-]*$/,
      "must be '<owner>/<name>' in lowercase letters, digits and '-'",
    ),
  version: z.string().regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/, 'must be a semver version like 1.2.0'),
  kind: PluginKindSchema,
  description: z.string().max(2000).default(''),
  /** JSON Schema of the plugin's `config`; validated by the runner before the first call. */
  config_schema: z.record(z.string(), z.unknown()).default({ type: 'object' }),
  capabilities: z.array(PluginCapabilitySchema).default([]),
  limits: z
    .strictObject({
      timeout_ms: z.number().int().min(1).max(600_000).default(10_000),
      memory_mb: z.number().int().min(8).max(4096).default(128),
    })
    .default({ timeout_ms: 10_000, memory_mb: 128 }),
  /** sha256 (hex) of the bundled ESM file the manifest describes. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex sha256 of the bundle'),
  sdk_version: z.string().default('0.1.0'),
});
export type PluginManifest = z.infer<typeof PluginManifestSchema>;
