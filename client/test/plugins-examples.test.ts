// The example plugins in examples/plugins, each built with `cgrpo plugins build` and run with
// `cgrpo plugins test` in the production sandbox. The rubric critic talks to a real
// OpenAI-compatible HTTP server on loopback (a stand-in for the job's LLM endpoint, which cannot
// run here); the shaping example is loaded the way the runner reads it.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PluginManifestSchema } from '@cgrpo/contract';
import { SandboxedPlugin } from '@cgrpo/plugins/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plugins } from '../src/commands/plugins';

const examples = path.resolve(import.meta.dirname, '../../examples/plugins');
const work = mkdtempSync(path.join(tmpdir(), 'cgrpo-plugin-examples-'));

function copyExample(name: string): string {
  const dir = path.join(work, name);
  cpSync(path.join(examples, name), dir, {
    recursive: true,
    filter: (src) => !src.includes(`${path.sep}dist`),
  });
  return dir;
}

async function cli(...args: string[]) {
  const lines: string[] = [];
  const code = await plugins(args, { log: (l) => lines.push(l), error: (l) => lines.push(l) });
  return { code, out: lines.join('\n') };
}

let server: Server;
let endpoint: string;
const requests: { messages: { role: string; content: string }[]; temperature?: number }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      const parsed = JSON.parse(body);
      requests.push(parsed);
      const user = parsed.messages.find((m: { role: string }) => m.role === 'user').content as string;
      const response = user.split('Response:\n')[1]?.split('\n')[0] ?? '';
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: `The step "${response}" is wrong.` },
              finish_reason: 'stop',
            },
          ],
          usage: { prompt_tokens: 10, completion_tokens: 8, total_tokens: 18 },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(work, { recursive: true, force: true });
});

describe('examples/plugins', () => {
  it('json-answer-verifier: unit-style checks of a JSON answer pass their samples; config changes the verdict', async () => {
    const dir = copyExample('json-answer-verifier');
    const tested = await cli('test', '--dir', dir, '--input', path.join(dir, 'samples.jsonl'));
    expect(tested.out).toContain('4 passed, 0 failed');
    expect(tested.code).toBe(0);
    expect(tested.out).toContain('"why":"expected 12, got 13"');

    const unordered = await cli(
      'test',
      '--dir',
      dir,
      '--no-build',
      '--input',
      path.join(dir, 'samples.jsonl'),
      '--config',
      '{"unordered_arrays": true}',
    );
    // The colours sample now passes its checks, so its `expect: correct=false` fails.
    expect(unordered.out).toContain('line 3: {"score":1,"correct":true');
    expect(unordered.out).toContain('3 passed, 1 failed');
  });

  it('rubric-critic: needs llm.chat granted, then critiques through the endpoint', async () => {
    const dir = copyExample('rubric-critic');
    const denied = await cli('test', '--dir', dir, '--input', path.join(dir, 'samples.jsonl'));
    expect(denied.code).toBe(1);
    expect(denied.out).toMatch(
      /capability: the plugin requests the 'llm\.chat' capability, which the job does not grant/,
    );

    requests.length = 0;
    const tested = await cli(
      'test',
      '--dir',
      dir,
      '--no-build',
      '--input',
      path.join(dir, 'samples.jsonl'),
      '--grant',
      'llm.chat',
      '--llm-endpoint',
      endpoint,
    );
    expect(tested.out).toContain('ok   line 1: {"critique":"The step \\"17 * 3 = 41\\" is wrong."}');
    expect(tested.out).toContain('2 passed, 0 failed');
    // Only the incorrect response needed the LLM; the rubric went as the system message.
    expect(requests).toHaveLength(1);
    expect(requests[0].messages[0].content).toMatch(/^You review a student solution\./);
    expect(requests[0].messages[1].content).not.toContain('Reference answer');
    expect(requests[0].temperature).toBe(0);
  });

  it('sharpened-shaping: builds to an expression the runner reads and checks', async () => {
    const dir = copyExample('sharpened-shaping');
    const built = await cli('build', '--dir', dir);
    expect(built.code).toBe(0);
    const manifest = PluginManifestSchema.parse(
      JSON.parse(readFileSync(path.join(dir, 'dist/manifest.json'), 'utf8')),
    );
    const plugin = await SandboxedPlugin.load(
      readFileSync(path.join(dir, 'dist/plugin.mjs'), 'utf8'),
      manifest,
    );
    expect(plugin.shaping({ params: { gamma: 0.2 } })).toEqual({
      expression: 'p ^ alpha / (p ^ alpha + gamma)',
      params: { alpha: 0.5, gamma: 0.2 },
    });
    plugin.dispose();
  });
});
