// Large files to disk: streamed (never held whole in memory), resumable from a `.incomplete` file
// with an HTTP Range request, and checked against a digest before they take their final name.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';

export interface Digest {
  /** sha256 of the bytes (LFS files, artifacts), or a git blob sha1 (small files in a Hub repo) */
  algorithm: 'sha256' | 'git-sha1';
  hex: string;
}

export interface DownloadOptions {
  headers?: Record<string, string>;
  /** bytes the file must have; checked before the digest */
  size?: number;
  digest?: Digest;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

export class DownloadError extends Error {
  constructor(
    readonly code: 'download_http' | 'download_size' | 'download_digest',
    readonly url: string,
    message: string,
    readonly status?: number,
  ) {
    super(`${code}: ${url}: ${message}`);
  }
}

function newHash(d: Digest | undefined, size: number | undefined): Hash | null {
  if (!d) return null;
  if (d.algorithm === 'sha256') return createHash('sha256');
  if (size === undefined) throw new Error('git-sha1 digests need the size');
  return createHash('sha1').update(`blob ${size}\0`);
}

async function hashPrefix(path: string, hash: Hash | null): Promise<void> {
  if (!hash) return;
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

/**
 * Downloads `url` to `dest`: bytes go to `dest.incomplete` (resumed with `Range` when it exists and
 * the server answers 206), then are checked (size, digest) and renamed. A digest mismatch deletes
 * the partial file, so the next try starts clean. Returns the bytes written in this call.
 */
export async function downloadToFile(url: string, dest: string, o: DownloadOptions = {}): Promise<number> {
  const part = `${dest}.incomplete`;
  let have = existsSync(part) ? statSync(part).size : 0;
  if (o.size !== undefined && have > o.size) {
    rmSync(part);
    have = 0;
  }
  const headers: Record<string, string> = { ...o.headers };
  if (have > 0) headers.range = `bytes=${have}-`;
  const res = await (o.fetch ?? fetch)(url, { headers, signal: o.signal, redirect: 'follow' });
  if (res.status === 416 && have > 0 && have === o.size) {
    // already whole: fall through to the checks
  } else if (!res.ok || !res.body) {
    throw new DownloadError('download_http', url, `HTTP ${res.status} ${res.statusText}`, res.status);
  }
  const resumed = res.status === 206;
  if (!resumed && res.status !== 416) have = 0;
  const hash = newHash(o.digest, o.size);
  if (have > 0) await hashPrefix(part, hash);
  let written = 0;
  if (res.body && res.status !== 416) {
    const source = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    source.on('data', (chunk: Buffer) => {
      hash?.update(chunk);
      written += chunk.length;
    });
    await pipeline(source, createWriteStream(part, { flags: resumed ? 'a' : 'w' }));
  }
  const total = statSync(part).size;
  if (o.size !== undefined && total !== o.size) {
    if (total > o.size) rmSync(part);
    throw new DownloadError('download_size', url, `got ${total} bytes, expected ${o.size}`);
  }
  if (hash && o.digest) {
    const got = hash.digest('hex');
    if (got !== o.digest.hex.toLowerCase()) {
      rmSync(part);
      throw new DownloadError(
        'download_digest',
        url,
        `${o.digest.algorithm} ${got} does not match the expected ${o.digest.hex}; the partial file was removed, try again`,
      );
    }
  }
  renameSync(part, dest);
  return written;
}

/** sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
