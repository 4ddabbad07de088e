// Standard Webhooks signatures with WebCrypto (native in workerd). Proven against the
// `standardwebhooks` package in api/test/webhooks-units.test.ts; the client package has the
// receiver's side (verifyWebhook), this module only signs and makes secrets.

const encoder = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();

function bytesToBase64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** `whsec_` + base64 of 32 random bytes: the format every Standard Webhooks library accepts. */
export function newWebhookSecret(): string {
  return `whsec_${bytesToBase64(crypto.getRandomValues(new Uint8Array(32)))}`;
}

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    const raw = Uint8Array.from(atob(secret.replace(/^whsec_/, '')), (c) => c.charCodeAt(0));
    key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    if (keyCache.size > 256) keyCache.clear();
    keyCache.set(secret, key);
  }
  return key;
}

/** `v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`. */
export async function signature(
  secret: string,
  id: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  const mac = await crypto.subtle.sign(
    'HMAC',
    await hmacKey(secret),
    encoder.encode(`${id}.${timestampSeconds}.${body}`),
  );
  return `v1,${bytesToBase64(new Uint8Array(mac))}`;
}

/** The `webhook-signature` header: one signature per live secret, space-separated (rotation). */
export async function signatureHeader(
  secrets: readonly string[],
  id: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  const parts = await Promise.all(secrets.map((s) => signature(s, id, timestampSeconds, body)));
  return parts.join(' ');
}
