import { expect, it } from 'vitest';
import { insertIgnoringDuplicates, rowsPerStatement } from '../src/bulk';
import { testEnv } from './helpers';

// Local SQLite accepts more than 100 bound parameters, D1 does not: so this test watches the real
// local D1 binding (a recording wrapper around prepare/bind, not a fake) and checks every statement.
it('splits inserts so no statement binds more than 100 parameters, and ignores duplicates', async () => {
  const bound: number[] = [];
  const d1 = new Proxy(testEnv.DB, {
    get(target, prop) {
      if (prop === 'prepare') {
        return (sql: string) => {
          const statement = target.prepare(sql);
          return new Proxy(statement, {
            get(s, p) {
              if (p === 'bind') {
                return (...params: unknown[]) => {
                  bound.push(params.length);
                  return s.bind(...params);
                };
              }
              const value = Reflect.get(s, p);
              return typeof value === 'function' ? value.bind(s) : value;
            },
          });
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const jobId = `job_bulk_${Date.now()}`;
  const rows = Array.from({ length: 333 }, (_, step) => ({ step, values: JSON.stringify({ loss: step }) }));
  const columns = ['job_id', 'attempt', 'created_at', 'step', 'values'];
  const shared = { job_id: jobId, attempt: 1, created_at: Date.now() };
  expect((await insertIgnoringDuplicates(d1, 'metric_points', columns, shared, rows)).inserted).toBe(333);
  expect(rowsPerStatement(3, 2)).toBe(48);
  expect(bound).toHaveLength(Math.ceil(333 / 48));
  expect(Math.max(...bound)).toBeLessThanOrEqual(100);
  expect(bound[0]).toBe(3 + 48 * 2);
  expect(
    (await insertIgnoringDuplicates(d1, 'metric_points', columns, shared, rows.slice(0, 100))).inserted,
  ).toBe(0);
  // A guarded insert writes nothing when its condition is false.
  const guarded = await insertIgnoringDuplicates(
    d1,
    'metric_points',
    columns,
    { ...shared, attempt: 2 },
    rows.slice(0, 60),
    { guard: { sql: 'EXISTS (SELECT 1 FROM jobs WHERE id = :job_id)' } },
  );
  expect(guarded.inserted).toBe(0);
  const count = await testEnv.DB.prepare('SELECT COUNT(*) AS n FROM metric_points WHERE job_id = ?')
    .bind(jobId)
    .first<{ n: number }>();
  expect(count?.n).toBe(333);
});
