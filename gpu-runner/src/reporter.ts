// Metrics and events leave the runner through an outbox: every point and event is written to a
// file in the job's work folder before it is sent, and removed only once the API accepted it.
// When the API is unreachable the outbox grows on disk and is flushed when it answers again. The
// API ignores a repeated (job, attempt, seq) event and (job, attempt, step) metric point, so
// sending something twice (a reply lost on the way back) never duplicates it.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MetricNameSchema, type MetricPoint, type RunnerEvent } from '@cgrpo/contract';
import { ApiError, type RetryPolicy, type RunnerApi } from './api-client';
import type { Logger } from './log';

type RunnerEventType = RunnerEvent['type'];

interface Outbox {
  /** The seq of the next event of this (job, attempt). */
  nextSeq: number;
  events: { seq: number; type: RunnerEventType; data: Record<string, unknown> }[];
  points: MetricPoint[];
}

export interface ReporterOptions {
  api: RunnerApi;
  jobId: string;
  leaseId: string;
  attempt: number;
  /** Folder for the outbox file (the job's work folder). */
  dir: string;
  log: Logger;
  flushIntervalMs?: number;
}

const BATCH_EVENTS = 500;
const BATCH_POINTS = 500;
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
  private outbox: Outbox;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<boolean> | null = null;
  /** Set when the API says the lease is gone: nothing more can be delivered for this attempt. */
  leaseLost = false;
  /** Batches the API refused as invalid (dropped after logging, so they cannot block the rest). */
  rejected = 0;
  delivered = { events: 0, points: 0 };

  constructor(private readonly o: ReporterOptions) {
    mkdirSync(o.dir, { recursive: true });
    this.file = join(o.dir, `outbox-${o.attempt}.json`);
    this.outbox = existsSync(this.file)
      ? (JSON.parse(readFileSync(this.file, 'utf8')) as Outbox)
      : { nextSeq: 0, events: [], points: [] };
  }

  get pending(): { events: number; points: number } {
    return { events: this.outbox.events.length, points: this.outbox.points.length };
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
      if (this.leaseLost)
        throw new ApiError(409, 'lease_lost', 'the lease was lost; pending reports stay on disk', false);
      if (Date.now() > deadline) {
        const p = this.pending;
        throw new ApiError(
          0,
          'api_unreachable',
          `could not deliver ${p.events} events and ${p.points} metric points in ${timeoutMs} ms`,
          true,
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private async flushOnce(): Promise<boolean> {
    const { api, jobId, leaseId, attempt, log } = this.o;
    if (this.leaseLost) return false;
    try {
      while (this.outbox.events.length > 0) {
        const batch = this.outbox.events.slice(0, BATCH_EVENTS);
        await this.deliver(() =>
          api.events(jobId, { lease_id: leaseId, attempt, events: batch }, FLUSH_RETRY),
        );
        this.outbox.events.splice(0, batch.length);
        this.delivered.events += batch.length;
        this.persist();
      }
      while (this.outbox.points.length > 0) {
        const batch = this.outbox.points.slice(0, BATCH_POINTS);
        await this.deliver(() =>
          api.metrics(jobId, { lease_id: leaseId, attempt, points: batch }, FLUSH_RETRY),
        );
        this.outbox.points.splice(0, batch.length);
        this.delivered.points += batch.length;
        this.persist();
      }
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.code === 'lease_lost') this.leaseLost = true;
      log.debug('reports buffered', { ...this.pending, error: e instanceof Error ? e.message : String(e) });
      return false;
    }
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
        ![401, 403, 404, 409].includes(e.status);
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
