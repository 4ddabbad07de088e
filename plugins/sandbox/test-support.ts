// Test-only: bundles a plugin source string against the real SDK (as `cgrpo plugins build` does)
// and writes the matching manifest, so sandbox tests run real bundles.
import path from 'node:path';
import type { PluginManifest } from '@cgrpo/contract';
import { build } from 'esbuild';
import { sha256Hex } from './host';

const sdkPath = path.resolve(import.meta.dirname, '../sdk/index.ts');

export async function bundleSource(source: string): Promise<string> {
  const result = await build({
    stdin: { contents: source, loader: 'ts', resolveDir: import.meta.dirname, sourcefile: 'plugin.ts' },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
    alias: { '@cgrpo/plugins/sdk': sdkPath },
  });
  return result.outputFiles[0].text;
}

export function manifestFor(
  bundle: string,
  overrides: Partial<PluginManifest> & Pick<PluginManifest, 'kind'>,
): PluginManifest {
  return {
    name: 'acme/test-plugin',
    version: '1.0.0',
    description: '',
    config_schema: { type: 'object' },
    capabilities: [],
    limits: { timeout_ms: 1000, memory_mb: 64 },
    sdk_version: '0.1.0',
    ...overrides,
    sha256: sha256Hex(bundle),
  };
}
