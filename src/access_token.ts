/**
 * Token values: the `Audience` enum and the `AccessToken` class.
 *
 * @module
 */
import { _inspectAsString } from './_inspect.ts'

/**
 * The two audiences the Python SDK knows: Azure Resource Manager and the Azure ML data plane.
 *
 * @example Ask for an Azure ML token
 * ```ts
 * import { Audience, TokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = new TokenAuthentication((resource) => ({ token: 'opaque', expiresOn: 4102444800 }))
 * const token = await auth.getTokenForAudience(Audience.AZUREML)
 * console.assert(token.token === 'opaque')
 * ```
 */
export const Audience: { readonly ARM: 'ARM'; readonly AZUREML: 'AZUREML' } = Object.freeze({
  ARM: 'ARM',
  AZUREML: 'AZUREML',
})

/** `"ARM"` or `"AZUREML"`. */
export type Audience = typeof Audience[keyof typeof Audience]

/**
 * An access token. `expiresOn` is in epoch **seconds**, as in the Python SDK;
 * `expiresOnTimestamp` (ms) and `refreshAfterTimestamp` (ms) make it a `@azure/core-auth`
 * `AccessToken` too. Serializing or inspecting it never shows the token itself.
 *
 * @example Build one
 * ```ts
 * import { AccessToken } from '@aml-edge/auth'
 *
 * const t = new AccessToken('eyJ...', 1_900_000_000)
 * console.assert(t.expiresOnTimestamp === 1_900_000_000_000)
 * console.assert(!JSON.stringify(t).includes('eyJ'))
 * ```
 */
export class AccessToken {
  /** The bearer token. */
  declare readonly token: string
  /** Expiry, epoch seconds. */
  declare readonly expiresOn: number
  /** Expiry, epoch milliseconds (`@azure/core-auth`). */
  declare readonly expiresOnTimestamp: number
  /** When a holder should refresh, epoch milliseconds, if the service said so. */
  declare readonly refreshAfterTimestamp?: number
  /** Token type, `Bearer`. */
  declare readonly tokenType: 'Bearer'

  /**
   * Creates a token value.
   *
   * @param token the bearer token
   * @param expiresOn expiry in epoch seconds
   * @param refreshAfterTimestamp optional refresh point in epoch milliseconds
   */
  constructor(token: string, expiresOn: number, refreshAfterTimestamp?: number) {
    if (!token || typeof token !== 'string' || !Number.isFinite(expiresOn)) {
      throw new TypeError('AccessToken needs a non-empty token and a finite expiresOn')
    }
    this.token = token
    this.expiresOn = expiresOn
    this.expiresOnTimestamp = Math.round(expiresOn * 1000)
    if (refreshAfterTimestamp !== undefined) this.refreshAfterTimestamp = refreshAfterTimestamp
    this.tokenType = 'Bearer'
    Object.freeze(this)
  }

  /** A JSON view without the token. */
  toJSON(): Record<string, unknown> {
    return { ...this as object, token: '[redacted]' }
  }

  /** A description without the token (also what `Deno.inspect` and `util.inspect` show). */
  toString(): string {
    return `AccessToken(expiresOn=${new Date(this.expiresOnTimestamp).toISOString()})`
  }
}
_inspectAsString(AccessToken)
