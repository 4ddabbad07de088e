// A published bundle must be one self-contained module: `cgrpo plugins build` refuses imports, and the
// runner checks again, because a bundle only has to match its manifest's digest to reach it. esbuild
// parses the bundle (nothing is resolved or run) and lists every static import, re-export, literal
// dynamic import() and require() call. A computed `import(x)` cannot be listed; it fails when called,
// as the sandbox has no module loader.
import { build } from 'esbuild';

export interface BundleImport {
  kind: 'import' | 'dynamic import' | 'require';
  specifier: string;
}

const KINDS: Record<string, BundleImport['kind']> = {
  'import-statement': 'import',
  'dynamic-import': 'dynamic import',
  'require-call': 'require',
  'require-resolve': 'require',
};

/** The imports a bundle makes (empty for a bundle `cgrpo plugins build` produced). */
export async function bundleImports(bundle: string): Promise<BundleImport[]> {
  const result = await build({
    stdin: { contents: bundle, loader: 'js', sourcefile: 'plugin.mjs' },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    external: ['*'],
    metafile: true,
    write: false,
    logLevel: 'silent',
  });
  return Object.values(result.metafile.inputs).flatMap((input) =>
    input.imports.map((record) => ({ kind: KINDS[record.kind] ?? 'import', specifier: record.path })),
  );
}
