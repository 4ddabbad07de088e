// vitest globalSetup: a real HTTP receiver on 127.0.0.1 for the webhook tests in workerd.
// Each route name (POST /hook/<name>) has a script of responses set by the tests through
// /control/<name>; every request is recorded with its headers and body and verified with the
// `standardwebhooks` reference library against the secrets the test registered.
import http from 'node:http';
import { Webhook } from 'standardwebhooks';
import type { TestProject } from 'vitest/node';

export interface ScriptedResponse {
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  /** Wait this long before answering (timeouts). */
  delayMs?: number;
  /** Drop the connection without answering (receiver "down"). */
  destroy?: boolean;
}

export interface ReceivedDelivery {
  at: number;
  headers: Record<string, string>;
  body: string;
  /** Per registered secret: null when it verified, else the library's error message. */
  verification: (string | null)[];
}

interface Route {
  script: ScriptedResponse[];
  fallback: ScriptedResponse;
  secrets: string[];
  log: ReceivedDelivery[];
}

declare module 'vitest' {
  export interface ProvidedContext {
    webhookReceiverPort: number;
  }
}

export default async function setup(project: TestProject) {
  const routes = new Map<string, Route>();
  const route = (name: string) => {
    let r = routes.get(name);
    if (!r) {
      r = { script: [], fallback: { status: 200, body: 'ok' }, secrets: [], log: [] };
      routes.set(name, r);
    }
    return r;
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://receiver');
      const [, area, name = '', action] = url.pathname.split('/');
      if (area === 'control') {
        const r = route(name);
        if (req.method === 'GET' && action === 'log') {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify(r.log));
          return;
        }
        const config = JSON.parse(body || '{}') as {
          script?: ScriptedResponse[];
          fallback?: ScriptedResponse;
          secrets?: string[];
        };
        if (config.script) r.script = config.script;
        if (config.fallback) r.fallback = config.fallback;
        if (config.secrets) r.secrets = config.secrets;
        res.end('configured');
        return;
      }
      if (area === 'redirect') {
        res.writeHead(302, { location: `/hook/${name}` });
        res.end();
        return;
      }
      const r = route(name);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const verification = r.secrets.map((secret) => {
        try {
          new Webhook(secret).verify(body, headers);
          return null;
        } catch (e) {
          return (e as Error).message;
        }
      });
      r.log.push({ at: Date.now(), headers, body, verification });
      const reply = r.script.shift() ?? r.fallback;
      if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
      if (reply.destroy) {
        req.socket.destroy();
        return;
      }
      res.writeHead(reply.status ?? 200, reply.headers ?? {});
      res.end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  project.provide('webhookReceiverPort', (server.address() as { port: number }).port);
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}
