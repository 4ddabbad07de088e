// `cgrpo plugins build`: esbuild bundles the entry (with the SDK and zod) into one ES module, the
// sandbox evaluates it once to read its kind and config schema, and the manifest is written with
// the bundle's sha256. Node built-ins cannot be bundled: the sandbox has none.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { type PluginManifest, PluginManifestSchema } from '@cgrpo/contract';
import { describeBundle, sha256Hex } from '@cgrpo/plugins/sandbox';
import { SDK_VERSION } from '@cgrpo/plugins/sdk';
import { checkShaping } from '@cgrpo/plugins/shaping';
import { build, type Message } from 'esbuild';
import { CliError, distPaths, readProject } from './project';

/** The SDK this CLI ships: plugins are built against it wherever their folder lives. */
const sdkEntry = createRequire(import.meta.url).resolve('@cgrpo/plugins/sdk');

export interface BuiltPlugin {
  bundle: string;
  manifest: PluginManifest;
  bundlePath: string;
  manifestPath: string;
}

function formatMessages(messages: Message[]): string {
  return messages
    .map((m) => {
      const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '';
      const hint = /Could not resolve "(node:)?[a-z_]+"/.test(m.text)
        ? ' (plugins run in a sandbox without Node built-ins, files or network; use ctx.llm / ctx.log)'
        : '';
      return `  ${where}${m.text}${hint}`;
    })
    .join('\n');
}

export async function buildPlugin(dir: string): Promise<BuiltPlugin> {
  const project = readProject(dir);
  let code: string;
  try {
    const result = await build({
      entryPoints: [path.resolve(dir, project.entry)],
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2020',
      minify: true,
      write: false,
      logLevel: 'silent',
      alias: { '@cgrpo/plugins/sdk': sdkEntry },
      legalComments: 'none',
    });
    code = result.outputFiles[0].text;
  } catch (error) {
    const errors = (error as { errors?: Message[] }).errors;
    throw new CliError(
      'build_failed',
      `esbuild could not bundle ${project.entry}:\n${errors ? formatMessages(errors) : String(error)}`,
    );
  }
  let description: Awaited<ReturnType<typeof describeBundle>>;
  try {
    description = await describeBundle(code, {
      timeoutMs: project.limits.timeout_ms,
      memoryMb: project.limits.memory_mb,
    });
  } catch (error) {
    throw new CliError('build_failed', (error as Error).message);
  }
  if (description.kind !== project.kind) {
    throw new CliError(
      'build_failed',
      `plugin.json says kind '${project.kind}' but ${project.entry} exports a ${description.kind} (define${description.kind[0].toUpperCase()}${description.kind.slice(1)})`,
    );
  }
  if (description.kind === 'shaping') {
    const shaping = description.shaping;
    const checked = shaping ? checkShaping(shaping.expression, shaping.params) : null;
    if (!checked?.ok) {
      throw new CliError(
        'build_failed',
        `the shaping expression is not usable: ${checked ? `${checked.problem.field} ${checked.problem.message}` : 'defineShaping({ expression, params }) declares none'}`,
      );
    }
  }
  const manifest = PluginManifestSchema.parse({
    name: project.name,
    version: project.version,
    kind: project.kind,
    description: project.description,
    config_schema: description.config_schema,
    capabilities: project.capabilities,
    limits: project.limits,
    sha256: sha256Hex(code),
    sdk_version: description.sdk_version || SDK_VERSION,
  });
  const paths = distPaths(dir);
  mkdirSync(path.dirname(paths.bundle), { recursive: true });
  writeFileSync(paths.bundle, code);
  writeFileSync(paths.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
  return { bundle: code, manifest, bundlePath: paths.bundle, manifestPath: paths.manifest };
}
