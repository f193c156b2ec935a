// Shared fixtures of the token broker tests: keys, API keys, a loopback Entra token endpoint, a
// loopback JWT issuer (JWKS on real HTTP) and a bindings builder.
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose'
import { type Loopback, serveLoopback } from '../../_fixtures/loopback.ts'

export const TENANT = '11111111-2222-4333-8444-555555555555'
export const CLIENT_ID = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'
export const CLIENT_SECRET = 'broker-client-secret-0123456789abcdef'
export const BROKER_ISSUER = 'https://broker.example'
export const SUB = '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d'
export const EXPERIMENT_ID = '5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9'
export const RUN = {
  subscriptionId: SUB,
  resourceGroupName: 'ml-rg',
  workspaceName: 'ml-ws',
  experimentName: 'train',
  experimentId: EXPERIMENT_ID,
  runId: 'train_1700000000_abcd',
}

/** A fresh private P-256 JWK (JSON) with a kid, as RUN_TOKEN_SIGNING_KEY holds it. */
export async function runSigningKey(kid = 'run-' + crypto.randomUUID().slice(0, 8)): Promise<{
  json: string
  publicJwk: JsonWebKey & { kid: string }
}> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const priv = await exportJWK(privateKey)
  const pub = await exportJWK(publicKey)
  return {
    json: JSON.stringify({ ...priv, kid }),
    publicJwk: { ...pub, kid } as JsonWebKey & { kid: string },
  }
}

/** SHA-256 hex of a string. */
export async function sha256hex(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)))
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** A new API key and its digest. */
export async function apiKey(): Promise<{ key: string; hash: string }> {
  const bytes = crypto.getRandomValues(new Uint8Array(32))
  const key = 'abk_' + btoa(String.fromCharCode(...bytes)).replace(/[+/=]/g, 'x')
  return { key, hash: await sha256hex(key) }
}

/** What the fake Entra answers next. */
export type EntraMode =
  | 'ok'
  | 'invalid_client'
  | 'html'
  | 'leak'
  | 'garbage'
  | 'server_error'

/** A loopback Entra v2 token endpoint that checks the client secret and counts requests. */
export interface FakeEntra extends Loopback {
  mode: EntraMode
  /** Requests to the token endpoint. */
  tokenRequests(): number
  /** Access tokens handed out. */
  issued: string[]
}

export function fakeEntra(options: { lifetime?: number; checkSecret?: string } = {}): FakeEntra {
  const issued: string[] = []
  let count = 0
  const state = { mode: 'ok' as EntraMode }
  const lb = serveLoopback((req) => {
    if (!/\/oauth2\/v2\.0\/token$/.test(req.url.pathname)) {
      return new Response('nope', { status: 404 })
    }
    count++
    const mode = state.mode
    if (
      mode === 'invalid_client' ||
      req.form.get('client_secret') !== (options.checkSecret ?? CLIENT_SECRET) &&
        req.form.get('client_assertion') === null
    ) {
      return Response.json({
        error: 'invalid_client',
        error_description: `AADSTS7000215: Invalid client secret provided. Secret ${
          req.form.get('client_secret')
        } UPSTREAM-BODY-MARKER\r\nTrace ID: x`,
        error_codes: [7000215],
        trace_id: 'trace-1',
        correlation_id: 'corr-1',
      }, { status: 401 })
    }
    if (mode === 'html') {
      return new Response('<html>UPSTREAM-BODY-MARKER</html>', {
        status: 200,
        headers: { 'content-type': 'text/html' },
      })
    }
    if (mode === 'garbage') {
      return new Response('{"access_token": UPSTREAM-BODY-MARKER', { status: 200 })
    }
    if (mode === 'server_error') {
      return new Response('UPSTREAM-BODY-MARKER stack at foo()', { status: 503 })
    }
    if (mode === 'leak') {
      return Response.json(
        {
          error: 'invalid_scope',
          error_description: 'AADSTS70011: UPSTREAM-BODY-MARKER ' + req.body,
          error_codes: [70011],
        },
        { status: 400 },
      )
    }
    const token = `entra-at-${count}-${crypto.randomUUID()}`
    issued.push(token)
    return Response.json({
      token_type: 'Bearer',
      expires_in: options.lifetime ?? 3599,
      access_token: token,
      scope: req.form.get('scope'),
    })
  })
  Object.defineProperty(lb, 'mode', {
    get: () => state.mode,
    set: (m: EntraMode) => {
      state.mode = m
    },
  })
  return Object.assign(lb, { tokenRequests: () => count, issued }) as FakeEntra
}

/** A loopback JWT issuer: RS256 and ES256 keys published as JWKS, and a signer. */
export interface FakeIssuer extends Loopback {
  issuer: string
  jwksUrl: string
  /** The public RSA JWK (as published): used by the HS256 confusion test. */
  rsaPublicJwk: JsonWebKey
  sign(
    claims: JWTPayload,
    options?: {
      alg?: 'RS256' | 'ES256'
      kid?: string
      key?: CryptoKey
      expiresIn?: number
      audience?: string
      issuer?: string
    },
  ): Promise<string>
  jwksFetches(): number
}

export async function fakeIssuer(audience = 'api://token-broker'): Promise<FakeIssuer> {
  const rsa = await generateKeyPair('RS256', { extractable: true })
  const ec = await generateKeyPair('ES256', { extractable: true })
  const rsaPublicJwk = {
    ...(await exportJWK(rsa.publicKey)),
    kid: 'rsa-1',
    alg: 'RS256',
    use: 'sig',
  }
  const ecPublicJwk = { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' }
  let fetches = 0
  const lb = serveLoopback(() => {
    fetches++
    return Response.json({ keys: [rsaPublicJwk, ecPublicJwk] })
  })
  const issuer = lb.origin + '/issuer'
  return Object.assign(lb, {
    issuer,
    jwksUrl: lb.origin + '/jwks',
    rsaPublicJwk,
    jwksFetches: () => fetches,
    async sign(claims: JWTPayload, o: Parameters<FakeIssuer['sign']>[1] = {}) {
      const alg = o.alg ?? 'RS256'
      const key = o.key ?? (alg === 'RS256' ? rsa.privateKey : ec.privateKey)
      const t = Math.floor(Date.now() / 1000)
      return await new SignJWT(claims)
        .setProtectedHeader({ alg, kid: o.kid ?? (alg === 'RS256' ? 'rsa-1' : 'ec-1'), typ: 'JWT' })
        .setIssuer(o.issuer ?? issuer)
        .setAudience(o.audience ?? audience)
        .setIssuedAt(t)
        .setExpirationTime(t + (o.expiresIn ?? 600))
        .sign(key)
    },
  }) as FakeIssuer
}

/** Bindings for the broker. */
export function brokerEnv(o: {
  authorityHost: string
  runKey: string
  apiKeyHash?: string
  issuer?: FakeIssuer
  policy?: unknown
  extra?: Record<string, unknown>
}): Record<string, unknown> {
  return {
    BROKER_ISSUER,
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CLIENT_ID,
    AZURE_CLIENT_SECRET: CLIENT_SECRET,
    AZURE_AUTHORITY_HOST: o.authorityHost,
    UPSTREAM_MAX_RETRIES: '0',
    RUN_TOKEN_SIGNING_KEY: o.runKey,
    ...(o.apiKeyHash ? { CALLER_API_KEYS: JSON.stringify({ ci: o.apiKeyHash }) } : {}),
    ...(o.issuer
      ? {
        CALLER_ISSUERS: JSON.stringify([{
          issuer: o.issuer.issuer,
          jwksUrl: o.issuer.jwksUrl,
          audience: 'api://token-broker',
          algorithms: ['RS256', 'ES256'],
        }]),
      }
      : {}),
    POLICY: JSON.stringify(o.policy ?? defaultPolicy(o.issuer?.issuer)),
    ...o.extra,
  }
}

/** The policy most tests use. */
export function defaultPolicy(issuer?: string): unknown {
  return {
    rules: [
      {
        name: 'ci',
        apiKey: 'ci',
        audiences: ['ARM', 'AZUREML'],
        scopes: ['https://storage.azure.com/.default'],
        runTokens: [{ subscriptionId: SUB, resourceGroupName: 'ml-*', workspaceName: 'ml-ws' }],
      },
      ...(issuer
        ? [{
          name: 'pipelines',
          issuer,
          subject: 'repo:contoso/ml:*',
          audiences: ['AZUREML'],
          runTokens: [{
            subscriptionId: SUB,
            resourceGroupName: 'ml-rg',
            workspaceName: 'ml-ws',
            experimentName: 'train',
          }],
        }]
        : []),
    ],
  }
}

/** Collects log lines. */
export function logSink(): { lines: string[]; sink: (line: string) => void } {
  const lines: string[] = []
  return { lines, sink: (line) => lines.push(line) }
}

/** JSON POST init. */
export function post(body: unknown, headers: Record<string, string> = {}): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  }
}

/** Asserts that none of the secrets appears in any of the texts; returns the first offender. */
export function findLeak(texts: readonly string[], secrets: readonly string[]): string | undefined {
  for (const t of texts) {
    for (const s of secrets) {
      if (s && s.length >= 8 && t.includes(s)) return `${s.slice(0, 6)}… in ${t.slice(0, 120)}`
    }
  }
  return undefined
}

/**
 * The upstream and caller fixtures every handler test starts from: a fake Entra, a caller issuer,
 * an API key, a run-token key, a log sink, and the broker env wired to them.
 */
export async function brokerFixtures(
  o: { policy?: unknown; extra?: Record<string, unknown> } = {},
): Promise<{
  entra: FakeEntra
  issuer: FakeIssuer
  key: { key: string; hash: string }
  runKey: Awaited<ReturnType<typeof runSigningKey>>
  log: ReturnType<typeof logSink>
  env: ReturnType<typeof brokerEnv>
}> {
  const entra = fakeEntra()
  const issuer = await fakeIssuer()
  const key = await apiKey()
  const runKey = await runSigningKey()
  const log = logSink()
  const env = brokerEnv({
    authorityHost: entra.origin,
    runKey: runKey.json,
    apiKeyHash: key.hash,
    issuer,
    ...(o.policy !== undefined ? { policy: o.policy } : {}),
    extra: { RATE_LIMIT_PER_MINUTE: '1000', ...o.extra },
  })
  return { entra, issuer, key, runKey, log, env }
}
