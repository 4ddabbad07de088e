// A plugin project on disk: `plugin.json` (what the author edits) next to the source, and the
// `dist/` that `cgrpo plugins build` writes (plugin.mjs + manifest.json).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fieldErrorsFromZod, PluginCapabilitySchema, PluginKindSchema } from '@cgrpo/contract';
import { z } from 'zod';

export const PluginProjectSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9-]*\/[a-z0-9][a-z0-9-]*$/,
      "must be '<owner>/<name>' (your account handle first)",
    ),
  version: z.string().regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/, 'must be a semver version like 1.2.0'),
  kind: PluginKindSchema,
  description: z.string().max(2000).default(''),
  entry: z.string().default('src/index.ts'),
  capabilities: z.array(PluginCapabilitySchema).default([]),
  limits: z
    .strictObject({
      timeout_ms: z.number().int().min(1).max(600_000).default(10_000),
      memory_mb: z.number().int().min(8).max(4096).default(128),
    })
    .default({ timeout_ms: 10_000, memory_mb: 128 }),
});
export type PluginProject = z.infer<typeof PluginProjectSchema>;

export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function readProject(dir: string): PluginProject {
  const file = path.join(dir, 'plugin.json');
  if (!existsSync(file)) {
    throw new CliError('not_a_plugin', `${file} not found: run \`cgrpo plugins init <name>\` or pass --dir`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new CliError('invalid_project', `plugin.json is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = PluginProjectSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = fieldErrorsFromZod(parsed.error)
      .map((f) => `  plugin.json ${f.path}: ${f.message}`)
      .join('\n');
    throw new CliError('invalid_project', `plugin.json is invalid:\n${problems}`);
  }
  return parsed.data;
}

export const distPaths = (dir: string) => ({
  bundle: path.join(dir, 'dist', 'plugin.mjs'),
  manifest: path.join(dir, 'dist', 'manifest.json'),
});
