import { invalid } from './errors';

// Keyset pagination over (created_at, id), newest first: a cursor is the last row's key, so a
// page never skips or repeats rows when new ones arrive.

export interface Cursor {
  createdAt: number;
  id: string;
}

export function encodeCursor(row: Cursor): string {
  return btoa(JSON.stringify([row.createdAt, row.id]))
    .replace(/=+$/, '')
    .replace(/\+/g, '-')
    .replace(/\//g, '_');
}

export function decodeCursor(cursor: string | undefined): Cursor | undefined {
  if (!cursor) return undefined;
  try {
    const padded = cursor.replace(/-/g, '+').replace(/_/g, '/');
    const value: unknown = JSON.parse(atob(padded + '='.repeat((4 - (padded.length % 4)) % 4)));
    if (Array.isArray(value) && typeof value[0] === 'number' && typeof value[1] === 'string') {
      return { createdAt: value[0], id: value[1] };
    }
  } catch {
    // fall through
  }
  throw invalid('the cursor is not valid: pass next_cursor from the previous page unchanged', [
    { path: 'query.cursor', message: 'not a cursor returned by this API' },
  ]);
}

/** Given limit+1 rows, the page and the cursor of the next one. */
export function page<T extends Cursor>(rows: T[], limit: number): { rows: T[]; next: string | null } {
  if (rows.length <= limit) return { rows, next: null };
  const shown = rows.slice(0, limit);
  return { rows: shown, next: encodeCursor(shown[shown.length - 1]!) };
}
