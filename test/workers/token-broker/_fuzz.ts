// A seeded generator of hostile requests for the token broker: random methods, paths (known
// routes, mutated run-history routes, encodings, very long segments), headers (credentials of
// every shape, content types, origins) and bodies (JSON of the wrong shape, binary, oversized).

/** mulberry32: a small deterministic PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One generated request. */
export interface FuzzCase {
  /** A short description for failure messages (never holds the API key). */
  label: string
  /** Absolute URL. */
  url: string
  /** Request init. */
  init: RequestInit
}

const b64u = (s: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(s)))
    .replace(/=+$/, '')
    .replace(/\+/g, '-')
    .replace(/\//g, '_')

/**
 * `n` requests from a fixed seed.
 *
 * @param seed the seed
 * @param n how many
 * @param base the broker origin
 * @param apiKey a valid API key (some requests carry it, to reach the handlers)
 * @param issuer a trusted issuer (some JWTs claim it)
 */
export function fuzzCases(
  seed: number,
  n: number,
  base: string,
  apiKey: string,
  issuer = 'https://issuer.example',
): FuzzCase[] {
  const r = prng(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  const int = (max: number) => Math.floor(r() * max)
  const chars =
    'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&\'()*+,;=:@% /?#[]\\"<>{}|^`\u00e9\u4e2d\u{1f600}\0\n\t'
  const str = (max: number) => Array.from({ length: int(max) }, () => pick([...chars])).join('')
  const segment = () =>
    pick([
      () => encodeURIComponent(str(12)),
      () => 'x'.repeat(int(3000)),
      () => '..',
      () => '%2e%2e%2f',
      () => '%00',
      () => '%',
      () => '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
      () => 'emulator-rg',
      () => encodeURIComponent('\u{1f600}'),
      () => '',
    ])()
  const history = () =>
    `/history/v1.0/subscriptions/${segment()}/resourceGroups/${segment()}/providers/Microsoft.MachineLearningServices/workspaces/${segment()}/${
      pick(['experiments', 'experimentids', 'Experiments'])
    }/${segment()}/runs/${segment()}/token`
  const path = () =>
    pick([
      () => '/token',
      () => '/token',
      () => '/token',
      () => '/run-tokens',
      () => '/run-tokens',
      () => '/healthz',
      () => '/.well-known/jwks.json',
      () => '/.well-known/openid-configuration',
      () => history(),
      () => '/' + segment(),
      () => '//token',
      () => '/token/',
      () => '/TOKEN',
      () => '/token?audience=ARM&' + encodeURIComponent(str(20)),
      () => '/' + Array.from({ length: int(40) }, segment).join('/'),
    ])()
  const jwtLike = () => {
    const header = pick([
      { alg: 'none' },
      { alg: 'HS256', kid: 'rsa-1' },
      { alg: 'RS256', kid: str(8) },
      { alg: 'ES256' },
      { alg: str(5) },
      str(10),
      null,
      [],
    ])
    const claims = pick([
      { iss: issuer, sub: str(10), aud: 'api://token-broker', exp: 4102444800 },
      { iss: str(10) },
      { iss: issuer, exp: 'soon' },
      str(30),
      42,
      { run: { subscriptionId: str(5) }, caller: { apiKey: 'ci' } },
    ])
    return `${b64u(JSON.stringify(header))}.${b64u(JSON.stringify(claims))}.${b64u(str(30))}`
  }
  const authHeaders = (): Record<string, string> =>
    pick([
      () => ({}),
      () => ({ 'x-api-key': apiKey }),
      () => ({ 'x-api-key': apiKey }),
      () => ({ authorization: 'ApiKey ' + apiKey }),
      () => ({ authorization: 'ApiKey ' + apiKey }),
      () => ({ authorization: 'Bearer ' + jwtLike() }),
      () => ({ authorization: 'Bearer ' + jwtLike(), 'x-api-key': apiKey }),
      () => ({ 'x-api-key': str(40).replace(/[\0\n\t]/g, '') }),
      () => ({
        authorization: pick(['Bearer', 'Basic Zm9vOmJhcg==', 'ApiKey', '', 'Bearer  a b']),
      }),
      () => ({ authorization: 'Bearer ' + 'a'.repeat(20_000) }),
      () => ({ authorization: encodeURIComponent(str(30)) }),
    ])()
  const body = (): BodyInit | undefined =>
    pick([
      () => undefined,
      () => JSON.stringify({ audience: pick(['ARM', 'AZUREML', 'arm', '', 1, null, ['ARM']]) }),
      () =>
        JSON.stringify({
          scope: pick([
            'https://storage.azure.com/.default',
            'https://vault.azure.net/.default',
            str(30),
            7,
            'a b',
          ]),
        }),
      () => JSON.stringify({ audience: 'ARM', scope: 'x' }),
      () =>
        JSON.stringify({
          subscriptionId: pick(['2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d', str(10), 5]),
          resourceGroupName: pick(['emulator-rg', str(20), null]),
          workspaceName: pick(['emulator-ws', str(40)]),
          experimentName: pick(['emulator-experiment', str(10), undefined]),
          runId: pick(['run-1', '../..', str(300), {}]),
          lifetimeSeconds: pick([undefined, -1, 1e12, 3600, 'x', 1.5]),
        }),
      () => JSON.stringify({ __proto__: { audience: 'ARM' }, constructor: 1 }),
      () => '['.repeat(int(5000)) + ']'.repeat(int(5000)),
      () => JSON.stringify({ audience: 'ARM', pad: 'x'.repeat(int(20_000)) }),
      () => JSON.stringify({ scope: 'x'.repeat(8000 + int(20_000)) }),
      () => new Uint8Array(Array.from({ length: int(64) }, () => int(256))),
      () => str(200),
      () => 'null',
      () => '"ARM"',
    ])()
  const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'PURGE', 'FOO']
  const out: FuzzCase[] = []
  for (let i = 0; i < n; i++) {
    if (r() < 0.35) {
      // Near-valid: an authenticated JSON POST with a mutated body reaches the handlers' checks.
      const p = pick(['/token', '/run-tokens'])
      out.push({
        label: `#${i} POST ${p} (authenticated)`,
        url: base + p,
        init: {
          method: 'POST',
          headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
          body: body() ?? '{}',
        },
      })
      continue
    }
    const p = path()
    // Mostly the route's own method, so that requests reach the handlers, not only the router.
    const method = r() < 0.7
      ? (p.startsWith('/token') || p.startsWith('/run-tokens') ? 'POST' : 'GET')
      : pick(methods)
    const headers: Record<string, string> = { ...authHeaders() }
    if (r() < 0.8) {
      headers['content-type'] = pick([
        'application/json',
        'application/json',
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        'APPLICATION/JSON',
        str(20).replace(/[\0\n\t]/g, ''),
      ])
    }
    if (r() < 0.2) headers.origin = pick(['https://app.example', 'null', 'https://evil.example'])
    if (r() < 0.2) headers['x-request-id'] = str(80).replace(/[\0\n\t]/g, '')
    if (r() < 0.1) headers['access-control-request-method'] = 'POST'
    const b = method === 'GET' || method === 'HEAD' ? undefined : body()
    let url: string
    try {
      url = new URL(p, base).href
    } catch {
      url = base + '/'
    }
    const safeHeaders: Record<string, string> = {}
    for (const [k, v] of Object.entries(headers)) {
      try {
        new Headers({ [k]: v })
        safeHeaders[k] = v
      } catch {
        // not a valid header value: leave it out
      }
    }
    out.push({
      label: `#${i} ${method} ${p.slice(0, 80)}`,
      url,
      init: { method, headers: safeHeaders, ...(b !== undefined ? { body: b } : {}) },
    })
  }
  return out
}
