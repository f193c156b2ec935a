/**
 * What every credential shares, without any credential that speaks a protocol: tokens and
 * audiences, clouds, errors, the token cache and stores, the base class, and the two credentials
 * that need no network (`TokenAuthentication`, `ArmTokenAuthentication`). Each credential subpath
 * (`@aml-edge/auth/service-principal`, `/msi`, `/interactive`, `/azure-cli`, `/azureml-token`)
 * re-exports all of this, so one import line is enough; `@aml-edge/auth` exports everything.
 *
 * @example A token from a callback
 * ```ts
 * import { TokenAuthentication } from '@aml-edge/auth/core'
 *
 * const auth = new TokenAuthentication(() => ({ token: 'opaque', expiresOn: 4102444800 }))
 * const header = await auth.getAuthenticationHeader()
 * console.assert(header.Authorization === 'Bearer opaque')
 * ```
 *
 * @module
 */
export { AccessToken, Audience } from '../access_token.ts'
export {
  AzureChinaCloud,
  AzureCloud,
  AzureUSGovernment,
  type Cloud,
  type CloudName,
  getCloud,
} from '../clouds.ts'
export type { Env, FileReader } from '../env.ts'
export {
  AmlAuthError,
  type AmlAuthErrorOptions,
  AuthenticationError,
  type AuthenticationErrorDetails,
  CredentialUnavailableError,
  type ErrorCode,
} from '../errors.ts'
export type { FetchLike, HttpContext, RetryOptions } from '../http.ts'
export {
  createTokenCache,
  defaultTokenCache,
  type TokenCache,
  type TokenCacheOptions,
} from '../token_cache.ts'
export { memoryTokenStore, type StoreKey, type TokenStore } from '../token_store.ts'
export {
  AbstractAuthentication,
  type CredentialOptions,
  type GetTokenOptions,
  type SignedFetchInit,
  type SubscriptionInfo,
  type TokenRequest,
} from '../credentials/abstract.ts'
export {
  ArmTokenAuthentication,
  type ArmTokenAuthenticationOptions,
} from '../credentials/arm_token.ts'
export {
  TokenAuthentication,
  type TokenCallback,
  type TokenCallbackResult,
} from '../credentials/token.ts'
