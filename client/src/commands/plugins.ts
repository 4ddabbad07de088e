// `cgrpo plugins <init|build|test|publish|list|show>`: author, try and publish sandboxed plugins.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type PluginCapability, PluginCapabilitySchema, PluginManifestSchema } from '@cgrpo/contract';
import { inferenceChat, type LlmChat } from '@cgrpo/plugins/sandbox';
import { buildPlugin } from '../plugins/build';
import { CliError, distPaths, readProject } from '../plugins/project';
import { apiTarget, listPlugins, publishPlugin, showPlugin } from '../plugins/registry';
import { runSamples } from '../plugins/samples';
import { scaffoldPlugin } from '../plugins/scaffold';

export const PLUGINS_USAGE = `usage: cgrpo plugins <command> [options]

  init <name> --kind critic|verifier [--owner HANDLE] [--dir DIR]
                          scaffold a plugin with samples that are its test
  build [--dir DIR]       bundle to dist/plugin.mjs and write dist/manifest.json (sha256)
  test --input FILE [--dir DIR] [--config JSON|@file] [--grant llm.chat]
       [--llm-endpoint URL] [--llm-model NAME] [--no-build]
                          run the samples in the production sandbox; exit 1 on a failure
  publish [--dir DIR] [--no-build] [--api URL] [--key cgrpo_sk_...]
                          upload bundle + manifest to the registry
  list [--kind verifier|critic|shaping] [--api URL] [--key ...]
  show <owner/name[@version] | builtin:name> [--api URL] [--key ...]

The API URL and key default to CGRPO_API_URL and CGRPO_API_KEY. An LLM endpoint's token for
\`test\` is read from CGRPO_LLM_TOKEN (never passed to the plugin).`;

type Out = { log: (line: string) => void; error: (line: string) => void };

const defaultOut: Out = { log: (l) => console.log(l), error: (l) => console.error(l) };

function flags(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new CliError('usage', `${(error as Error).message}\n\n${PLUGINS_USAGE}`);
  }
}

function readConfig(value: string | undefined): unknown {
  if (value === undefined) return {};
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  try {
    return JSON.parse(text);
  } catch {
    throw new CliError('invalid_config', `--config is not JSON (pass JSON text or @path/to/config.json)`);
  }
}

async function built(dir: string, rebuild: boolean) {
  if (rebuild) return buildPlugin(dir);
  const paths = distPaths(dir);
  try {
    return {
      bundle: readFileSync(paths.bundle, 'utf8'),
      manifest: PluginManifestSchema.parse(JSON.parse(readFileSync(paths.manifest, 'utf8'))),
    };
  } catch {
    throw new CliError(
      'not_built',
      `no valid build in ${path.dirname(paths.bundle)}: run \`cgrpo plugins build\``,
    );
  }
}

async function init(args: string[], out: Out): Promise<number> {
  const { values, positionals } = flags(args, {
    kind: { type: 'string' },
    owner: { type: 'string' },
    dir: { type: 'string' },
  });
  const [name] = positionals;
  if (!name) throw new CliError('usage', `init needs a plugin name\n\n${PLUGINS_USAGE}`);
  const kind = values.kind ?? 'verifier';
  if (kind !== 'verifier' && kind !== 'critic') {
    throw new CliError(
      'usage',
      `--kind must be critic or verifier, got '${kind}' (shaping plugins: see docs/plugins.md)`,
    );
  }
  const dir = path.resolve(String(values.dir ?? name));
  const project = scaffoldPlugin({ dir, name, kind, owner: String(values.owner ?? 'local') });
  out.log(`created ${project.name} (${kind}) in ${dir}`);
  out.log('next: cgrpo plugins build && cgrpo plugins test --input samples.jsonl');
  return 0;
}

async function buildCommand(args: string[], out: Out): Promise<number> {
  const { values } = flags(args, { dir: { type: 'string' } });
  const result = await buildPlugin(path.resolve(String(values.dir ?? '.')));
  out.log(
    `built ${result.manifest.name}@${result.manifest.version} (${result.manifest.kind}): ${result.bundlePath} ` +
      `${result.bundle.length} bytes, sha256 ${result.manifest.sha256}`,
  );
  return 0;
}

async function testCommand(args: string[], out: Out): Promise<number> {
  const { values } = flags(args, {
    dir: { type: 'string' },
    input: { type: 'string' },
    config: { type: 'string' },
    grant: { type: 'string', multiple: true },
    'llm-endpoint': { type: 'string' },
    'llm-model': { type: 'string' },
    'no-build': { type: 'boolean' },
  });
  const dir = path.resolve(String(values.dir ?? '.'));
  if (!values.input) throw new CliError('usage', `test needs --input samples.jsonl\n\n${PLUGINS_USAGE}`);
  const grants: PluginCapability[] = ((values.grant as string[] | undefined) ?? []).map((g) => {
    const parsed = PluginCapabilitySchema.safeParse(g);
    if (!parsed.success) throw new CliError('usage', `--grant ${g}: unknown capability (known: llm.chat)`);
    return parsed.data;
  });
  const endpoint = values['llm-endpoint'] as string | undefined;
  const llm: LlmChat | undefined = endpoint
    ? inferenceChat({
        endpointUrl: endpoint,
        ...(values['llm-model'] ? { model: String(values['llm-model']) } : {}),
        ...(process.env.CGRPO_LLM_TOKEN ? { accessToken: process.env.CGRPO_LLM_TOKEN } : {}),
      })
    : undefined;
  const { bundle, manifest } = await built(dir, !values['no-build']);
  const reports = await runSamples(bundle, manifest, path.resolve(String(values.input)), {
    config: readConfig(values.config as string | undefined),
    grants,
    ...(llm ? { llm } : {}),
    onLog: (entry) => out.log(`  [log sample ${entry.call + 1} ${entry.level}] ${entry.message}`),
  });
  let failed = 0;
  for (const report of reports) {
    const shown = report.outcome.ok ? JSON.stringify(report.outcome.value) : report.outcome.error.message;
    const ok = report.mismatches.length === 0;
    if (!ok) failed += 1;
    out.log(`${ok ? 'ok  ' : 'FAIL'} line ${report.line}: ${shown}`);
    for (const m of report.mismatches) out.log(`       ${m}`);
  }
  out.log(`${reports.length - failed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

async function publishCommand(args: string[], out: Out): Promise<number> {
  const { values } = flags(args, {
    dir: { type: 'string' },
    api: { type: 'string' },
    key: { type: 'string' },
    'no-build': { type: 'boolean' },
  });
  const target = apiTarget({ api: values.api as string | undefined, key: values.key as string | undefined });
  const dir = path.resolve(String(values.dir ?? '.'));
  readProject(dir);
  const { bundle, manifest } = await built(dir, !values['no-build']);
  const { created, version } = await publishPlugin(target, bundle, manifest);
  out.log(
    `${created ? 'published' : 'already published (same bytes)'} ${version.ref} sha256 ${version.sha256}`,
  );
  out.log(`use it in a job: "${manifest.kind}": { "plugin": "${version.ref}", "config": {} }`);
  return 0;
}

async function listCommand(args: string[], out: Out): Promise<number> {
  const { values } = flags(args, {
    kind: { type: 'string' },
    api: { type: 'string' },
    key: { type: 'string' },
  });
  const target = apiTarget({ api: values.api as string | undefined, key: values.key as string | undefined });
  const versions = await listPlugins(target, values.kind as string | undefined);
  for (const v of versions) {
    out.log(`${v.ref.padEnd(40)} ${v.kind.padEnd(9)} ${v.deprecated ? '[deprecated] ' : ''}${v.description}`);
  }
  return 0;
}

async function showCommand(args: string[], out: Out): Promise<number> {
  const { values, positionals } = flags(args, { api: { type: 'string' }, key: { type: 'string' } });
  const [ref] = positionals;
  if (!ref) throw new CliError('usage', `show needs a plugin reference\n\n${PLUGINS_USAGE}`);
  const target = apiTarget({ api: values.api as string | undefined, key: values.key as string | undefined });
  const versions = await showPlugin(target, ref);
  out.log(JSON.stringify(versions.length === 1 ? versions[0] : versions, null, 2));
  return 0;
}

const subcommands: Record<string, (args: string[], out: Out) => Promise<number>> = {
  init,
  build: buildCommand,
  test: testCommand,
  publish: publishCommand,
  list: listCommand,
  show: showCommand,
};

/** Entry for `cgrpo plugins ...`; `out` is injectable so tests read what a user would see. */
export async function plugins(args: string[], out: Out = defaultOut): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === '--help' || name === '-h') {
    out.log(PLUGINS_USAGE);
    return name ? 0 : 2;
  }
  const sub = subcommands[name];
  if (!sub) {
    out.error(`cgrpo plugins: unknown command '${name}'\n\n${PLUGINS_USAGE}`);
    return 2;
  }
  try {
    return await sub(rest, out);
  } catch (error) {
    if (error instanceof CliError) {
      out.error(`cgrpo plugins ${name}: ${error.message}`);
      return error.code === 'usage' ? 2 : 1;
    }
    const pluginError = error as { code?: string; message?: string };
    if (pluginError?.code === 'plugin_error') {
      out.error(`cgrpo plugins ${name}: ${pluginError.message}`);
      return 1;
    }
    throw error;
  }
}

export default plugins;
