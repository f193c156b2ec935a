/**
 * `AzureCliAuthentication` (tokens from `az account get-access-token`) and everything of
 * `@aml-edge/auth/core`, without the other credentials.
 *
 * @example The signed-in Azure CLI account
 * ```ts
 * import { AzureCliAuthentication } from '@aml-edge/auth/azure-cli'
 *
 * const auth = new AzureCliAuthentication()
 * async function armHeader() {
 *   return await auth.getAuthenticationHeader()
 * }
 * ```
 *
 * @module
 */
export * from './core.ts'
export {
  AzureCliAuthentication,
  type AzureCliAuthenticationOptions,
  type CommandResult,
  type CommandRunner,
} from '../credentials/azure_cli.ts'
