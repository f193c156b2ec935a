/**
 * `TokenAuthentication`: tokens from a user callback, per audience.
 *
 * @module
 */
import { AccessToken } from '../access_token.ts'
import { _resourceOf } from '../clouds.ts'
import { AmlAuthError } from '../errors.ts'
import { _jwtExpiry } from '../jwt.ts'
import {
  _uniqueIdentity,
  AbstractAuthentication,
  type CredentialOptions,
  type TokenRequest,
} from './abstract.ts'

/** What a {@linkcode TokenCallback} may return: a JWT string, or a token with its expiry. */
export type TokenCallbackResult =
  | string
  | AccessToken
  | { token: string; expiresOn: number }
  | { token: string; expiresOnTimestamp: number }

/**
 * Returns a token for a resource id: `https://management.core.windows.net/` (ARM) or
 * `https://ml.azure.com` (Azure ML) in the public cloud.
 */
export type TokenCallback = (
  resourceId: string,
) => TokenCallbackResult | Promise<TokenCallbackResult>

/**
 * A credential that asks a callback for each audience's token. Results are cached until their
 * refresh point (the Python SDK called the callback on every request). `getToken` accepts the
 * ARM and Azure ML scopes, or the `Audience` names; other scopes throw `ERR_UNSUPPORTED_AUDIENCE`.
 *
 * @example Tokens from your own source
 * ```ts
 * import { Audience, TokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = new TokenAuthentication((resource) => ({
 *   token: resource === 'https://ml.azure.com' ? 'aml-token' : 'arm-token',
 *   expiresOn: Math.floor(Date.now() / 1000) + 3600,
 * }))
 * const aml = await auth.getTokenForAudience(Audience.AZUREML)
 * console.assert(aml.token === 'aml-token')
 * ```
 */
export class TokenAuthentication extends AbstractAuthentication {
  readonly #callback: TokenCallback
  #identity: string | undefined = undefined

  /**
   * Wraps a token callback; no I/O.
   *
   * @param getTokenForAudience the callback, given the resource id of the audience
   * @param options common options
   * @throws {TypeError} when the callback is missing
   */
  constructor(getTokenForAudience: TokenCallback, options: CredentialOptions = {}) {
    super(options)
    if (typeof getTokenForAudience !== 'function') {
      throw new TypeError(
        'getTokenForAudience cannot be null; pass a function (resourceId) => token',
      )
    }
    this.#callback = getTokenForAudience
  }

  /**
   * A per-instance identity: a user-supplied source is never shared. Made on first use, since
   * Workers refuse random values at global scope, where credentials are often built.
   */
  protected _cacheIdentity(): string {
    return this.#identity ??= _uniqueIdentity('token-callback')
  }

  /** Asks the callback for the audience's resource id. */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1) {
      throw new AmlAuthError(
        'ERR_UNSUPPORTED_AUDIENCE',
        'TokenAuthentication serves one audience at a time; call getToken once per audience',
      )
    }
    const resource = this.#resourceFor(request.scopes[0]!)
    return toAccessToken(await this.#callback(resource))
  }

  #resourceFor(scope: string): string {
    const arm = this.cloud.activeDirectoryResourceId
    const aml = this.cloud.amlResourceId
    const r = _resourceOf(scope)
    if (r === arm || r + '/' === arm) return arm
    if (r === aml || r === aml + '/') return aml
    throw new AmlAuthError(
      'ERR_UNSUPPORTED_AUDIENCE',
      `TokenAuthentication serves the ARM and Azure ML audiences only, not scope ${scope}`,
    )
  }
}

function toAccessToken(value: TokenCallbackResult): AccessToken {
  if (value instanceof AccessToken) return value
  if (typeof value === 'string' && value !== '') {
    return new AccessToken(value, _jwtExpiry(value, 'token returned by getTokenForAudience'))
  }
  if (value && typeof value === 'object' && typeof value.token === 'string' && value.token !== '') {
    if ('expiresOn' in value && typeof value.expiresOn === 'number') {
      return new AccessToken(value.token, value.expiresOn)
    }
    if ('expiresOnTimestamp' in value && typeof value.expiresOnTimestamp === 'number') {
      return new AccessToken(value.token, value.expiresOnTimestamp / 1000)
    }
  }
  throw new AmlAuthError(
    'ERR_TOKEN_INVALID',
    'getTokenForAudience must return a JWT string or { token, expiresOn } (epoch seconds)',
  )
}
