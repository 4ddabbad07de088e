// Where a job's model comes from: a local checkpoint folder named by path (`/models/x`,
// `file:///models/x`) or by id, looked up in the runner's model folders (`<dir>/<id>`, then
// `<dir>/<owner>--<name>` and `<dir>/<name>`). Nothing is downloaded from the internet.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JobError } from './types';

function isCheckpoint(dir: string): boolean {
  return existsSync(join(dir, 'config.json'));
}

export function resolveModelDir(id: string, modelDirs: readonly string[]): string {
  if (id.startsWith('artifact://')) {
    throw new JobError(
      'model_artifact_not_supported',
      `model.id: ${id}: models uploaded as artifacts are not yet supported by this runner; put the checkpoint folder on the runner and pass its path, or start the runner with --models-dir`,
    );
  }
  const path = id.startsWith('file://') ? fileURLToPath(id) : id.startsWith('file:') ? id.slice(5) : id;
  if (path.startsWith('/') || path.startsWith('.')) {
    if (isCheckpoint(path)) return path;
    throw new JobError(
      'model_not_found',
      `model.id: ${path} is not a checkpoint folder (no config.json) on this runner`,
    );
  }
  const names = [id, id.replace('/', '--'), id.split('/').pop() ?? id];
  for (const dir of modelDirs) {
    for (const name of names) {
      const candidate = join(dir, name);
      if (isCheckpoint(candidate)) return candidate;
    }
  }
  throw new JobError(
    'model_not_found',
    `model.id: '${id}' is not in this runner's model folders (${modelDirs.join(', ')}); runners do not download models — place the checkpoint folder in one of them or start the runner with --models-dir`,
  );
}
