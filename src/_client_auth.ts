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
   * Sends one token request authenticated by this credential: calls `request` with the client
   * authentication fields to add to the form (`client_secret`, or `client_assertion_type` and
   * `client_assertion`). A certificate signs a fresh assertion and calls `request` once more when
   * a reused one is refused (a server that enforces single-use `jti`); the other kinds call it
   * once. The retry lives here so that a secret-based credential does not carry it.
   */
  send<T>(
    request: (fields: Record<string, string>) => Promise<T>,
    ctx: _ClientAuthContext,
  ): Promise<T>
}

/**
 * The strategies behind the values `clientCertificate()` and `servicePrincipalFromEnvironment()`
 * hand out: the service principal looks its `certificate` option up here, so that a plain object
 * is refused without loading the certificate code.
 */
export const _certificates: WeakMap<object, _ClientAuth> = /* @__PURE__ */ new WeakMap()

/**
 * `client_secret` authentication. The fingerprint (for the cache identity) is 64 bits from two
 * independent 32-bit multiply-xor lanes (FNV-1a and a murmur-style multiplier) over a
 * domain-separated string. Not cryptographic (a sync SHA-256 would not fit the secret-only bundle
 * budget), but neither lane is linear, so equal fingerprints cannot be written by hand the way a
 * small-base polynomial hash allows ("Aa" and "BB"); the value is never shown (the cache keeps it
 * in private state, store names are SHA-256 hashes of it), and the secret never enters it.
 *
 * @param secret the client secret (checked non-empty by the caller)
 */
export function _secretAuth(secret: string): _ClientAuth {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (const ch of 'sp-secret\0' + secret) {
    const c = ch.codePointAt(0)!
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x5bd1e995) ^ b >>> 15
  }
  return {
    kind: 'secret',
    fingerprint: (a >>> 0).toString(36) + '.' + (b >>> 0).toString(36),
    send: (request) => request({ client_secret: secret }),
  }
}

const NO_MATCH =
  'No federated identity credential matches the assertion: check issuer, subject, audience of {clientId}'

/** Advice for refusals of a federated assertion. */
const FEDERATED_ADVICE: EntraAdviceTable = {
  700024: 'Check {assertion}: the assertion expired',
  50027: 'Check {assertion}: not a JWT',
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
 * @param kind `clientAssertion` or `federatedTokenFile` (default: `option`, which is
 * `clientAssertion` for the option of that name)
 * @param fingerprint a fingerprint when the source can be shared (a file path), else random
 */
export function _assertionAuth(
  callback: () => string | Promise<string>,
  option: string,
  kind: _ClientAuthKind = option as _ClientAuthKind,
  fingerprint: string = crypto.randomUUID(),
): _ClientAuth {
  return {
    kind,
    fingerprint,
    advice: FEDERATED_ADVICE,
    async send(request) {
      let value: unknown
      try {
        value = await callback()
      } catch (e) {
        throw e instanceof CredentialUnavailableError ? e : new CredentialUnavailableError(
          `${option} failed (${e instanceof Error ? e.name : typeof e}); see the cause`,
          { cause: e },
        )
      }
      if (typeof value != 'string' || !(value = value.trim())) {
        throw new CredentialUnavailableError(
          `${option} returned ${
            value === '' ? 'an empty string' : value === null ? 'null' : typeof value
          }, not a JWT`,
        )
      }
      return request({
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: value as string,
      })
    },
  }
}
