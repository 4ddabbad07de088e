// A plugin project on disk: `plugin.json` (what the author edits) next to the source, and the
// `dist/` that `cgrpo plugins build` writes (plugin.mjs + manifest.json).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fieldErrorsFromZod, PluginManifestSchema } from '@cgrpo/contract';
import { z } from 'zod';

// The author-edited fields are the manifest's own (one definition in the contract), plus the entry file.
export const PluginProjectSchema = PluginManifestSchema.pick({
  name: true,
  version: true,
  kind: true,
  description: true,
  capabilities: true,
  limits: true,
}).extend({ entry: z.string().default('src/index.ts') });
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
