// Test-only: bundles a plugin source string with the SDK's bundler (the one `cgrpo plugins build` uses)
// and writes the matching manifest, so sandbox tests run real bundles.
import type { PluginManifest } from '@cgrpo/contract';
import { bundlePlugin } from '../sdk/build';
import { sha256Hex } from './host';

/** Bundles a plugin source exactly as `cgrpo plugins build` does (the same bundlePlugin call). */
export function bundleSource(source: string): Promise<string> {
  return bundlePlugin({ source, resolveDir: import.meta.dirname });
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
