// npm run bench:plugins — a typical verifier (examples/plugins/json-answer-verifier) run natively
// and in the plugin sandbox on both of its engines (V8 isolates through isolated-vm, the default
// where it loads; QuickJS in WASM, the fallback), interleaved round by round so the shared box's
// noise hits all of them alike: calls/s over batches of 512, single-call latency p50/p99, cold
// start, memory per sandbox. Runs with --no-node-snapshot (isolated-vm's requirement).
// `npm run bench:plugins -- --hostile`: the runner's peak RSS while eight hostile plugins (64 MB limit)
// run one after another in a child process per engine, and the bundle sizes of the example plugins.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PluginManifest, VerifierInput } from '@cgrpo/contract';
import {
  ivmUnavailableReason,
  resolveEngine,
  type SandboxEngine,
  SandboxedPlugin,
} from '@cgrpo/plugins/sandbox';
import type { PluginContext, VerifierDefinition } from '@cgrpo/plugins/sdk';
import { buildPlugin } from '../client/src/plugins/build';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const BATCH = 512;
const root = path.resolve(import.meta.dirname, '..');
const exampleDir = path.join(root, 'examples/plugins/json-answer-verifier');

function inputs(): VerifierInput[] {
  return Array.from({ length: BATCH }, (_, i) => {
    const sum = i % 7;
    const product = (i * 3) % 11;
    const wrong = i % 3 === 0;
    return {
      question: `Return the sum and product as JSON (case ${i}).`,
      response: `Working it out step by step.\n\`\`\`json\n{"sum": ${sum}, "product": ${wrong ? product + 1 : product}, "note": "case ${i}"}\n\`\`\``,
      reference: JSON.stringify({ sum, product }),
      metadata: {},
    };
  });
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs: number[]) => quantile(xs, 0.5);
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), 'cgrpo-bench-plugins-'));
  const dir = path.join(work, 'verifier');
  cpSync(exampleDir, dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}dist`) });
  const { bundle, manifest } = await buildPlugin(dir);
  const batch = inputs();

  // Native: the same definition object, imported as TypeScript and called directly.
  const native = (await import(pathToFileURL(path.join(exampleDir, 'src/index.ts')).href))
    .default as VerifierDefinition<{
    tolerance: number;
    unordered_arrays: boolean;
    forbid_extra_keys: boolean;
  }>;
  const parsed = native.parseConfig({});
  if (!parsed.ok) throw new Error('config');
  const ctx = { config: parsed.value, log: () => {}, llm: {} } as unknown as PluginContext<
    typeof parsed.value
  >;

  const engines: SandboxEngine[] = ['quickjs'];
  let ivmNote = '';
  try {
    resolveEngine('isolated-vm');
    engines.unshift('isolated-vm');
  } catch (error) {
    ivmNote = `isolated-vm: not usable here (${(error as Error).message})`;
  }
  const load = async (engine: SandboxEngine) => {
    const p = await SandboxedPlugin.load(bundle, manifest as PluginManifest, { engine });
    await p.configure({});
    return p;
  };

  // Cold start: a fresh SandboxedPlugin (new isolate or WASM module, bundle evaluated, config checked).
  const cold = new Map<SandboxEngine, number[]>();
  for (const engine of engines) {
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      (await load(engine)).dispose();
      times.push(performance.now() - t);
    }
    cold.set(engine, times);
  }
  const boxes = new Map<SandboxEngine, SandboxedPlugin>();
  for (const engine of engines) boxes.set(engine, await load(engine));

  // Warm-up: a runner serves a verifier for a whole job, so both sides are measured at steady
  // state, after V8 has optimized the plugin code (natively and in the isolate alike).
  const WARMUP = Number(process.env.BENCH_WARMUP ?? 40);
  for (let round = 0; round < WARMUP; round++) {
    for (const input of batch) await native.run(input, ctx);
    for (const box of boxes.values()) await box.verifyBatch(batch);
  }

  const rate = new Map<string, number[]>([
    ['native', []],
    ...engines.map((e) => [e, []] as [string, number[]]),
  ]);
  const single = new Map<string, number[]>([
    ['native', []],
    ...engines.map((e) => [e, []] as [string, number[]]),
  ]);
  let correctNative = 0;
  const correct = new Map<SandboxEngine, number>();
  for (let round = 0; round < ROUNDS; round++) {
    let t = performance.now();
    correctNative = 0;
    for (const input of batch) {
      const r = await native.run(input, ctx);
      if (r.correct) correctNative += 1;
    }
    rate.get('native')?.push(BATCH / ((performance.now() - t) / 1000));
    for (const [engine, box] of boxes) {
      t = performance.now();
      const outcomes = await box.verifyBatch(batch);
      rate.get(engine)?.push(BATCH / ((performance.now() - t) / 1000));
      correct.set(engine, outcomes.filter((o) => o.ok && o.value.correct).length);
    }
    // Single-call latency: one VM entry per call (the worst case; batches amortise it).
    for (let i = 0; i < 32; i++) {
      const input = batch[(round * 32 + i) % BATCH];
      let s = performance.now();
      await native.run(input, ctx);
      single.get('native')?.push(performance.now() - s);
      for (const [engine, box] of boxes) {
        s = performance.now();
        await box.verify(input);
        single.get(engine)?.push(performance.now() - s);
      }
    }
  }
  for (const [engine, n] of correct)
    if (n !== correctNative) throw new Error(`${engine}: ${n} correct, native ${correctNative}`);

  // Memory: what one instance holds, and the process RSS per live sandbox (16 of them).
  const memory = new Map<SandboxEngine, { instance: number; rss: number }>();
  for (const [engine, box] of boxes) {
    const rssBefore = process.memoryUsage().rss;
    const many: SandboxedPlugin[] = [];
    for (let i = 0; i < 16; i++) {
      const p = await load(engine);
      await p.verifyBatch(batch.slice(0, 64));
      many.push(p);
    }
    memory.set(engine, { instance: box.memoryBytes(), rss: (process.memoryUsage().rss - rssBefore) / 16 });
    for (const p of many) p.dispose();
  }

  const nativeRate = median(rate.get('native') ?? []);
  const row = (name: string) => {
    const r = median(rate.get(name) ?? []);
    const sl = single.get(name) ?? [];
    const share = name === 'native' ? '' : ` (${((r / nativeRate) * 100).toFixed(1)} % of native)`;
    return `${name.padEnd(12)} ${r.toFixed(0).padStart(7)} calls/s${share}   single call p50 ${median(sl).toFixed(3)} ms  p99 ${quantile(sl, 0.99).toFixed(3)} ms`;
  };
  const lines = [
    `machine: ${os.cpus().length}-core ${os.arch()} (${os.cpus()[0]?.model ?? 'cpu'}), Node ${process.version}, load avg ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
    `typical verifier: examples/plugins/json-answer-verifier, bundle ${(bundle.length / 1024).toFixed(0)} KB (SDK + zod), batches of ${BATCH}, ${WARMUP} warm-up then ${ROUNDS} interleaved rounds (medians)`,
    row('native'),
    ...engines.map(row),
    ...engines.map((e) => {
      const c = cold.get(e) ?? [];
      const m = memory.get(e);
      return `${e.padEnd(12)} cold start first ${c[0].toFixed(0)} ms, then median ${median(c.slice(1)).toFixed(0)} ms; memory per instance ${mb(m?.instance ?? 0)}, RSS per live sandbox ${mb(m?.rss ?? 0)}`;
    }),
    `sandboxed throughput: ${((median(rate.get(engines[0]) ?? []) / nativeRate) * 100).toFixed(1)}% of native (${engines[0]}, the default here; target >= 25%)`,
    ...(ivmNote ? [ivmNote] : []),
  ];
  console.log(lines.join('\n'));
  for (const box of boxes.values()) box.dispose();
  rmSync(work, { recursive: true, force: true });
}

/** Peak RSS of a child process running every hostile scenario, per engine; bundle sizes. */
async function hostile(): Promise<void> {
  const child = path.join(root, 'plugins/sandbox/crash-child.ts');
  const { HOSTILE } = await import(pathToFileURL(child).href);
  const scenarios = Object.keys(HOSTILE as Record<string, string>);
  const engines = ivmUnavailableReason() === null ? ['quickjs', 'isolated-vm'] : ['quickjs'];
  const lines = [`node ${process.version}; hostile plugins, one after another: ${scenarios.join(', ')}`];
  for (const engine of engines) {
    const r = spawnSync(process.execPath, ['--no-node-snapshot', '--import', 'tsx', child, ...scenarios], {
      env: { ...process.env, CGRPO_SANDBOX_ENGINE: engine },
      encoding: 'utf8',
    });
    const report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    const outcomes = Object.entries(report.outcomes ?? {})
      .map(([k, v]) => `${k}=${(v as { ok: boolean; reason?: string }).reason ?? 'ok'}`)
      .join(' ');
    lines.push(
      `${engine.padEnd(12)} exit ${r.status ?? r.signal}; limit ${report.memoryMb} MB; peak RSS ${report.peakMaxRssMb} MB after a well-behaved plugin ${report.baselineMaxRssMb} MB: +${report.peakMaxRssMb - report.baselineMaxRssMb} MB; ${outcomes}`,
    );
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'cgrpo-bench-size-'));
  for (const name of ['rubric-critic', 'json-answer-verifier']) {
    const dir = path.join(work, name);
    cpSync(path.join(root, 'examples/plugins', name), dir, {
      recursive: true,
      filter: (src) => !src.includes(`${path.sep}dist`),
    });
    const built = await buildPlugin(dir);
    lines.push(`bundle ${name}: ${built.bundle.length} bytes`);
  }
  rmSync(work, { recursive: true, force: true });
  console.log(lines.join('\n'));
}

await (process.argv.includes('--hostile') ? hostile() : main());
