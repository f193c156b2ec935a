/**
 * `InteractiveLoginAuthentication` (ambient sources, device code, authorization code + PKCE,
 * refresh tokens) and everything of `@aml-edge/auth/core`, without the other credentials.
 *
 * @example Device code sign-in, printed to the console
 * ```ts
 * import { InteractiveLoginAuthentication } from '@aml-edge/auth/interactive'
 *
 * const auth = new InteractiveLoginAuthentication({
 *   force: true,
 *   onDeviceCode: (info) => console.log(info.message),
 * })
 * async function signIn() {
 *   return await auth.getAuthenticationHeader()
 * }
 * ```
 *
 * @module
 */
export * from './core.ts'
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
} from '../credentials/interactive.ts'
