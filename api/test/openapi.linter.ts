// vitest globalSetup: the OpenAPI checkers on 127.0.0.1, for api/test/openapi.test.ts in workerd.
// Neither runs inside workerd (ajv compiles code; Redocly is a CLI), so the test POSTs the document
// the Worker serves to /lint and gets both verdicts back. Nothing runs until a test asks.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    openapiLinterPort: number;
  }
}

export interface LintVerdict {
  /** @seriousme/openapi-schema-validator against the OpenAPI 3.1 schema. */
  schemaValid: boolean;
  schemaErrors: unknown;
  /** `redocly lint` (recommended rules). */
  redoclyErrors: number;
  redoclyWarnings: number;
  redoclyProblems: { ruleId: string; severity: string; message: string; location?: unknown }[];
}

const require = createRequire(import.meta.url);

async function lint(document: unknown): Promise<LintVerdict> {
  const { Validator } = (await import('@seriousme/openapi-schema-validator')) as {
    Validator: new () => { validate(doc: unknown): Promise<{ valid: boolean; errors?: unknown }> };
  };
  const verdict = await new Validator().validate(document);
  const dir = mkdtempSync(path.join(tmpdir(), 'cgrpo-openapi-'));
  try {
    const file = path.join(dir, 'openapi.json');
    writeFileSync(file, JSON.stringify(document));
    const cli = path.join(path.dirname(require.resolve('@redocly/cli/package.json')), 'bin', 'cli.js');
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [cli, 'lint', file, '--format=json'],
        {
          cwd: dir,
          maxBuffer: 64 * 1024 * 1024,
          env: { ...process.env, REDOCLY_TELEMETRY: 'off', NO_COLOR: '1' },
        },
        // Exit code 1 means "problems found": the JSON report is still on stdout.
        (error, out) => (out ? resolve(out) : reject(error ?? new Error('redocly printed nothing'))),
      );
    });
    const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
      totals: { errors: number; warnings: number };
      problems: { ruleId: string; severity: string; message: string; location?: unknown }[];
    };
    return {
      schemaValid: verdict.valid,
      schemaErrors: verdict.errors ?? null,
      redoclyErrors: report.totals.errors,
      redoclyWarnings: report.totals.warnings,
      redoclyProblems: report.problems,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function setup(project: TestProject) {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      lint(JSON.parse(Buffer.concat(chunks).toString('utf8')))
        .then((verdict) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(verdict));
        })
        .catch((error: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(error.stack ?? error));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  project.provide('openapiLinterPort', typeof address === 'object' && address ? address.port : 0);
  return () => new Promise<void>((resolve) => server.close(() => resolve()));
}
