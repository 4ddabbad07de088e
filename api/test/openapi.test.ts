import { describe, expect, inject, it } from 'vitest';
import { call } from './helpers';
import type { LintVerdict } from './openapi.linter';

// The document the Worker serves validates against the OpenAPI 3.1 schema and lints with 0 errors
// (and 0 warnings) under @redocly/cli's recommended rules; both run in Node (openapi.linter.ts).

type Operation = {
  operationId?: string;
  security?: unknown[];
  parameters?: { in: string; name: string; required?: boolean }[];
  requestBody?: unknown;
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
};

async function documentAndVerdict() {
  const doc = await (await call('/v1/openapi.json')).json();
  const res = await fetch(`http://127.0.0.1:${inject('openapiLinterPort')}/lint`, {
    method: 'POST',
    body: JSON.stringify(doc),
  });
  if (!res.ok) throw new Error(await res.text());
  return { doc, verdict: (await res.json()) as LintVerdict };
}

describe('GET /v1/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document and lints with 0 errors and 0 warnings', async () => {
    const { verdict } = await documentAndVerdict();
    expect(verdict.schemaErrors).toBeNull();
    expect(verdict.schemaValid).toBe(true);
    expect(verdict.redoclyProblems.map((p) => `${p.severity} ${p.ruleId}: ${p.message}`)).toEqual([]);
    expect(verdict.redoclyErrors).toBe(0);
  }, 120_000);

  it('names every operation, requires path parameters, declares security and shared error bodies', async () => {
    const doc = (await (await call('/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, Operation>>;
    };
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const where = `${method} ${path}`;
        expect(op.operationId, where).toBeTruthy();
        ids.add(op.operationId as string);
        expect(op.security, where).toBeDefined();
        for (const p of op.parameters ?? [])
          if (p.in === 'path') expect(p.required, `${where} ${p.name}`).toBe(true);
        expect(op.responses['500'], where).toBeDefined();
        if (op.requestBody) expect(op.responses['413'], where).toBeDefined();
        for (const [status, response] of Object.entries(op.responses))
          if (Number(status) >= 400)
            expect(response.content?.['application/json']?.schema, `${where} ${status}`).toEqual({
              $ref: '#/components/schemas/ErrorBody',
            });
      }
    }
    expect(ids.size).toBeGreaterThan(60);
    expect(doc.paths['/v1/bootstrap']?.post?.security).toEqual([{}, { bearer: [] }]);
    const rollouts = doc.paths['/v1/runner/jobs/{id}/rollouts/{step}']?.put;
    expect(rollouts?.parameters?.find((p) => p.name === 'step')?.required).toBe(true);
  }, 120_000);
});
