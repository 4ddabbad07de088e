// Executed docs: every shell example (```sh, ```bash, ```shell, ```console) in README.md and
// docs/*.md runs against the local stack (wrangler dev, migrations, an account), each file's blocks
// in order in one bash session, so a variable a block sets (`JOB=$(…)`) reaches the later ones.
// A block that cannot run here carries `<!-- docs-test: skip reason="…" -->` on the line before
// its fence; a ```json block marked `<!-- docs-test: file="job.json" -->` is written to that file in
// the session's folder first (for `curl -d @job.json`). `curl` fails on an HTTP error status, so a
// wrong field name is a failing example, not a printed 400.
//
// docs/quickstart.md trains for real: a CPU runner of the page's account runs its SFT → evaluate →
// Critique-GRPO → evaluate → download flow and the CLI's create/follow/download, from the
// repository root (where its `file:examples/datasets/...` paths are). The page's specs are the ones
// a user runs (20 steps, 320 problems); so that it finishes in ~2 minutes on a loaded 2-core
// machine the test shrinks the numbers in its JSON bodies first, by the rules in SHRINK below
// (every rule must match on its page, so a renamed field cannot slip past the shrinking).

import { spawn } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalApi, ROOT, registerRunner, startApi, startRunner, stopRunners } from './harness';

export interface DocBlock {
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  skip?: string;
  file?: string;
}

const SHELL = new Set(['sh', 'bash', 'shell', 'console']);
const MARKER = /^<!--\s*docs-test:\s*(skip|file)=?\s*(?:reason=)?"([^"]*)"\s*-->$/;

/** The shell blocks of one markdown file and the ```json blocks marked as files, in order. */
export function docBlocks(markdown: string): DocBlock[] {
  const lines = markdown.split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i] ?? '');
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end] ?? '')) end++;
    let before = i - 1;
    while (before >= 0 && (lines[before] ?? '').trim() === '') before--;
    const marker = MARKER.exec((lines[before] ?? '').trim());
    const lang = open[1] ?? '';
    const block: DocBlock = { line: i + 1, lang, code: lines.slice(i + 1, end).join('\n') };
    if (marker?.[1] === 'skip') block.skip = marker[2];
    if (marker?.[1] === 'file') block.file = marker[2];
    if (SHELL.has(lang) || block.file) blocks.push(block);
    i = end;
  }
  return blocks;
}

/**
 * Pages whose examples train: the test starts a CPU runner for them and shrinks their job specs,
 * each rule applied to every block of the page (shell and JSON file blocks).
 */
const SHRINK: Record<string, [RegExp, string][]> = {
  'docs/quickstart.md': [
    [/"total_steps": \d+/g, '"total_steps": 2'],
    [/"prompts_per_step": \d+/g, '"prompts_per_step": 4'],
    [/"group_size": \d+/g, '"group_size": 3'],
    [/"checkpoint_every": \d+/g, '"checkpoint_every": 2'],
    [/"max_prompts": \d+/g, '"max_prompts": 4'],
    [/"limit": \d+/g, '"limit": 8'],
    [/"samples_per_prompt": \d+/g, '"samples_per_prompt": 2'],
    [/"max_response_tokens": \d+/g, '"max_response_tokens": 24'],
  ],
};

/** A page's blocks with its SHRINK rules applied; throws when a rule matches nothing. */
export function shrunk(file: string, blocks: DocBlock[]): DocBlock[] {
  const rules = SHRINK[file] ?? [];
  const used = new Set<number>();
  const out = blocks.map((b) => {
    let code = b.code;
    rules.forEach(([re, to], i) => {
      const next = code.replace(re, to);
      if (re.test(code)) used.add(i);
      re.lastIndex = 0;
      code = next;
    });
    return { ...b, code };
  });
  const unused = rules.filter((_, i) => !used.has(i)).map(([re]) => String(re));
  if (unused.length)
    throw new Error(`${file}: shrink rules ${unused.join(', ')} match no block; update SHRINK with the page`);
  return out;
}

interface BashResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * bash -c script, asynchronously: the event loop keeps draining the API's and the runner's pipes
 * while a page runs (a blocked parent would stall a runner writing its log). On timeout the whole
 * process group (bash, curl, npx) is killed.
 */
function bash(script: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<BashResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** Variables docs may use for the API: one scheme everywhere. */
const OTHER_API_VARIABLES =
  /\$\{?(?!CGRPO_API_URL\b|CGRPO_API_KEY\b)(CGRPO[A-Z_]*|KEY|API_KEY|API_URL|TOKEN)\b/;

const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];

interface FileResult {
  file: string;
  run: number;
  passed: number;
  skipped: { line: number; reason: string }[];
  failure?: string;
  /** wall time of the page's bash session */
  seconds?: number;
}

let api: LocalApi;
let localKey: string;
let localRegistrationKey: string;
const results: FileResult[] = [];
const work = join(ROOT, '.test-results');

beforeAll(async () => {
  api = await startApi();
  // The docs' local account is `local` (npm start creates it); plugin examples publish as local/…
  const boot = await api.request<{ api_key: string; registration_key: string }>('POST', '/v1/bootstrap', {
    handle: 'local',
  });
  if (boot.status !== 201) throw new Error(`bootstrap local: ${boot.status} ${JSON.stringify(boot.body)}`);
  localKey = boot.body.api_key;
  localRegistrationKey = boot.body.registration_key;
}, 240_000);

afterAll(async () => {
  stopRunners(false);
  await api?.stop();
  const rows = results.map(
    (r) =>
      `${r.file.padEnd(28)} run ${r.run}  passed ${r.passed}  skipped ${r.skipped.length}  ${(r.seconds ?? 0).toFixed(0)} s${r.failure ? '  FAILED' : ''}`,
  );
  const skips = results.flatMap((r) => r.skipped.map((s) => `  ${r.file}:${s.line} skipped: ${s.reason}`));
  console.log(['docs examples:', ...rows, ...skips].join('\n'));
});

describe('shell examples in the docs', () => {
  it('use $CGRPO_API_URL and $CGRPO_API_KEY, and every skip names its reason', () => {
    const wrong: string[] = [];
    for (const file of DOCS) {
      for (const b of docBlocks(readFileSync(join(ROOT, file), 'utf8'))) {
        const m = OTHER_API_VARIABLES.exec(b.code);
        if (m) wrong.push(`${file}:${b.line} uses $${m[1]}`);
        if (b.skip !== undefined && b.skip.trim() === '')
          wrong.push(`${file}:${b.line} skip without a reason`);
      }
    }
    expect(wrong).toEqual([]);
  });

  for (const file of DOCS) {
    const blocks = shrunk(file, docBlocks(readFileSync(join(ROOT, file), 'utf8')));
    if (!blocks.some((b) => SHELL.has(b.lang))) continue;
    const trains = file in SHRINK;
    it(`${file}: every unmarked block exits 0`, async () => {
      mkdirSync(work, { recursive: true });
      // inside the repository, so `npx cgrpo` finds the workspace's own CLI
      const dir = mkdtempSync(join(work, 'docs-'));
      // the docs run from the repository root: its examples/ folder is where they say
      symlinkSync(join(ROOT, 'examples'), join(dir, 'examples'));
      const result: FileResult = { file, run: 0, passed: 0, skipped: [] };
      results.push(result);
      const script = [
        'set -eo pipefail',
        // an HTTP error is a failed example (the body is still printed)
        'curl() { local a; for a in "$@"; do case "$a" in --fail | --fail-with-body | -[!-]*f*) command curl "$@"; return;; esac; done; command curl --fail-with-body "$@"; }',
      ];
      for (const b of blocks) {
        if (b.file) {
          // into the folder the session is in at this point of the page
          const saved = join(dir, `file-${b.line}`);
          writeFileSync(saved, `${b.code}\n`);
          script.push(`cp ${JSON.stringify(saved)} ${JSON.stringify(b.file)}`);
          continue;
        }
        if (b.skip !== undefined) {
          result.skipped.push({ line: b.line, reason: b.skip });
          continue;
        }
        result.run++;
        const path = join(dir, `block-${b.line}.sh`);
        writeFileSync(path, `${b.code}\n`);
        script.push(`echo "::block ${b.line}" >&2`, `source ${JSON.stringify(path)}`);
      }
      script.push('echo "::done" >&2');
      if (trains) {
        // the page's queue starts empty, as after a fresh `npm start`: jobs earlier pages queued
        // would otherwise be leased first
        const local = { ...api, registrationKey: localRegistrationKey };
        const queued = await fetch(`${api.url}/v1/jobs?status=queued&limit=200`, {
          headers: { authorization: `Bearer ${localKey}` },
        });
        for (const j of ((await queued.json()) as { data: { id: string }[] }).data) {
          const c = await fetch(`${api.url}/v1/jobs/${j.id}/cancel`, {
            method: 'POST',
            headers: { authorization: `Bearer ${localKey}` },
          });
          if (!c.ok) throw new Error(`cancel ${j.id}: ${c.status} ${await c.text()}`);
        }
        // cwd ROOT: the page's file:examples/datasets/... paths resolve under the runner's root
        startRunner(local, registerRunner(local, `docs-${file.replace(/\W+/g, '-')}`).token);
      }
      const t0 = performance.now();
      let out: BashResult;
      try {
        out = await bash(
          script.join('\n'),
          dir,
          {
            PATH: `${dirname(process.execPath)}:${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH}`,
            HOME: dir,
            XDG_CONFIG_HOME: join(dir, '.config'),
            CGRPO_API_URL: api.url,
            CGRPO_API_KEY: localKey,
            NPM_CONFIG_OFFLINE: 'true',
            NPM_CONFIG_UPDATE_NOTIFIER: 'false',
          },
          240_000,
        );
      } finally {
        result.seconds = (performance.now() - t0) / 1000;
      }
      const started = [...out.stderr.matchAll(/^::block (\d+)$/gm)].map((m) => Number(m[1]));
      const done = out.stderr.includes('::done');
      result.passed = done ? started.length : Math.max(0, started.length - 1);
      if (out.status !== 0 || !done) {
        result.failure = `${file}:${started.at(-1)} exited ${out.status ?? out.signal}`;
        if (trains) stopRunners(true);
        throw new Error(
          `${result.failure}\n--- stdout\n${out.stdout.slice(-3000)}\n--- stderr\n${out.stderr.slice(-3000)}`,
        );
      }
      if (trains) stopRunners(false);
      rmSync(dir, { recursive: true, force: true });
      expect(result.passed).toBe(result.run);
    }, 300_000);
  }
});
