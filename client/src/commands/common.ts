// What every API command shares: the saved login, the client, --json output, tables, errors that
// say what to do.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Table from 'cli-table3';
import { CgrpoApiError, CgrpoClient } from '../api';

export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export interface GlobalOptions {
  json?: boolean;
  api?: string;
  key?: string;
}

export interface SavedLogin {
  api_url: string;
  api_key: string;
}

/** CGRPO_CONFIG, else $XDG_CONFIG_HOME/cgrpo/config.json, else ~/.config/cgrpo/config.json. */
export function configPath(env = process.env): string {
  if (env.CGRPO_CONFIG) return env.CGRPO_CONFIG;
  const base = env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(base, 'cgrpo', 'config.json');
}

export function readLogin(env = process.env): Partial<SavedLogin> {
  const file = configPath(env);
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<SavedLogin>;
  } catch (error) {
    throw new CliError(
      'invalid_config',
      `${file} is not valid JSON (${(error as Error).message}): run \`cgrpo login\` again to rewrite it`,
    );
  }
}

/** Writes the login with 0600 permissions (the key is a secret). */
export function saveLogin(login: SavedLogin, env = process.env): string {
  const file = configPath(env);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** Flags beat env vars (CGRPO_API_URL / CGRPO_API_KEY), which beat the saved login. */
export function resolveLogin(opts: GlobalOptions, env = process.env): SavedLogin {
  const saved = readLogin(env);
  // An empty env var counts as unset.
  const url = opts.api || env.CGRPO_API_URL || saved.api_url;
  const key = opts.key || env.CGRPO_API_KEY || saved.api_key;
  if (!url || !key) {
    throw new CliError(
      'not_logged_in',
      `no ${url ? 'API key' : 'API URL'}: run \`cgrpo login --api http://127.0.0.1:8787 --key cgrpo_sk_...\` (npm start prints both) or set CGRPO_API_URL and CGRPO_API_KEY`,
    );
  }
  return { api_url: url, api_key: key };
}

export function clientFor(opts: GlobalOptions): CgrpoClient {
  const login = resolveLogin(opts);
  return new CgrpoClient({ url: login.api_url, apiKey: login.api_key });
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((c) => (c === null || c === undefined ? '' : String(c))));
  return t.toString();
}

export function fmt(n: number | null | undefined, digits = 3): string {
  return n === null || n === undefined || Number.isNaN(n) ? '-' : Number(n.toFixed(digits)).toString();
}

/** Prints an error with its code and what to do; returns the exit code. */
export function reportError(error: unknown, json: boolean): number {
  let code = 'error';
  let message = String(error);
  let fields: { path: string; message: string }[] = [];
  let exit = 1;
  if (error instanceof CgrpoApiError) {
    code = error.code;
    message = error.message;
    fields = error.fields;
  } else if (error instanceof CliError) {
    code = error.code;
    message = error.message;
    exit = error.exitCode;
  } else if (error instanceof Error && 'code' in error && typeof error.code === 'string') {
    code = error.code;
    message = error.message;
  } else if (error instanceof Error) {
    message = error.message;
  }
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message, fields } })}\n`);
  else {
    process.stderr.write(`cgrpo: ${code}: ${message}\n`);
    for (const f of fields) process.stderr.write(`  ${f.path || '(root)'}: ${f.message}\n`);
  }
  return exit;
}
