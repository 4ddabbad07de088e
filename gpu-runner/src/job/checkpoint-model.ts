// Jobs that start from another job's checkpoint (`model.id: "checkpoint:<ckpt_id>"`), e.g. SFT →
// Critique-GRPO. The checkpoint is fetched once into the runner's model cache and turned into a
// plain model folder: a full checkpoint already is one; a LoRA checkpoint is merged into its base
// model (resolved the same way, so chains of checkpoints work) and saved as full weights. The new
// job then trains its own adapter (or all weights) on that folder, exactly as on any base model.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CHECKPOINT_MODEL_PREFIX, type Checkpoint, CheckpointSchema } from '@cgrpo/contract';
import type { RunnerApi } from '../api-client';
import type { Engine } from '../engine';
import { CausalLM } from '../model/model';
import { fetchCheckpoint, type TrainerState } from './checkpoint';
import { JobError } from './types';

/** Longest chain of checkpoints followed (a checkpoint of a job that started from a checkpoint …). */
const MAX_CHAIN = 16;

export function isCheckpointModel(id: string): boolean {
  return id.startsWith(CHECKPOINT_MODEL_PREFIX);
}

export interface CheckpointModelOptions {
  api: RunnerApi;
  cacheDir: string;
  engine: () => Promise<Engine>;
  /** Resolves a non-checkpoint base model id (a local name, a Hub id, an uploaded artifact). */
  resolveBase: (id: string) => Promise<string>;
}

/** The model folder of `checkpoint:<id>`, built once per runner and reused. */
export async function resolveCheckpointModel(
  modelId: string,
  o: CheckpointModelOptions,
  depth = 0,
): Promise<string> {
  if (depth > MAX_CHAIN)
    throw new JobError(
      'checkpoint_chain_too_long',
      `model.id: more than ${MAX_CHAIN} checkpoints in a chain`,
    );
  const id = modelId.slice(CHECKPOINT_MODEL_PREFIX.length);
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(id))
    throw new JobError('model_not_found', `model.id: '${modelId}' is not checkpoint:<checkpoint id>`);
  const ready = join(o.cacheDir, `checkpoint-${id}`);
  if (existsSync(join(ready, 'config.json')) && existsSync(join(ready, 'model.safetensors'))) return ready;

  const meta: Checkpoint = await o.api.call(
    'GET',
    `/v1/runner/checkpoints/${encodeURIComponent(id)}`,
    CheckpointSchema,
  );
  if (meta.status !== 'complete')
    throw new JobError('checkpoint_not_ready', `model.id: checkpoint ${id} is still uploading`, true);
  const unpacked = join(o.cacheDir, `checkpoint-${id}.unpacked`);
  const state: TrainerState = await fetchCheckpoint(
    o.api,
    meta.job_id,
    meta,
    join(o.cacheDir, 'archives'),
    unpacked,
  );
  const staging = `${ready}.partial`;
  rmSync(staging, { recursive: true, force: true });
  if (state.adapter === 'full') {
    renameSync(unpacked, staging);
  } else {
    const base = isCheckpointModel(state.base_model)
      ? await resolveCheckpointModel(state.base_model, o, depth + 1)
      : await o.resolveBase(state.base_model);
    const model = await CausalLM.load(base, { engine: await o.engine(), adapterPath: unpacked });
    try {
      await model.mergeAdapter();
      await model.saveCheckpoint(staging);
    } finally {
      await model.close();
    }
    rmSync(unpacked, { recursive: true, force: true });
  }
  for (const f of ['optimizer.safetensors', 'trainer_state.json']) rmSync(join(staging, f), { force: true });
  mkdirSync(o.cacheDir, { recursive: true });
  rmSync(ready, { recursive: true, force: true });
  renameSync(staging, ready);
  return ready;
}

/** The trainer state a checkpoint folder carries (for messages and docs). */
export function readTrainerState(dir: string): TrainerState {
  return JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
}
