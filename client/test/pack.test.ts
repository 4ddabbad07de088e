// The packages install outside the monorepo: `npm pack` @cgrpo/client and the plugin SDK, unpack
// the tarballs into an empty folder's node_modules (as npm would; their npm dependencies are copied
// from this checkout's node_modules, since the test runs offline), then import them under plain
// Node (no tsx), run the `cgrpo` bin, and typecheck a consumer against the shipped .d.ts with
// NodeNext resolution.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs build script without types
import { packAll } from '../scripts/pack.mjs';

const ROOT = join(import.meta.dirname, '..', '..');
let app: string;

/** Copies `name` and its dependencies (recursively) from the checkout's node_modules. */
function copyDep(name: string, into: string, seen = new Set<string>()) {
  if (seen.has(name)) return;
  seen.add(name);
  const from = [join(ROOT, 'client', 'node_modules', name), join(ROOT, 'node_modules', name)].find(
    existsSync,
  );
  if (!from) throw new Error(`dependency ${name} is not installed in the checkout`);
  cpSync(from, join(into, name), { recursive: true, dereference: true });
  const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as {
    dependencies?: Record<string, string>;
  };
  for (const d of Object.keys(pkg.dependencies ?? {})) copyDep(d, into, seen);
}

beforeAll(async () => {
  const out = mkdtempSync(join(tmpdir(), 'cgrpo-pack-'));
  const tarballs = (await packAll(join(out, 'tarballs'))) as { client: string; sdk: string };
  app = join(out, 'app');
  const nm = join(app, 'node_modules');
  mkdirSync(join(nm, '@cgrpo', 'client'), { recursive: true });
  mkdirSync(join(nm, '@cgrpo', 'plugins'), { recursive: true });
  writeFileSync(join(app, 'package.json'), '{ "name": "app", "private": true, "type": "module" }\n');
  for (const [tgz, dir] of [
    [tarballs.client, join(nm, '@cgrpo', 'client')],
    [tarballs.sdk, join(nm, '@cgrpo', 'plugins')],
  ] as const) {
    execFileSync('tar', ['xzf', tgz, '-C', dir, '--strip-components=1']);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const d of Object.keys(pkg.dependencies)) copyDep(d, nm);
  }
}, 180_000);

describe('npm pack → install → import under plain Node', () => {
  it('the tarballs hold built JS and .d.ts, not TypeScript source', () => {
    const pkg = JSON.parse(
      readFileSync(join(app, 'node_modules', '@cgrpo', 'client', 'package.json'), 'utf8'),
    );
    expect(pkg.exports['.'].default).toBe('./dist/index.js');
    expect(Object.keys(pkg.dependencies).some((d) => d.startsWith('@cgrpo/'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', '@cgrpo', 'client', 'src'))).toBe(false);
  });

  it("import { verifyWebhook } from '@cgrpo/client' and the plugin SDK work without tsx", async () => {
    writeFileSync(
      join(app, 'main.mjs'),
      `import { verifyWebhook, signWebhook, CgrpoClient } from '@cgrpo/client';
import { defineCritic } from '@cgrpo/plugins/sdk';
const secret = 'whsec_' + Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
const body = JSON.stringify({ type: 'job.succeeded', timestamp: new Date().toISOString(), data: { id: 'job_1' } });
const ts = Math.floor(Date.now() / 1000);
const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': await signWebhook(secret, 'msg_1', ts, body) };
const event = await verifyWebhook(secret, headers, body);
const critic = defineCritic({ critique: () => ({ critique: 'check the sign' }) });
console.log(JSON.stringify({ type: event.type, client: typeof new CgrpoClient({ url: 'http://x', apiKey: 'k' }).listJobs, critic: critic.kind }));
`,
    );
    const r = spawnSync(process.execPath, [join(app, 'main.mjs')], { cwd: app, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ type: 'job.succeeded', client: 'function', critic: 'critic' });
  });

  it('the installed cgrpo bin runs and says how to log in', () => {
    const bin = join(app, 'node_modules', '@cgrpo', 'client', 'bin', 'cgrpo.mjs');
    const help = spawnSync(process.execPath, [bin, '--help'], { cwd: app, encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/jobs\s+create, watch and control/);
    const list = spawnSync(process.execPath, [bin, 'jobs', 'list'], {
      cwd: app,
      encoding: 'utf8',
      env: { ...process.env, CGRPO_CONFIG: join(app, 'none.json'), CGRPO_API_URL: '', CGRPO_API_KEY: '' },
    });
    expect(list.status).toBe(1);
    expect(list.stderr).toMatch(/cgrpo login/);
  });

  it('a TypeScript consumer typechecks against the shipped .d.ts (NodeNext)', () => {
    writeFileSync(
      join(app, 'consumer.ts'),
      `import { verifyWebhook, CgrpoClient, type Job } from '@cgrpo/client';
import { defineVerifier } from '@cgrpo/plugins/sdk';
const c = new CgrpoClient({ url: 'http://127.0.0.1:8787', apiKey: 'k' });
export const j: Promise<Job> = c.getJob('job_1');
export const v = verifyWebhook;
export const p = defineVerifier({ verify: ({ response }) => ({ score: response.length > 0 ? 1 : 0, correct: true }) });
`,
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          skipLibCheck: false,
          types: [],
          lib: ['es2023', 'dom'],
        },
        files: ['consumer.ts'],
      }),
    );
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});
