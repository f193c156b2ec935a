/**
 * `ArmTokenAuthentication`: wraps an ARM token the caller already has.
 *
 * @module
 */
import { AccessToken } from '../access_token.ts'
import { AmlAuthError } from '../errors.ts'
import { _jwtExpiry } from '../jwt.ts'
import { _checkString } from '../_validate.ts'
import {
  _uniqueIdentity,
  AbstractAuthentication,
  type CredentialOptions,
  type TokenRequest,
} from './abstract.ts'

/** Options of {@linkcode ArmTokenAuthentication}. */
export interface ArmTokenAuthenticationOptions extends CredentialOptions {
  /** Expiry in epoch seconds, for tokens that are not JWTs (default: the JWT `exp`). */
  expiresOn?: number
}

/**
 * A credential around an ARM access token obtained elsewhere. Only the ARM audience is served;
 * any other audience throws `ERR_UNSUPPORTED_AUDIENCE`. An expired token throws
 * `ERR_TOKEN_EXPIRED` instead of being sent (the Python SDK sent it and let ARM refuse it).
 *
 * @example Wrap a token and replace it later
 * ```ts
 * import { ArmTokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = new ArmTokenAuthentication('opaque-token', { expiresOn: 4102444800 })
 * auth.updateArmAccessToken('newer-token', 4102444800)
 * const { Authorization } = await auth.getAuthenticationHeader()
 * console.assert(Authorization === 'Bearer newer-token')
 * ```
 */
export class ArmTokenAuthentication extends AbstractAuthentication {
  #token: AccessToken
  #identity: string | undefined = undefined

  /**
   * Wraps an ARM token; no I/O.
   *
   * @param armToken the ARM access token
   * @param options common options and `expiresOn` for non-JWT tokens
   * @throws {TypeError} when the token is empty, or not a JWT and no `expiresOn` is given
   */
  constructor(armToken: string, options: ArmTokenAuthenticationOptions = {}) {
    super(options)
    this.#token = toAccessToken(armToken, options.expiresOn)
  }

  /**
   * Replaces the held token.
   *
   * @param armToken the new ARM access token
   * @param expiresOn expiry in epoch seconds, for non-JWT tokens
   * @throws {TypeError} as the constructor
   */
  updateArmAccessToken(armToken: string, expiresOn?: number): void {
    this.#token = toAccessToken(armToken, expiresOn)
    this._forgetTokens()
  }

  /**
   * A per-instance identity: a user-supplied source is never shared. Made on first use, since
   * Workers refuse random values at global scope, where credentials are often built.
   */
  protected _cacheIdentity(): string {
    return this.#identity ??= _uniqueIdentity('arm-token')
  }

  /** Serves the held token for the ARM scope only. */
  protected _requestToken(request: TokenRequest): Promise<AccessToken> {
    const arm = this.cloud.activeDirectoryResourceId
    const accepted = [
      arm + '/.default',
      arm.replace(/\/$/, '') + '/.default',
      this.cloud.resourceManager.replace(/\/?$/, '/.default'),
    ]
    for (const scope of request.scopes) {
      if (!accepted.includes(scope)) {
        return Promise.reject(
          new AmlAuthError(
            'ERR_UNSUPPORTED_AUDIENCE',
            `ArmTokenAuthentication holds an ARM token only and cannot serve scope ${scope}; use a credential that can request it`,
          ),
        )
      }
    }
    if (this.#token.expiresOnTimestamp <= this._http.now()) {
      return Promise.reject(
        new AmlAuthError(
          'ERR_TOKEN_EXPIRED',
          'The ARM token given to ArmTokenAuthentication has expired; call updateArmAccessToken() with a new one',
        ),
      )
    }
    return Promise.resolve(this.#token)
  }
}

function toAccessToken(token: string, expiresOn: number | undefined): AccessToken {
  _checkString(token, 'armToken')
  if (expiresOn !== undefined) {
    if (typeof expiresOn !== 'number' || !Number.isFinite(expiresOn)) {
      throw new TypeError('expiresOn must be epoch seconds')
    }
    return new AccessToken(token, expiresOn)
  }
  try {
    return new AccessToken(token, _jwtExpiry(token, 'armToken'))
  } catch {
    throw new TypeError('armToken is not a JWT with an exp claim; pass expiresOn (epoch seconds)')
  }
}
