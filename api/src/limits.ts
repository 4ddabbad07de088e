import type { Env } from './env';

/** Platform-shaped limits (ARCHITECTURE.md "Platform limits"), overridable per deployment. */
export function limits(env: Env) {
  return {
    /** One request body; larger files go through the multipart routes. Cloudflare caps bodies at 100 MB on common plans. */
    maxUploadBytes: Number(env.MAX_UPLOAD_BYTES ?? 100 * 1024 * 1024),
    /** A lease lasts this long after each heartbeat. */
    leaseSeconds: Number(env.LEASE_SECONDS ?? 60),
    /** Lease expiries / retryable failures before a job fails for good. */
    maxJobRetries: Number(env.MAX_JOB_RETRIES ?? 3),
    maxPluginBundleBytes: 10 * 1024 * 1024,
    /** R2 multipart parts must be ≥ 5 MiB except the last. */
    minPartBytes: 5 * 1024 * 1024,
    maxLeaseWaitSeconds: 30,
  };
}

/** D1 allows at most 100 bound parameters per statement. */
export const D1_MAX_PARAMS = 100;
