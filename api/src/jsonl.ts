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

/** A dataset line longer than this many characters is refused (docs/api.md, "Limits"). */
export const MAX_DATASET_LINE_CHARS = 1024 * 1024;

/**
 * Where `bytes` stop being UTF-8: the first invalid byte's offset, or `truncated` when the only
 * problem is a multibyte character cut off at the end. Only run once a fast decode has failed.
 */
export function utf8Problem(bytes: Uint8Array): { offset: number; truncated: boolean } | undefined {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    let need: number;
    let min: number;
    if (b < 0x80) {
      i += 1;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return { offset: i, truncated: false };
    let code = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      if (i + k >= bytes.length) return { offset: i, truncated: true };
      const c = bytes[i + k] as number;
      if ((c & 0xc0) !== 0x80) return { offset: i, truncated: false };
      code = (code << 6) | (c & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
      return { offset: i, truncated: false };
    i += need + 1;
  }
  return undefined;
}

/** How many bytes at the end of `bytes` begin a multibyte character that is not complete yet. */
function incompleteTail(bytes: Uint8Array): number {
  for (let k = 1; k <= Math.min(3, bytes.length); k++) {
    const b = bytes[bytes.length - k] as number;
    if ((b & 0xc0) === 0x80) continue;
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/**
 * Feeds bytes in, throws DatasetLineError at the first bad line. Used by an explicit read loop
 * (not a TransformStream) so that an invalid line fails exactly one awaited call and leaves no
 * dangling stream promises behind. Linear in the input: each chunk is decoded once and scanned for
 * newlines once, a line's pieces are joined once, and a line longer than MAX_DATASET_LINE_CHARS
 * is refused as soon as it passes the limit. An encoding error is located in the raw bytes (only
 * then) so that it names its own line.
 */
export class DatasetLineChecker {
  private readonly decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  /** Pieces of the current, unfinished line. */
  private pieces: string[] = [];
  private pendingChars = 0;
  /** Bytes of a multibyte character the previous chunk ended inside (for locating errors). */
  private tail = new Uint8Array(0);
  private line = 0;
  rows = 0;

  constructor(
    private readonly fields: DatasetFieldMapping,
    private readonly maxLineChars = MAX_DATASET_LINE_CHARS,
  ) {}

  push(chunk: Uint8Array): void {
    let text: string;
    try {
      text = this.decoder.decode(chunk, { stream: true });
    } catch {
      throw this.encodingError(chunk);
    }
    const joined = this.tail.length > 0 ? concat(this.tail, chunk) : chunk;
    const keep = incompleteTail(joined);
    this.tail = keep > 0 ? joined.slice(joined.length - keep) : new Uint8Array(0);
    this.scan(text);
  }

  end(): void {
    let text: string;
    try {
      text = this.decoder.decode();
    } catch {
      throw new DatasetLineError(
        this.line + 1,
        'the file ends inside a multibyte UTF-8 character (a truncated upload?); upload the whole file',
      );
    }
    this.scan(text);
    if (this.pendingChars > 0) this.finishLine();
    if (this.rows === 0) throw new DatasetLineError(Math.max(1, this.line), 'the dataset has no rows');
  }

  private scan(text: string): void {
    let start = 0;
    let newline = text.indexOf('\n', start);
    while (newline >= 0) {
      this.take(text.slice(start, newline));
      this.finishLine();
      start = newline + 1;
      newline = text.indexOf('\n', start);
    }
    if (start < text.length) this.take(text.slice(start));
  }

  private take(piece: string): void {
    if (piece.length === 0) return;
    this.pendingChars += piece.length;
    if (this.pendingChars > this.maxLineChars) {
      throw new DatasetLineError(
        this.line + 1,
        `longer than ${this.maxLineChars} characters (the most one row may take); shorten or split it`,
      );
    }
    this.pieces.push(piece);
  }

  private finishLine(): void {
    this.line += 1;
    const text = this.pieces.length === 1 ? (this.pieces[0] as string) : this.pieces.join('');
    this.pieces = [];
    this.pendingChars = 0;
    this.check(text);
  }

  /** The line holding the first bad byte of this chunk: lines so far plus newlines before it. */
  private encodingError(chunk: Uint8Array): DatasetLineError {
    const bytes = this.tail.length > 0 ? concat(this.tail, chunk) : chunk;
    const problem = utf8Problem(bytes);
    const offset = problem?.offset ?? 0;
    let line = this.line + 1;
    // Complete lines still waiting in `pieces` were not counted yet: none (scan finishes them).
    for (let i = bytes.indexOf(0x0a); i >= 0 && i < offset; i = bytes.indexOf(0x0a, i + 1)) line += 1;
    const bad = bytes[offset];
    return new DatasetLineError(
      line,
      `not valid UTF-8${bad === undefined ? '' : ` (byte 0x${bad.toString(16).padStart(2, '0')})`}; save the file as UTF-8`,
    );
  }

  private check(text: string): void {
    const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (trimmed.trim() === '') return;
    const problem = checkDatasetLine(trimmed, this.fields);
    if (problem) throw new DatasetLineError(this.line, problem);
    this.rows += 1;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
