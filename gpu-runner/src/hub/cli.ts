// `cgrpo-runner models pull <repo> [--revision R]` and `cgrpo-runner models list`: fill and show the
// Hugging Face cache the runner trains from (the same one Python's huggingface_hub uses).
import { parseArgs } from 'node:util';
import { type Env, hubCacheDir, listCachedModels } from './cache';
import { HubError, pullModel } from './pull';

const USAGE = `usage:
  cgrpo-runner models pull <org/name> [--revision R]   download a model into the Hugging Face cache
  cgrpo-runner models list                             models in the cache (Python downloads included)

environment: HF_HOME or HF_HUB_CACHE (cache folder), HF_TOKEN (gated/private models),
HF_ENDPOINT (a Hub mirror), HF_HUB_OFFLINE=1 (never use the network)`;

function gib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export async function modelsCommand(
  argv: string[],
  out: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  env: Env = process.env,
): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'list') {
    const cache = hubCacheDir(env);
    const models = listCachedModels(cache);
    out(`Hugging Face cache: ${cache}`);
    if (models.length === 0) out('(no models)');
    for (const m of models) {
      const refs = m.refs.length > 0 ? ` (${m.refs.join(', ')})` : '';
      out(`${m.repo}  ${m.commit.slice(0, 12)}${refs}  ${gib(m.bytes)}${m.complete ? '' : '  incomplete'}`);
    }
    return 0;
  }
  if (sub === 'pull') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { revision: { type: 'string' } },
      allowPositionals: true,
    });
    if (positionals.length !== 1) {
      out(USAGE);
      return 2;
    }
    const repo = positionals[0];
    const t0 = performance.now();
    let bytes = 0;
    try {
      const dir = await pullModel(repo, {
        revision: values.revision,
        env,
        onFile: (f) => {
          bytes += f.bytes;
          out(`  ${f.path}  ${gib(f.bytes)}${f.resumed ? ' (resumed)' : ''}`);
        },
        onWait: (m) => out(m),
      });
      out(`${repo}: ${dir} (${gib(bytes)} downloaded in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      return 0;
    } catch (e) {
      if (e instanceof HubError) {
        out(e.message);
        return 1;
      }
      throw e;
    }
  }
  out(USAGE);
  return 2;
}
