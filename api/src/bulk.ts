import { D1_MAX_PARAMS } from './limits';

// Multi-row INSERT … ON CONFLICT DO NOTHING that stays under D1's 100 bound parameters per
// statement (local SQLite does not enforce that limit; D1 does). Values shared by every row (job
// id, attempt, time) are bound once per statement as ?1..?k and referenced by each row, so a
// statement holds as many rows as (100 − k) / (per-row values) allows. All statements run in one
// D1 batch (one round trip, one transaction). Returns how many rows were actually inserted.

export async function insertIgnoringDuplicates(
  d1: D1Database,
  table: string,
  columns: readonly string[],
  shared: Record<string, unknown>,
  rows: readonly Record<string, unknown>[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const sharedColumns = columns.filter((c) => c in shared);
  const rowColumns = columns.filter((c) => !(c in shared));
  const sharedIndex = new Map(sharedColumns.map((c, i) => [c, i + 1]));
  const perStatement = Math.max(
    1,
    Math.floor((D1_MAX_PARAMS - sharedColumns.length) / Math.max(1, rowColumns.length)),
  );
  const head = `INSERT INTO ${quote(table)} (${columns.map(quote).join(', ')}) VALUES `;
  const statements: D1PreparedStatement[] = [];
  for (let start = 0; start < rows.length; start += perStatement) {
    const chunk = rows.slice(start, start + perStatement);
    const params: unknown[] = sharedColumns.map((c) => shared[c]);
    const tuples = chunk.map((row) => {
      const placeholders = columns.map((c) => {
        const s = sharedIndex.get(c);
        if (s !== undefined) return `?${s}`;
        params.push(row[c]);
        return `?${params.length}`;
      });
      return `(${placeholders.join(', ')})`;
    });
    statements.push(d1.prepare(`${head}${tuples.join(', ')} ON CONFLICT DO NOTHING`).bind(...params));
  }
  const results = await d1.batch(statements);
  return results.reduce((sum, r) => sum + (r.meta.changes ?? 0), 0);
}

/** Largest number of rows one statement carries for this shape (exported for tests). */
export function rowsPerStatement(sharedCount: number, perRowCount: number): number {
  return Math.max(1, Math.floor((D1_MAX_PARAMS - sharedCount) / Math.max(1, perRowCount)));
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`;
