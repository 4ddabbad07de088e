// Large downloads from the cgrpo API without holding them in memory: the response body is piped
// to a file while its sha256 is computed; and plugin bundles kept per runner by sha256, so a
// bundle is downloaded once, not once per job.
import { createHash } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

/** The part of RunnerApi a streamed download needs (its retrying `send`). */
export interface ApiSender {
  send(method: string, path: string, options?: { timeoutMs?: number }): Promise<Response>;
}

export class IntegrityError extends Error {
  readonly code = 'download_integrity';
  constructor(what: string, got: string, want: string) {
    super(`download_integrity: ${what}: sha256 ${got}, expected ${want}; the file was discarded`);
  }
}

export type FileDownload = (
  path: string,
  dest: string,
  o?: { sha256?: string },
) => Promise<{ bytes: number; sha256: string }>;

/**
 * Streams `path` from the API to `dest` (via `dest.part`, renamed when whole and, if `sha256` is
 * given, verified). Memory stays at one chunk whatever the file size.
 */
export function apiFileDownload(api: ApiSender, timeoutMs = 30 * 60_000): FileDownload {
  return async (path, dest, o = {}) => {
    const res = await api.send('GET', path, { timeoutMs });
    if (!res.body) throw new Error(`${path}: empty response`);
    const part = `${dest}.part`;
    const hash = createHash('sha256');
    let bytes = 0;
    const source = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    source.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    try {
      await pipeline(source, createWriteStream(part));
    } catch (e) {
      rmSync(part, { force: true });
      throw e;
    }
    const sha256 = hash.digest('hex');
    if (o.sha256 && sha256 !== o.sha256) {
      rmSync(part, { force: true });
      throw new IntegrityError(path, sha256, o.sha256);
    }
    renameSync(part, dest);
    return { bytes, sha256 };
  };
}

const BUNDLE_URL = /\/bundles\/([0-9a-f]{64})$/;

/**
 * Wraps a bundle download (`/v1/runner/bundles/<sha256>`) with a per-runner cache folder: a bundle
 * whose file is there and still hashes to its name is read from disk; otherwise it is downloaded,
 * checked against the sha256 in its URL and stored. Other paths pass through.
 */
export function cachedBundles(
  dir: string,
  download: (path: string) => Promise<Uint8Array>,
): (path: string) => Promise<Uint8Array> {
  return async (path) => {
    const m = BUNDLE_URL.exec(path);
    if (!m) return download(path);
    const want = m[1];
    const file = join(dir, `${want}.js`);
    if (existsSync(file)) {
      const bytes = readFileSync(file);
      if (createHash('sha256').update(bytes).digest('hex') === want) {
        return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
      }
      rmSync(file, { force: true });
    }
    const bytes = await download(path);
    const got = createHash('sha256').update(bytes).digest('hex');
    if (got !== want) throw new IntegrityError(path, got, want);
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.part`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, file);
    return bytes;
  };
}
