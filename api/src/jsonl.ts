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

/** A pass-through transform that validates lines; `rows()` gives the number of non-blank lines seen. */
export function jsonlValidator(fields: DatasetFieldMapping) {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let pending = '';
  let line = 0;
  let rows = 0;
  const check = (text: string) => {
    line += 1;
    const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (trimmed.trim() === '') return;
    const problem = checkDatasetLine(trimmed, fields);
    if (problem) throw new DatasetLineError(line, problem);
    rows += 1;
  };
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      let text: string;
      try {
        text = decoder.decode(chunk, { stream: true });
      } catch {
        throw new DatasetLineError(line + 1, 'not valid UTF-8');
      }
      pending += text;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        check(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
      }
      controller.enqueue(chunk);
    },
    flush() {
      pending += decoder.decode();
      if (pending.length > 0) check(pending);
      if (rows === 0) throw new DatasetLineError(1, 'the dataset has no rows');
    },
  });
  return { stream, rows: () => rows };
}

/** Validates a whole stream (used after a multipart upload completes), consuming it. */
export async function validateJsonlStream(
  body: ReadableStream<Uint8Array>,
  fields: DatasetFieldMapping,
): Promise<number> {
  const validator = jsonlValidator(fields);
  await body.pipeThrough(validator.stream).pipeTo(new WritableStream());
  return validator.rows();
}
