// Runs the `cgrpo` CLI as a child process (bin/cgrpo.mjs) the way a user does, with its own config
// file in `dir`, for the CLI end-to-end tests.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../gpu-runner/test/harness';

export const CGRPO_BIN = join(ROOT, 'client', 'bin', 'cgrpo.mjs');

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** `cgrpo ...args` in `dir` with no saved login and no CGRPO_API_* from the caller (unless `env` sets them). */
export function runCgrpo(dir: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--no-node-snapshot', CGRPO_BIN, ...args], {
      cwd: dir,
      env: {
        ...process.env,
        CGRPO_CONFIG: join(dir, 'config.json'),
        CGRPO_API_URL: '',
        CGRPO_API_KEY: '',
        CGRPO_DEBUG: '1',
        ...env,
      },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('exit', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** Parses `--json` output, failing with what the command printed when it is not JSON. */
export function parseJson<T>(r: CliResult): T {
  try {
    return JSON.parse(r.out) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\nstdout: ${r.out}\nstderr: ${r.err}`);
  }
}
