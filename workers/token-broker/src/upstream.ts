/**
 * The broker's own identity: the module's `ServicePrincipalAuthentication` with a client secret,
 * a certificate, or a federated assertion the broker signs itself, behind the module's token
 * cache (single flight, refresh ahead) and, optionally, an encrypted Workers KV tier shared by
 * every isolate.
 *
 * @module
 */
import { SignJWT } from 'jose'
import type { AccessToken } from '../../../src/access_token.ts'
import { _scopeOf } from '../../../src/clouds.ts'
import type { FetchLike } from '../../../src/http.ts'
import { createTokenCache } from '../../../src/token_cache.ts'
import type { TokenStore } from '../../../src/token_store.ts'
import {
  clientCertificate,
  ServicePrincipalAuthentication,
} from '../../../src/credentials/service_principal.ts'
import type { BrokerConfig, KVNamespaceLike } from './env.ts'
import { ConfigError } from './errors.ts'
import type { SigningKey } from './run_tokens.ts'

/** Where the upstream tokens come from. */
export interface Upstream {
  /** The `.default` scope of an audience in the configured cloud. */
  scopeFor(audience: 'ARM' | 'AZUREML'): string
  /** A token for one scope (cached; one upstream request per scope at a time). */
  token(scope: string): Promise<AccessToken>
}

/** Options of {@linkcode createUpstream}. */
export interface UpstreamOptions {
  /** `fetch` for Entra (default: the global one). */
  fetch?: FetchLike
  /** Clock, ms. */
  now: () => number
  /** The current request's KV binding (bindings are read per request). */
  kv: () => KVNamespaceLike | undefined
}

const KV_PREFIX = 'token-broker/v1/'

/**
 * A {@linkcode TokenStore} over Workers KV. Values are already AES-GCM ciphertext (the cache
 * seals them); KV refuses expirations under 60 s, and such tokens are not worth sharing anyway.
 *
 * @param kv returns the binding of the current request
 * @param now clock, ms
 * @returns the store
 */
export function kvTokenStore(kv: () => KVNamespaceLike | undefined, now: () => number): TokenStore {
  return {
    async get(key) {
      const ns = kv()
      return ns === undefined ? undefined : (await ns.get(KV_PREFIX + key)) ?? undefined
    },
    async set(key, value, { expiresAt }) {
      const ns = kv()
      const expiration = Math.floor(expiresAt / 1000)
      if (ns === undefined || expiration - now() / 1000 < 90) return
      await ns.put(KV_PREFIX + key, value, { expiration })
    },
    async delete(key) {
      await kv()?.delete(KV_PREFIX + key)
    },
  }
}

/**
 * The client-assertion callback of federated mode: a JWT signed with the broker's key, `iss` =
 * the broker's issuer URL (Entra reads its keys from `/.well-known/openid-configuration`), `sub` =
 * the configured subject, `aud` = `api://AzureADTokenExchange`, valid for 5 minutes, new `jti`
 * each time.
 *
 * @param key the signing key
 * @param claims issuer, subject, audience
 * @param now clock, ms
 * @returns the callback
 */
export function federatedAssertion(
  key: SigningKey,
  claims: { issuer: string; subject: string; audience: string },
  now: () => number,
): () => Promise<string> {
  return async () => {
    const t = Math.floor(now() / 1000)
    return await new SignJWT({})
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
      .setIssuer(claims.issuer)
      .setSubject(claims.subject)
      .setAudience(claims.audience)
      .setIssuedAt(t)
      .setNotBefore(t)
      .setExpirationTime(t + 300)
      .setJti(crypto.randomUUID())
      .sign(key.privateKey)
  }
}

/**
 * Builds the upstream credential from the configuration (no I/O).
 *
 * @param config the broker configuration
 * @param options fetch, clock, KV access
 * @returns the upstream
 * @throws {ConfigError} when the module refuses the credential (e.g. a damaged certificate)
 */
export function createUpstream(config: BrokerConfig, options: UpstreamOptions): Upstream {
  const cache = config.tokenCacheKey !== undefined
    ? createTokenCache({ store: kvTokenStore(options.kv, options.now), key: config.tokenCacheKey })
    : createTokenCache()
  const up = config.upstream
  const common = {
    tenantId: up.tenantId,
    servicePrincipalId: up.clientId,
    cloud: config.cloud,
    env: {},
    cache,
    now: options.now,
    timeoutMs: 5_000,
    retry: {
      maxRetries: up.maxRetries,
      baseDelayMs: 200,
      maxDelayMs: 2_000,
      totalTimeoutMs: 15_000,
    },
    ...(up.authorityHost !== undefined ? { authorityHost: up.authorityHost } : {}),
    ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
  }
  const c = up.credential
  let credential: ServicePrincipalAuthentication
  try {
    credential = c.kind === 'secret'
      ? new ServicePrincipalAuthentication({ ...common, servicePrincipalPassword: c.secret })
      : c.kind === 'certificate'
      ? new ServicePrincipalAuthentication({
        ...common,
        certificate: clientCertificate({
          privateKey: c.privateKey,
          certificate: c.certificate,
          sendCertificateChain: c.sendChain,
        }),
      })
      : new ServicePrincipalAuthentication({
        ...common,
        clientAssertion: federatedAssertion(
          c.key,
          { issuer: config.issuer, subject: c.subject, audience: c.audience },
          options.now,
        ),
      })
  } catch (e) {
    const variable = c.kind === 'certificate' ? 'AZURE_CLIENT_CERTIFICATE' : 'AZURE_CLIENT_ID'
    throw new ConfigError(variable, `was refused: ${e instanceof Error ? e.message : 'invalid'}`)
  }
  const scopes = {
    ARM: _scopeOf(config.cloud.activeDirectoryResourceId),
    AZUREML: _scopeOf(config.cloud.amlResourceId),
  }
  return {
    scopeFor: (audience) => scopes[audience],
    token: (scope) => credential.getToken(scope),
  }
}
