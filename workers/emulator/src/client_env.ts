/**
 * The environment variables a client needs to find the emulator, per managed-identity source
 * (and for a service principal), as the real platforms set them.
 *
 * @module
 */
import { DEMO } from './config.ts'
import { MI_PATHS } from './managed_identity.ts'

/** Sources {@link emulatorEnv} knows. */
export type EmulatorEnvSource =
  | 'imds'
  | 'app-service'
  | 'azureml'
  | 'cloud-shell'
  | 'arc'
  | 'service-fabric'
  | 'service-principal'

/** Every {@link EmulatorEnvSource}. */
export const ENV_SOURCES: readonly EmulatorEnvSource[] = Object.freeze(
  [
    'imds',
    'app-service',
    'azureml',
    'cloud-shell',
    'arc',
    'service-fabric',
    'service-principal',
  ] as const,
)

/** Options of {@link emulatorEnv}. */
export interface EmulatorEnvOptions {
  /** The managed-identity secret the emulator expects (default {@link DEMO}.msiSecret). */
  secret?: string
  /** `IDENTITY_SERVER_THUMBPRINT` for Service Fabric (default {@link DEMO}.serviceFabricThumbprint). */
  thumbprint?: string
  /** `DEFAULT_IDENTITY_CLIENT_ID` for Azure ML (default the demo system identity's client id). */
  defaultIdentityClientId?: string
  /** Service principal: tenant (default {@link DEMO}.tenantId). */
  tenantId?: string
  /** Service principal: client id (default {@link DEMO}.clientId). */
  clientId?: string
  /** Service principal: client secret (default {@link DEMO}.clientSecret). */
  clientSecret?: string
}

/**
 * The environment variables that point a client at the emulator for one source.
 *
 * @param origin The emulator's origin, e.g. `http://127.0.0.1:8400`.
 * @param source Which source to configure.
 * @param opts Secrets and ids when they differ from the demo values.
 * @returns A fresh object of variable names to values.
 * @throws {RangeError} For an unknown source.
 * @example Point a client at the App Service source
 * ```ts
 * import { emulatorEnv } from './client_env.ts'
 * const env = emulatorEnv('http://127.0.0.1:8400', 'app-service')
 * // { IDENTITY_ENDPOINT: 'http://127.0.0.1:8400/msi/app-service/token', IDENTITY_HEADER: 'emulator-msi-secret' }
 * ```
 */
export function emulatorEnv(
  origin: string,
  source: EmulatorEnvSource,
  opts: EmulatorEnvOptions = {},
): Record<string, string> {
  const o = origin.replace(/\/+$/, '')
  const secret = opts.secret ?? DEMO.msiSecret
  switch (source) {
    case 'imds':
      return { AZURE_POD_IDENTITY_AUTHORITY_HOST: o }
    case 'app-service':
      return { IDENTITY_ENDPOINT: `${o}${MI_PATHS.appService}`, IDENTITY_HEADER: secret }
    case 'azureml':
      return {
        MSI_ENDPOINT: `${o}${MI_PATHS.azureml}`,
        MSI_SECRET: secret,
        DEFAULT_IDENTITY_CLIENT_ID: opts.defaultIdentityClientId ?? DEMO.systemIdentity.clientId,
      }
    case 'cloud-shell':
      return { MSI_ENDPOINT: `${o}${MI_PATHS.cloudShell}` }
    case 'arc':
      return { IDENTITY_ENDPOINT: `${o}${MI_PATHS.arc}`, IMDS_ENDPOINT: `${o}${MI_PATHS.arcImds}` }
    case 'service-fabric':
      return {
        IDENTITY_ENDPOINT: `${o}${MI_PATHS.serviceFabric}`,
        IDENTITY_HEADER: secret,
        IDENTITY_SERVER_THUMBPRINT: opts.thumbprint ?? DEMO.serviceFabricThumbprint,
      }
    case 'service-principal': {
      const tenantId = opts.tenantId ?? DEMO.tenantId
      const clientId = opts.clientId ?? DEMO.clientId
      const clientSecret = opts.clientSecret ?? DEMO.clientSecret
      return {
        AZURE_AUTHORITY_HOST: o,
        AZURE_TENANT_ID: tenantId,
        AZURE_CLIENT_ID: clientId,
        AZURE_CLIENT_SECRET: clientSecret,
        AZUREML_SERVICE_PRINCIPAL_TENANT_ID: tenantId,
        AZUREML_SERVICE_PRINCIPAL_ID: clientId,
        AZUREML_SERVICE_PRINCIPAL_PASSWORD: clientSecret,
      }
    }
    default:
      throw new RangeError(`source must be one of: ${ENV_SOURCES.join(', ')}`)
  }
}
