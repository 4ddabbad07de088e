// Identifiers, secrets and hashing. Ids are random (not sequential) so they reveal nothing about
// other accounts; secrets carry a recognisable prefix and are stored only as SHA-256 hashes.

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

function randomString(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  for (const b of bytes) out += ALPHABET[b % 62];
  return out;
}

/** `job_…`, `art_…`: a prefix naming the kind and 20 random base62 characters. */
export function newId(prefix: string): string {
  return `${prefix}_${randomString(20)}`;
}

/** A secret with its prefix (`cgrpo_sk_…`), 40 random base62 characters (~238 bits). */
export function newSecret(prefix: string): string {
  return `${prefix}${randomString(40)}`;
}

export async function sha256Hex(data: string | ArrayBuffer | Uint8Array): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return hex(digest);
}

export function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export const iso = (ms: number | null | undefined): string | null =>
  ms == null ? null : new Date(ms).toISOString();
export const isoNow = () => new Date().toISOString();
