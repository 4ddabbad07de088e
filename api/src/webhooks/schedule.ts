// When a failed delivery is tried again. Seven retries after the first attempt, about 28 hours in
// all, spread like established webhook services do: quick retries catch blips, long ones outlast
// an outage or a deploy. Every delay gets ±20 % jitter so endpoints that fail together (one
// receiver behind many endpoints) are not hit by synchronized waves when they come back.

/** Delay before retry n (n = 1..7), in seconds, before jitter. */
export const RETRY_SCHEDULE_SECONDS: readonly number[] = [
  5,
  5 * 60,
  30 * 60,
  2 * 3600,
  5 * 3600,
  10 * 3600,
  10 * 3600,
];
export const JITTER_FRACTION = 0.2;
/** A Retry-After longer than this is capped: the delivery must still end within a bounded time. */
export const MAX_RETRY_AFTER_SECONDS = 24 * 3600;

/**
 * Parses `WEBHOOKS_RETRY_SCHEDULE` ("1,1,1" seconds): a shortened schedule for tests and local
 * experiments. Absent → the production schedule above.
 */
export function retrySchedule(setting: string | undefined): readonly number[] {
  if (!setting) return RETRY_SCHEDULE_SECONDS;
  const delays = setting.split(',').map((s) => Number(s.trim()));
  if (delays.length === 0 || delays.some((d) => !Number.isFinite(d) || d < 0)) {
    throw new Error(
      `WEBHOOKS_RETRY_SCHEDULE: expected comma-separated seconds like "5,300,1800", got "${setting}"`,
    );
  }
  return delays;
}

/** Attempts per (re)delivery round: the first one plus one per schedule entry. */
export function maxAttempts(schedule: readonly number[]): number {
  return schedule.length + 1;
}

/**
 * Seconds to wait after failed attempt `attempt` (1-based), or null when the attempts are used up.
 * `retryAfterSeconds` (from a 429/503) wins when it asks for longer than the schedule.
 */
export function nextRetryDelaySeconds(
  attempt: number,
  schedule: readonly number[],
  retryAfterSeconds: number | null = null,
  random: () => number = Math.random,
): number | null {
  const base = schedule[attempt - 1];
  if (base === undefined) return null;
  const jittered = base * (1 - JITTER_FRACTION + 2 * JITTER_FRACTION * random());
  const delay = Math.max(jittered, Math.min(retryAfterSeconds ?? 0, MAX_RETRY_AFTER_SECONDS));
  return Math.round(delay * 1000) / 1000;
}

/** `Retry-After` as seconds from `nowMs`: either delta-seconds or an HTTP-date. Null when absent or unreadable. */
export function parseRetryAfter(value: string | null, nowMs: number): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}
