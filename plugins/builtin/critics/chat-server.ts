// A tiny OpenAI-compatible chat-completions server on loopback for tests: each request takes the
// next scripted reply (a status code, a delay, or content), and every request body is recorded.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScriptedReply =
  | { content: string; delayMs?: number }
  | { status: number; body?: unknown; delayMs?: number }
  | { hang: true };

export interface RecordedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: {
    model?: string;
    messages: { role: string; content: string }[];
    temperature?: number;
    top_p?: number;
    max_tokens?: number;
  };
}

export interface ChatServer {
  url: string;
  requests: RecordedRequest[];
  /** Highest number of requests in flight at once. */
  maxInFlight: number;
  /** Replies used in order; when exhausted, `fallback` answers. */
  script: ScriptedReply[];
  fallback: ScriptedReply;
  close(): Promise<void>;
}

export async function startChatServer(
  fallback: ScriptedReply = { content: 'Conclusion: correct [END]' },
): Promise<ChatServer> {
  let inFlight = 0;
  const state: Omit<ChatServer, 'url' | 'close'> = { requests: [], maxInFlight: 0, script: [], fallback };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      state.requests.push({ path: req.url ?? '', headers: req.headers, body });
      const reply = state.script.shift() ?? state.fallback;
      const finish = () => {
        inFlight--;
      };
      res.on('close', finish);
      if ('hang' in reply) return;
      setTimeout(() => {
        if (res.destroyed) return;
        if ('status' in reply) {
          res.writeHead(reply.status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(reply.body ?? { error: `scripted ${reply.status}` }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            id: `chatcmpl-${state.requests.length}`,
            object: 'chat.completion',
            created: 0,
            model: body.model ?? 'test',
            choices: [
              { index: 0, message: { role: 'assistant', content: reply.content }, finish_reason: 'stop' },
            ],
            usage: { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 },
          }),
        );
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  }) as ChatServer;
}

/** A loopback port with nothing listening on it. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
