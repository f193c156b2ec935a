/**
 * `servicePrincipalFromEnvironment()`: a `ServicePrincipalAuthentication` from the variables the
 * Azure SDKs read. Its own module, because it carries the certificate-file and federated-token-file
 * code that a credential built from options does not need.
 *
 * @module
 */
import { CredentialUnavailableError } from '../errors.ts'
import { defaultFileReader, type Env, type FileReader, resolveEnv } from '../env.ts'
import { _assertionAuth, type _ClientAuth } from '../_client_auth.ts'
import { _checkTenantId } from '../_validate.ts'
import { _OPENSSL_NOCRYPT, _pfxMessage } from '../_pem.ts'
import type { CredentialOptions } from './abstract.ts'
import { _certificateFileAuth } from './client_certificate.ts'
import {
  _checkAuthority,
  type _Internal,
  _internal,
  ServicePrincipalAuthentication,
  type ServicePrincipalAuthenticationOptions,
} from './service_principal.ts'

/** Options of {@linkcode servicePrincipalFromEnvironment}. */
export interface ServicePrincipalFromEnvironmentOptions extends CredentialOptions {
  /** Reads `AZURE_CLIENT_CERTIFICATE_PATH` and `AZURE_FEDERATED_TOKEN_FILE` (default: Deno's). */
  readFile?: FileReader | undefined
  /** A tenant that takes precedence over the tenant variables. */
  tenantId?: string | undefined
}

const AML = [
  'AZUREML_SERVICE_PRINCIPAL_ID',
  'AZUREML_SERVICE_PRINCIPAL_PASSWORD',
  'AZUREML_SERVICE_PRINCIPAL_TENANT_ID',
] as const
const SOURCES = [
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_FEDERATED_TOKEN_FILE',
] as const

/**
 * A service principal from environment variables, checked in this order:
 * 1. `AZUREML_SERVICE_PRINCIPAL_ID`, `AZUREML_SERVICE_PRINCIPAL_PASSWORD`,
 *    `AZUREML_SERVICE_PRINCIPAL_TENANT_ID` (the Azure ML SDK's ambient service principal);
 * 2. `AZURE_TENANT_ID` and `AZURE_CLIENT_ID` with, in this order of preference,
 *    `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH` (one PEM file with the key and the
 *    certificate(s); `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true|1` adds `x5c`) or
 *    `AZURE_FEDERATED_TOKEN_FILE` (workload identity: re-read when older than 5 minutes); plus
 *    `AZURE_AUTHORITY_HOST` and `AZURE_ADDITIONALLY_ALLOWED_TENANTS` (`;`-separated).
 *
 * No file is read here: the certificate file is read on the first token request (and re-read
 * after a failed read), so this factory stays synchronous and works in constructors. Messages
 * (including Entra advice) name the variables.
 *
 * @param env the variables (default: `options.env`, else the runtime's environment)
 * @param options common options, a `readFile` for the files, a `tenantId` taking precedence
 * @returns the credential
 * @throws {CredentialUnavailableError} naming the missing variables, or when the certificate is
 * password protected or PKCS#12
 * @throws {TypeError} when a variable holds an invalid value (the message names it)
 *
 * @example From the variables of a Kubernetes pod with workload identity
 * ```ts
 * import { servicePrincipalFromEnvironment } from '@aml-edge/auth'
 *
 * const auth = servicePrincipalFromEnvironment({
 *   AZURE_TENANT_ID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
 *   AZURE_CLIENT_ID: '00000000-0000-0000-0000-000000000001',
 *   AZURE_FEDERATED_TOKEN_FILE: '/var/run/secrets/azure/tokens/azure-identity-token',
 * })
 * console.assert(String(auth).includes('credential=federatedTokenFile'))
 * ```
 */
export function servicePrincipalFromEnvironment(
  env?: Env,
  options: ServicePrincipalFromEnvironmentOptions = {},
): ServicePrincipalAuthentication {
  const { readFile = defaultFileReader, tenantId: tenantOption, ...common } = options
  const e = resolveEnv(env ?? common.env)
  const get = (name: string) => e[name]?.trim() || undefined
  const make = (o: object, internal: _Internal) =>
    new ServicePrincipalAuthentication({
      ...common,
      env: e,
      ...o,
      [_internal]: internal,
    } as unknown as ServicePrincipalAuthenticationOptions)
  const tenantName = (variable: string) => tenantOption !== undefined ? 'tenantId' : variable

  const amlMissing = AML.filter((n, i) => !get(n) && !(i === 2 && tenantOption !== undefined))
  if (!amlMissing[0]) {
    const tenant = tenantName(AML[2])
    return make({
      tenantId: _checkTenantId(tenantOption ?? get(AML[2]), tenant),
      servicePrincipalId: get(AML[0]),
      servicePrincipalPassword: e[AML[1]],
    }, {
      names: { clientId: AML[0], tenantId: tenant, secret: AML[1] },
      allowedName: 'additionallyAllowedTenants',
    })
  }

  const tenant = tenantOption ?? get('AZURE_TENANT_ID')
  const clientId = get('AZURE_CLIENT_ID')
  const source = SOURCES.find(get)
  if (tenant === undefined || clientId === undefined || source === undefined) {
    if (!source && tenant && clientId && get('AZURE_USERNAME')) {
      throw new CredentialUnavailableError(
        'AZURE_USERNAME/AZURE_PASSWORD (username and password sign-in) is not supported; set ' +
          SOURCES.join(', ').replace(/, (?!.*,)/, ' or '),
      )
    }
    const missing = [
      ...tenant === undefined ? ['AZURE_TENANT_ID'] : [],
      ...clientId === undefined ? ['AZURE_CLIENT_ID'] : [],
      ...source === undefined ? [`one of ${SOURCES.join(', ')}`] : [],
    ]
    const azureSeen = ['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', ...SOURCES].some(get)
    const amlSeen = AML.some(get)
    const parts = [
      ...amlSeen && !azureSeen
        ? []
        : [`${missing.join(', ')} (for AZURE_TENANT_ID/AZURE_CLIENT_ID sign-in)`],
      ...azureSeen && !amlSeen
        ? []
        : [`${amlMissing.join(', ')} (for the Azure ML service principal variables)`],
    ]
    throw new CredentialUnavailableError(
      `No service principal is configured in the environment; set ${parts.join(', or ')}`,
    )
  }

  const allowed = (e.AZURE_ADDITIONALLY_ALLOWED_TENANTS ?? '').split(';').map((t) => t.trim())
    .filter((t) => t)
  for (const t of allowed) if (t !== '*') _checkTenantId(t, 'AZURE_ADDITIONALLY_ALLOWED_TENANTS')
  const authorityHost = get('AZURE_AUTHORITY_HOST')
  const path = get(source)!
  let auth: _ClientAuth | undefined
  if (source === 'AZURE_CLIENT_CERTIFICATE_PATH') {
    if (get('AZURE_CLIENT_CERTIFICATE_PASSWORD')) {
      throw new CredentialUnavailableError(
        'AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but password-protected keys are not ' +
          `supported: convert the key once with ${_OPENSSL_NOCRYPT}, point ${source} at the ` +
          'result and unset the password',
      )
    }
    if (/\.(pfx|p12)$/i.test(path)) {
      throw new CredentialUnavailableError(_pfxMessage(source, 'names a'))
    }
    const chain = /^(true|1)$/i.test(get('AZURE_CLIENT_SEND_CERTIFICATE_CHAIN') ?? '')
    auth = _certificateFileAuth(path, readFile, chain, source)
  } else if (source === 'AZURE_FEDERATED_TOKEN_FILE') {
    auth = _federatedTokenFileAuth(path, readFile, common.now ?? Date.now, source)
  }
  const tenantVariable = tenantName('AZURE_TENANT_ID')
  return make({
    tenantId: _checkTenantId(tenant, tenantVariable),
    servicePrincipalId: clientId,
    ...authorityHost !== undefined
      ? { authorityHost: _checkAuthority(authorityHost, 'AZURE_AUTHORITY_HOST') }
      : {},
    additionallyAllowedTenants: allowed,
    ...auth ? {} : { servicePrincipalPassword: e.AZURE_CLIENT_SECRET },
  }, {
    ...auth ? { auth } : {},
    names: {
      clientId: 'AZURE_CLIENT_ID',
      tenantId: tenantVariable,
      secret: SOURCES[0],
      certificate: SOURCES[1],
      assertion: SOURCES[2],
    },
    allowedName: 'AZURE_ADDITIONALLY_ALLOWED_TENANTS',
  })
}

/**
 * A federated token read from a file (Kubernetes workload identity): re-read when the cached
 * content is older than 5 minutes (kubelet rotates the projected token at 80 % of its life), and
 * trimmed; an empty file is an error.
 *
 * @param path the file, e.g. `AZURE_FEDERATED_TOKEN_FILE`
 * @param readFile the file reader
 * @param now the credential's clock
 * @param option the option or variable name for messages
 */
export function _federatedTokenFileAuth(
  path: string,
  readFile: FileReader,
  now: () => number,
  option: string,
): _ClientAuth {
  let cached: { value: string; readAt: number } | undefined
  const read = async (): Promise<string> => {
    const t = now()
    if (cached && t - cached.readAt < 300_000) return cached.value
    let text: unknown
    try {
      text = await readFile(path)
    } catch (e) {
      throw new CredentialUnavailableError(
        `Cannot read the federated token file named by ${option}; check the path and that the ` +
          'service account token is projected into this pod',
        { cause: e },
      )
    }
    const value = typeof text === 'string' ? text.trim() : ''
    if (!value) {
      throw new CredentialUnavailableError(
        `The federated token file named by ${option} is empty; check the token projection`,
      )
    }
    cached = { value, readAt: t }
    return value
  }
  return _assertionAuth(read, `Reading ${option}`, 'federatedTokenFile', 'w:' + path)
}
