// `cgrpo plugins init <name> --kind critic|verifier`: a working plugin with samples that double as
// its test (`cgrpo plugins test --input samples.jsonl` checks each sample's `expect`).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CliError, type PluginProject } from './project';

export type ScaffoldKind = 'verifier' | 'critic';

const VERIFIER_SOURCE = `import { defineVerifier } from '@cgrpo/plugins/sdk';
import * as z from '@cgrpo/plugins/sdk/zod';

// A verifier scores one response against the reference: score in [0, 1], correct, details.
// It runs in a sandbox: no files, network, process or timers; log with ctx.log.
export default defineVerifier({
  config: z.object({
    /** Compare case-insensitively. */
    ignore_case: z.boolean().default(true),
  }),
  verify(input, ctx) {
    const normalize = (s: string) => (ctx.config.ignore_case ? s.trim().toLowerCase() : s.trim());
    const answer = input.response.split('\\n').filter((line) => line.trim()).pop() ?? '';
    const correct = normalize(answer) === normalize(input.reference);
    return { score: correct ? 1 : 0, correct, details: { answer } };
  },
});
`;

const CRITIC_SOURCE = `import { defineCritic } from '@cgrpo/plugins/sdk';
import * as z from '@cgrpo/plugins/sdk/zod';

// A critic writes a natural-language critique of one response; the trainer conditions a
// refinement on it. Add "llm.chat" to plugin.json capabilities to call ctx.llm.chat.
export default defineCritic({
  config: z.object({
    /** Include the reference answer in the critique. */
    reveal_reference: z.boolean().default(false),
  }),
  critique(input, ctx) {
    if (input.verification.correct) return { critique: 'The response is correct.' };
    const hint = ctx.config.reveal_reference ? \` The expected answer is \${input.reference}.\` : '';
    return { critique: \`The response is incorrect: re-check the final step.\${hint}\` };
  },
});
`;

const VERIFIER_SAMPLES = [
  {
    input: {
      question: 'Capital of France?',
      response: 'Let me think.\nParis',
      reference: 'paris',
      metadata: {},
    },
    expect: { correct: true, score: 1 },
  },
  {
    input: { question: 'Capital of Italy?', response: 'Milan', reference: 'Rome', metadata: {} },
    expect: { correct: false, score: 0 },
  },
];

const CRITIC_SAMPLES = [
  {
    input: {
      question: '2+2?',
      response: '5',
      reference: '4',
      verification: { score: 0, correct: false, details: {} },
    },
    expect: { contains: 'incorrect' },
  },
  {
    input: {
      question: '2+2?',
      response: '4',
      reference: '4',
      verification: { score: 1, correct: true, details: {} },
    },
    expect: { contains: 'correct' },
  },
];

export function scaffoldPlugin(options: {
  dir: string;
  name: string;
  kind: ScaffoldKind;
  owner: string;
}): PluginProject {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(options.name)) {
    throw new CliError(
      'invalid_name',
      `plugin name '${options.name}': use lowercase letters, digits and '-'`,
    );
  }
  if (!/^[a-z0-9][a-z0-9-]*$/.test(options.owner)) {
    throw new CliError(
      'invalid_owner',
      `owner '${options.owner}': use your account handle (lowercase letters, digits, '-')`,
    );
  }
  if (existsSync(path.join(options.dir, 'plugin.json'))) {
    throw new CliError('exists', `${options.dir} already holds a plugin (plugin.json); choose another --dir`);
  }
  const project: PluginProject = {
    name: `${options.owner}/${options.name}`,
    version: '0.1.0',
    kind: options.kind,
    description: `A custom ${options.kind}.`,
    entry: 'src/index.ts',
    capabilities: [],
    limits: { timeout_ms: 10_000, memory_mb: 128 },
  };
  mkdirSync(path.join(options.dir, 'src'), { recursive: true });
  writeFileSync(path.join(options.dir, 'plugin.json'), `${JSON.stringify(project, null, 2)}\n`);
  writeFileSync(
    path.join(options.dir, 'src', 'index.ts'),
    options.kind === 'verifier' ? VERIFIER_SOURCE : CRITIC_SOURCE,
  );
  const samples = options.kind === 'verifier' ? VERIFIER_SAMPLES : CRITIC_SAMPLES;
  writeFileSync(
    path.join(options.dir, 'samples.jsonl'),
    `${samples.map((s) => JSON.stringify(s)).join('\n')}\n`,
  );
  writeFileSync(path.join(options.dir, '.gitignore'), 'dist/\n');
  writeFileSync(
    path.join(options.dir, 'README.md'),
    `# ${project.name}\n\n${project.description}\n\n` +
      '```sh\ncgrpo plugins build                          # dist/plugin.mjs + dist/manifest.json\n' +
      'cgrpo plugins test --input samples.jsonl     # runs in the production sandbox, checks each "expect"\n' +
      'cgrpo plugins publish                        # needs CGRPO_API_URL and CGRPO_API_KEY\n```\n',
  );
  return project;
}
