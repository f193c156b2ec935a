/**
 * The worker's bindings (vars, secrets, KV, rate limiter) and the one place that turns them into
 * a validated {@linkcode BrokerConfig}. Every problem is a {@linkcode ConfigError} that names the
 * variable and says what to change, never the value (most of them are secrets).
 *
 * @module
 */
import { type Cloud, getCloud } from '../../../src/clouds.ts'
import { _checkEndpoint, _checkTenantId, _isLoopback } from '../../../src/_validate.ts'
import { _unb64 } from '../../../src/jwt.ts'
import { type CallerIssuerConfig, parseCallerIssuers } from './caller_auth.ts'
import { ConfigError } from './errors.ts'
import { parsePolicy, type Policy } from './policy.ts'
import {
  importSigningKey,
  importVerificationKey,
  type SigningKey,
  type VerificationKey,
} from './run_tokens.ts'

/** The subset of a Workers KV namespace the broker uses. */
export interface KVNamespaceLike {
  /** The value, or `null`. */
  get(key: string): Promise<string | null>
  /** Stores a value; `expiration` is in epoch seconds. */
  put(key: string, value: string, options?: { expiration?: number }): Promise<void>
  /** Removes a value. */
  delete(key: string): Promise<void>
}

/** The Workers rate-limiting binding (`ratelimits` in wrangler.jsonc). */
export interface RateLimitBinding {
  /** Counts one request for `key`; `success: false` once the key is over its limit. */
  limit(options: { key: string }): Promise<{ success: boolean }>
}

/** A JSON configuration value: a string (secrets, `.dev.vars`) or an object (wrangler `vars`). */
export type JsonVar = string | Record<string, unknown> | unknown[]

/**
 * Everything the worker reads from its environment. Secrets are marked; every other value is a
 * plain `vars` entry. See the README for the meaning and the format of each.
 */
export interface Bindings {
  /** Public URL of this broker: `iss` of run tokens and federated assertions. */
  BROKER_ISSUER?: string
  /** Directory (tenant) of the broker's identity. */
  AZURE_TENANT_ID?: string
  /** Application (client) id of the broker's identity. */
  AZURE_CLIENT_ID?: string
  /** `secret`, `certificate` or `federated` (default: the one credential that is configured). */
  AZURE_CREDENTIAL_KIND?: string
  /** Secret: the client secret. */
  AZURE_CLIENT_SECRET?: string
  /** Secret: PEM with the private key (PKCS#8 or PKCS#1, RSA) and the certificate chain. */
  AZURE_CLIENT_CERTIFICATE?: string
  /** `true` to send the certificate chain (`x5c`, subject name / issuer authentication). */
  AZURE_CLIENT_SEND_CERTIFICATE_CHAIN?: string
  /** `sub` of the federated assertion (the subject of the app's federated credential). */
  AZURE_FEDERATED_SUBJECT?: string
  /** `aud` of the federated assertion (default `api://AzureADTokenExchange`). */
  AZURE_FEDERATED_AUDIENCE?: string
  /** Secret: private JWK (RSA or P-256) signing federated assertions (default: the run-token key). */
  AZURE_FEDERATED_SIGNING_KEY?: string
  /** Entra authority host (default: the cloud's), e.g. the local emulator's origin. */
  AZURE_AUTHORITY_HOST?: string
  /** `AzureCloud` (default), `AzureChinaCloud` or `AzureUSGovernment`. */
  AZURE_CLOUD?: string
  /** Retries of an upstream token request (0 to 5, default 2). */
  UPSTREAM_MAX_RETRIES?: string
  /** JSON: trusted JWT issuers `[{ issuer, jwksUrl, audience, algorithms }]`. */
  CALLER_ISSUERS?: JsonVar
  /** Secret, JSON: API keys `{ keyId: sha256hex }`. */
  CALLER_API_KEYS?: JsonVar
  /** JSON: who may have which audiences, scopes and run tokens. */
  POLICY?: JsonVar
  /** Secret: private P-256 JWK signing run tokens. */
  RUN_TOKEN_SIGNING_KEY?: string
  /** Secret: the previous signing key (public or private JWK), still accepted and published. */
  RUN_TOKEN_PREVIOUS_SIGNING_KEY?: string
  /** `aud` of run tokens (default: `BROKER_ISSUER`). */
  RUN_TOKEN_AUDIENCE?: string
  /** Default run-token lifetime in seconds (default 3600). */
  RUN_TOKEN_LIFETIME_SECONDS?: string
  /** Longest run-token lifetime a caller may ask for, seconds (default 86400). */
  RUN_TOKEN_MAX_LIFETIME_SECONDS?: string
  /** How long a run token may keep being refreshed after it was minted, seconds (default 30 days). */
  RUN_TOKEN_MAX_SESSION_SECONDS?: string
  /** Requests per caller per minute for the in-memory limiter (default 120). */
  RATE_LIMIT_PER_MINUTE?: string
  /** Comma-separated browser origins allowed by CORS (default: none). */
  ALLOWED_ORIGINS?: string
  /** Secret: base64 of 32 random bytes, the AES-GCM key of the shared KV token tier. */
  TOKEN_CACHE_KEY?: string
  /** KV namespace: the optional shared token tier. */
  TOKEN_CACHE?: KVNamespaceLike
  /** Rate-limiting binding; an in-memory limiter per isolate when absent. */
  RATE_LIMITER?: RateLimitBinding
}

export { ConfigError }

/** How the broker proves itself to Microsoft Entra ID. */
export type UpstreamCredentialConfig =
  | { kind: 'secret'; secret: string }
  | { kind: 'certificate'; privateKey: string; certificate: string; sendChain: boolean }
  | { kind: 'federated'; subject: string; audience: string; key: SigningKey }

/** The broker's own identity. */
export interface UpstreamConfig {
  /** Tenant id or domain. */
  tenantId: string
  /** Application (client) id. */
  clientId: string
  /** Authority host, when not the cloud's. */
  authorityHost?: string
  /** Retries per upstream request. */
  maxRetries: number
  /** The client credential. */
  credential: UpstreamCredentialConfig
}

/** Run-token settings. */
export interface RunTokenConfig {
  /** The current signing key. */
  signing: SigningKey
  /** Keys still accepted (the previous one), published in the JWKS. */
  verification: VerificationKey[]
  /** `aud` of run tokens. */
  audience: string
  /** Default lifetime, seconds. */
  lifetimeSeconds: number
  /** Longest lifetime, seconds. */
  maxLifetimeSeconds: number
  /** Longest refresh session, seconds. */
  maxSessionSeconds: number
}

/** The validated configuration. */
export interface BrokerConfig {
  /** Public URL of this broker, without a trailing slash. */
  issuer: string
  /** The cloud. */
  cloud: Cloud
  /** The broker's identity. */
  upstream: UpstreamConfig
  /** Trusted JWT issuers. */
  callerIssuers: CallerIssuerConfig[]
  /** API key id → SHA-256 digest of the key. */
  apiKeys: { id: string; digest: Uint8Array }[]
  /** The policy. */
  policy: Policy
  /** Run tokens. */
  runTokens: RunTokenConfig
  /** In-memory limiter: requests per caller per minute. */
  rateLimitPerMinute: number
  /** CORS origins. */
  allowedOrigins: string[]
  /** AES key of the shared KV tier, when one is configured. */
  tokenCacheKey?: Uint8Array
  /** Every public key to publish (run-token keys, federation key). */
  publishedKeys: VerificationKey[]
}

const MINIMUM_RUN_TOKEN_SECONDS = 300

/** Reads a JSON variable that may already be an object (wrangler `vars`). */
export function _json(value: JsonVar | undefined, variable: string): unknown {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') return value
  if (value.trim() === '') return undefined
  try {
    return JSON.parse(value)
  } catch {
    throw new ConfigError(variable, 'is not valid JSON')
  }
}

function str(env: Bindings, name: keyof Bindings): string | undefined {
  const v = env[name]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new ConfigError(name, 'must be a string')
  const t = v.trim()
  return t === '' ? undefined : t
}

function required(env: Bindings, name: keyof Bindings, what: string): string {
  const v = str(env, name)
  if (v === undefined) throw new ConfigError(name, `is not set; set it to ${what}`)
  return v
}

function int(
  env: Bindings,
  name: keyof Bindings,
  fallback: number,
  min: number,
  max: number,
): number {
  const v = str(env, name)
  if (v === undefined) return fallback
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ConfigError(name, `must be a whole number from ${min} to ${max}`)
  }
  return Number(v)
}

/** `BROKER_ISSUER`: https (or loopback http), no query, fragment or trailing slash. */
function issuerOf(env: Bindings): string {
  const raw = required(env, 'BROKER_ISSUER', "the broker's public URL, e.g. https://broker.example")
  let href: string
  try {
    href = _checkEndpoint(raw, 'BROKER_ISSUER')
  } catch (e) {
    throw new ConfigError('BROKER_ISSUER', (e as Error).message.replace(/^BROKER_ISSUER /, ''))
  }
  const url = new URL(href)
  if (url.search || url.hash || url.pathname !== '/') {
    throw new ConfigError(
      'BROKER_ISSUER',
      'must be the origin the worker is served on (scheme://host[:port], no path): verifiers ' +
        'read {issuer}/.well-known/openid-configuration',
    )
  }
  return url.origin
}

function cloudOf(env: Bindings): Cloud {
  const name = str(env, 'AZURE_CLOUD')
  if (name === undefined) return getCloud('AzureCloud')
  try {
    return getCloud(name as 'AzureCloud')
  } catch (e) {
    throw new ConfigError('AZURE_CLOUD', (e as Error).message)
  }
}

/** Splits a PEM bundle into its private key block and its certificate blocks. */
function splitPem(pem: string): { key?: string; certs: string } {
  const key = /-----BEGIN (?:RSA )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA )?PRIVATE KEY-----/
    .exec(pem)?.[0]
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  return { ...(key !== undefined ? { key } : {}), certs: certs.join('\n') }
}

async function upstreamOf(
  env: Bindings,
  runKey: SigningKey,
): Promise<{ upstream: UpstreamConfig; federationKey?: SigningKey }> {
  const tenantId = required(env, 'AZURE_TENANT_ID', "the broker's directory (tenant) id")
  try {
    _checkTenantId(tenantId, 'AZURE_TENANT_ID')
  } catch {
    throw new ConfigError('AZURE_TENANT_ID', 'must be a tenant GUID or domain')
  }
  const clientId = required(env, 'AZURE_CLIENT_ID', "the broker's application (client) id")
  if (/\s/.test(clientId)) throw new ConfigError('AZURE_CLIENT_ID', 'must not contain spaces')
  let authorityHost: string | undefined
  const host = str(env, 'AZURE_AUTHORITY_HOST')
  if (host !== undefined) {
    try {
      authorityHost = _checkEndpoint(host, 'AZURE_AUTHORITY_HOST')
    } catch {
      throw new ConfigError(
        'AZURE_AUTHORITY_HOST',
        'must be an https URL (plain http only for loopback hosts)',
      )
    }
  }
  const maxRetries = int(env, 'UPSTREAM_MAX_RETRIES', 2, 0, 5)
  const present = {
    secret: str(env, 'AZURE_CLIENT_SECRET') !== undefined,
    certificate: str(env, 'AZURE_CLIENT_CERTIFICATE') !== undefined,
    federated: str(env, 'AZURE_FEDERATED_SUBJECT') !== undefined,
  }
  let kind = str(env, 'AZURE_CREDENTIAL_KIND')
  if (kind === undefined) {
    const found = (Object.keys(present) as (keyof typeof present)[]).filter((k) => present[k])
    if (found.length !== 1) {
      throw new ConfigError(
        'AZURE_CREDENTIAL_KIND',
        found.length === 0
          ? 'no upstream credential is configured; set AZURE_CLIENT_SECRET, ' +
            'AZURE_CLIENT_CERTIFICATE or AZURE_FEDERATED_SUBJECT'
          : `several upstream credentials are configured (${found.join(', ')}); set ` +
            'AZURE_CREDENTIAL_KIND to the one to use',
      )
    }
    kind = found[0]!
  }
  const base = {
    tenantId,
    clientId,
    ...(authorityHost !== undefined ? { authorityHost } : {}),
    maxRetries,
  }
  switch (kind) {
    case 'secret':
      return {
        upstream: {
          ...base,
          credential: {
            kind,
            secret: required(env, 'AZURE_CLIENT_SECRET', 'the client secret (wrangler secret put)'),
          },
        },
      }
    case 'certificate': {
      const pem = required(env, 'AZURE_CLIENT_CERTIFICATE', 'a PEM with the key and certificate')
      const { key, certs } = splitPem(pem)
      if (key === undefined || certs === '') {
        throw new ConfigError(
          'AZURE_CLIENT_CERTIFICATE',
          'must hold an unencrypted PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY) ' +
            'and at least one BEGIN CERTIFICATE block',
        )
      }
      return {
        upstream: {
          ...base,
          credential: {
            kind,
            privateKey: key,
            certificate: certs,
            sendChain: /^(true|1)$/i.test(str(env, 'AZURE_CLIENT_SEND_CERTIFICATE_CHAIN') ?? ''),
          },
        },
      }
    }
    case 'federated': {
      const subject = required(
        env,
        'AZURE_FEDERATED_SUBJECT',
        'the subject of the federated credential registered on the app',
      )
      const audience = str(env, 'AZURE_FEDERATED_AUDIENCE') ?? 'api://AzureADTokenExchange'
      const own = str(env, 'AZURE_FEDERATED_SIGNING_KEY')
      const key = own === undefined
        ? runKey
        : await importSigningKey(own, 'AZURE_FEDERATED_SIGNING_KEY', ['ES256', 'RS256'])
      return {
        upstream: { ...base, credential: { kind, subject, audience, key } },
        ...(own !== undefined ? { federationKey: key } : {}),
      }
    }
    default:
      throw new ConfigError('AZURE_CREDENTIAL_KIND', 'must be secret, certificate or federated')
  }
}

function apiKeysOf(env: Bindings): { id: string; digest: Uint8Array }[] {
  const value = _json(env.CALLER_API_KEYS, 'CALLER_API_KEYS')
  if (value === undefined) return []
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('CALLER_API_KEYS', 'must be a JSON object { "keyId": "<sha256 hex>" }')
  }
  const out: { id: string; digest: Uint8Array }[] = []
  for (const [id, hash] of Object.entries(value)) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
      throw new ConfigError(
        'CALLER_API_KEYS',
        'key ids must be 1 to 64 letters, digits, ".", "_" or "-"',
      )
    }
    if (typeof hash !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hash)) {
      throw new ConfigError(
        'CALLER_API_KEYS',
        `the value of key id "${id}" must be the SHA-256 of the key as 64 hex digits`,
      )
    }
    const digest = new Uint8Array(32)
    for (let i = 0; i < 32; i++) digest[i] = parseInt(hash.slice(2 * i, 2 * i + 2), 16)
    out.push({ id, digest })
  }
  return out
}

function originsOf(env: Bindings): string[] {
  const raw = str(env, 'ALLOWED_ORIGINS')
  if (raw === undefined) return []
  return raw.split(',').map((o) => o.trim()).filter((o) => o !== '').map((o) => {
    let url: URL
    try {
      url = new URL(o)
    } catch {
      throw new ConfigError('ALLOWED_ORIGINS', 'must be a comma-separated list of origins')
    }
    if (url.origin !== o || (url.protocol !== 'https:' && !_isLoopback(url.hostname))) {
      throw new ConfigError(
        'ALLOWED_ORIGINS',
        'each entry must be an exact https origin (scheme://host[:port], no path)',
      )
    }
    return o
  })
}

function cacheKeyOf(env: Bindings): Uint8Array | undefined {
  const raw = str(env, 'TOKEN_CACHE_KEY')
  if (env.TOKEN_CACHE === undefined) return undefined
  if (raw === undefined) {
    throw new ConfigError(
      'TOKEN_CACHE_KEY',
      'is required with the TOKEN_CACHE KV binding (tokens in KV are always encrypted); set it ' +
        'to base64 of 32 random bytes',
    )
  }
  let key: Uint8Array
  try {
    key = _unb64(raw)
  } catch {
    throw new ConfigError('TOKEN_CACHE_KEY', 'must be base64 of 32 random bytes')
  }
  if (key.byteLength !== 32) throw new ConfigError('TOKEN_CACHE_KEY', 'must decode to 32 bytes')
  return key
}

/**
 * Validates the bindings and imports the keys.
 *
 * @param env the worker's bindings
 * @returns the configuration
 * @throws {ConfigError} naming the first variable at fault
 */
export async function loadConfig(env: Bindings): Promise<BrokerConfig> {
  if (env === null || typeof env !== 'object') {
    throw new ConfigError('env', 'the worker received no bindings')
  }
  const issuer = issuerOf(env)
  const cloud = cloudOf(env)
  const signing = await importSigningKey(
    required(env, 'RUN_TOKEN_SIGNING_KEY', 'a private P-256 JWK (see the README)'),
    'RUN_TOKEN_SIGNING_KEY',
    ['ES256'],
  )
  const previousRaw = str(env, 'RUN_TOKEN_PREVIOUS_SIGNING_KEY')
  const verification: VerificationKey[] = [signing]
  if (previousRaw !== undefined) {
    const previous = await importVerificationKey(previousRaw, 'RUN_TOKEN_PREVIOUS_SIGNING_KEY')
    if (previous.kid === signing.kid) {
      throw new ConfigError(
        'RUN_TOKEN_PREVIOUS_SIGNING_KEY',
        'has the same kid as RUN_TOKEN_SIGNING_KEY; give each key its own kid',
      )
    }
    verification.push(previous)
  }
  const lifetimeSeconds = int(
    env,
    'RUN_TOKEN_LIFETIME_SECONDS',
    3600,
    MINIMUM_RUN_TOKEN_SECONDS,
    366 * 86400,
  )
  const maxLifetimeSeconds = int(
    env,
    'RUN_TOKEN_MAX_LIFETIME_SECONDS',
    Math.max(86400, lifetimeSeconds),
    MINIMUM_RUN_TOKEN_SECONDS,
    366 * 86400,
  )
  if (lifetimeSeconds > maxLifetimeSeconds) {
    throw new ConfigError(
      'RUN_TOKEN_LIFETIME_SECONDS',
      'must not exceed RUN_TOKEN_MAX_LIFETIME_SECONDS',
    )
  }
  const maxSessionSeconds = int(
    env,
    'RUN_TOKEN_MAX_SESSION_SECONDS',
    30 * 86400,
    MINIMUM_RUN_TOKEN_SECONDS,
    366 * 86400,
  )
  const { upstream, federationKey } = await upstreamOf(env, signing)
  const callerIssuers = parseCallerIssuers(_json(env.CALLER_ISSUERS, 'CALLER_ISSUERS'), issuer)
  const apiKeys = apiKeysOf(env)
  if (callerIssuers.length === 0 && apiKeys.length === 0) {
    throw new ConfigError(
      'CALLER_ISSUERS',
      'no caller can authenticate; configure CALLER_ISSUERS and/or CALLER_API_KEYS',
    )
  }
  const policy = parsePolicy(_json(env.POLICY, 'POLICY'), callerIssuers.map((i) => i.issuer))
  const published = [...verification]
  if (federationKey !== undefined && !published.some((k) => k.kid === federationKey.kid)) {
    published.push(federationKey)
  }
  const tokenCacheKey = cacheKeyOf(env)
  return {
    issuer,
    cloud,
    upstream,
    callerIssuers,
    apiKeys,
    policy,
    runTokens: {
      signing,
      verification,
      audience: str(env, 'RUN_TOKEN_AUDIENCE') ?? issuer,
      lifetimeSeconds,
      maxLifetimeSeconds,
      maxSessionSeconds,
    },
    rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 120, 1, 1_000_000_000),
    allowedOrigins: originsOf(env),
    ...(tokenCacheKey !== undefined ? { tokenCacheKey } : {}),
    publishedKeys: published,
  }
}
