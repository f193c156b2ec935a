/**
 * `MsiAuthentication` (every managed-identity source) and everything of `@aml-edge/auth/core`,
 * without the other credentials.
 *
 * @example The managed identity of an Azure VM
 * ```ts
 * import { MsiAuthentication } from '@aml-edge/auth/msi'
 *
 * const auth = new MsiAuthentication({ env: {} })
 * console.assert(auth.source === 'imds')
 * ```
 *
 * @module
 */
export * from './core.ts'
export {
  type ManagedIdentityConfig,
  type ManagedIdentitySource,
  MsiAuthentication,
  type MsiAuthenticationOptions,
  type MsiAvailabilityOptions,
} from '../credentials/msi.ts'
