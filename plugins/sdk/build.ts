// The one way a plugin is bundled (Node only; never bundled into a plugin): `cgrpo plugins build`
// and the sandbox's own tests both call it, so hostile tests run the bundles users would publish.
// esbuild bundles the entry with the SDK into one self-contained ES module; `import * as z from
// '@cgrpo/plugins/sdk/zod'` keeps only the zod functions the plugin calls (see ./zod.ts).
import { createRequire } from 'node:module';
import { build, type Message } from 'esbuild';

const require = createRequire(import.meta.url);
/** The SDK and zod this package ships: plugins are built against them wherever their folder lives. */
const alias = {
  '@cgrpo/plugins/sdk/zod': require.resolve('@cgrpo/plugins/sdk/zod'),
  '@cgrpo/plugins/sdk': require.resolve('@cgrpo/plugins/sdk'),
};

export type BundleEntry = { file: string } | { source: string; resolveDir: string };

export class BundleError extends Error {
  constructor(readonly messages: Message[]) {
    super(formatMessages(messages));
    this.name = 'BundleError';
  }
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

/** Bundles a plugin entry into one minified ES module with no imports; throws BundleError. */
export async function bundlePlugin(entry: BundleEntry): Promise<string> {
  try {
    const result = await build({
      ...('file' in entry
        ? { entryPoints: [entry.file] }
        : {
            stdin: {
              contents: entry.source,
              loader: 'ts' as const,
              resolveDir: entry.resolveDir,
              sourcefile: 'plugin.ts',
            },
          }),
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2020',
      minify: true,
      treeShaking: true,
      write: false,
      logLevel: 'silent',
      alias,
      legalComments: 'none',
    });
    return result.outputFiles[0].text;
  } catch (error) {
    const errors = (error as { errors?: Message[] }).errors;
    if (errors) throw new BundleError(errors);
    throw error;
  }
}
