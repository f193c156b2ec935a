/**
 * `ServicePrincipalAuthentication` (client secret, `clientCertificate()`, federated assertion),
 * `servicePrincipalFromEnvironment()` and everything of `@aml-edge/auth/core`, without the other
 * credentials: the smallest import for a Worker or function that signs in as an app registration.
 * A secret-based credential does not carry the certificate code (tree shaking drops it).
 *
 * @example A secret credential
 * ```ts
 * import { ServicePrincipalAuthentication } from '@aml-edge/auth/service-principal'
 *
 * const auth = new ServicePrincipalAuthentication({
 *   tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
 *   servicePrincipalId: '00000000-0000-0000-0000-000000000001',
 *   servicePrincipalPassword: 'the secret value',
 * })
 * console.assert(!JSON.stringify(auth).includes('the secret value'))
 * ```
 *
 * @module
 */
export * from './core.ts'
export {
  type ClientCertificate,
  clientCertificate,
  type ClientCertificateInput,
} from '../credentials/client_certificate.ts'
export {
  ServicePrincipalAuthentication,
  type ServicePrincipalAuthenticationOptions,
} from '../credentials/service_principal.ts'
export {
  servicePrincipalFromEnvironment,
  type ServicePrincipalFromEnvironmentOptions,
} from '../credentials/service_principal_env.ts'
