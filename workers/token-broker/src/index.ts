/**
 * The token broker worker: a Hono app that holds an identity (a service principal's secret or
 * certificate, or a federated assertion it signs itself) and hands short-lived, scoped tokens to
 * the callers its policy trusts, so that remote code never holds the credentials.
 *
 * Endpoints: `GET /healthz`, `POST /token`, `POST /run-tokens`, the run-token refresh routes of
 * SPEC 5, `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`.
 *
 * @example Mount it with test bindings
 * ```ts
 * import { createApp } from './index.ts'
 *
 * const lines: string[] = []
 * const app = createApp({ log: (line) => lines.push(line) })
 * const res = await app.request('/nothing-here', {}, {})
 * console.assert(res.status === 404)
 * ```
 *
 * @module
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import type { FetchLike } from '../../../src/http.ts'
import { _runScopeKey } from '../../../src/credentials/azureml_token.ts'
import { type Caller, type CallerAuthenticator, createCallerAuthenticator } from './caller_auth.ts'
import { type Bindings, type BrokerConfig, type KVNamespaceLike, loadConfig } from './env.ts'
import {
  badRequest,
  BrokerError,
  ConfigError,
  errorBody,
  forbidden,
  fromUpstream,
  internal,
  unauthorized,
} from './errors.ts'
import { consoleSink, type LogSink, requestId, writeLog } from './logging.ts'
import { type CallerRef, type Grant, grantFor, permitsRun, type RunScope } from './policy.ts'
import { bindingLimiter, memoryLimiter, type RateLimiter } from './rate_limit.ts'
import {
  jwks,
  mintRunToken,
  parseRunScope,
  type RunTokenClaims,
  type RunTokenSettings,
  verifyRunToken,
} from './run_tokens.ts'
import { createUpstream, type Upstream } from './upstream.ts'

export type { Bindings } from './env.ts'

/** Options of {@linkcode createApp}: what tests and embedders inject. */
export interface BrokerOptions {
  /** `fetch` for Entra and for caller JWKS documents (default: the global one). */
  fetch?: FetchLike
  /** Clock in ms (default `Date.now`). */
  now?: () => number
  /** Receives one JSON line per request (default: `console.log`). */
  log?: LogSink
  /** Largest accepted request body in bytes (default 8192). */
  maxBodyBytes?: number
}

/** Per-request values. */
interface Vars {
  requestId: string
  route: string | undefined
  caller: string | undefined
  detail: Record<string, unknown>
}

/** Everything built once per configuration (per isolate). */
interface State {
  config: BrokerConfig
  authenticate: CallerAuthenticator
  upstream: Upstream
  memoryLimiter: RateLimiter
  run: RunTokenSettings
  kv: { current: KVNamespaceLike | undefined }
  /** Grants by caller id: the policy is fixed for a configuration, so each is computed once. */
  grants: Map<string, Grant>
}

type AppEnv = { Bindings: Bindings; Variables: Vars }
type Ctx = Context<AppEnv>

/** The Hono app type the broker exports. */
export type BrokerApp = Hono<AppEnv>

const JSON_NO_STORE = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  pragma: 'no-cache',
}
const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=63072000; includeSubDomains',
  'cross-origin-opener-policy': 'same-origin',
}
const RUN_PREFIX =
  '/history/v1.0/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/providers/Microsoft.MachineLearningServices/workspaces/:workspaceName'
const REFRESH_BY_NAME = `${RUN_PREFIX}/experiments/:experimentName/runs/:runId/token`
const REFRESH_BY_ID = `${RUN_PREFIX}/experimentids/:experimentId/runs/:runId/token`
const MIN_RUN_TOKEN_SECONDS = 300
const STATE_BY_FINGERPRINT_MAX = 8

/** Responses built here already carry the security headers (one Headers construction). */
const built = new WeakSet<Response>()

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  const res = new Response(JSON.stringify(body), {
    status,
    headers: { ...SECURITY_HEADERS, ...JSON_NO_STORE, ...headers },
  })
  built.add(res)
  return res
}

function errorResponse(e: BrokerError): Response {
  return json(errorBody(e), e.status, e.headers)
}

function callerRef(c: Caller): CallerRef {
  return 'apiKey' in c ? { apiKey: c.apiKey } : { issuer: c.issuer, subject: c.subject }
}

/** A fingerprint of the string bindings: the same configuration reuses the same state. */
function fingerprint(env: Bindings): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (typeof v === 'string') parts.push(k, v)
    else if (v !== null && typeof v === 'object' && (Array.isArray(v) || !('get' in v))) {
      try {
        parts.push(k, JSON.stringify(v))
      } catch {
        parts.push(k, '?')
      }
    } else parts.push(k, v === undefined ? 'u' : 'binding')
  }
  return parts.join('\0')
}

/**
 * Creates the broker app. The configuration is read from the bindings on first use, validated
 * once and kept per isolate (keyed by the bindings), with the token cache, the JWKS caches and
 * the in-memory rate limiter.
 *
 * @param options injected fetch, clock, log sink and body limit
 * @returns the Hono app (`app.fetch` is the Workers handler)
 */
export function createApp(options: BrokerOptions = {}): BrokerApp {
  const now = options.now ?? Date.now
  const sink = options.log ?? consoleSink
  const maxBody = options.maxBodyBytes ?? 8192
  const byEnv = new WeakMap<object, Promise<State>>()
  const byFingerprint = new Map<string, Promise<State>>()

  const build = async (env: Bindings): Promise<State> => {
    const config = await loadConfig(env)
    const kv: State['kv'] = { current: env.TOKEN_CACHE }
    return {
      config,
      authenticate: createCallerAuthenticator(config, {
        now,
        ...(options.fetch !== undefined ? { fetch: options.fetch as never } : {}),
      }),
      upstream: createUpstream(config, {
        now,
        kv: () => kv.current,
        ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      }),
      memoryLimiter: memoryLimiter(config.rateLimitPerMinute, now),
      run: {
        issuer: config.issuer,
        audience: config.runTokens.audience,
        signing: config.runTokens.signing,
        verification: config.runTokens.verification,
      },
      kv,
      grants: new Map(),
    }
  }

  const grantOf = (state: State, caller: CallerRef): Grant => {
    const id = 'apiKey' in caller
      ? `key:${caller.apiKey}`
      : `jwt:${caller.issuer}|${caller.subject}`
    let grant = state.grants.get(id)
    if (grant === undefined) {
      grant = grantFor(state.config.policy, caller)
      if (state.grants.size >= 1024) state.grants.clear()
      state.grants.set(id, grant)
    }
    return grant
  }

  const stateOf = async (c: Ctx): Promise<State> => {
    const env = (c.env ?? {}) as Bindings
    let p = byEnv.get(env)
    if (p === undefined) {
      const fp = fingerprint(env)
      p = byFingerprint.get(fp)
      if (p === undefined) {
        p = build(env)
        p.catch(() => {})
        if (byFingerprint.size >= STATE_BY_FINGERPRINT_MAX) byFingerprint.clear()
        byFingerprint.set(fp, p)
      }
      byEnv.set(env, p)
    }
    let state: State
    try {
      state = await p
    } catch (e) {
      if (e instanceof ConfigError) {
        c.get('detail').config_error = e.message
        throw new BrokerError(
          500,
          'server_error',
          'The token broker is not configured correctly; see its logs',
        )
      }
      throw e
    }
    state.kv.current = env.TOKEN_CACHE
    return state
  }

  const limiterOf = (c: Ctx, state: State): RateLimiter => {
    const binding = c.env?.RATE_LIMITER
    return binding !== undefined && typeof binding.limit === 'function'
      ? bindingLimiter(binding)
      : state.memoryLimiter
  }

  const limit = async (c: Ctx, state: State, key: string): Promise<void> => {
    const d = await limiterOf(c, state).limit(key)
    if (!d.ok) {
      throw new BrokerError(429, 'rate_limited', 'Too many requests; retry later', {
        headers: { 'retry-after': String(d.retryAfterSeconds) },
      })
    }
  }

  /** Counts a failed authentication (a 401) against the client address, then rethrows it. */
  const failed = async (c: Ctx, state: State, e: unknown): Promise<never> => {
    if (e instanceof BrokerError && e.status === 401) {
      const ip = c.req.header('cf-connecting-ip') ?? 'unknown'
      await limit(c, state, 'auth-failures:' + ip.slice(0, 64))
    }
    throw e
  }

  /** Authenticates the caller; failures count against the client address. */
  const authenticate = async (c: Ctx, state: State): Promise<Caller> => {
    let caller: Caller
    try {
      caller = await state.authenticate(c.req.raw.headers)
    } catch (e) {
      return await failed(c, state, e)
    }
    c.set('caller', caller.id)
    await limit(c, state, caller.id)
    return caller
  }

  const readJson = async (c: Ctx): Promise<Record<string, unknown>> => {
    const type = c.req.header('content-type') ?? ''
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      throw new BrokerError(415, 'invalid_request', 'Content-Type must be application/json')
    }
    const body = c.req.raw.body
    if (body === null) throw badRequest('A JSON body is required')
    let text: string
    if (c.req.header('content-length') !== undefined) {
      // Declared, and checked against the limit by the first middleware; an HTTP server (workerd,
      // Deno.serve) holds the body to its declared length, so one native read is safe here. The
      // length is checked again (UTF-16 units never outnumber UTF-8 bytes) for requests built in
      // process.
      try {
        text = await c.req.raw.text()
      } catch {
        throw badRequest('The request body could not be read')
      }
      if (text.length > maxBody) throw tooLarge(maxBody)
    } else {
      text = utf8.decode(await readCapped(body, maxBody))
    }
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      throw badRequest('The body is not valid JSON')
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw badRequest('The body must be a JSON object')
    }
    return value as Record<string, unknown>
  }

  const app = new Hono<AppEnv>({ strict: true })

  app.use('*', async (c, next) => {
    const start = performance.now()
    const id = requestId(c.req.header('x-request-id') ?? null)
    c.set('requestId', id)
    c.set('route', undefined)
    c.set('caller', undefined)
    c.set('detail', {})
    const origin = c.req.header('origin')
    let cors: string[] | undefined
    if (origin !== undefined) {
      try {
        cors = (await stateOf(c)).config.allowedOrigins
      } catch {
        cors = undefined
      }
    }
    const corsAllowed = origin !== undefined && cors !== undefined && cors.includes(origin)
    const declared = Number(c.req.header('content-length') ?? '0')
    if (
      corsAllowed && c.req.method === 'OPTIONS' && c.req.header('access-control-request-method')
    ) {
      c.res = new Response(null, {
        status: 204,
        headers: {
          'access-control-allow-methods': 'GET, POST',
          'access-control-allow-headers': 'authorization, content-type, x-api-key, x-request-id',
          'access-control-max-age': '600',
        },
      })
      c.set('route', 'preflight')
    } else if (Number.isFinite(declared) && declared > maxBody) {
      c.get('detail').error = 'request_too_large'
      c.res = errorResponse(tooLarge(maxBody))
    } else {
      await next()
    }
    const res = c.res
    if (!built.has(res)) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.headers.set(k, v)
      if (!res.headers.has('cache-control')) res.headers.set('cache-control', 'no-store')
    }
    res.headers.set('x-request-id', id)
    if (corsAllowed) {
      res.headers.set('access-control-allow-origin', origin!)
      res.headers.set('access-control-expose-headers', 'retry-after, x-request-id')
      res.headers.append('vary', 'Origin')
    }
    const detail = c.get('detail')
    writeLog(sink, res.status >= 500 ? 'error' : res.status >= 400 ? 'warn' : 'info', {
      msg: 'request',
      request_id: id,
      method: c.req.method,
      route: c.get('route') ?? null,
      caller: c.get('caller') ?? null,
      status: res.status,
      duration_ms: Math.round((performance.now() - start) * 100) / 100,
      ...detail,
    })
  })

  app.onError((err, c) => {
    const e = err instanceof BrokerError ? err : internal(err)
    Object.assign(c.get('detail') ?? {}, { error: e.error, ...e.log })
    return errorResponse(e)
  })

  app.notFound((c) => {
    c.get('detail').error = 'not_found'
    return errorResponse(new BrokerError(404, 'not_found', 'No such endpoint'))
  })

  const methodNotAllowed = (route: string, allow: string) => (c: Ctx): never => {
    c.set('route', route)
    throw new BrokerError(405, 'method_not_allowed', `Use ${allow} for this endpoint`, {
      headers: { allow },
    })
  }

  app.get('/healthz', async (c) => {
    c.set('route', '/healthz')
    try {
      await stateOf(c)
    } catch (e) {
      if (e instanceof BrokerError) {
        return json({ status: 'misconfigured' }, 503)
      }
      throw e
    }
    return json({ status: 'ok' })
  })
  app.all('/healthz', methodNotAllowed('/healthz', 'GET, HEAD'))

  const publicJson = (body: unknown) =>
    json(body, 200, { 'cache-control': 'public, max-age=300', 'access-control-allow-origin': '*' })

  app.get('/.well-known/jwks.json', async (c) => {
    c.set('route', '/.well-known/jwks.json')
    const { config } = await stateOf(c)
    return publicJson(jwks(config.publishedKeys))
  })
  app.all('/.well-known/jwks.json', methodNotAllowed('/.well-known/jwks.json', 'GET, HEAD'))

  app.get('/.well-known/openid-configuration', async (c) => {
    c.set('route', '/.well-known/openid-configuration')
    const { config } = await stateOf(c)
    return publicJson({
      issuer: config.issuer,
      jwks_uri: `${config.issuer}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: [
        ...new Set(config.publishedKeys.map((k) => k.alg)),
      ],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      claims_supported: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti'],
    })
  })
  app.all(
    '/.well-known/openid-configuration',
    methodNotAllowed('/.well-known/openid-configuration', 'GET, HEAD'),
  )

  app.post('/token', async (c) => {
    c.set('route', '/token')
    const state = await stateOf(c)
    const caller = await authenticate(c, state)
    const body = await readJson(c)
    for (const k of Object.keys(body)) {
      if (k !== 'audience' && k !== 'scope') {
        throw badRequest(`Unknown field "${k.slice(0, 40)}"; send { "audience" } or { "scope" }`)
      }
    }
    if ((body.audience === undefined) === (body.scope === undefined)) {
      throw badRequest('Send exactly one of "audience" (ARM or AZUREML) and "scope"')
    }
    const grant = grantOf(state, callerRef(caller))
    let scope: string
    if (body.audience !== undefined) {
      if (body.audience !== 'ARM' && body.audience !== 'AZUREML') {
        throw badRequest('audience must be "ARM" or "AZUREML"')
      }
      c.get('detail').audience = body.audience
      if (!grant.audiences.has(body.audience)) {
        throw forbidden(`The policy does not allow this caller the ${body.audience} audience`)
      }
      scope = state.upstream.scopeFor(body.audience)
    } else {
      if (typeof body.scope !== 'string' || !/^[\x21-\x7e]{1,256}$/.test(body.scope)) {
        throw badRequest('scope must be one scope: 1 to 256 printable characters, no spaces')
      }
      scope = body.scope
      c.get('detail').scope = scope
      const viaAudience = (['ARM', 'AZUREML'] as const).some((a) =>
        grant.audiences.has(a) && state.upstream.scopeFor(a) === scope
      )
      if (!grant.scopes.has(scope) && !viaAudience) {
        throw forbidden('The policy does not allow this caller that scope')
      }
    }
    let token
    try {
      token = await state.upstream.token(scope)
    } catch (e) {
      throw fromUpstream(e)
    }
    return json({
      access_token: token.token,
      token_type: 'Bearer',
      expires_on: token.expiresOn,
      expires_in: Math.max(0, Math.floor(token.expiresOn - now() / 1000)),
    })
  })
  app.all('/token', methodNotAllowed('/token', 'POST'))

  app.post('/run-tokens', async (c) => {
    c.set('route', '/run-tokens')
    const state = await stateOf(c)
    const caller = await authenticate(c, state)
    const body = await readJson(c)
    const scope = parseRunScope(body, ['lifetimeSeconds'])
    const cfg = state.config.runTokens
    let lifetime = cfg.lifetimeSeconds
    if (body.lifetimeSeconds !== undefined) {
      const l = body.lifetimeSeconds
      if (
        typeof l !== 'number' || !Number.isInteger(l) || l < MIN_RUN_TOKEN_SECONDS ||
        l > cfg.maxLifetimeSeconds
      ) {
        throw badRequest(
          `lifetimeSeconds must be a whole number from ${MIN_RUN_TOKEN_SECONDS} to ${cfg.maxLifetimeSeconds}`,
        )
      }
      lifetime = l
    }
    const ref = callerRef(caller)
    if (!permitsRun(grantOf(state, ref), scope)) {
      throw forbidden('The policy does not allow this caller run tokens for that run')
    }
    const t = now()
    const minted = await mintRunToken(state.run, scope, ref, {
      now: t,
      lifetimeSeconds: lifetime,
      sessionExp: Math.floor(t / 1000) + cfg.maxSessionSeconds,
    })
    c.get('detail').run = runLabel(scope)
    return json({
      token: minted.token,
      token_type: 'Bearer',
      expires_on: minted.expiresOn,
      expires_in: Math.max(0, minted.expiresOn - Math.floor(t / 1000)),
      expiryTimeUtc: new Date(minted.expiresOn * 1000).toISOString(),
    })
  })
  app.all('/run-tokens', methodNotAllowed('/run-tokens', 'POST'))

  const refresh = (route: string) => async (c: Ctx) => {
    c.set('route', route)
    const state = await stateOf(c)
    const t = now()
    let claims: RunTokenClaims
    try {
      const m = /^\s*bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')
      if (m === null) {
        throw unauthorized('Send the current run token as Authorization: Bearer <token>', 'missing')
      }
      claims = await verifyRunToken(m[1]!, state.run, t)
    } catch (e) {
      // Failed refreshes count against the client address, like failed caller authentications.
      return await failed(c, state, e)
    }
    c.set('caller', 'run:' + runLabel(claims.scope))
    const p = c.req.param() as Record<string, string>
    const s = claims.scope
    const same = (a: string | undefined, b: string | undefined, guid = false) =>
      a !== undefined && b !== undefined && (guid ? a.toLowerCase() === b.toLowerCase() : a === b)
    const match = same(s.subscriptionId, p.subscriptionId, true) &&
      same(s.resourceGroupName, p.resourceGroupName) &&
      same(s.workspaceName, p.workspaceName) &&
      (p.experimentId !== undefined
        ? same(s.experimentId, p.experimentId, true)
        : same(s.experimentName, p.experimentName)) &&
      same(s.runId, p.runId)
    if (!match) throw forbidden('The run token is not for this run')
    const nowSec = Math.floor(t / 1000)
    if (nowSec >= claims.sessionExp) {
      throw unauthorized('The run token can no longer be refreshed; mint a new one', 'session')
    }
    const stillKnown = 'apiKey' in claims.caller
      ? state.config.apiKeys.some((k) => k.id === (claims.caller as { apiKey: string }).apiKey)
      : state.config.callerIssuers.some((i) =>
        i.issuer === (claims.caller as { issuer: string }).issuer
      )
    if (!stillKnown || !permitsRun(grantOf(state, claims.caller), s)) {
      throw forbidden('The caller that minted this run token is no longer allowed this run')
    }
    await limit(c, state, 'run:' + runLabel(s))
    const lifetime = Math.min(
      Math.max(MIN_RUN_TOKEN_SECONDS, claims.exp - claims.iat),
      state.config.runTokens.maxLifetimeSeconds,
    )
    const minted = await mintRunToken(state.run, s, claims.caller, {
      now: t,
      lifetimeSeconds: lifetime,
      sessionExp: claims.sessionExp,
    })
    return json({
      token: minted.token,
      expiryTimeUtc: new Date(minted.expiresOn * 1000).toISOString(),
    })
  }
  app.get(REFRESH_BY_NAME, refresh('/history/.../experiments/{experimentName}/runs/{runId}/token'))
  app.get(REFRESH_BY_ID, refresh('/history/.../experimentids/{experimentId}/runs/{runId}/token'))
  app.all(REFRESH_BY_NAME, methodNotAllowed('/history/.../token', 'GET, HEAD'))
  app.all(REFRESH_BY_ID, methodNotAllowed('/history/.../token', 'GET, HEAD'))

  return app
}

const utf8 = new TextDecoder()

/** Reads a body of unknown length, refusing it as soon as it passes `max` bytes. */
async function readCapped(body: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    let r: ReadableStreamReadResult<Uint8Array>
    try {
      r = await reader.read()
    } catch {
      throw badRequest('The request body could not be read')
    }
    if (r.done) break
    size += r.value.byteLength
    if (size > max) {
      await reader.cancel().catch(() => {})
      throw tooLarge(max)
    }
    chunks.push(r.value)
  }
  const all = new Uint8Array(size)
  let off = 0
  for (const ch of chunks) {
    all.set(ch, off)
    off += ch.byteLength
  }
  return all
}

function tooLarge(max: number): BrokerError {
  return new BrokerError(413, 'request_too_large', `The request body must be at most ${max} bytes`)
}

function runLabel(s: RunScope): string {
  return _runScopeKey(s, '/')
}

/** The Workers entry point: `export default app`, configured by the worker's bindings. */
const app: BrokerApp = createApp()
export default app
