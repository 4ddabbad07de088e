// A lock file per repo in the cache, so two runners on one machine never write the same blob or
// snapshot at once. `open(…, 'wx')` is atomic on local filesystems; a lock whose process is gone
// (crash, SIGKILL) is taken over.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function holder(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isInteger(pid) ? pid : null;
  } catch {
    return null;
  }
}

export class LockTimeoutError extends Error {
  readonly code = 'cache_locked';
  constructor(path: string, pid: number | null, seconds: number) {
    super(
      `cache_locked: ${path}: held by process ${pid ?? '?'} for more than ${seconds} s; if no runner is downloading this model, delete the file`,
    );
  }
}

/** Runs `fn` while holding the lock file `path`; waits (polling) up to `timeoutMs` for it. */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  o: { timeoutMs?: number; pollMs?: number; onWait?: (pid: number | null) => void } = {},
): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const deadline = Date.now() + (o.timeoutMs ?? 30 * 60_000);
  let warned = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = holder(path);
      // an empty file is a lock being written this instant: wait, never steal it
      if (pid !== null && !alive(pid)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new LockTimeoutError(path, pid, Math.round((o.timeoutMs ?? 0) / 1000));
      if (!warned) o.onWait?.(pid);
      warned = true;
      await sleep(o.pollMs ?? 200);
    }
  }
  try {
    return await fn();
  } finally {
    if (holder(path) === process.pid) rmSync(path, { force: true });
  }
}
