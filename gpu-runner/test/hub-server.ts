// A loopback stand-in for the Hugging Face Hub (the public Hub cannot be reached from tests): the
// routes the runner calls, with the Hub's shapes, serving real checkpoint folders.
//   GET /api/models/<repo>/revision/<rev>   model info ({ id, sha, ... })
//   GET /api/models/<repo>/tree/<rev>       file listing (oid = git sha1, lfs.oid = sha256)
//   GET /<repo>/resolve/<rev>/<file>         file bytes, Range requests answered with 206
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface HubRepo {
  /** folder whose files are the repo's contents */
  dir: string;
  commit: string;
  /** requests need `Authorization: Bearer <token>` (a gated model) */
  token?: string;
  /** serve these bytes instead of the real file (a corrupt mirror) */
  corrupt?: Record<string, Uint8Array>;
}

export interface HubRequest {
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
}

const gitSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export class LoopbackHub {
  readonly requests: HubRequest[] = [];
  private server: Server | null = null;
  url = '';
  /** fail every request (the network is down) */
  down = false;

  constructor(readonly repos: Record<string, HubRepo>) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server?.close(r));
  }

  resolves(): HubRequest[] {
    return this.requests.filter((r) => r.path.includes('/resolve/'));
  }

  private files(repo: HubRepo): { path: string; bytes: Uint8Array }[] {
    return readdirSync(repo.dir)
      .sort()
      .map((f) => ({ path: f, bytes: readFileSync(join(repo.dir, f)) }));
  }

  private handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    this.requests.push({
      method: req.method ?? 'GET',
      path,
      range: req.headers.range ?? null,
      auth: req.headers.authorization ?? null,
    });
    if (this.down) {
      req.socket.destroy();
      return;
    }
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const m =
      /^\/api\/models\/(.+)\/(revision|tree)\/([^/]+)$/.exec(path) ??
      /^\/(.+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (!m) return json(404, { error: 'Not Found' });
    const api = path.startsWith('/api/');
    const name = m[1];
    const repo = this.repos[name];
    // the Hub answers 401 for a repo it will not show (missing or private) without a token
    if (!repo) return json(api ? 404 : 404, { error: 'Repository not found' });
    if (repo.token && req.headers.authorization !== `Bearer ${repo.token}`) {
      return json(401, {
        error: `Access to model ${name} is restricted. You must have access to it and be authenticated.`,
      });
    }
    const rev = api ? m[3] : m[2];
    if (rev !== 'main' && rev !== repo.commit) return json(404, { error: `Invalid rev id: ${rev}` });
    if (api && m[2] === 'revision') {
      return json(200, {
        _id: 'x',
        id: name,
        sha: repo.commit,
        private: false,
        gated: repo.token ? 'auto' : false,
        downloads: 0,
        likes: 0,
        lastModified: '2026-01-01T00:00:00.000Z',
      });
    }
    if (api) {
      return json(
        200,
        this.files(repo).map(({ path: p, bytes }) =>
          p.endsWith('.safetensors')
            ? {
                type: 'file',
                path: p,
                size: bytes.length,
                oid: gitSha1(bytes),
                lfs: { oid: sha256(bytes), size: bytes.length, pointerSize: 134 },
              }
            : { type: 'file', path: p, size: bytes.length, oid: gitSha1(bytes) },
        ),
      );
    }
    const file = this.files(repo).find((f) => f.path === m[3]);
    if (!file) return json(404, { error: 'Entry not found' });
    const bytes = repo.corrupt?.[file.path] ?? file.bytes;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      const from = Number(range[1]);
      if (from >= bytes.length) {
        res.writeHead(416);
        res.end();
        return;
      }
      res.writeHead(206, {
        'content-length': bytes.length - from,
        'content-range': `bytes ${from}-${bytes.length - 1}/${bytes.length}`,
      });
      res.end(bytes.subarray(from));
      return;
    }
    res.writeHead(200, { 'content-length': bytes.length, etag: `"${gitSha1(bytes)}"` });
    res.end(bytes);
  }
}
