// How a confidential client proves itself to Microsoft Entra ID, as strategy values in the style
// of oauth4webapi's `ClientAuth`: each keeps its secret (a client secret, a private key, an
// assertion callback) in a closure and only writes it into a token request's form. Nothing here
// is a public field, so no secret can reach `JSON.stringify`, `Deno.inspect` or an error.
//
// This module holds what every service principal needs (the secret and callback strategies);
// certificates live in `credentials/client_certificate.ts`, which a secret user never loads.
import { CredentialUnavailableError } from './errors.ts'
import { type EntraAdviceTable, JWT_BEARER_ASSERTION } from './_entra.ts'

/** What a strategy needs to know about the request it authenticates. */
export interface _ClientAuthContext {
  /** The token endpoint URL (the `aud` of a certificate assertion). */
  tokenEndpoint: string
  /** The client id (`iss` and `sub` of a certificate assertion). */
  clientId: string
  /** Clock, epoch ms. */
  now: () => number
}

/** The kinds of client credential. */
export type _ClientAuthKind = 'secret' | 'certificate' | 'clientAssertion' | 'federatedTokenFile'

/** A client authentication strategy. */
export interface _ClientAuth {
  /** Which kind of credential. */
  readonly kind: _ClientAuthKind
  /**
   * Distinguishes different credentials of one client without revealing them (a hash of the
   * secret, the public certificate, a file path, a random id for callbacks).
   */
  readonly fingerprint: string
  /** Advice for the refusals only this kind of credential meets (see `entraAdvice`). */
  readonly advice?: EntraAdviceTable
  /**
   * Adds the client authentication fields to a token request's form; `fresh` asks for a newly
   * signed assertion (the retry after a refused reused one).
   */
  apply(
    form: Record<string, string | undefined>,
    ctx: _ClientAuthContext,
    fresh?: boolean,
  ): Promise<void>
  /**
   * The server refused a request that carried `assertion`: forget it if it is cached. Returns
   * true when it had been sent before (a server that enforces single-use `jti` refuses reuse), so
   * that one retry with a freshly signed assertion can succeed.
   */
  refused?(assertion: string | undefined, ctx: _ClientAuthContext): boolean
}

/**
 * The strategies behind the values `clientCertificate()` and `servicePrincipalFromEnvironment()`
 * hand out: the service principal looks its `certificate` option up here, so that a plain object
 * is refused without loading the certificate code.
 */
export const _certificates: WeakMap<object, _ClientAuth> = /* @__PURE__ */ new WeakMap()

/**
 * A 64-bit fingerprint of a client secret for the cache identity: two independent 32-bit
 * multiply-xor hashes (FNV-1a and a murmur-style multiplier) over a domain-separated string. Not
 * cryptographic, and it need not be: the identity is an in-memory Map key (and the cache hashes
 * store names with SHA-256 again), so it must separate different secrets, not resist an attacker
 * who could choose them. The secret itself never enters the identity.
 */
export function _fingerprint(secret: string): string {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (const ch of 'sp-secret\0' + secret) {
    const c = ch.codePointAt(0)!
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995) ^ b >>> 15
  }
  return (a >>> 0).toString(36) + '.' + (b >>> 0).toString(36)
}

/**
 * `client_secret` authentication.
 *
 * @param secret the client secret (checked non-empty by the caller)
 */
export function _secretAuth(secret: string): _ClientAuth {
  return {
    kind: 'secret',
    fingerprint: _fingerprint(secret),
    apply(form) {
      form.client_secret = secret
      return Promise.resolve()
    },
  }
}

const NO_MATCH = 'No federated identity credential matches the assertion: check the issuer, ' +
  'subject and audience configured for {clientId}'

/** Advice for refusals of a federated assertion. */
const FEDERATED_ADVICE: EntraAdviceTable = {
  700024: 'The client assertion has expired: {assertion} must give a fresh one (check the clock)',
  50027: 'The client assertion is not a JWT: check what {assertion} returns',
  70021: NO_MATCH,
  700211: NO_MATCH,
  700212: NO_MATCH,
  700213: NO_MATCH,
}

/**
 * `client_assertion` from a callback (federated credentials): called for every upstream token
 * request; the result must be a non-empty string.
 *
 * @param callback returns the assertion (a JWT)
 * @param option the option name for messages
 * @param kind `clientAssertion` or `federatedTokenFile`
 * @param fingerprint a fingerprint when the source can be shared (a file path), else random
 */
export function _assertionAuth(
  callback: () => string | Promise<string>,
  option: string,
  kind: 'clientAssertion' | 'federatedTokenFile' = 'clientAssertion',
  fingerprint: string = crypto.randomUUID(),
): _ClientAuth {
  return {
    kind,
    fingerprint,
    advice: FEDERATED_ADVICE,
    async apply(form) {
      let value: unknown
      try {
        value = await callback()
      } catch (e) {
        if (e instanceof CredentialUnavailableError) throw e
        throw new CredentialUnavailableError(
          `${option} failed (${e instanceof Error ? e.name : typeof e}); see the cause`,
          { cause: e },
        )
      }
      if (typeof value !== 'string' || !value.trim()) {
        throw new CredentialUnavailableError(
          `${option} returned ${
            typeof value === 'string' ? 'an empty string' : value === null ? 'null' : typeof value
          }; it must return the federated token (a JWT)`,
        )
      }
      form.client_assertion_type = JWT_BEARER_ASSERTION
      form.client_assertion = value.trim()
    },
  }
}
