// Test-only child process: runs hostile plugins in the sandbox, so that a crash of the host (a signal
// exit) shows up in the parent test as this process's exit status, and the host's peak memory
// (maxRSS) is its own. argv: names of scenarios to run in order; prints one JSON line with each
// outcome, the peak RSS before the hostile plugins ran (after a well-behaved one) and after.
import { SandboxedPlugin } from './index';
import { bundleSource, manifestFor } from './test-support';

export const HOSTILE: Record<string, string> = {
  // busy-waits, then allocates without bound: the isolate dies of memory exhaustion around the
  // moment the watchdog disposes it at the 2 s deadline (V8 takes ~1-1.5 s of GC to give up at
  // 64 MB on the machine this was tuned on, so 600 ms lands the death on the deadline; 1800 ms is
  // the variant the issue reported)
  'busy-then-allocate': `const start = Date.now(); while (Date.now() - start < 600) {}
    const a = []; for (;;) a.push(new Array(100000).fill(a.length));`,
  'busy-1800-then-allocate': `const start = Date.now(); while (Date.now() - start < 1800) {}
    const a = []; for (;;) a.push(new Array(100000).fill(a.length));`,
  // dies of memory exhaustion inside JSON.stringify of its own result
  'stringify-oom': `const a = []; for (let i = 0; i < 1e7; i++) a.push({ k: 'x'.repeat(64) + i });
    return { score: 1, correct: true, details: { a } };`,
  // is inside JSON.stringify when the watchdog disposes its isolate, then the process exits
  'stringify-at-deadline': `const o = Array.from({ length: 200000 }, (_, i) => ({ i, s: 'abc' + i }));
    for (;;) JSON.stringify(o);`,
  'unbounded-growth': 'const a = []; for (;;) a.push(new Array(10000).fill(a.length));',
  'huge-buffers': 'const a = []; for (;;) a.push(new Uint8Array(16 * 1024 * 1024).fill(1));',
  'huge-result': "return { score: 1, correct: true, details: { blob: 'x'.repeat(200 * 1024 * 1024) } };",
  'result-at-limit': "return { score: 1, correct: true, details: { blob: 'x'.repeat(20 * 1024 * 1024) } };",
  'log-flood':
    "for (let i = 0; i < 20000; i++) ctx.log('x'.repeat(100000)); return { score: 1, correct: true };",
  wasm: `const m = new WebAssembly.Memory({ initial: 1, maximum: 16384 }); m.grow(16000);
    return { score: 1, correct: true };`,
};

const MEMORY_MB = 64;
const input = { question: 'q', response: 'r', reference: '4', metadata: {} };

async function run(body: string): Promise<{ ok: boolean; reason?: string }> {
  const bundle = await bundleSource(`import { defineVerifier } from '@cgrpo/plugins/sdk';
export default defineVerifier({ verify(input, ctx) { ${body} } });`);
  const plugin = await SandboxedPlugin.load(
    bundle,
    manifestFor(bundle, { kind: 'verifier', limits: { timeout_ms: 2000, memory_mb: MEMORY_MB } }),
    { onLog: () => {} },
  );
  const [outcome] = await plugin.verifyBatch([input]);
  plugin.dispose();
  return outcome.ok ? { ok: true } : { ok: false, reason: outcome.error.reason };
}

const maxRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);

if (process.argv[1]?.endsWith('crash-child.ts')) {
  await run('return { score: 1, correct: true };');
  const baseline = maxRssMb();
  const outcomes: Record<string, { ok: boolean; reason?: string }> = {};
  for (const name of process.argv.slice(2)) {
    const body = HOSTILE[name];
    if (!body) throw new Error(`unknown scenario ${name}`);
    outcomes[name] = await run(body);
  }
  process.stdout.write(
    `${JSON.stringify({ memoryMb: MEMORY_MB, baselineMaxRssMb: baseline, peakMaxRssMb: maxRssMb(), outcomes })}\n`,
  );
  // exit at once, as a runner does on SIGTERM: nothing may still be running inside a disposed isolate
  process.exit(0);
}
