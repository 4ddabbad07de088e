import { describe, expect, it } from 'vitest';
import { DatasetLineChecker, DatasetLineError } from '../src/jsonl';
import { call, newAccount, type TestAccount } from './helpers';

// Dataset uploads are validated line by line in linear time; every error names its own line.

type ErrorBody = { error: { code: string; message: string; fields: { path: string; message: string }[] } };
const enc = (s: string) => new TextEncoder().encode(s);
const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

async function upload(account: TestAccount, body: Uint8Array) {
  const res = await call(
    '/v1/artifacts?name=d.jsonl&kind=dataset&prompt_field=question&reference_field=answer',
    {
      method: 'POST',
      key: account.apiKey,
      body,
      headers: { 'content-type': 'application/octet-stream' },
    },
  );
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as ErrorBody };
}

/** Feeds `bytes` in chunks of `size` and returns the error (or the row count). */
function feed(bytes: Uint8Array, size: number): DatasetLineError | number {
  const checker = new DatasetLineChecker({ prompt: 'question', reference: 'answer' });
  try {
    for (let at = 0; at < bytes.length; at += size) checker.push(bytes.subarray(at, at + size));
    checker.end();
    return checker.rows;
  } catch (error) {
    if (error instanceof DatasetLineError) return error;
    throw error;
  }
}

const row = (n: number) => `{"question":"${n}+${n} é ✓ 𝄞","answer":"${2 * n}"}\n`;

describe('dataset line checker', () => {
  it('names the line of an invalid byte whatever the chunking', () => {
    const body = cat(
      enc(row(1) + row(2)),
      enc('{"question":"3+3 '),
      new Uint8Array([0xff]),
      enc('","answer":"6"}\n' + row(4)),
    );
    for (const size of [1, 2, 3, 7, 64, 65536]) {
      const result = feed(body, size);
      expect(result, `chunks of ${size}`).toBeInstanceOf(DatasetLineError);
      expect((result as DatasetLineError).line, `chunks of ${size}`).toBe(3);
      expect((result as DatasetLineError).message).toMatch(/line 3: not valid UTF-8 \(byte 0xff\)/);
    }
  });

  it('reports a multibyte character cut off at the end as a truncated file, on the last line', () => {
    const whole = enc(`${row(1)}${row(2)}{"question":"x","answer":"✓`);
    const cut = whole.subarray(0, whole.length - 1); // ✓ is 3 bytes: keep 2
    for (const size of [1, 5, 65536]) {
      const result = feed(cut, size) as DatasetLineError;
      expect(result.line).toBe(3);
      expect(result.message).toMatch(/ends inside a multibyte UTF-8 character/);
    }
  });

  it('accepts multibyte characters split across chunks, and a BOM', () => {
    const body = enc(`\uFEFF${row(1)}${row(2)}${row(3)}`);
    for (const size of [1, 2, 3, 4, 1000]) expect(feed(body, size)).toBe(3);
  });

  it('refuses a line over 1 MiB characters as soon as it passes the limit', () => {
    const result = feed(enc(`{"question":"${'x'.repeat(2 * 1024 * 1024)}`), 65536) as DatasetLineError;
    expect(result.line).toBe(1);
    expect(result.message).toMatch(/longer than 1048576 characters/);
  });
});

describe('POST /v1/artifacts?kind=dataset', () => {
  it('reports an invalid byte on line 3 as line 3 and stores nothing', async () => {
    const account = await newAccount();
    const res = await upload(
      account,
      cat(enc(row(1) + row(2)), enc('{"question":"3 '), new Uint8Array([0xff]), enc('","answer":"6"}\n')),
    );
    expect(res.status, res.text).toBe(400);
    expect(res.json.error.fields).toEqual([
      { path: 'line 3', message: expect.stringMatching(/not valid UTF-8/) },
    ]);
    const list = (await (await call('/v1/artifacts', { key: account.apiKey })).json()) as { data: unknown[] };
    expect(list.data).toEqual([]);
  });

  it('names a truncated multibyte character at the end instead of "the body ended early"', async () => {
    const account = await newAccount();
    const whole = enc(`${row(1)}{"question":"x","answer":"✓`);
    const res = await upload(account, whole.subarray(0, whole.length - 1));
    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(/line 2: the file ends inside a multibyte UTF-8 character/);
  });

  it('answers one 8 MB line quickly with a 400 naming line 1', async () => {
    const account = await newAccount();
    const t0 = performance.now();
    const res = await upload(account, enc(`{"question":"${'x'.repeat(8 * 1024 * 1024)}","answer":"1"}\n`));
    expect(res.status).toBe(400);
    expect(res.json.error.fields[0]?.path).toBe('line 1');
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});
