// SSRF guard for endpoint URLs. An endpoint URL is user input that our server will POST to, so in
// production (every ENVIRONMENT except "development", see isProduction in env.ts) it must be https
// and must not reach our own network: loopback, private, link-local (cloud metadata at
// 169.254.169.254), CGNAT, multicast and reserved ranges are refused, both when the URL is given as
// an IP (in any IPv6 form that embeds or translates IPv4) and when a host name resolves to one.
// Host names are resolved again before every attempt (DNS can change after registration).
// Development allows loopback receivers through WEBHOOKS_ALLOW_LOOPBACK and resolves no names.
// Remaining gap, documented in docs/webhooks.md: a Worker's fetch() resolves the name itself and
// cannot be pinned to the address checked here, so a DNS-rebinding attacker with a zero-TTL record
// could still race us; Cloudflare's egress does not route to private ranges, which is the backstop.

export interface UrlPolicy {
  /** Loopback targets (127.0.0.0/8, ::1, localhost) are allowed, over http too. Local dev only. */
  allowLoopback: boolean;
}

export type UrlRejection = { code: 'webhook_url_invalid' | 'webhook_url_forbidden'; message: string };

/** A resolver returns every A/AAAA address of a host name. */
export type Resolver = (hostname: string) => Promise<string[]>;

type Range = [base: bigint, bits: number, width: 32 | 128, label: string];

function v4(a: string, bits: number, label: string): Range {
  return [parseIPv4(a)!, bits, 32, label];
}
function v6(a: string, bits: number, label: string): Range {
  return [parseIPv6(a)!, bits, 128, label];
}

const LOOPBACK: Range[] = [v4('127.0.0.0', 8, 'loopback'), v6('::1', 128, 'loopback')];
const FORBIDDEN: Range[] = [
  v4('0.0.0.0', 8, '"this network"'),
  v4('10.0.0.0', 8, 'private'),
  v4('100.64.0.0', 10, 'carrier-grade NAT'),
  v4('169.254.0.0', 16, 'link-local'),
  v4('172.16.0.0', 12, 'private'),
  v4('192.0.0.0', 24, 'IETF protocol assignments'),
  v4('192.0.2.0', 24, 'documentation'),
  v4('192.168.0.0', 16, 'private'),
  v4('198.18.0.0', 15, 'benchmarking'),
  v4('198.51.100.0', 24, 'documentation'),
  v4('203.0.113.0', 24, 'documentation'),
  v4('224.0.0.0', 4, 'multicast'),
  v4('240.0.0.0', 4, 'reserved'),
  v6('::', 128, 'unspecified'),
  v6('100::', 64, 'discard'),
  v6('2001:db8::', 32, 'documentation'),
  v6('fc00::', 7, 'unique local (private)'),
  v6('fe80::', 10, 'link-local'),
  v6('ff00::', 8, 'multicast'),
];

export function parseIPv4(s: string): bigint | null {
  const parts = s.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return null;
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n);
}

export function parseIPv6(input: string): bigint | null {
  let s = input.replace(/^\[|\]$/g, '').toLowerCase();
  if (!s.includes(':')) return null;
  const tail = s.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (tail) {
    const four = parseIPv4(tail[1]!);
    if (four === null) return null;
    s = `${s.slice(0, -tail[1]!.length)}${(four >> 16n).toString(16)}:${(four & 0xffffn).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return null;
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
}

function inRange(value: bigint, width: 32 | 128, [base, bits, rangeWidth]: Range): boolean {
  if (width !== rangeWidth) return false;
  const shift = BigInt(width - bits);
  return value >> shift === base >> shift;
}

/** Why an IP address may not be a webhook target, or null when it may. */
export function forbiddenAddressReason(address: string, policy: UrlPolicy): string | null {
  let value = parseIPv4(address);
  let width: 32 | 128 = 32;
  if (value === null) {
    value = parseIPv6(address);
    width = 128;
    if (value === null) return 'not an IP address';
    const embedding = ipv4Embedding(value);
    if (embedding) {
      // Every IPv6 form that carries or translates to an IPv4 address is refused: by the embedded
      // address's own reason where there is one, else as the form itself (a public IPv4 target is
      // written as IPv4). Loopback in development stays reachable through the mapped form too.
      const inner = embedding.ipv4 === null ? null : forbiddenAddressReason(embedding.ipv4, policy);
      if (inner) return inner;
      if (
        embedding.ipv4 !== null &&
        policy.allowLoopback &&
        forbiddenAddressReason(embedding.ipv4, { allowLoopback: false }) === 'loopback'
      )
        return null;
      return embedding.label;
    }
  }
  const loopback = LOOPBACK.find((r) => inRange(value!, width, r));
  if (loopback) return policy.allowLoopback ? null : 'loopback';
  return FORBIDDEN.find((r) => inRange(value!, width, r))?.[3] ?? null;
}

const v4At = (value: bigint, shift: bigint) =>
  [24n, 16n, 8n, 0n].map((s) => String((value >> (shift + s)) & 0xffn)).join('.');

/**
 * The IPv6 forms that embed or translate to IPv4, with the IPv4 address where its position is fixed:
 * IPv4-compatible ::a.b.c.d (::/96, but not :: or ::1), IPv4-mapped ::ffff:a.b.c.d, IPv4-translated
 * ::ffff:0:a.b.c.d (SIIT), NAT64 64:ff9b::/96 and the local-use 64:ff9b:1::/48 (where the address
 * sits depends on the operator's prefix length), 6to4 2002:aabb:ccdd::/48 and Teredo 2001::/32
 * (server and obfuscated client addresses).
 */
function ipv4Embedding(value: bigint): { label: string; ipv4: string | null } | null {
  const top96 = value >> 32n;
  if (top96 === 0n && value > 1n) return { label: 'IPv4-compatible IPv6', ipv4: v4At(value, 0n) };
  if (top96 === 0xffffn) return { label: 'IPv4-mapped IPv6', ipv4: v4At(value, 0n) };
  if (top96 === 0xffff0000n) return { label: 'IPv4-translated IPv6', ipv4: v4At(value, 0n) };
  if (top96 === 0x64ff9b0000000000000000n) return { label: 'NAT64 (64:ff9b::/96)', ipv4: v4At(value, 0n) };
  if (value >> 80n === 0x64ff9b0001n) return { label: 'local-use NAT64 (64:ff9b:1::/48)', ipv4: null };
  if (value >> 112n === 0x2002n) return { label: '6to4 (2002::/16)', ipv4: v4At(value, 80n) };
  if (value >> 96n === 0x20010000n) return { label: 'Teredo (2001::/32)', ipv4: null };
  return null;
}

function isLoopbackName(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost');
}

/**
 * Static checks on an endpoint URL (no network): scheme, credentials, literal IPs, internal names.
 * Returns the parsed URL or why it is refused.
 */
export function checkEndpointUrl(raw: string, policy: UrlPolicy): { url: URL } | UrlRejection {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return {
      code: 'webhook_url_invalid',
      message: `not an absolute URL: "${raw}" (expected https://host/path)`,
    };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { code: 'webhook_url_invalid', message: `scheme ${url.protocol} is not supported; use https://` };
  }
  if (url.username || url.password) {
    return {
      code: 'webhook_url_invalid',
      message: 'credentials in the URL are not allowed; put a token in the path or query',
    };
  }
  const host = url.hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
  const literal = parseIPv4(host) !== null || parseIPv6(host) !== null;
  const loopbackTarget =
    isLoopbackName(host) ||
    (literal && forbiddenAddressReason(host, { allowLoopback: false }) === 'loopback');
  if (url.protocol === 'http:' && !(policy.allowLoopback && loopbackTarget)) {
    return {
      code: 'webhook_url_forbidden',
      message: 'endpoint URLs must use https:// (http is allowed only for loopback in local development)',
    };
  }
  if (literal) {
    const reason = forbiddenAddressReason(host, policy);
    if (reason)
      return {
        code: 'webhook_url_forbidden',
        message: `${host} is a ${reason} address; webhooks go to public endpoints only`,
      };
    return { url };
  }
  if (isLoopbackName(host)) {
    return policy.allowLoopback
      ? { url }
      : {
          code: 'webhook_url_forbidden',
          message: `${host} is loopback; webhooks go to public endpoints only`,
        };
  }
  if (!host.includes('.') || /\.(local|internal|intranet|lan|home\.arpa)$/.test(host)) {
    return { code: 'webhook_url_forbidden', message: `${host} is not a public host name` };
  }
  return { url };
}

/** Full check: static rules, then every address the host resolves to (skipped for literal IPs). */
export async function checkEndpointTarget(
  raw: string,
  policy: UrlPolicy,
  resolve: Resolver,
): Promise<{ url: URL } | UrlRejection> {
  const checked = checkEndpointUrl(raw, policy);
  if (!('url' in checked)) return checked;
  const host = checked.url.hostname.replace(/^\[|\]$/g, '');
  if (parseIPv4(host) !== null || parseIPv6(host) !== null || isLoopbackName(host.toLowerCase()))
    return checked;
  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch (error) {
    return {
      code: 'webhook_url_forbidden',
      message: `could not resolve ${host}: ${(error as Error).message}`,
    };
  }
  if (addresses.length === 0)
    return { code: 'webhook_url_forbidden', message: `${host} has no A/AAAA records` };
  for (const address of addresses) {
    const reason = forbiddenAddressReason(address, policy);
    if (reason)
      return {
        code: 'webhook_url_forbidden',
        message: `${host} resolves to ${address}, a ${reason} address`,
      };
  }
  return checked;
}

/** Resolves through DNS-over-HTTPS (JSON API); Workers have no other DNS interface. */
export function dohResolver(endpoint = 'https://cloudflare-dns.com/dns-query'): Resolver {
  return async (hostname) => {
    const answers = await Promise.all(
      ['A', 'AAAA'].map(async (type) => {
        const res = await fetch(`${endpoint}?name=${encodeURIComponent(hostname)}&type=${type}`, {
          headers: { accept: 'application/dns-json' },
          signal: AbortSignal.timeout(5000),
        });
        if (!res.ok) throw new Error(`DNS-over-HTTPS answered ${res.status}`);
        const body = (await res.json()) as { Answer?: { type: number; data: string }[] };
        return (body.Answer ?? []).filter((a) => a.type === 1 || a.type === 28).map((a) => a.data);
      }),
    );
    return answers.flat();
  };
}
