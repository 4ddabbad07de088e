// npm run bench:verifier — throughput of builtin:math on one core (Node runs it on one thread),
// typical numeric/boxed answers and symbolic (CAS-tier) answers measured separately, plus the
// accuracy of each CAS on plugins/builtin/math/cases.jsonl, all in the same run.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import { type Cas, mathjsCas } from '../plugins/builtin/math/cas';
import { computeEngineCas } from '../plugins/builtin/math/cas-compute-engine';
import { type MathVerifierConfig, verifyMath, verifyMathWithCas } from '../plugins/builtin/math/index';

interface Case {
  response: string;
  reference: string;
  expected: boolean;
  /** Per-case verifier config (the parity cases set float_rounding or allow_set_relation_comparison). */
  config?: MathVerifierConfig;
}

// What a runner sees: building the verifier (which now pays mathjs's one-time warm-up), its first
// call, and answer-less responses like a random policy's token soup. Measured before anything else
// in this process touches mathjs.
const coldStart = await (async () => {
  const { getBuiltinVerifier } = await import('../plugins/builtin/index');
  let t = performance.now();
  const v = getBuiltinVerifier('builtin:math', {});
  const construct = performance.now() - t;
  const soup = (i: number) =>
    Array.from(
      { length: 4 + (i % 60) },
      (_, k) => ['zq', 'x', '7', 'the', '+', 'ab', '=', 'y'][(i * 7 + k * 3) % 8],
    ).join(' ');
  t = performance.now();
  await v.verify({ question: '3 + 4', response: soup(1), reference: '7', metadata: {} });
  const first = performance.now() - t;
  t = performance.now();
  for (let i = 0; i < 2000; i++)
    await v.verify({ question: '3 + 4', response: soup(i), reference: '7', metadata: {} });
  return { construct, first, noAnswer: (performance.now() - t) / 2000 };
})();

const CASES: Case[] = readFileSync(new URL('../plugins/builtin/math/cases.jsonl', import.meta.url), 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Case);

const FILLER = [
  'First, we set up the equation from the problem statement.',
  'Let $x$ be the unknown quantity; then $3x + 4 = 25$, so $3x = 21$.',
  'We check the arithmetic: $7 \\cdot 3 + 4 = 25$, which matches.',
  'Summing the parts gives $12 + 15 + 18 = 45$ in total.',
];

/** A GSM8K/MATH-like chain of thought (~400 chars) ending in a boxed number; unique references. */
function typicalCase(i: number): Case {
  const answer = (i * 37) % 10_000;
  const wrong = i % 4 === 0;
  const boxed = wrong ? answer + 1 : answer;
  const body = `${FILLER[i % 4]} ${FILLER[(i + 1) % 4]} ${FILLER[(i + 2) % 4]}`;
  const formats = [
    `\\boxed{${boxed}}`,
    `$\\boxed{${boxed}}$.`,
    `\\boxed{${boxed.toLocaleString('en-US')}}`,
    `\\boxed{${boxed}.0}`,
  ];
  return {
    response: `${body}\nTherefore the answer is ${formats[i % 4]}`,
    reference: String(answer),
    expected: !wrong,
  };
}

function symbolicCases(): Case[] {
  return CASES.filter((c) => verifyMath(c, c.config).details.rule.startsWith('symbolic'));
}

function throughput(cases: Case[], seconds: number, cas: Cas): number {
  for (const c of cases.slice(0, 50)) verifyMathWithCas(cas, c, c.config); // warm-up (JIT, CAS instance)
  let n = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let k = 0; k < 50; k++) {
      const c = cases[(n + k) % cases.length]!;
      verifyMathWithCas(cas, c, c.config);
    }
    n += 50;
  }
  return n / ((performance.now() - start) / 1000);
}

function accuracy(cas: Cas) {
  let agree = 0;
  let casTier = 0;
  let casAgree = 0;
  for (const c of CASES) {
    const r = verifyMathWithCas(cas, c, c.config);
    const ok = r.correct === c.expected;
    if (ok) agree++;
    if (/^(symbolic|cas_error)/.test(r.details.rule)) {
      casTier++;
      if (ok) casAgree++;
    }
  }
  return { agree, casTier, casAgree };
}

const typical = Array.from({ length: 5000 }, (_, i) => typicalCase(i));
const wrongTypical = typical.filter((c) => verifyMath(c).correct !== c.expected).length;
if (wrongTypical > 0) throw new Error(`${wrongTypical} typical bench cases were mis-scored`);
const symbolic = symbolicCases();

const rows: string[] = [];
// The product uses mathjs only; Compute Engine (cas-compute-engine.ts) is measured for comparison.
for (const cas of [mathjsCas, computeEngineCas]) {
  const acc = accuracy(cas);
  const t = throughput(typical, 3, cas);
  const s = throughput(symbolic, 3, cas);
  const line = {
    cas: cas.name,
    agreement: `${acc.agree}/${CASES.length} (${((acc.agree / CASES.length) * 100).toFixed(1)}%)`,
    casTier: `${acc.casAgree}/${acc.casTier}`,
    typicalPerSec: Math.round(t),
    symbolicPerSec: Math.round(s),
  };
  console.log(JSON.stringify(line));
  rows.push(
    `| ${new Date().toISOString().slice(0, 10)} | ${cas.name} | ${line.agreement} | ${line.casTier} | ${line.typicalPerSec} | ${line.symbolicPerSec} (${symbolic.length} pairs) |`,
  );
}
console.log(
  `\nmachine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, load ${os.loadavg()[0]?.toFixed(1)}`,
);
console.log(
  '| date | CAS | agreement with labels | CAS-tier cases right | typical cases/s | symbolic cases/s |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
console.log(rows.join('\n'));
console.log(
  `\nbuilding builtin:math ${coldStart.construct.toFixed(1)} ms (mathjs warm-up included), first call after it ${coldStart.first.toFixed(2)} ms, no-answer responses (4-64 random tokens) ${(coldStart.noAnswer * 1000).toFixed(0)} µs each`,
);
