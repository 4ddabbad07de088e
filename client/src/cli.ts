// `cgrpo <command> ...` on commander. API commands live in ./commands/{jobs,resources}; the
// offline tools (plugins, verify, critique) keep their own parsers and are loaded lazily, so
// `cgrpo jobs list` does not pay for the plugin sandbox.
import { Command, CommanderError } from 'commander';
import { CgrpoClient } from './api';
import {
  CliError,
  clientFor,
  configPath,
  type GlobalOptions,
  printJson,
  reportError,
  saveLogin,
} from './commands/common';

type Passthrough = (args: string[]) => Promise<number>;
const offline: Record<string, { summary: string; load: () => Promise<Passthrough> }> = {
  plugins: {
    summary: 'author, test and publish sandboxed plugins',
    load: () => import('./commands/plugins').then((m) => (args: string[]) => m.plugins(args)),
  },
  verify: {
    summary: 'run a built-in verifier over a JSONL file (no training)',
    load: () => import('./commands/verify').then((m) => (args: string[]) => m.verify(args)),
  },
  critique: {
    summary: 'run a built-in critic over a JSONL file (no training)',
    load: () => import('./commands/critique').then((m) => (args: string[]) => m.critique(args)),
  },
};

const jobs = () => import('./commands/jobs');
const res = () => import('./commands/resources');

function program(setExit: (code: number) => void): Command {
  const root = new Command('cgrpo')
    .description('cgrpo: Critique-GRPO fine-tuning from the command line')
    .option('--json', 'print JSON (for scripts)')
    .option('--api <url>', 'API URL (default: CGRPO_API_URL, then the saved login)')
    .option('--key <key>', 'API key (default: CGRPO_API_KEY, then the saved login)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  const g = (): GlobalOptions => root.opts<GlobalOptions>();
  const api = () => clientFor(g());

  root
    .command('login')
    .description(`save the API URL and key to ${configPath()} (mode 0600)`)
    .option('--api <url>', 'API URL, e.g. http://127.0.0.1:8787')
    .option('--key <key>', 'API key (cgrpo_sk_…); npm start prints the local one')
    .action(async (o: { api?: string; key?: string }) => {
      const url = o.api ?? g().api ?? process.env.CGRPO_API_URL ?? 'http://127.0.0.1:8787';
      const key = o.key ?? g().key ?? process.env.CGRPO_API_KEY;
      if (!key)
        throw new CliError(
          'missing_key',
          'pass --key cgrpo_sk_... (npm start prints the local admin key)',
          2,
        );
      const account = await new CgrpoClient({ url, apiKey: key }).account();
      const file = saveLogin({ api_url: url, api_key: key });
      if (g().json) printJson({ config: file, api_url: url, account });
      else console.log(`logged in to ${url} as ${String(account.handle ?? account.id)}; saved to ${file}`);
    });

  const j = root.command('jobs').description('create, watch and control training jobs');
  j.command('create')
    .description('submit a job from a JSON or YAML spec')
    .requiredOption('-f, --file <path>', 'job spec (.json, .yaml or .yml)')
    .option('--idempotency-key <key>', 'resubmitting with the same key returns the same job')
    .action(async (o: { file: string; idempotencyKey?: string }) =>
      (await jobs()).create(api(), o.file, Boolean(g().json), o.idempotencyKey),
    );
  j.command('list')
    .description('list jobs, newest first')
    .option('--status <s>', 'filter: one status or a comma-separated list')
    .option('--limit <n>', 'how many (1-200)')
    .action(async (o: { status?: string; limit?: string }) =>
      (await jobs()).list(api(), o, Boolean(g().json)),
    );
  j.command('get <id>')
    .description('a job with its resolved spec')
    .action(async (id: string) => (await jobs()).get(api(), id, Boolean(g().json)));
  for (const action of ['cancel', 'pause', 'resume'] as const)
    j.command(`${action} <id>`)
      .description(`${action} a job`)
      .action(async (id: string) => (await jobs()).control(api(), id, action, Boolean(g().json)));
  j.command('follow <id>')
    .description('live progress over SSE; exits 0 succeeded, 1 failed, 3 cancelled')
    .action(async (id: string) => setExit(await (await jobs()).follow(api(), id, Boolean(g().json))));
  j.command('metrics <id>')
    .description('metric points by step')
    .option('--csv', 'every metric as CSV')
    .option('--names <list>', 'comma-separated metric names')
    .action(async (id: string, o: { csv?: boolean; names?: string }) =>
      (await jobs()).metrics(api(), id, o, Boolean(g().json)),
    );
  j.command('compare <a> <b>')
    .description('two jobs side by side (e.g. GRPO vs Critique-GRPO)')
    .option('--names <list>', 'comma-separated metric names')
    .action(async (a: string, b: string, o: { names?: string }) =>
      (await jobs()).compare(api(), a, b, o, Boolean(g().json)),
    );
  j.command('rollouts <id>')
    .description('prompt, response, reward, critique and refinement of a step')
    .option('--step <n>', 'the step (without it: the steps that have rollouts)')
    .option('--kind <kind>', 'initial or refinement')
    .option('--min-reward <r>')
    .option('--max-reward <r>')
    .option('--limit <n>')
    .action(async (id: string, o: Record<string, string>) =>
      (await jobs()).rollouts(api(), id, o, Boolean(g().json)),
    );

  root
    .command('datasets')
    .description('training data')
    .command('upload <file>')
    .description('upload a JSONL dataset (validated line by line by the API)')
    .option('--name <name>', 'artifact name (default: the file name)')
    .option('--prompt-field <f>', 'JSON field with the prompt', 'prompt')
    .option('--reference-field <f>', 'JSON field with the reference answer', 'answer')
    .option('--solution-field <f>', 'JSON field with a worked solution (optional)')
    .option('--content-type <t>', 'content type (default: from the extension)')
    .option('--multipart-over <bytes>', 'upload in parts above this size (default 90 MiB)')
    .action(async (file: string, o: Record<string, string>) =>
      (await res()).uploadDataset(
        api(),
        file,
        o as Parameters<Awaited<ReturnType<typeof res>>['uploadDataset']>[2],
        Boolean(g().json),
      ),
    );
  root
    .command('models')
    .description('model weights')
    .command('upload <folder>')
    .description('upload a Hugging Face model folder as one tar artifact')
    .option('--name <name>', 'artifact name (default: the folder name)')
    .option('--multipart-over <bytes>', 'upload in parts above this size (default 90 MiB)')
    .action(async (dir: string, o: { name?: string; multipartOver?: string }) =>
      (await res()).uploadModel(api(), dir, o, Boolean(g().json)),
    );

  const cp = root.command('checkpoints').description("a job's checkpoints");
  cp.command('list <job>').action(async (job: string) =>
    (await res()).listCheckpoints(api(), job, Boolean(g().json)),
  );
  cp.command('download <job>')
    .description('stream a checkpoint to disk and check its sha256 (default: the final one)')
    .option('--checkpoint <id>', 'a checkpoint id (cgrpo checkpoints list <job>)')
    .option('-o, --output <path>', 'where to write it (default: <job>-step<N>.tar)')
    .action(async (job: string, o: { checkpoint?: string; output?: string }) =>
      (await res()).downloadCheckpoint(api(), job, o, Boolean(g().json)),
    );

  const w = root.command('webhooks').description('webhook endpoints and deliveries');
  w.command('list').action(async () => (await res()).webhooksList(api(), Boolean(g().json)));
  w.command('create')
    .requiredOption('--url <url>', 'where to POST events')
    .option('--events <list>', 'comma-separated event types (default job.*)')
    .option('--description <text>')
    .action(async (o: { url: string; events?: string; description?: string }) =>
      (await res()).webhooksCreate(api(), o, Boolean(g().json)),
    );
  w.command('deliveries <endpoint>').action(async (id: string) =>
    (await res()).webhooksDeliveries(api(), id, Boolean(g().json)),
  );
  w.command('redeliver <delivery>').action(async (id: string) =>
    (await res()).webhooksRedeliver(api(), id, Boolean(g().json)),
  );
  w.command('test <endpoint>').action(async (id: string) =>
    (await res()).webhooksTest(api(), id, Boolean(g().json)),
  );

  root
    .command('runners')
    .description('runners of the account')
    .command('list')
    .action(async () => (await res()).runnersList(api(), Boolean(g().json)));

  for (const [name, c] of Object.entries(offline))
    root.command(name).description(c.summary).helpOption(false).allowUnknownOption().argument('[args...]');
  return root;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name && offline[name]) return (await offline[name].load())(rest);
  let exit = 0;
  const root = program((code) => {
    exit = code;
  });
  root.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    if (!argv.length) {
      root.outputHelp();
      return 2;
    }
    await root.parseAsync(argv, { from: 'user' });
    return exit;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.exitCode === 0
        ? 0
        : 2;
    }
    return reportError(error, argv.includes('--json'));
  }
}
