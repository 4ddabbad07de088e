import { D1_MAX_PARAMS } from './limits';

// Multi-row INSERT … ON CONFLICT DO NOTHING that stays under D1's 100 bound parameters per
// statement (local SQLite does not enforce that limit; D1 does). Values shared by every row (job
// id, attempt, time) are bound once per statement as ?1..?k and referenced by each row, so a
// statement holds as many rows as (100 − k) / (per-row values) allows. All statements run in one
// D1 batch (one round trip, one transaction). Returns how many rows were actually inserted.
//
// An optional guard makes every INSERT conditional (`… WHERE <guard>`), e.g. "this runner still
// holds the lease", so the check and the write are one round trip and cannot race; `after`
// statements run in the same batch and their results are returned.

export interface BulkOptions {
  /** An SQL condition; `:name` refers to a shared value or a guard param. */
  guard?: { sql: string; params?: Record<string, unknown> };
  after?: D1PreparedStatement[];
}

export async function insertIgnoringDuplicates(
  d1: D1Database,
  table: string,
  columns: readonly string[],
  shared: Record<string, unknown>,
  rows: readonly Record<string, unknown>[],
  options: BulkOptions = {},
): Promise<{ inserted: number; after: D1Result[] }> {
  const after = options.after ?? [];
  const named = { ...(options.guard?.params ?? {}), ...shared };
  const sharedNames = Object.keys(named);
  const sharedIndex = new Map(sharedNames.map((name, i) => [name, i + 1]));
  const rowColumns = columns.filter((c) => !(c in shared));
  const perStatement = rowsPerStatement(sharedNames.length, rowColumns.length);
  const guard = options.guard?.sql.replace(/:(\w+)/g, (_, name: string) => {
    const index = sharedIndex.get(name);
    if (index === undefined) throw new Error(`guard refers to unknown value :${name}`);
    return `?${index}`;
  });
  const columnList = columns.map(quote).join(', ');
  const statements: D1PreparedStatement[] = [];
  for (let start = 0; start < rows.length; start += perStatement) {
    const chunk = rows.slice(start, start + perStatement);
    const params: unknown[] = sharedNames.map((name) => named[name]);
    const tuples = chunk.map((row) => {
      const placeholders = columns.map((c) => {
        const s = c in shared ? sharedIndex.get(c) : undefined;
        if (s !== undefined) return `?${s}`;
        params.push(row[c]);
        return `?${params.length}`;
      });
      return `(${placeholders.join(', ')})`;
    });
    const sql = guard
      ? `INSERT INTO ${quote(table)} (${columnList}) SELECT * FROM (VALUES ${tuples.join(', ')}) WHERE ${guard} ON CONFLICT DO NOTHING`
      : `INSERT INTO ${quote(table)} (${columnList}) VALUES ${tuples.join(', ')} ON CONFLICT DO NOTHING`;
    statements.push(d1.prepare(sql).bind(...params));
  }
  if (statements.length === 0 && after.length === 0) return { inserted: 0, after: [] };
  const results = await d1.batch([...statements, ...after]);
  const inserted = results.slice(0, statements.length).reduce((sum, r) => sum + (r.meta.changes ?? 0), 0);
  return { inserted, after: results.slice(statements.length) };
}

/** Largest number of rows one statement carries for this shape. */
export function rowsPerStatement(sharedCount: number, perRowCount: number): number {
  return Math.max(1, Math.floor((D1_MAX_PARAMS - sharedCount) / Math.max(1, perRowCount)));
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
