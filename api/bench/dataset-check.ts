// Throughput of the dataset line checker (api/src/jsonl.ts) on Node: MB/s for short lines and for
// long lines, fed in 64 KiB chunks as a request body arrives. Usage:
//   node --import tsx api/bench/dataset-check.ts [module path, default api/src/jsonl.ts] [MB]
import path from 'node:path';
import { pathToFileURL } from 'node:url';

type Checker = { push(chunk: Uint8Array): void; end(): void; rows: number };
type Module = { DatasetLineChecker: new (fields: { prompt: string; reference: string }) => Checker };

const modulePath = path.resolve(process.argv[2] ?? 'api/src/jsonl.ts');
const megabytes = Number(process.argv[3] ?? 100);
const { DatasetLineChecker } = (await import(pathToFileURL(modulePath).href)) as Module;
const CHUNK = 64 * 1024;

function dataset(lineChars: number, totalBytes: number): Uint8Array {
  const row = `{"prompt":"${'x'.repeat(Math.max(1, lineChars - 30))}","answer":"1"}\n`;
  return new TextEncoder().encode(row.repeat(Math.max(1, Math.floor(totalBytes / row.length))));
}

function run(bytes: Uint8Array): { mbPerS: number; rows: number; seconds: number } {
  const checker = new DatasetLineChecker({ prompt: 'prompt', reference: 'answer' });
  const t0 = performance.now();
  for (let at = 0; at < bytes.length; at += CHUNK) checker.push(bytes.subarray(at, at + CHUNK));
  checker.end();
  const seconds = (performance.now() - t0) / 1000;
  return { mbPerS: bytes.length / 1e6 / seconds, rows: checker.rows, seconds };
}

const cases: [string, number, number][] = [
  ['short lines (80 B)', 80, megabytes * 1e6],
  ['long lines (512 KiB)', 512 * 1024, megabytes * 1e6],
  ['one 8 MB line', 8 * 1024 * 1024, 8 * 1024 * 1024 + 64],
];
for (const [name, lineChars, total] of cases) {
  const bytes = dataset(lineChars, total);
  try {
    const r = run(bytes);
    console.log(
      `${name}: ${(bytes.length / 1e6).toFixed(1)} MB, ${r.rows} rows in ${r.seconds.toFixed(2)} s = ${r.mbPerS.toFixed(0)} MB/s`,
    );
  } catch (error) {
    console.log(`${name}: refused: ${(error as Error).message.slice(0, 120)}`);
  }
}
