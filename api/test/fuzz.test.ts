import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { call, newAccount, type TestAccount } from './helpers';

// Seeded fuzzing of the three routes that take the most user structure: job specs, dataset uploads
// and plugin publishes. Every answer must be < 500, every 4xx must name a field path, and only
// accepted requests may leave rows behind. Counts are printed for bench/RESULTS.md.

const SEED = Number(process.env.FUZZ_SEED ?? 20261206);
const COUNTS = { jobs: 600, datasets: 250, plugins: 250 };

function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;

const deep = (n: number): unknown => (n === 0 ? [] : [deep(n - 1)]);
const VALUES: (() => unknown)[] = [
  () => null,
  () => true,
  () => -1,
  () => 0,
  () => 1.5,
  () => 1e308,
  () => 2 ** 53 + 1,
  () => '',
  () => 'x',
  () => 'builtin:math',
  () => 'a'.repeat(int(3) === 0 ? 70_000 : 300),
  () => [],
  () => ({}),
  () => [1, 'two', { three: 3 }],
  () => deep(20 + int(30)),
  () => JSON.parse('{"__proto__":{"x":1}}'),
  () => ({ constructor: 'x' }),
  () => ({ '': 1 }),
  () => new Array(int(2) ? 50 : 12_000).fill(0),
  () => 'file:../../etc/passwd',
  () => 'artifact://art_nope',
  () => 'ümlaut ✓ 𝄞',
];
const KEYS = ['', '__proto__', 'constructor', 'extra', 'a.b', 'group_size', 'config', 'x'.repeat(200)];

type Json = Record<string, unknown> | unknown[];
function paths(value: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []) {
  out.push(prefix);
  if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value))
      paths(v, [...prefix, Array.isArray(value) ? Number(k) : k], out);
  return out;
}
function parentOf(root: Json, path: (string | number)[]) {
  let node: unknown = root;
  for (const key of path.slice(0, -1)) node = (node as Record<string | number, unknown>)[key];
  return node as Record<string | number, unknown>;
}

/** 1-3 structural mutations of a JSON document, or a mangled text of it. */
function mutate(base: Json): string {
  const doc = JSON.parse(JSON.stringify(base)) as Json;
  const roll = random();
  if (roll < 0.05) return JSON.stringify(pick(VALUES)());
  if (roll < 0.1) {
    const text = JSON.stringify(doc);
    return text.slice(0, int(text.length));
  }
  for (let n = 1 + int(3); n > 0; n--) {
    const all = paths(doc).filter((p) => p.length > 0);
    const path = pick(all);
    const parent = parentOf(doc, path);
    const key = path[path.length - 1] as string | number;
    const op = int(3);
    if (op === 0) parent[key] = pick(VALUES)();
    else if (op === 1 && !Array.isArray(parent)) delete parent[key];
    else if (parent && typeof parent === 'object' && !Array.isArray(parent)) {
      const added = pick(KEYS);
      Object.defineProperty(parent, added, {
        value: pick(VALUES)(),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
  }
  return JSON.stringify(doc);
}

const BASE_SPEC = {
  name: 'fuzz',
  model: { id: 'Qwen/Qwen3-0.6B', adapter: { type: 'lora', rank: 8 } },
  datasets: {
    train: { uri: 'https://example.test/train.jsonl', fields: { prompt: 'question', reference: 'answer' } },
  },
  hyperparameters: { group_size: 4, prompts_per_step: 8, learning_rate: 1e-6, total_steps: 10 },
  verifier: { plugin: 'builtin:exact', config: {} },
  runner_labels: ['gpu'],
  metadata: { team: 'fuzz' },
};

type Tally = { requests: number; byStatus: Record<string, number>; failures: string[] };
const tally = (): Tally => ({ requests: 0, byStatus: {}, failures: [] });

async function judge(t: Tally, what: string, res: Response) {
  t.requests += 1;
  t.byStatus[res.status] = (t.byStatus[res.status] ?? 0) + 1;
  const text = await res.text();
  if (res.status >= 500) t.failures.push(`${what}: ${res.status} ${text.slice(0, 200)}`);
  else if (res.status >= 400) {
    let fields: { path?: unknown }[] = [];
    try {
      fields = (JSON.parse(text) as { error: { fields: { path?: unknown }[] } }).error.fields;
    } catch {
      // not JSON: a failure below
    }
    if (fields.length === 0 || fields.some((f) => typeof f.path !== 'string' || f.path === ''))
      t.failures.push(`${what}: ${res.status} without a field path: ${text.slice(0, 200)}`);
  }
}

const DB = (env as unknown as { DB: D1Database }).DB;
const count = async (table: string, account: TestAccount) =>
  (
    await DB.prepare(`SELECT count(*) AS n FROM ${table} WHERE account_id = ?1`)
      .bind(account.accountId)
      .first<{ n: number }>()
  )?.n ?? 0;

async function sha256(bytes: Uint8Array) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

describe(`fuzz (seed ${SEED})`, () => {
  it(`${COUNTS.jobs} mutated job specs: no 5xx, every 4xx names a path, only 2xx leave jobs`, async () => {
    const account = await newAccount('fuzz');
    const t = tally();
    let accepted = 0;
    for (let i = 0; i < COUNTS.jobs; i++) {
      const body = mutate(BASE_SPEC);
      const res = await call('/v1/jobs', {
        method: 'POST',
        key: account.apiKey,
        body,
        headers: { 'content-type': 'application/json' },
      });
      if (res.status < 300) accepted += 1;
      await judge(t, `job ${i} ${body.slice(0, 160)}`, res);
    }
    console.log(`fuzz jobs: ${JSON.stringify(t.byStatus)} (${t.requests} requests)`);
    expect(t.failures).toEqual([]);
    expect(await count('jobs', account)).toBe(accepted);
  }, 600_000);

  it(`${COUNTS.datasets} mutated dataset uploads: no 5xx, every 4xx names its line`, async () => {
    const account = await newAccount('fuzz');
    const t = tally();
    let accepted = 0;
    const rows = Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({ question: `${i} + ${i} ✓`, answer: String(2 * i) }),
    );
    const enc = new TextEncoder();
    for (let i = 0; i < COUNTS.datasets; i++) {
      let bytes = enc.encode(`${rows.join('\n')}\n`);
      for (let n = 1 + int(3); n > 0; n--) {
        const at = int(bytes.length);
        const op = int(6);
        if (op === 0) bytes[at] = int(256);
        else if (op === 1)
          bytes = new Uint8Array([
            ...bytes.subarray(0, at),
            pick([0xff, 0xc3, 0xe2, 0xf0, 0x80]),
            ...bytes.subarray(at),
          ]);
        else if (op === 2) bytes = bytes.slice(0, at);
        else if (op === 3) bytes = bytes.map((b, k) => (k === at && b === 0x0a ? 0x20 : b));
        else if (op === 4)
          bytes = enc.encode(
            `${new TextDecoder().decode(bytes)}{"question":"${'q'.repeat(int(2) ? 1000 : 1_100_000)}","answer":"1"}\n`,
          );
        else
          bytes = enc.encode(
            `${new TextDecoder().decode(bytes)}\n\n${pick(['[]', '{}', '"x"', '{"question":""}', '{"answer":1}', 'null'])}\n`,
          );
      }
      const query = pick([
        'name=f.jsonl&kind=dataset&prompt_field=question&reference_field=answer',
        'name=f.jsonl&kind=dataset&prompt_field=question&reference_field=answer',
        'name=f.jsonl&kind=dataset&prompt_field=prompt&reference_field=answer',
        'name=f.jsonl&kind=dataset',
        'name=&kind=dataset&prompt_field=question&reference_field=answer',
        'name=f.jsonl&kind=nope',
      ]);
      const res = await call(`/v1/artifacts?${query}`, {
        method: 'POST',
        key: account.apiKey,
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      if (res.status < 300) accepted += 1;
      await judge(t, `dataset ${i} ${query}`, res);
    }
    console.log(`fuzz datasets: ${JSON.stringify(t.byStatus)} (${t.requests} requests)`);
    expect(t.failures).toEqual([]);
    expect(await count('artifacts', account)).toBe(accepted);
  }, 600_000);

  it(`${COUNTS.plugins} mutated plugin publishes: no 5xx, every 4xx names a path, only 2xx leave versions`, async () => {
    const account = await newAccount('fuzz');
    const t = tally();
    const code = new TextEncoder().encode(
      'export default { verify() { return { score: 1, correct: true, details: {} }; } };',
    );
    const base = {
      name: `${account.handle}/grader`,
      version: '1.0.0',
      kind: 'verifier',
      description: 'fuzz',
      config_schema: { type: 'object', properties: { tolerance: { type: 'number' } } },
      capabilities: [],
      limits: { timeout_ms: 1000, memory_mb: 64 },
      sha256: await sha256(code),
    };
    const created = new Set<string>();
    for (let i = 0; i < COUNTS.plugins; i++) {
      const manifest = mutate(base);
      const form = new FormData();
      form.set('manifest', manifest);
      form.set('bundle', new File([code], 'bundle.mjs', { type: 'text/javascript' }));
      const res = await call('/v1/plugins', { method: 'POST', key: account.apiKey, body: form });
      if (res.status === 201) created.add(manifest);
      await judge(t, `plugin ${i} ${manifest.slice(0, 160)}`, res);
    }
    console.log(`fuzz plugins: ${JSON.stringify(t.byStatus)} (${t.requests} requests)`);
    expect(t.failures).toEqual([]);
    expect(await count('plugins', account)).toBe(created.size);
    expect((await call('/v1/plugins', { key: account.apiKey })).status).toBe(200);
  }, 600_000);
});
