// npm run bench:plugins — a typical verifier (examples/plugins/json-answer-verifier) run natively,
// in the QuickJS sandbox the runner uses, and (when installed outside the repo) in isolated-vm,
// interleaved round by round so the shared CI box's noise hits all of them alike.
//   calls/s over batches of 512, single-call latency p50/p99, cold start, memory per sandbox.
// isolated-vm is looked up at $CGRPO_IVM_PATH or /tmp/ivm/node_modules/isolated-vm (see
// docs/plugins.md, "The sandbox"); without it that column is skipped and says so.
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PluginManifest, VerifierInput } from '@cgrpo/contract';
import { SandboxedPlugin } from '@cgrpo/plugins/sandbox';
import type { PluginContext, VerifierDefinition } from '@cgrpo/plugins/sdk';
import { build } from 'esbuild';
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

interface IvmModule {
  Isolate: new (o: {
    memoryLimit: number;
  }) => {
    createContext(): Promise<{ global: { set(k: string, v: unknown): Promise<void> } }>;
    compileScript(code: string): Promise<{ run(ctx: unknown, o?: { timeout: number }): Promise<unknown> }>;
    getHeapStatistics(): Promise<{ total_heap_size: number; used_heap_size: number }>;
    dispose(): void;
  };
}

function loadIvm(): IvmModule | null {
  const candidates = [process.env.CGRPO_IVM_PATH, '/tmp/ivm/node_modules/isolated-vm'].filter(
    Boolean,
  ) as string[];
  for (const candidate of candidates) {
    if (!existsSync(candidate)) continue;
    try {
      return createRequire(import.meta.url)(candidate) as IvmModule;
    } catch (error) {
      console.log(`isolated-vm at ${candidate} did not load: ${(error as Error).message}`);
    }
  }
  return null;
}

/**
 * isolated-vm with a minimal harness: the same entry bundled as a script (isolated-vm has no
 * module loader for us to bridge), the batch goes in as JSON and the results come out as JSON.
 */
async function ivmSandbox(ivm: IvmModule, script: string) {
  const isolate = new ivm.Isolate({ memoryLimit: 64 });
  const context = await isolate.createContext();
  await (await isolate.compileScript(script)).run(context);
  await (
    await isolate.compileScript(`globalThis.__run = (() => {
      const def = __plugin.default;
      const ctx = { config: def.parseConfig({}).value, log: () => {}, llm: {} };
      return (json) => JSON.stringify(JSON.parse(json).map((input) => def.run(input, ctx)));
    })();`)
  ).run(context);
  const runner = await isolate.compileScript('__run(__batch)');
  return {
    async batch(json: string) {
      await context.global.set('__batch', json);
      return runner.run(context, { timeout: 10_000 });
    },
    heap: () => isolate.getHeapStatistics(),
    dispose: () => isolate.dispose(),
  };
}

async function scriptBundle(dir: string): Promise<string> {
  const result = await build({
    entryPoints: [path.join(dir, 'src/index.ts')],
    bundle: true,
    format: 'iife',
    globalName: '__plugin',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    target: 'es2020',
    minify: true,
    write: false,
    alias: { '@cgrpo/plugins/sdk': createRequire(import.meta.url).resolve('@cgrpo/plugins/sdk') },
  });
  return result.outputFiles[0].text;
}

async function main() {
  const work = mkdtempSync(path.join(os.tmpdir(), 'cgrpo-bench-plugins-'));
  const dir = path.join(work, 'verifier');
  cpSync(exampleDir, dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}dist`) });
  const { bundle, manifest } = await buildPlugin(dir);
  const batch = inputs();
  const batchJson = JSON.stringify(batch);

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

  // Cold start: a fresh SandboxedPlugin (own WASM module, bundle evaluated, config checked).
  const coldStarts: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t = performance.now();
    const p = await SandboxedPlugin.load(bundle, manifest as PluginManifest);
    await p.configure({});
    coldStarts.push(performance.now() - t);
    p.dispose();
  }
  const sandbox = await SandboxedPlugin.load(bundle, manifest);
  await sandbox.configure({});

  const ivm = loadIvm();
  const ivmColdStarts: number[] = [];
  let ivmBox: Awaited<ReturnType<typeof ivmSandbox>> | null = null;
  if (ivm) {
    const script = await scriptBundle(dir);
    for (let i = 0; i < 6; i++) {
      const t = performance.now();
      const box = await ivmSandbox(ivm, script);
      ivmColdStarts.push(performance.now() - t);
      box.dispose();
    }
    ivmBox = await ivmSandbox(ivm, script);
  }

  const rate = { native: [] as number[], sandbox: [] as number[], ivm: [] as number[] };
  const single = { native: [] as number[], sandbox: [] as number[] };
  let correctSandbox = 0;
  let correctNative = 0;
  for (let round = 0; round < ROUNDS; round++) {
    let t = performance.now();
    correctNative = 0;
    for (const input of batch) {
      const r = await native.run(input, ctx);
      if (r.correct) correctNative += 1;
    }
    rate.native.push(BATCH / ((performance.now() - t) / 1000));

    t = performance.now();
    const outcomes = await sandbox.verifyBatch(batch);
    rate.sandbox.push(BATCH / ((performance.now() - t) / 1000));
    correctSandbox = outcomes.filter((o) => o.ok && o.value.correct).length;

    if (ivmBox) {
      t = performance.now();
      await ivmBox.batch(batchJson);
      rate.ivm.push(BATCH / ((performance.now() - t) / 1000));
    }

    // Single-call latency: one VM entry per call (the worst case; batches amortise it).
    for (let i = 0; i < 32; i++) {
      const input = batch[(round * 32 + i) % BATCH];
      let s = performance.now();
      await native.run(input, ctx);
      single.native.push(performance.now() - s);
      s = performance.now();
      await sandbox.verify(input);
      single.sandbox.push(performance.now() - s);
    }
  }
  if (correctSandbox !== correctNative)
    throw new Error(`sandbox ${correctSandbox} != native ${correctNative} correct`);

  // Memory: WASM linear memory per instance, and the process RSS for 16 live sandboxes.
  const perInstance = sandbox.memoryBytes();
  const rssBefore = process.memoryUsage().rss;
  const many: SandboxedPlugin[] = [];
  for (let i = 0; i < 16; i++) {
    const p = await SandboxedPlugin.load(bundle, manifest);
    await p.verifyBatch(batch.slice(0, 64));
    many.push(p);
  }
  const rssPer = (process.memoryUsage().rss - rssBefore) / 16;
  for (const p of many) p.dispose();

  const ratio = median(rate.sandbox) / median(rate.native);
  const lines = [
    `machine: ${os.cpus().length}-core ${os.arch()} (${os.cpus()[0]?.model ?? 'cpu'}), Node ${process.version}, load avg ${os
      .loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
    `typical verifier: examples/plugins/json-answer-verifier, bundle ${(bundle.length / 1024).toFixed(0)} KB (SDK + zod), batches of ${BATCH}, ${ROUNDS} interleaved rounds (medians)`,
    `native            ${median(rate.native).toFixed(0)} calls/s   single call p50 ${median(single.native).toFixed(3)} ms  p99 ${quantile(single.native, 0.99).toFixed(3)} ms`,
    `quickjs sandbox   ${median(rate.sandbox).toFixed(0)} calls/s   single call p50 ${median(single.sandbox).toFixed(3)} ms  p99 ${quantile(single.sandbox, 0.99).toFixed(3)} ms`,
    `sandbox / native  ${(ratio * 100).toFixed(1)} % (target >= 25 %)`,
    ivmBox
      ? `isolated-vm 6.2.0 ${median(rate.ivm).toFixed(0)} calls/s (${((median(rate.ivm) / median(rate.native)) * 100).toFixed(1)} % of native; minimal harness, one JSON batch per entry)`
      : 'isolated-vm: not installed here (set CGRPO_IVM_PATH to compare)',
    `cold start        quickjs first ${coldStarts[0].toFixed(0)} ms (compiles the WASM module), then median ${median(coldStarts.slice(1)).toFixed(0)} ms` +
      (ivmBox ? `; isolated-vm median ${median(ivmColdStarts).toFixed(0)} ms` : ''),
    `memory            quickjs WASM linear memory per sandbox ${mb(perInstance)}; RSS per live sandbox ${mb(rssPer)}` +
      (ivmBox ? `; isolated-vm heap ${mb((await ivmBox.heap()).total_heap_size)}` : ''),
  ];
  console.log(lines.join('\n'));
  sandbox.dispose();
  ivmBox?.dispose();
  rmSync(work, { recursive: true, force: true });
}

await main();
