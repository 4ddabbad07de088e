// `cgrpo plugins build`: the SDK's bundler (plugins/sdk/build.ts) bundles the entry with the SDK and
// the zod functions it uses into one ES module, the
// sandbox evaluates it once to read its kind and config schema, and the manifest is written with
// the bundle's sha256. Node built-ins cannot be bundled: the sandbox has none.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type PluginManifest, PluginManifestSchema } from '@cgrpo/contract';
import { describeBundle, sha256Hex } from '@cgrpo/plugins/sandbox';
import { SDK_VERSION } from '@cgrpo/plugins/sdk';
import { BundleError, bundlePlugin } from '@cgrpo/plugins/sdk/build';
import { checkShaping } from '@cgrpo/plugins/shaping';
import { CliError, distPaths, readProject } from './project';

export interface BuiltPlugin {
  bundle: string;
  manifest: PluginManifest;
  bundlePath: string;
  manifestPath: string;
}

export async function buildPlugin(dir: string): Promise<BuiltPlugin> {
  const project = readProject(dir);
  let code: string;
  try {
    code = await bundlePlugin({ file: path.resolve(dir, project.entry) });
  } catch (error) {
    throw new CliError(
      'build_failed',
      `esbuild could not bundle ${project.entry}:\n${error instanceof BundleError ? error.message : String(error)}`,
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
