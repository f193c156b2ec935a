/**
 * Azure Machine Learning and Microsoft Entra ID authentication for web-standard runtimes
 * (Deno, Node 18+, Bun, Cloudflare Workers), using only `fetch` and Web Crypto. The classes carry
 * the names of the Python SDK's `azureml.core.authentication`; every one is a `@azure/core-auth`
 * `TokenCredential`, and every token goes through one single-flight cache.
 *
 * @example Get an ARM header from a token callback
 * ```ts
 * import { TokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = new TokenAuthentication(() => ({ token: 'opaque', expiresOn: 4102444800 }))
 * const header = await auth.getAuthenticationHeader()
 * console.assert(header.Authorization === 'Bearer opaque')
 * ```
 *
 * @module
 */
export { AccessToken, Audience } from './src/access_token.ts'
export {
  AzureChinaCloud,
  AzureCloud,
  AzureUSGovernment,
  type Cloud,
  type CloudName,
  getCloud,
} from './src/clouds.ts'
export type { Env, FileReader } from './src/env.ts'
export {
  AmlAuthError,
  type AmlAuthErrorOptions,
  AuthenticationError,
  type AuthenticationErrorDetails,
  CredentialUnavailableError,
  type ErrorCode,
} from './src/errors.ts'
export type { FetchLike, HttpContext, RetryOptions } from './src/http.ts'
export {
  createTokenCache,
  defaultTokenCache,
  type TokenCache,
  type TokenCacheOptions,
} from './src/token_cache.ts'
export { memoryTokenStore, type StoreKey, type TokenStore } from './src/token_store.ts'
export {
  AbstractAuthentication,
  type CredentialOptions,
  type GetTokenOptions,
  type SignedFetchInit,
  type SubscriptionInfo,
  type TokenRequest,
} from './src/credentials/abstract.ts'
export {
  ArmTokenAuthentication,
  type ArmTokenAuthenticationOptions,
} from './src/credentials/arm_token.ts'
export {
  TokenAuthentication,
  type TokenCallback,
  type TokenCallbackResult,
} from './src/credentials/token.ts'
export {
  type AutoRefresh,
  type AutoRefreshOptions,
  type AzureMLRunScope,
  AzureMLTokenAuthentication,
  type AzureMLTokenAuthenticationOptions,
  type AzureMLTokenCreateOptions,
  type AzureMLTokenFromEnvironmentOptions,
  type DirectoryLister,
  type RunTokenFiles,
  type TextFileWriter,
} from './src/credentials/azureml_token.ts'
export {
  type ManagedIdentityConfig,
  type ManagedIdentitySource,
  MsiAuthentication,
  type MsiAuthenticationOptions,
  type MsiAvailabilityOptions,
} from './src/credentials/msi.ts'
export {
  type AccountInfo,
  type AmbientSource,
  type AuthorizationRequest,
  AZURE_CLI_CLIENT_ID,
  type BeginAuthorizationOptions,
  type DeviceCodeCallback,
  type DeviceCodeInfo,
  InteractiveLoginAuthentication,
  type InteractiveLoginAuthenticationOptions,
} from './src/credentials/interactive.ts'
export {
  AzureCliAuthentication,
  type AzureCliAuthenticationOptions,
  type CommandResult,
  type CommandRunner,
} from './src/credentials/azure_cli.ts'
export {
  type DenoKvLike,
  type DenoKvTokenStore,
  denoKvTokenStore,
  type DenoKvTokenStoreOptions,
} from './src/token_store_deno_kv.ts'
export {
  type CertificateCredential,
  ServicePrincipalAuthentication,
  type ServicePrincipalAuthenticationOptions,
  type ServicePrincipalFromEnvironmentOptions,
} from './src/credentials/service_principal.ts'
