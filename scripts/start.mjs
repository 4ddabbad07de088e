// `npm start`: the whole product on this machine, offline. Applies the D1 migrations to the local
// state, starts the Worker under `wrangler dev` on loopback, waits until it answers, makes sure
// the local account exists and prints its admin API key and runner registration key (kept in
// .cgrpo/local.json so restarts reuse them). Ctrl-C stops everything.
//
// The pieces are exported so later steps (a CPU runner, the demo job) can reuse them:
//   startLocalApi(options) → { url, stop, exited }     ensureLocalAccount(url) → { api_key, ... }
// and main() has one marked place where those steps plug in.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const localConfigPath = path.join(root, '.cgrpo', 'local.json');
const wranglerBin = path.join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js');

/** Environment for wrangler: no telemetry, no update or network look-ups, no banner, no prompts. */
export function offlineEnv(extra = {}) {
  return {
    ...process.env,
    WRANGLER_SEND_METRICS: 'false',
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    WRANGLER_HIDE_BANNER: 'true',
    CI: 'true',
    ...extra,
  };
}

function checkNode() {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 22) {
    throw new Error(
      `wrangler needs Node 22 but this is Node ${process.versions.node}: run through npm (\`npm start\`), which uses the project's Node 22`,
    );
  }
}

function run(args, { env, quiet = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [wranglerBin, ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
      if (!quiet) process.stdout.write(d);
    });
    child.stderr.on('data', (d) => {
      output += d;
      if (!quiet) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve(output)
        : reject(new Error(`wrangler ${args.join(' ')} exited with ${code}\n${output}`)),
    );
  });
}

/** Applies every migration in migrations/ to the local D1 in `stateDir`. */
export async function applyLocalMigrations({
  stateDir = path.join(root, '.wrangler', 'state'),
  quiet = true,
} = {}) {
  checkNode();
  await run(['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', stateDir], {
    env: offlineEnv(),
    quiet,
  });
}

/** Fails early (instead of talking to someone else's server) when a port is taken. */
function ensurePortFree(port, what) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error) =>
      reject(
        new Error(
          error.code === 'EADDRINUSE'
            ? `${what} port ${port} on 127.0.0.1 is in use (another \`npm start\`?); stop it or set ${what === 'API' ? 'CGRPO_PORT' : 'CGRPO_INSPECTOR_PORT'}`
            : `cannot listen on 127.0.0.1:${port}: ${error.message}`,
        ),
      ),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}

async function waitForHealth(url, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`wrangler dev exited with ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(`${url}/v1/health`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`the API did not answer on ${url} within ${timeoutMs / 1000} s`);
}

/**
 * Starts the Worker under `wrangler dev` on 127.0.0.1 (migrations first). Resolves once
 * /v1/health answers. `stop()` ends wrangler and its workerd children.
 */
export async function startLocalApi({
  port = Number(process.env.CGRPO_PORT ?? 8787),
  inspectorPort = Number(process.env.CGRPO_INSPECTOR_PORT ?? 9229),
  stateDir = path.join(root, '.wrangler', 'state'),
  vars = {},
  log = (line) => process.stdout.write(`[api] ${line}\n`),
  timeoutMs = 90_000,
} = {}) {
  checkNode();
  await ensurePortFree(port, 'API');
  await ensurePortFree(inspectorPort, 'inspector');
  await applyLocalMigrations({ stateDir });
  const args = [
    wranglerBin,
    'dev',
    '--port',
    String(port),
    '--inspector-port',
    String(inspectorPort),
    '--ip',
    '127.0.0.1',
    '--persist-to',
    stateDir,
    '--log-level',
    'warn',
    ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}:${v}`]),
  ];
  // Its own process group, so stop() reaches workerd too.
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: offlineEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const forward = (data) => {
    for (const line of String(data).split('\n')) if (line.trim()) log(line);
  };
  child.stdout.on('data', forward);
  child.stderr.on('data', forward);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, 'SIGINT');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitForHealth(url, child, timeoutMs);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port, stop, exited, child };
}

function readLocalConfig() {
  if (!existsSync(localConfigPath)) return undefined;
  try {
    return JSON.parse(readFileSync(localConfigPath, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * `wrangler dev` does not fire cron triggers by itself; this does, every `everyMs`, so expired
 * leases are requeued locally as they are when deployed. Returns a function that stops it.
 */
export function startCronTicker(url, everyMs = 60_000) {
  const timer = setInterval(() => {
    fetch(`${url}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent('* * * * *')}`).catch(() => undefined);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The local account's keys: reused from .cgrpo/local.json while they still work against this
 * state, otherwise created through the development-only bootstrap route and saved.
 */
export async function ensureLocalAccount(url) {
  const saved = readLocalConfig();
  if (saved?.api_key) {
    const res = await fetch(`${url}/v1/account`, { headers: { authorization: `Bearer ${saved.api_key}` } });
    if (res.ok) {
      const account = await res.json();
      const config = { ...saved, api_url: url, account_id: account.id };
      writeFileSync(localConfigPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
      return config;
    }
  }
  const res = await fetch(`${url}/v1/bootstrap`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ handle: 'local', name: 'Local account' }),
  });
  if (!res.ok) throw new Error(`bootstrap failed: ${res.status} ${await res.text()}`);
  const body = await res.json();
  const config = {
    api_url: url,
    account_id: body.account.id,
    api_key: body.api_key,
    registration_key: body.registration_key,
  };
  mkdirSync(path.dirname(localConfigPath), { recursive: true });
  writeFileSync(localConfigPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return config;
}

export async function main(argv = process.argv.slice(2)) {
  const apiOnly = argv.includes('--api-only');
  const api = await startLocalApi();
  const stopCron = startCronTicker(api.url);
  let stopping = false;
  const shutdown = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    stopCron();
    await api.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGHUP', () => void shutdown(0));
  api.exited.then(({ code }) => {
    if (!stopping) {
      process.stderr.write(`wrangler dev exited unexpectedly (${code})\n`);
      process.exit(1);
    }
  });

  let account;
  try {
    account = await ensureLocalAccount(api.url);
  } catch (error) {
    await api.stop();
    throw error;
  }
  process.stdout.write(
    [
      '',
      `cgrpo API   ${api.url}   (reference: ${api.url}/docs, OpenAPI: ${api.url}/v1/openapi.json)`,
      `dashboard   ${api.url}/#/login?key=${account.api_key}   (signs you in; the key stays in this tab)`,
      `CLI         export CGRPO_API_URL=${api.url} CGRPO_API_KEY=${account.api_key}; npx cgrpo jobs list`,
      `admin API key            ${account.api_key}`,
      `runner registration key  ${account.registration_key}`,
      `(saved in ${path.relative(process.cwd(), localConfigPath)}; Ctrl-C stops everything)`,
      '',
    ].join('\n'),
  );

  if (!apiOnly) {
    // One CPU runner (it stays up and trains any job POSTed to this API) and the demo job,
    // followed until it ends with its metrics and a chart (scripts/demo.mjs, docs/runner.md).
    const { runDemo } = await import('./demo.mjs');
    await runDemo({ url: api.url, apiKey: account.api_key, registrationKey: account.registration_key }).catch(
      (error) => process.stderr.write(`[demo] ${error.message} (the API keeps running)\n`),
    );
  }
  await new Promise(() => {});
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    process.stderr.write(`npm start failed: ${error.message}\n`);
    process.exit(1);
  });
}
