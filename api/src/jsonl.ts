import { ApiError } from './errors';

// Line-by-line JSONL validation of a byte stream as it passes through, without buffering the
// file: each complete line is parsed and checked against the dataset's field mapping; the first
// bad line errors the stream with its 1-based number, which aborts the R2 upload behind it.

export interface DatasetFieldMapping {
  prompt: string;
  reference: string;
  solution?: string;
}

export class DatasetLineError extends ApiError {
  constructor(
    readonly line: number,
    problem: string,
  ) {
    super(
      400,
      'invalid_dataset',
      `line ${line}: ${problem}; fix that line and upload again (nothing was stored)`,
      [{ path: `line ${line}`, message: problem }],
    );
  }
}

/** Checks one line; returns a problem description or undefined. Blank lines are allowed. */
export function checkDatasetLine(text: string, fields: DatasetFieldMapping): string | undefined {
  let row: unknown;
  try {
    row = JSON.parse(text);
  } catch {
    return 'not valid JSON';
  }
  if (typeof row !== 'object' || row === null || Array.isArray(row)) return 'must be a JSON object';
  const record = row as Record<string, unknown>;
  const prompt = record[fields.prompt];
  if (typeof prompt !== 'string' || prompt.trim() === '') {
    return `field "${fields.prompt}" (the prompt) must be a non-empty string`;
  }
  const reference = record[fields.reference];
  if (typeof reference !== 'string' && typeof reference !== 'number') {
    return `field "${fields.reference}" (the reference answer) must be a string or number`;
  }
  if (fields.solution !== undefined && typeof record[fields.solution] !== 'string') {
    return `field "${fields.solution}" (the reference solution) must be a string`;
  }
  return undefined;
}

/**
 * Feeds bytes in, throws DatasetLineError at the first bad line. Used by an explicit read loop
 * (not a TransformStream) so that an invalid line fails exactly one awaited call and leaves no
 * dangling stream promises behind.
 */
export class DatasetLineChecker {
  private readonly decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  private pending = '';
  private line = 0;
  rows = 0;

  constructor(private readonly fields: DatasetFieldMapping) {}

  push(chunk: Uint8Array): void {
    let text: string;
    try {
      text = this.decoder.decode(chunk, { stream: true });
    } catch {
      throw new DatasetLineError(this.line + 1, 'not valid UTF-8');
    }
    this.pending += text;
    let start = 0;
    let newline = this.pending.indexOf('\n', start);
    while (newline >= 0) {
      this.check(this.pending.slice(start, newline));
      start = newline + 1;
      newline = this.pending.indexOf('\n', start);
    }
    this.pending = this.pending.slice(start);
  }

  end(): void {
    this.pending += this.decoder.decode();
    if (this.pending.length > 0) this.check(this.pending);
    this.pending = '';
    if (this.rows === 0) throw new DatasetLineError(1, 'the dataset has no rows');
  }

  private check(text: string): void {
    this.line += 1;
    const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (trimmed.trim() === '') return;
    const problem = checkDatasetLine(trimmed, this.fields);
    if (problem) throw new DatasetLineError(this.line, problem);
    this.rows += 1;
  }
}
