/**
 * `AzureMLTokenAuthentication` (Azure ML run tokens and their refresh) and everything of
 * `@aml-edge/auth/core`, without the other credentials.
 *
 * @example Inside an Azure ML run
 * ```ts
 * import { AzureMLTokenAuthentication } from '@aml-edge/auth/azureml-token'
 *
 * function runCredential(env: Record<string, string | undefined>) {
 *   return AzureMLTokenAuthentication.fromEnvironment(env)
 * }
 * ```
 *
 * @module
 */
export * from './core.ts'
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
} from '../credentials/azureml_token.ts'
