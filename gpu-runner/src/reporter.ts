// Everything a job reports leaves the runner through one durable outbox, drained in the background
// so that training never waits on the API: events, metric points, each step's rollouts and the
// checkpoints. Each item is written to the job's work folder before it is sent and removed only
// once the API accepted it; while the API is unreachable the outbox grows on disk (up to a budget,
// then training waits: back-pressure) and is flushed when it answers again. The API ignores a
// repeated (job, attempt, seq) event and (job, attempt, step) metric point, a rollout upload
// replaces its step's, and a checkpoint upload that was already completed is recognised, so
// sending something twice (a reply lost on the way back) never duplicates it.
//
// Order: events, then metric points, then rollouts, then checkpoints, re-checked after every batch,
// so a checkpoint is uploaded only once every metric point of the steps before it is stored (a
// later attempt resumes after it and never reports those steps again).
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetricNameSchema, type MetricPoint, type RunnerEvent } from '@cgrpo/contract';
import { ApiError, type RetryPolicy, type RunnerApi, sleep } from './api-client';
import { type CheckpointUploadState, type UploadedCheckpoint, uploadCheckpoint } from './job/checkpoint';
import type { Logger } from './log';

type RunnerEventType = RunnerEvent['type'];

/** What the checkpoint upload needs besides the bytes. */
export interface CheckpointMeta {
  kind: 'adapter' | 'full';
  final: boolean;
  metadata: Record<string, unknown>;
}

interface PendingRollouts {
  step: number;
  file: string;
  bytes: number;
}

interface PendingCheckpoint extends CheckpointMeta {
  step: number;
  file: string;
  bytes: number;
  /** A multipart upload in progress (continued after a failure instead of started again). */
  upload?: CheckpointUploadState;
}

interface Outbox {
  /** The seq of the next event of this (job, attempt). */
  nextSeq: number;
  events: { seq: number; type: RunnerEventType; data: Record<string, unknown> }[];
  points: MetricPoint[];
  rollouts: PendingRollouts[];
  checkpoints: PendingCheckpoint[];
  /** Checkpoints the API stored, by step: each (job, step) is uploaded once. */
  uploaded: (UploadedCheckpoint & { step: number; final: boolean })[];
}

export interface ReporterOptions {
  api: RunnerApi;
  jobId: string;
  leaseId: string;
  attempt: number;
  /** Folder for the outbox (the job's work folder). */
  dir: string;
  log: Logger;
  flushIntervalMs?: number;
  /** Disk the pending rollouts and checkpoints may use before training waits (default 4 GiB). */
  budgetBytes?: number;
}

export const DEFAULT_OUTBOX_BUDGET_BYTES = 4 * 1024 ** 3;
const BATCH_EVENTS = 500;
const BATCH_POINTS = 500;
/** One quick retry per batch: the background timer tries again a second later anyway. */
const FLUSH_RETRY: RetryPolicy = { attempts: 2, baseDelayMs: 200, maxDelayMs: 500 };

/** Makes a metric value storable: finite numbers pass, anything else becomes null (never NaN). */
export function metricValue(v: number | null | undefined): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * The name a metric is stored under: the name itself when the contract accepts it (every documented
 * name does); otherwise a spelling the contract accepts, so a point is stored rather than rejected.
 */
export function metricName(name: string): string {
  if (MetricNameSchema.safeParse(name).success) return name;
  return name.replaceAll('@', '_at_').replace(/[^A-Za-z0-9_./:-]/g, '_');
}

export class Reporter {
  private readonly file: string;
  private readonly files: string;
  private outbox: Outbox;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<boolean> | null = null;
  private rolloutsSupported = true;
  /** Set when the API says the lease is gone: nothing more can be delivered for this attempt. */
  leaseLost = false;
  /** Batches the API refused as invalid (dropped after logging, so they cannot block the rest). */
  rejected = 0;
  delivered = { events: 0, points: 0, rollouts: 0, checkpoints: 0 };
  readonly budgetBytes: number;

  constructor(private readonly o: ReporterOptions) {
    this.files = join(o.dir, `outbox-${o.attempt}`);
    mkdirSync(this.files, { recursive: true });
    this.file = join(o.dir, `outbox-${o.attempt}.json`);
    this.budgetBytes = o.budgetBytes ?? DEFAULT_OUTBOX_BUDGET_BYTES;
    const saved = existsSync(this.file)
      ? (JSON.parse(readFileSync(this.file, 'utf8')) as Partial<Outbox>)
      : {};
    this.outbox = {
      nextSeq: saved.nextSeq ?? 0,
      events: saved.events ?? [],
      points: saved.points ?? [],
      rollouts: saved.rollouts ?? [],
      checkpoints: saved.checkpoints ?? [],
      uploaded: saved.uploaded ?? [],
    };
  }

  get pending(): { events: number; points: number; rollouts: number; checkpoints: number } {
    const { events, points, rollouts, checkpoints } = this.outbox;
    return {
      events: events.length,
      points: points.length,
      rollouts: rollouts.length,
      checkpoints: checkpoints.length,
    };
  }

  /** Bytes of rollouts and checkpoints waiting on disk (what the budget bounds). */
  get pendingBytes(): number {
    let n = 0;
    for (const r of this.outbox.rollouts) n += r.bytes;
    for (const c of this.outbox.checkpoints) n += c.bytes;
    return n;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.o.flushIntervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  event(type: RunnerEventType, data: Record<string, unknown> = {}): void {
    this.outbox.events.push({ seq: this.outbox.nextSeq++, type, data });
    this.persist();
  }

  metric(step: number, values: Record<string, number | null | undefined>, time = new Date()): void {
    const clean: Record<string, number | null> = {};
    for (const [k, v] of Object.entries(values)) clean[metricName(k)] = metricValue(v);
    this.outbox.points.push({ step, values: clean, time: time.toISOString() });
    this.persist();
  }

  /** Queues one step's rollouts (gzipped JSONL); a later upload of the same step replaces it. */
  rollouts(step: number, gz: Uint8Array): void {
    if (!this.rolloutsSupported) return;
    const file = `rollouts-${step}.jsonl.gz`;
    writeFileSync(join(this.files, file), gz);
    this.outbox.rollouts = this.outbox.rollouts.filter((r) => r.step !== step);
    this.outbox.rollouts.push({ step, file, bytes: gz.byteLength });
    this.persist();
  }

  /** True when this step's checkpoint is already queued or stored (each step is uploaded once). */
  hasCheckpoint(step: number): boolean {
    return (
      this.outbox.checkpoints.some((c) => c.step === step) ||
      this.outbox.uploaded.some((c) => c.step === step)
    );
  }

  /** Queues a packed checkpoint; a step already queued or stored is not queued again. */
  checkpoint(step: number, bytes: Uint8Array, meta: CheckpointMeta): void {
    if (this.hasCheckpoint(step)) return;
    const file = `checkpoint-${step}.tar`;
    writeFileSync(join(this.files, file), bytes);
    this.outbox.checkpoints.push({ step, file, bytes: bytes.byteLength, ...meta });
    this.persist();
  }

  /** The stored checkpoint of this step, once the API has it. */
  checkpointOf(step: number): (UploadedCheckpoint & { step: number; final: boolean }) | undefined {
    return this.outbox.uploaded.find((c) => c.step === step);
  }

  /** The latest stored checkpoint. */
  get latestCheckpoint(): (UploadedCheckpoint & { step: number }) | undefined {
    return this.outbox.uploaded.reduce<(UploadedCheckpoint & { step: number }) | undefined>(
      (a, c) => (a && a.step >= c.step ? a : c),
      undefined,
    );
  }

  /**
   * Back-pressure: resolves once `bytes` more fit into the budget (at once while they do). An item
   * larger than the whole budget waits for an empty outbox. Throws when the lease is lost.
   */
  async room(bytes: number, signal?: AbortSignal): Promise<void> {
    let warned = false;
    while (this.pendingBytes > 0 && this.pendingBytes + bytes > this.budgetBytes) {
      if (this.leaseLost) throw lostError();
      if (signal?.aborted) return;
      if (!warned) {
        warned = true;
        this.o.log.warn('outbox full: training waits until the API takes some of it', {
          pending_bytes: this.pendingBytes,
          budget_bytes: this.budgetBytes,
        });
      }
      void this.flush();
      await sleep(250, signal);
    }
  }

  /** Sends what is pending; true when the outbox is empty afterwards. */
  flush(): Promise<boolean> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Flushes until the outbox is empty, or throws after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.flush()) return;
      if (this.leaseLost) throw lostError();
      if (Date.now() > deadline) {
        const p = this.pending;
        throw new ApiError(
          0,
          'api_unreachable',
          `could not deliver ${p.events} events, ${p.points} metric points, ${p.rollouts} rollout uploads and ${p.checkpoints} checkpoints in ${timeoutMs} ms`,
          true,
        );
      }
      await sleep(500);
    }
  }

  private async flushOnce(): Promise<boolean> {
    const { log } = this.o;
    if (this.leaseLost) return false;
    try {
      while (await this.sendNext()) {
        // one batch at a time, highest priority first
      }
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === 'lease_lost') this.leaseLost = true;
      log.debug('reports buffered', { ...this.pending, error: e instanceof Error ? e.message : String(e) });
      return false;
    }
  }

  /** Sends the next batch or item; false when nothing is left. */
  private async sendNext(): Promise<boolean> {
    const { api, jobId, leaseId, attempt } = this.o;
    const box = this.outbox;
    if (box.events.length > 0) {
      const batch = box.events.slice(0, BATCH_EVENTS);
      await this.deliver(() => api.events(jobId, { lease_id: leaseId, attempt, events: batch }, FLUSH_RETRY));
      box.events.splice(0, batch.length);
      this.delivered.events += batch.length;
    } else if (box.points.length > 0) {
      const batch = box.points.slice(0, BATCH_POINTS);
      await this.deliver(() =>
        api.metrics(jobId, { lease_id: leaseId, attempt, points: batch }, FLUSH_RETRY),
      );
      box.points.splice(0, batch.length);
      this.delivered.points += batch.length;
    } else if (box.rollouts.length > 0) {
      const r = box.rollouts[0];
      const gz = readFileSync(join(this.files, r.file));
      try {
        await this.deliver(() => api.rollouts(jobId, leaseId, r.step, gz, FLUSH_RETRY));
        this.delivered.rollouts++;
      } catch (e) {
        if (!(e instanceof ApiError && (e.status === 404 || e.status === 405))) throw e;
        this.rolloutsSupported = false;
        box.rollouts = [];
        this.o.log.warn('this API stores no rollouts (no rollout route); rollout upload is off for this job');
      }
      box.rollouts = box.rollouts.filter((x) => x !== r);
      rmSync(join(this.files, r.file), { force: true });
    } else if (box.checkpoints.length > 0) {
      await this.uploadFirstCheckpoint();
    } else return false;
    this.persist();
    return true;
  }

  private async uploadFirstCheckpoint(): Promise<void> {
    const { api, jobId, leaseId, log } = this.o;
    const c = this.outbox.checkpoints[0];
    const path = join(this.files, c.file);
    const bytes = readFileSync(path);
    let up: UploadedCheckpoint;
    try {
      up = await uploadCheckpoint(
        api,
        jobId,
        leaseId,
        bytes,
        { step: c.step, kind: c.kind, final: c.final, metadata: c.metadata },
        {
          retry: FLUSH_RETRY,
          state: c.upload,
          saveState: (s) => {
            c.upload = s;
            this.persist();
          },
        },
      );
    } catch (e) {
      const refused =
        e instanceof ApiError &&
        !e.retryable &&
        e.code !== 'lease_lost' &&
        [400, 413, 422].includes(e.status);
      if (!refused) throw e;
      // the API will never take this one: dropping it only moves the resume point back
      this.rejected++;
      this.outbox.checkpoints.shift();
      rmSync(path, { force: true });
      log.error('checkpoint refused by the API; dropped', { step: c.step, error: e.message.slice(0, 500) });
      return;
    }
    this.outbox.checkpoints.shift();
    this.outbox.uploaded.push({ ...up, step: c.step, final: c.final });
    this.delivered.checkpoints++;
    // kept as the local copy a later attempt on this runner resumes from without downloading it
    const cache = join(this.o.dir, 'checkpoints');
    mkdirSync(cache, { recursive: true });
    renameSync(path, join(cache, `${up.id}.tar`));
    log.info('checkpoint uploaded', { step: c.step, id: up.id, bytes: up.size, final: c.final });
  }

  /** Sends one batch; a batch the API rejects as invalid is logged and skipped. */
  private async deliver(send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (e) {
      const invalidHere = !(e instanceof ApiError); // the contract schema refused it before sending
      const refused =
        e instanceof ApiError &&
        !e.retryable &&
        e.code !== 'lease_lost' &&
        e.status >= 400 &&
        e.status < 500 &&
        ![401, 403, 404, 405, 409].includes(e.status);
      if (invalidHere || refused) {
        this.rejected++;
        this.o.log.error('report batch is invalid; dropped', {
          error: e instanceof Error ? e.message.slice(0, 500) : String(e),
        });
        return;
      }
      throw e;
    }
  }

  private persist(): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.outbox));
    renameSync(tmp, this.file);
  }
}

function lostError(): ApiError {
  return new ApiError(409, 'lease_lost', 'the lease was lost; pending reports stay on disk', false);
}
