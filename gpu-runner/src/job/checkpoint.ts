// Checkpoints: the adapter (PEFT folder files) or the full weights, the AdamW moments and step
// counter, and the trainer state (step, seed, data position) — packed as one tar and uploaded to
// the API part by part (multipart: a checkpoint can be far larger than one request). The RNG needs
// no saved state: every random stream is a counter-based function of (seed, step, purpose).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Checkpoint } from '@cgrpo/contract';
import {
  ApiError,
  DEFAULT_RETRY,
  type RetryPolicy,
  RUNNER_ROUTES,
  type RunnerApi,
  TERMINAL_RETRY,
} from '../api-client';
import { type CausalLM, ModelError, type ModelTrainer } from '../model/model';
import { openCheckpointTensors, writeSafetensors } from '../model/safetensors';
import { createTar, readTar } from './tar';
import { JobError } from './types';

export const CHECKPOINT_FORMAT = 'cgrpo-checkpoint/1';

export interface TrainerState {
  format: typeof CHECKPOINT_FORMAT;
  /** The last completed training step (its update is in the weights). */
  step: number;
  total_steps: number;
  seed: number;
  adapter: 'lora' | 'full';
  base_model: string;
  /** Where the next batch comes from (informational: the order is a function of seed and step). */
  data: { epoch: number; batch_in_epoch: number; prompts_per_step: number; rows: number };
  rng: { kind: 'counter'; seed: number };
}

/** Writes the checkpoint files into `dir` (emptied first). */
export async function saveCheckpointFolder(
  dir: string,
  model: CausalLM,
  trainer: ModelTrainer,
  state: TrainerState,
): Promise<void> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  if (state.adapter === 'lora') await model.saveAdapter(dir, state.base_model);
  else await model.saveCheckpoint(dir);
  writeSafetensors(join(dir, 'optimizer.safetensors'), await trainer.optimizerTensors(), {
    format: 'cgrpo-optimizer',
  });
  writeFileSync(join(dir, 'trainer_state.json'), `${JSON.stringify(state, null, 2)}\n`);
}

/**
 * Puts the saved AdamW moments and step counter back into the trainer (which also resumes its
 * step count, and with it the dropout seeds, where the interrupted run left off).
 */
export async function restoreOptimizer(dir: string, trainer: ModelTrainer): Promise<void> {
  const tensors = openCheckpointTensors(dir, 'optimizer');
  const state: Record<string, Float32Array> = {};
  for (const name of tensors.names())
    state[name] = Float32Array.from(tensors.read(name).data as ArrayLike<number>);
  try {
    await trainer.restoreOptimizerState(state);
  } catch (e) {
    if (e instanceof ModelError) {
      throw new JobError(
        'checkpoint_incompatible',
        `the checkpoint's optimizer state does not fit this job: ${e.message}`,
      );
    }
    throw e;
  }
}

export function packFolder(dir: string): Uint8Array {
  const names = readdirSync(dir).sort();
  return createTar(names.map((name) => ({ name, data: readFileSync(join(dir, name)) })));
}

export function unpackTo(bytes: Uint8Array, dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const e of readTar(bytes)) {
    if (e.name.includes('/') || e.name.startsWith('.'))
      throw new JobError('checkpoint_invalid', `unexpected entry ${e.name}`);
    writeFileSync(join(dir, e.name), e.data);
  }
}

export interface UploadedCheckpoint {
  id: string;
  size: number;
  sha256: string;
}

/** A multipart upload in progress: kept in the outbox so a failed upload continues where it stopped. */
export interface CheckpointUploadState {
  checkpoint_id: string;
  part_url: string;
  part_size: number;
  parts: { part_number: number; etag: string }[];
}

export interface UploadOptions {
  /** Per request (default: the final checkpoint rides out an outage, a periodic one gives up sooner). */
  retry?: RetryPolicy;
  /** Where an earlier try of this upload stopped. */
  state?: CheckpointUploadState;
  /** Called after the init and after every part, so the caller can keep the state durable. */
  saveState?: (state: CheckpointUploadState) => void;
}

/**
 * Uploads a packed checkpoint through the API's multipart routes, continuing an earlier try when
 * `state` says where it stopped. A complete answered with `upload_finished` means an earlier try
 * completed it and only the answer was lost: the checkpoint is stored once.
 */
export async function uploadCheckpoint(
  api: RunnerApi,
  jobId: string,
  leaseId: string,
  bytes: Uint8Array,
  meta: { step: number; kind: 'adapter' | 'full'; final: boolean; metadata: Record<string, unknown> },
  options: UploadOptions = {},
): Promise<UploadedCheckpoint> {
  const retry = options.retry ?? (meta.final ? TERMINAL_RETRY : DEFAULT_RETRY);
  let state = options.state;
  if (!state) {
    const init = await api.checkpointInit(jobId, { lease_id: leaseId, ...meta }, retry);
    state = {
      checkpoint_id: init.checkpoint_id,
      part_url: init.part_url,
      part_size: Math.max(init.min_part_size, 8 * 1024 * 1024),
      parts: [],
    };
    options.saveState?.(state);
  }
  const partCount = Math.max(1, Math.ceil(bytes.length / state.part_size));
  for (let n = state.parts.length + 1; n <= partCount; n++) {
    const from = (n - 1) * state.part_size;
    const part = await api.uploadPart(
      state.part_url,
      leaseId,
      n,
      bytes.subarray(from, Math.min(bytes.length, from + state.part_size)),
      retry,
    );
    state.parts.push({ part_number: part.part_number, etag: part.etag });
    options.saveState?.(state);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  try {
    // the API answers with the checkpoint it keeps for this step (an earlier upload of the step wins)
    const stored = await api.checkpointComplete(
      jobId,
      state.checkpoint_id,
      { lease_id: leaseId, parts: state.parts, sha256, size: bytes.length },
      retry,
    );
    return { id: stored.id, size: stored.size ?? bytes.length, sha256: stored.sha256 ?? sha256 };
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'upload_finished')) throw e;
  }
  return { id: state.checkpoint_id, size: bytes.length, sha256 };
}

/** Downloads (or finds in the local cache) a checkpoint and unpacks it into `dir`. */
export async function fetchCheckpoint(
  api: RunnerApi,
  jobId: string,
  checkpoint: Checkpoint,
  cacheDir: string,
  dir: string,
): Promise<TrainerState> {
  mkdirSync(cacheDir, { recursive: true });
  const cached = join(cacheDir, `${checkpoint.id}.tar`);
  let bytes: Uint8Array | null = null;
  try {
    bytes = readFileSync(cached);
  } catch {
    bytes = null;
  }
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  if (!bytes || (checkpoint.sha256 && sha(bytes) !== checkpoint.sha256)) {
    bytes = await api.download(RUNNER_ROUTES.checkpointDownload(jobId, checkpoint.id));
    if (checkpoint.sha256 && sha(bytes) !== checkpoint.sha256) {
      throw new JobError('checkpoint_corrupt', `checkpoint ${checkpoint.id}: sha256 does not match`, true);
    }
  }
  unpackTo(bytes, dir);
  const state = JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  if (state.format !== CHECKPOINT_FORMAT) {
    throw new JobError(
      'checkpoint_incompatible',
      `checkpoint ${checkpoint.id} has format ${state.format}, expected ${CHECKPOINT_FORMAT}`,
    );
  }
  return state;
}
