/**
 * Run tokens: short-lived ES256 JWTs for one Azure ML run scope, signed with the broker's own key
 * (`RUN_TOKEN_SIGNING_KEY`), renewed through the run-history route of SPEC 5 and verifiable by
 * anyone through `/.well-known/jwks.json`. Key import, the published JWKS and the scope rules are
 * here too.
 *
 * @module
 */
import {
  calculateJwkThumbprint,
  errors as joseErrors,
  importJWK,
  type JWK,
  type JWTHeaderParameters,
  jwtVerify,
  SignJWT,
} from 'jose'
import { BrokerError, ConfigError, unauthorized } from './errors.ts'
import type { CallerRef, RunScope } from './policy.ts'

/** `typ` of run tokens: a token of another kind (or from another issuer) is never one. */
export const RUN_TOKEN_TYPE = 'aml-run+jwt'

/** Signature algorithms of the broker's keys. */
export type KeyAlgorithm = 'ES256' | 'RS256'

/** A public JWK as published (no private member ever). */
export interface PublicJwk {
  /** Key type. */
  kty: 'EC' | 'RSA'
  /** Key id. */
  kid: string
  /** Algorithm. */
  alg: KeyAlgorithm
  /** Always `sig`. */
  use: 'sig'
  /** EC curve. */
  crv?: string
  /** EC x. */
  x?: string
  /** EC y. */
  y?: string
  /** RSA modulus. */
  n?: string
  /** RSA exponent. */
  e?: string
}

/** A key that verifies. */
export interface VerificationKey {
  /** Key id (`kid`). */
  kid: string
  /** Algorithm. */
  alg: KeyAlgorithm
  /** Public JWK to publish. */
  publicJwk: PublicJwk
  /** Imported public key. */
  publicKey: CryptoKey
}

/** A key that signs (and verifies). */
export interface SigningKey extends VerificationKey {
  /** Imported private key (non-extractable). */
  privateKey: CryptoKey
}

function parseJwk(raw: string, variable: string): Record<string, unknown> {
  let jwk: unknown
  try {
    jwk = JSON.parse(raw)
  } catch {
    throw new ConfigError(variable, 'is not valid JSON; it must be a JWK (see the README)')
  }
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) {
    throw new ConfigError(variable, 'must be one JWK object')
  }
  return jwk as Record<string, unknown>
}

function algOf(
  jwk: Record<string, unknown>,
  variable: string,
  allowed: KeyAlgorithm[],
): KeyAlgorithm {
  let alg: KeyAlgorithm
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256'
  else if (jwk.kty === 'RSA') alg = 'RS256'
  else {
    throw new ConfigError(
      variable,
      `must be ${allowed.includes('RS256') ? 'an RSA or ' : 'an '}EC P-256 JWK`,
    )
  }
  if (!allowed.includes(alg)) {
    throw new ConfigError(variable, `must be a ${allowed.join(' or ')} key`)
  }
  if (jwk.alg !== undefined && jwk.alg !== alg) {
    throw new ConfigError(variable, `has alg "${String(jwk.alg)}"; it must be ${alg} or absent`)
  }
  if (alg === 'RS256' && (typeof jwk.n !== 'string' || jwk.n.length < 342)) {
    throw new ConfigError(variable, 'must be an RSA key of at least 2048 bits')
  }
  return alg
}

function publicPart(jwk: Record<string, unknown>, alg: KeyAlgorithm): Omit<PublicJwk, 'kid'> {
  return alg === 'ES256'
    ? { kty: 'EC', crv: 'P-256', x: String(jwk.x), y: String(jwk.y), alg, use: 'sig' }
    : { kty: 'RSA', n: String(jwk.n), e: String(jwk.e), alg, use: 'sig' }
}

async function kidOf(
  jwk: Record<string, unknown>,
  pub: Omit<PublicJwk, 'kid'>,
  variable: string,
): Promise<string> {
  if (jwk.kid === undefined) return await calculateJwkThumbprint(pub as JWK, 'sha256')
  if (typeof jwk.kid !== 'string' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(jwk.kid)) {
    throw new ConfigError(variable, 'has a kid that is not 1 to 128 letters, digits, _ . : or -')
  }
  return jwk.kid
}

async function importPublic(
  pub: Omit<PublicJwk, 'kid'>,
  variable: string,
): Promise<CryptoKey> {
  try {
    return await importJWK(pub as JWK, pub.alg) as CryptoKey
  } catch {
    throw new ConfigError(variable, 'holds a public key that cannot be imported')
  }
}

/**
 * Imports a private JWK (EC P-256 for ES256, RSA ≥ 2048 bits for RS256), checking that its
 * private and public halves belong together. The `kid` is the JWK's own, else its RFC 7638
 * thumbprint.
 *
 * @param raw the JWK as JSON
 * @param variable the binding name, for messages
 * @param allowed the algorithms this key may have
 * @returns the key
 * @throws {ConfigError} naming the variable, never showing the key
 */
export async function importSigningKey(
  raw: string,
  variable: string,
  allowed: KeyAlgorithm[],
): Promise<SigningKey> {
  const jwk = parseJwk(raw, variable)
  const alg = algOf(jwk, variable, allowed)
  if (typeof jwk.d !== 'string') throw new ConfigError(variable, 'must be a private JWK (with d)')
  const pub = publicPart(jwk, alg)
  const kid = await kidOf(jwk, pub, variable)
  let privateKey: CryptoKey
  try {
    const { kid: _k, alg: _a, use: _u, key_ops: _o, ext: _e, ...material } = jwk
    privateKey = await importJWK({ ...material, alg } as JWK, alg, {
      extractable: false,
    }) as CryptoKey
  } catch {
    throw new ConfigError(variable, 'holds a private key that cannot be imported')
  }
  const publicKey = await importPublic(pub, variable)
  // A JWK whose x/y (or n/e) do not belong to d would sign tokens nobody can verify.
  const probe = await new SignJWT({}).setProtectedHeader({ alg }).sign(privateKey).catch(() => '')
  const ok = probe !== '' &&
    await jwtVerify(probe, publicKey, { algorithms: [alg] }).then(() => true, () => false)
  if (!ok) throw new ConfigError(variable, 'has a public part that does not match its private key')
  return { kid, alg, publicJwk: { ...pub, kid }, publicKey, privateKey }
}

/**
 * Imports a key that only verifies (the previous run-token key): a public or private P-256 JWK;
 * only the public part is kept.
 *
 * @param raw the JWK as JSON
 * @param variable the binding name
 * @returns the key
 * @throws {ConfigError} naming the variable
 */
export async function importVerificationKey(
  raw: string,
  variable: string,
): Promise<VerificationKey> {
  const jwk = parseJwk(raw, variable)
  const alg = algOf(jwk, variable, ['ES256'])
  const pub = publicPart(jwk, alg)
  const kid = await kidOf(jwk, pub, variable)
  return { kid, alg, publicJwk: { ...pub, kid }, publicKey: await importPublic(pub, variable) }
}

/**
 * The JWKS document: public keys only.
 *
 * @param keys keys to publish
 * @returns `{ keys }`
 */
export function jwks(keys: readonly VerificationKey[]): { keys: PublicJwk[] } {
  return { keys: keys.map((k) => ({ ...k.publicJwk })) }
}

const GUID = /^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$/
const SCOPE_RULES: Record<keyof RunScope, { re: RegExp; what: string }> = {
  subscriptionId: { re: GUID, what: 'a subscription GUID' },
  resourceGroupName: {
    re: /^[-\w.()]{0,89}[-\w()]$/,
    what: 'a resource group name (1-90 letters, digits, - _ . ( ), not ending with .)',
  },
  workspaceName: {
    re: /^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$/,
    what: 'a workspace name (3-33 letters, digits, - or _)',
  },
  experimentName: {
    re: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/,
    what: 'an experiment name (1-255 letters, digits, - _ .)',
  },
  experimentId: { re: GUID, what: 'an experiment GUID' },
  runId: {
    re: /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}$/,
    what: 'a run id (1-256 letters, digits, - _ .)',
  },
}

/**
 * Validates a run scope from a request body or a path: every field a safe path segment.
 *
 * @param value the object
 * @param extra fields allowed besides the scope (ignored here)
 * @returns the scope
 * @throws {BrokerError} 400 naming the field
 */
export function parseRunScope(value: unknown, extra: readonly string[] = []): RunScope {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BrokerError(400, 'invalid_request', 'The body must be a JSON object')
  }
  const v = value as Record<string, unknown>
  for (const k of Object.keys(v)) {
    // Own keys only: `in` would also accept `constructor`, `toString` or `__proto__`.
    if (!Object.hasOwn(SCOPE_RULES, k) && !extra.includes(k)) {
      throw new BrokerError(400, 'invalid_request', `Unknown field "${k.slice(0, 40)}"`)
    }
  }
  const out: Partial<RunScope> = {}
  for (
    const [field, rule] of Object.entries(SCOPE_RULES) as [
      keyof RunScope,
      { re: RegExp; what: string },
    ][]
  ) {
    const x = v[field]
    if (x === undefined && (field === 'experimentName' || field === 'experimentId')) continue
    if (typeof x !== 'string' || !rule.re.test(x)) {
      throw new BrokerError(
        400,
        'invalid_request',
        x === undefined ? `${field} is required` : `${field} must be ${rule.what}`,
      )
    }
    out[field] = x
  }
  if (out.experimentName === undefined && out.experimentId === undefined) {
    throw new BrokerError(400, 'invalid_request', 'experimentName or experimentId is required')
  }
  return out as RunScope
}

/** What the broker needs to mint and verify run tokens. */
export interface RunTokenSettings {
  /** `iss`. */
  issuer: string
  /** `aud`. */
  audience: string
  /** The signing key. */
  signing: SigningKey
  /** Keys accepted on refresh (current and previous). */
  verification: readonly VerificationKey[]
}

/** A run token and its expiry. */
export interface MintedRunToken {
  /** The JWT. */
  token: string
  /** Expiry, epoch seconds. */
  expiresOn: number
}

/** The claims of a verified run token. */
export interface RunTokenClaims {
  /** The run scope. */
  scope: RunScope
  /** Who minted it. */
  caller: CallerRef
  /** Issued at, epoch seconds. */
  iat: number
  /** Expiry, epoch seconds. */
  exp: number
  /** End of the refresh session, epoch seconds. */
  sessionExp: number
}

function subjectOf(s: RunScope): string {
  return [
    'run',
    s.subscriptionId,
    s.resourceGroupName,
    s.workspaceName,
    s.experimentId ?? s.experimentName,
    s.runId,
  ].join(':')
}

/**
 * Signs a run token.
 *
 * @param settings issuer, audience, keys
 * @param scope the run scope
 * @param caller who asked (carried so that refreshes re-check the policy)
 * @param times issue time (ms), lifetime and session end (epoch seconds)
 * @returns the token and its expiry
 */
export async function mintRunToken(
  settings: RunTokenSettings,
  scope: RunScope,
  caller: CallerRef,
  times: { now: number; lifetimeSeconds: number; sessionExp: number },
): Promise<MintedRunToken> {
  const iat = Math.floor(times.now / 1000)
  const exp = Math.min(iat + times.lifetimeSeconds, times.sessionExp)
  const run: RunScope = {
    subscriptionId: scope.subscriptionId,
    resourceGroupName: scope.resourceGroupName,
    workspaceName: scope.workspaceName,
    ...(scope.experimentName !== undefined ? { experimentName: scope.experimentName } : {}),
    ...(scope.experimentId !== undefined ? { experimentId: scope.experimentId } : {}),
    runId: scope.runId,
  }
  const token = await new SignJWT({ run, caller, session_exp: times.sessionExp })
    .setProtectedHeader({
      alg: settings.signing.alg,
      kid: settings.signing.kid,
      typ: RUN_TOKEN_TYPE,
    })
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setSubject(subjectOf(run))
    .setIssuedAt(iat)
    .setNotBefore(iat)
    .setExpirationTime(exp)
    .setJti(crypto.randomUUID())
    .sign(settings.signing.privateKey)
  return { token, expiresOn: exp }
}

function callerClaim(v: unknown): CallerRef | undefined {
  if (v === null || typeof v !== 'object') return undefined
  const c = v as Record<string, unknown>
  if (typeof c.apiKey === 'string' && Object.keys(c).length === 1) return { apiKey: c.apiKey }
  if (
    typeof c.issuer === 'string' && typeof c.subject === 'string' && Object.keys(c).length === 2
  ) {
    return { issuer: c.issuer, subject: c.subject }
  }
  return undefined
}

/**
 * Verifies a run token against the broker's own keys: signature, `typ`, `iss`, `aud`, `exp`,
 * `nbf` and the shape of its claims.
 *
 * @param token the bearer token
 * @param settings issuer, audience, keys
 * @param now clock, ms
 * @returns the claims
 * @throws {BrokerError} 401 saying why, never echoing the token
 */
export async function verifyRunToken(
  token: string,
  settings: RunTokenSettings,
  now: number,
): Promise<RunTokenClaims> {
  const keyFor = (header: JWTHeaderParameters): CryptoKey => {
    const key = settings.verification.find((k) => k.kid === header.kid && k.alg === header.alg)
    if (key === undefined) throw new joseErrors.JWKSNoMatchingKey()
    return key.publicKey
  }
  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(token, keyFor, {
      issuer: settings.issuer,
      audience: settings.audience,
      algorithms: ['ES256'],
      typ: RUN_TOKEN_TYPE,
      currentDate: new Date(now),
      clockTolerance: 5,
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    }))
  } catch (e) {
    throw runTokenRefusal(e)
  }
  let scope: RunScope
  try {
    scope = parseRunScope(payload.run)
  } catch {
    throw unauthorized('The run token does not carry a valid run scope', 'run_claims')
  }
  const caller = callerClaim(payload.caller)
  const sessionExp = payload.session_exp
  if (caller === undefined || typeof sessionExp !== 'number' || !Number.isFinite(sessionExp)) {
    throw unauthorized('The run token does not carry valid claims', 'run_claims')
  }
  return { scope, caller, iat: payload.iat as number, exp: payload.exp as number, sessionExp }
}

function runTokenRefusal(e: unknown): BrokerError {
  if (e instanceof joseErrors.JWTExpired) {
    return unauthorized('The run token has expired; mint a new one', 'expired')
  }
  if (e instanceof joseErrors.JWKSNoMatchingKey) {
    return unauthorized('The run token was signed with a key this broker does not hold', 'kid')
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    return unauthorized(
      `The run token's ${safeClaim(e.claim)} claim is not valid for this broker`,
      'claim_' + safeClaim(e.claim),
    )
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) {
    return unauthorized('The run token uses an algorithm this broker does not accept', 'alg')
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return unauthorized('The run token signature is not valid', 'signature')
  }
  return unauthorized('The bearer token is not a valid run token', 'malformed')
}

/** A claim name safe to put in a message (jose reports the claim it checked). */
export function safeClaim(claim: unknown): string {
  return typeof claim === 'string' && /^[a-z_]{1,20}$/.test(claim) ? claim : 'a'
}
