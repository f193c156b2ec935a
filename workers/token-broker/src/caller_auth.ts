/**
 * Caller authentication: `Authorization: Bearer <JWT>` verified with jose against the configured
 * issuers (their JWKS fetched and cached, an algorithms allow-list that can never hold `none` or
 * an HMAC algorithm), or an API key (`Authorization: ApiKey <key>` or `X-API-Key`) whose SHA-256
 * is compared in constant time with every stored digest.
 *
 * @module
 */
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  type FetchImplementation,
  type JWTHeaderParameters,
  jwtVerify,
} from 'jose'
import { _checkEndpoint } from '../../../src/_validate.ts'
import { badRequest, BrokerError, ConfigError, unauthorized } from './errors.ts'
import { safeClaim } from './run_tokens.ts'
import type { CallerRef } from './policy.ts'

/** One trusted JWT issuer (`CALLER_ISSUERS` entry). */
export interface CallerIssuerConfig {
  /** Exact `iss`. */
  issuer: string
  /** Where its public keys are. */
  jwksUrl: string
  /** Accepted `aud` values (one must match). */
  audience: string[]
  /** Accepted signature algorithms (asymmetric only). */
  algorithms: string[]
}

/** An authenticated caller. */
export type Caller =
  & CallerRef
  & {
    /** Stable id for logs and rate limiting: `key:<id>` or `jwt:<issuer>|<subject>`. */
    id: string
  }

const ASYMMETRIC = new Set([
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
])
const ISSUER_KEYS = new Set(['issuer', 'jwksUrl', 'audience', 'algorithms'])

/**
 * Validates `CALLER_ISSUERS`. HMAC algorithms (`HS*`) and `none` are refused here, at start-up:
 * with an HMAC algorithm allowed, a public key (which anyone can read from the JWKS) could be
 * used as the shared secret to forge tokens.
 *
 * @param value the parsed JSON (undefined: no JWT callers)
 * @param brokerIssuer the broker's own issuer, which callers may not use
 * @returns the issuers
 * @throws {ConfigError} naming the entry and field at fault
 */
export function parseCallerIssuers(value: unknown, brokerIssuer: string): CallerIssuerConfig[] {
  if (value === undefined) return []
  const V = 'CALLER_ISSUERS'
  if (!Array.isArray(value)) {
    throw new ConfigError(V, 'must be a JSON array [{ issuer, jwksUrl, audience, algorithms }]')
  }
  const seen = new Set<string>()
  return value.map((raw, i) => {
    const where = `[${i}]`
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new ConfigError(V, `${where} must be an object`)
    }
    const r = raw as Record<string, unknown>
    for (const k of Object.keys(r)) {
      if (!ISSUER_KEYS.has(k)) throw new ConfigError(V, `${where} has an unknown field "${k}"`)
    }
    if (typeof r.issuer !== 'string' || r.issuer === '' || r.issuer.length > 512) {
      throw new ConfigError(V, `${where}.issuer must be the exact iss of the caller tokens`)
    }
    if (seen.has(r.issuer)) throw new ConfigError(V, `${where}.issuer is listed twice`)
    seen.add(r.issuer)
    if (r.issuer.replace(/\/+$/, '') === brokerIssuer) {
      throw new ConfigError(
        V,
        `${where}.issuer is the broker's own issuer; run tokens must never act as caller tokens`,
      )
    }
    let jwksUrl: string
    try {
      jwksUrl = _checkEndpoint(r.jwksUrl, 'jwksUrl')
    } catch {
      throw new ConfigError(V, `${where}.jwksUrl must be an https URL (http only for loopback)`)
    }
    const audience = typeof r.audience === 'string' ? [r.audience] : r.audience
    if (
      !Array.isArray(audience) || audience.length === 0 ||
      audience.some((a) => typeof a !== 'string' || a === '')
    ) {
      throw new ConfigError(V, `${where}.audience must be a non-empty string or array of strings`)
    }
    const algs = r.algorithms
    if (!Array.isArray(algs) || algs.length === 0) {
      throw new ConfigError(V, `${where}.algorithms must be a non-empty array, e.g. ["RS256"]`)
    }
    for (const a of algs) {
      if (typeof a === 'string' && /^HS\d+$/i.test(a)) {
        throw new ConfigError(
          V,
          `${where}.algorithms must not contain ${a}: HMAC would let anyone holding the issuer's ` +
            'public key forge tokens; use the asymmetric algorithm the issuer signs with',
        )
      }
      if (typeof a !== 'string' || !ASYMMETRIC.has(a)) {
        throw new ConfigError(
          V,
          `${where}.algorithms may only hold ${[...ASYMMETRIC].join(', ')} (never none)`,
        )
      }
    }
    return { issuer: r.issuer, jwksUrl, audience: audience as string[], algorithms: algs }
  })
}

/** What the authenticator needs from the configuration. */
export interface CallerAuthConfig {
  /** Trusted issuers. */
  callerIssuers: readonly CallerIssuerConfig[]
  /** API key ids and SHA-256 digests. */
  apiKeys: readonly { id: string; digest: Uint8Array }[]
}

/** Options of {@linkcode createCallerAuthenticator}. */
export interface CallerAuthOptions {
  /** `fetch` for JWKS documents (default: the global one). */
  fetch?: FetchImplementation
  /** Clock, ms. */
  now: () => number
}

/** Authenticates one request from its headers. */
export type CallerAuthenticator = (headers: Headers) => Promise<Caller>

class JwksUnavailable extends Error {
  override name = 'JwksUnavailable'
}

const MAX_TOKEN = 16_384
const JWKS_FAILURE_COOLDOWN_MS = 10_000
const enc = new TextEncoder()

/** Constant-time comparison of two equal-length digests. */
function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ (b[i] ?? 0)
  return diff === 0
}

/**
 * Creates the authenticator for one configuration: JWKS sets are created once per issuer and
 * cached (10 min; an unknown `kid` refetches at most every 30 s).
 *
 * @param config issuers and API keys
 * @param options fetch and clock
 * @returns the authenticator
 */
export function createCallerAuthenticator(
  config: CallerAuthConfig,
  options: CallerAuthOptions,
): CallerAuthenticator {
  const sets = new Map<string, ReturnType<typeof createRemoteJWKSet>>()
  // When an issuer's JWKS cannot be fetched, later tokens of that issuer are refused at once for
  // a few seconds: otherwise every forged token naming a trusted `iss` would cost one outbound
  // request (jose neither caches failures nor, on Workers, shares an in-flight fetch).
  const failedAt = new Map<string, number>()
  const jwksFor = (issuer: CallerIssuerConfig) => {
    let set = sets.get(issuer.issuer)
    if (set === undefined) {
      const base: FetchImplementation = options.fetch ?? ((url, init) => fetch(url, init))
      // Only a failed fetch (network, timeout, non-200) starts the failure cool-down: nothing a
      // token says (kid, alg) can make the issuer look unavailable to the other callers.
      const recording: FetchImplementation = async (url, init) => {
        let res: Response
        try {
          res = await base(url, init)
        } catch (e) {
          failedAt.set(issuer.issuer, options.now())
          throw e
        }
        if (res.status !== 200) failedAt.set(issuer.issuer, options.now())
        return res
      }
      set = createRemoteJWKSet(new URL(issuer.jwksUrl), {
        cacheMaxAge: 10 * 60_000,
        cooldownDuration: 30_000,
        timeoutDuration: 5_000,
        [customFetch]: recording,
      })
      sets.set(issuer.issuer, set)
    }
    return set
  }

  const viaJwt = async (token: string): Promise<Caller> => {
    if (token.length > MAX_TOKEN || token.split('.').length !== 3) {
      throw unauthorized('The bearer token is not a JWT', 'malformed')
    }
    let header: JWTHeaderParameters
    let iss: unknown
    try {
      header = decodeProtectedHeader(token) as JWTHeaderParameters
      iss = decodeJwt(token).iss
    } catch {
      throw unauthorized('The bearer token is not a JWT', 'malformed')
    }
    if (typeof header.alg !== 'string' || header.alg === 'none' || /^HS/i.test(header.alg)) {
      throw unauthorized('The bearer token uses an algorithm this broker never accepts', 'alg')
    }
    const issuer = config.callerIssuers.find((i) => i.issuer === iss)
    if (issuer === undefined) {
      throw unauthorized('The bearer token comes from an issuer this broker does not trust', 'iss')
    }
    const set = jwksFor(issuer)
    const key = async (h: JWTHeaderParameters, t: Parameters<typeof set>[1]) => {
      // Keys cached and fresh are used as usual; without them, a recent failed fetch answers at
      // once instead of fetching again.
      const last = failedAt.get(issuer.issuer)
      if (
        !set.fresh && last !== undefined &&
        Math.abs(options.now() - last) < JWKS_FAILURE_COOLDOWN_MS
      ) {
        throw new JwksUnavailable()
      }
      try {
        return await set(h, t)
      } catch (e) {
        if (
          e instanceof joseErrors.JWKSNoMatchingKey ||
          e instanceof joseErrors.JWKSMultipleMatchingKeys
        ) throw e
        throw new JwksUnavailable()
      }
    }
    let payload: Record<string, unknown>
    try {
      ;({ payload } = await jwtVerify(token, key, {
        issuer: issuer.issuer,
        audience: issuer.audience,
        algorithms: issuer.algorithms,
        currentDate: new Date(options.now()),
        clockTolerance: 30,
        requiredClaims: ['exp', 'sub'],
      }))
    } catch (e) {
      throw jwtRefusal(e)
    }
    const sub = payload.sub
    if (typeof sub !== 'string' || sub === '' || sub.length > 512) {
      throw unauthorized('The bearer token has no usable sub claim', 'claim_sub')
    }
    return { issuer: issuer.issuer, subject: sub, id: `jwt:${issuer.issuer}|${sub}` }
  }

  const viaApiKey = async (key: string): Promise<Caller> => {
    if (config.apiKeys.length === 0) {
      throw unauthorized('This broker does not accept API keys', 'api_keys_off', 'invalid_client')
    }
    if (key.length < 16 || key.length > 512 || !/^[\x21-\x7e]+$/.test(key)) {
      throw unauthorized('The API key is not valid', 'api_key', 'invalid_client')
    }
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(key)))
    let found: string | undefined
    // Compare with every stored digest, without stopping early, so timing says nothing.
    for (const k of config.apiKeys) {
      if (sameDigest(digest, k.digest) && found === undefined) found = k.id
    }
    if (found === undefined) {
      throw unauthorized('The API key is not valid', 'api_key', 'invalid_client')
    }
    return { apiKey: found, id: `key:${found}` }
  }

  return async (headers) => {
    const authorization = headers.get('authorization')
    const xApiKey = headers.get('x-api-key')
    if (authorization !== null && xApiKey !== null) {
      throw badRequest('Send one credential: Authorization or X-API-Key, not both')
    }
    if (xApiKey !== null) return await viaApiKey(xApiKey.trim())
    if (authorization === null || authorization.trim() === '') {
      throw unauthorized(
        'Authentication is required: send Authorization: Bearer <JWT> or an API key',
        'missing',
        'invalid_client',
      )
    }
    const m = /^\s*(\S+)\s+(\S+)\s*$/.exec(authorization)
    if (m === null) {
      throw unauthorized('The Authorization header is malformed', 'malformed', 'invalid_client')
    }
    const scheme = m[1]!.toLowerCase()
    if (scheme === 'bearer') return await viaJwt(m[2]!)
    if (scheme === 'apikey') return await viaApiKey(m[2]!)
    throw unauthorized(
      'Unsupported Authorization scheme; use Bearer or ApiKey',
      'scheme',
      'invalid_client',
    )
  }
}

function jwtRefusal(e: unknown): BrokerError {
  if (e instanceof JwksUnavailable) {
    return new BrokerError(
      502,
      'upstream_error',
      "The signing keys of the token's issuer could not be fetched; try again later",
      { log: { reason: 'jwks_unavailable' } },
    )
  }
  if (e instanceof joseErrors.JWTExpired) {
    return unauthorized('The bearer token has expired', 'expired')
  }
  if (
    e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys
  ) {
    return unauthorized("No key of the token's issuer matches the bearer token's kid", 'kid')
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = safeClaim(e.claim)
    return unauthorized(`The bearer token's ${claim} claim is not accepted`, 'claim_' + claim)
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed || e instanceof joseErrors.JOSENotSupported) {
    return unauthorized('The bearer token uses an algorithm this issuer is not allowed', 'alg')
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return unauthorized('The bearer token signature is not valid', 'signature')
  }
  return unauthorized('The bearer token is not a valid JWT', 'malformed')
}
