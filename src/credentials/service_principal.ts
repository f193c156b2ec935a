/**
 * `ServicePrincipalAuthentication`: an app registration signs in with a client secret, a
 * certificate (a PS256 client assertion signed with Web Crypto, so it runs on Cloudflare Workers
 * too) or a federated assertion (workload identity), through the client-credentials grant.
 *
 * @module
 */
import type { AccessToken } from '../access_token.ts'
import { AuthenticationError, CredentialUnavailableError } from '../errors.ts'
import { defaultFileReader, type Env, type FileReader, resolveEnv } from '../env.ts'
import {
  type EntraAdvice,
  entraAdvice,
  type EntraAdviceNames,
  entraEndpoint,
  requestEntraToken,
} from '../_entra.ts'
import {
  _assertionAuth,
  _certificateAuth,
  _certificateFileAuth,
  type _ClientAuth,
  _federatedTokenFileAuth,
  _parseCertificateCredential,
  _secretAuth,
  type CertificateCredential,
} from '../_client_auth.ts'
import { _checkAllowedTenants, _checkEndpoint, _checkString, _checkTenantId } from '../_validate.ts'
import {
  _switchTenant,
  AbstractAuthentication,
  type CredentialOptions,
  type TokenRequest,
} from './abstract.ts'

export type { CertificateCredential } from '../_client_auth.ts'

/** Options of {@linkcode ServicePrincipalAuthentication}: exactly one client credential. */
export interface ServicePrincipalAuthenticationOptions extends CredentialOptions {
  /** The directory (tenant) GUID or verified domain. */
  tenantId: string
  /** The application (client) id of the app registration. */
  servicePrincipalId: string
  /** A client secret (its Value, not its Secret ID). */
  servicePrincipalPassword?: string | undefined
  /** A certificate: PEM key (PKCS#8 or PKCS#1) or RSA-PSS `CryptoKey`, and its PEM certificate. */
  certificate?: CertificateCredential | undefined
  /** Returns a federated assertion (a JWT from a trusted issuer); called for every token request. */
  clientAssertion?: (() => string | Promise<string>) | undefined
  /** Entra authority host (default: the cloud's, e.g. `https://login.microsoftonline.com`). */
  authorityHost?: string | undefined
  /** Tenants a per-call `tenantId` may name besides `tenantId`; `"*"` allows any. */
  additionallyAllowedTenants?: string[] | undefined
}

/** Options of {@linkcode ServicePrincipalAuthentication.fromEnvironment}. */
export interface ServicePrincipalFromEnvironmentOptions extends CredentialOptions {
  /** Reads `AZURE_CLIENT_CERTIFICATE_PATH` and `AZURE_FEDERATED_TOKEN_FILE` (default: Deno's). */
  readFile?: FileReader | undefined
  /** A tenant that takes precedence over the tenant variables. */
  tenantId?: string | undefined
}

/** Internal construction path of `fromEnvironment` (a ready strategy, names for messages). */
const INTERNAL: unique symbol = Symbol('ServicePrincipalAuthentication.internal')

interface Internal {
  auth?: _ClientAuth
  names: Partial<EntraAdviceNames>
  allowedName: string
}

const NON_TENANTS = ['common', 'organizations', 'consumers']

/**
 * A service principal (app registration) signing in to Microsoft Entra ID with the
 * client-credentials grant: POST `{authority}/{tenant}/oauth2/v2.0/token` with
 * `grant_type=client_credentials`, `client_id`, `scope`, and the client credential. One request
 * per token (no instance discovery, no metadata document); tokens are cached and shared through
 * the token cache.
 *
 * - `servicePrincipalPassword`: sent as `client_secret`.
 * - `certificate`: a PS256 client assertion (`x5t#S256`, optional `x5c`), signed with Web Crypto;
 *   the key is imported once on first use and an assertion is reused until 60 s before it expires.
 *   Encrypted keys and PKCS#12 files are refused at construction with the `openssl` command that
 *   converts them.
 * - `clientAssertion`: a callback returning a federated token, called for every token request.
 *
 * The constructor validates everything and does no I/O. No secret ever appears in an error,
 * `toString()`, `JSON.stringify()` or `Deno.inspect()`.
 *
 * @example Client secret
 * ```ts
 * import { ServicePrincipalAuthentication } from '@aml-edge/auth'
 *
 * const auth = new ServicePrincipalAuthentication({
 *   tenantId: '72f988bf-86f1-41af-91ab-2d7cd011db47',
 *   servicePrincipalId: '00000000-0000-0000-0000-000000000001',
 *   servicePrincipalPassword: 'the secret value',
 * })
 * console.assert(!JSON.stringify(auth).includes('the secret value'))
 * async function listWorkspaces() {
 *   return await auth.fetch('https://management.azure.com/subscriptions?api-version=2022-12-01')
 * }
 * ```
 *
 * @example Certificate on Cloudflare Workers (PEM from Worker secrets)
 * ```ts
 * import { ServicePrincipalAuthentication } from '@aml-edge/auth'
 *
 * function credentialFor(env: { TENANT: string; CLIENT: string; KEY: string; CERT: string }) {
 *   return new ServicePrincipalAuthentication({
 *     tenantId: env.TENANT,
 *     servicePrincipalId: env.CLIENT,
 *     certificate: { privateKey: env.KEY, certificate: env.CERT, sendCertificateChain: true },
 *     env: {},
 *   })
 * }
 * ```
 *
 * @example Federated assertion (workload identity federation)
 * ```ts
 * import { ServicePrincipalAuthentication } from '@aml-edge/auth'
 *
 * const auth = new ServicePrincipalAuthentication({
 *   tenantId: 'contoso.onmicrosoft.com',
 *   servicePrincipalId: '00000000-0000-0000-0000-000000000001',
 *   clientAssertion: async () => await Promise.resolve('<a JWT from your issuer>'),
 * })
 * console.assert(String(auth).includes('credential=clientAssertion'))
 * ```
 */
export class ServicePrincipalAuthentication extends AbstractAuthentication {
  readonly #tenantId: string
  readonly #clientId: string
  readonly #authority: string
  readonly #auth: _ClientAuth
  readonly #allowed: ReadonlySet<string>
  readonly #allowedName: string
  readonly #advice: EntraAdvice
  readonly #identity: string

  /**
   * Validates the options and parses a certificate synchronously; no I/O (the key is imported
   * on first use).
   *
   * @param options tenant, client id, exactly one client credential, and common options
   * @throws {TypeError} for a bad tenant id, client id, authority, allowed tenant, a missing or
   * second client credential, or a key/certificate that cannot work (encrypted, PKCS#12, EC,
   * damaged, or not matching)
   */
  constructor(options: ServicePrincipalAuthenticationOptions) {
    super(options)
    const internal = (options as { [INTERNAL]?: Internal })[INTERNAL]
    const tenantId = _checkTenantId(options.tenantId, 'tenantId')
    if (NON_TENANTS.includes(tenantId.toLowerCase())) {
      throw new TypeError(
        `tenantId must name the service principal's directory (its GUID or a verified domain), ` +
          `not '${tenantId}'`,
      )
    }
    const clientId = _checkString(options.servicePrincipalId, 'servicePrincipalId')
    if (!/^[^\s]+$/.test(clientId) || [...clientId].some((ch) => ch.charCodeAt(0) < 32)) {
      throw new TypeError('servicePrincipalId must be the application (client) id, without spaces')
    }
    this.#tenantId = tenantId
    this.#clientId = clientId
    this.#authority = checkAuthority(
      options.authorityHost ?? this.cloud.activeDirectory,
      options.authorityHost !== undefined ? 'authorityHost' : 'cloud.activeDirectory',
    )
    this.#allowed = _checkAllowedTenants(
      options.additionallyAllowedTenants,
      'additionallyAllowedTenants',
    )
    this.#allowedName = internal?.allowedName ?? 'additionallyAllowedTenants'
    this.#advice = entraAdvice(internal?.names)
    this.#auth = internal?.auth ?? clientAuthFrom(options)
    this.#identity = [
      'sp',
      this.#authority,
      tenantId.toLowerCase(),
      clientId.toLowerCase(),
      this.#auth.kind,
      this.#auth.fingerprint,
    ].join('|')
  }

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
   * after a failed read), so this factory stays synchronous and works in constructors.
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
   * import { ServicePrincipalAuthentication } from '@aml-edge/auth'
   *
   * const auth = ServicePrincipalAuthentication.fromEnvironment({
   *   AZURE_TENANT_ID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
   *   AZURE_CLIENT_ID: '00000000-0000-0000-0000-000000000001',
   *   AZURE_FEDERATED_TOKEN_FILE: '/var/run/secrets/azure/tokens/azure-identity-token',
   * })
   * console.assert(String(auth).includes('credential=federatedTokenFile'))
   * ```
   */
  static fromEnvironment(
    env?: Env,
    options: ServicePrincipalFromEnvironmentOptions = {},
  ): ServicePrincipalAuthentication {
    const { readFile = defaultFileReader, tenantId: tenantOption, ...common } = options
    const e = resolveEnv(env ?? common.env)
    const base: CredentialOptions = { ...common, env: e }
    const has = (name: string) => typeof e[name] === 'string' && e[name]!.trim() !== ''
    const get = (name: string) => has(name) ? e[name]!.trim() : undefined

    const aml = [
      'AZUREML_SERVICE_PRINCIPAL_ID',
      'AZUREML_SERVICE_PRINCIPAL_PASSWORD',
      'AZUREML_SERVICE_PRINCIPAL_TENANT_ID',
    ]
    const amlMissing = aml.filter((n) =>
      !(has(n) || (n === 'AZUREML_SERVICE_PRINCIPAL_TENANT_ID' && tenantOption !== undefined))
    )
    if (amlMissing.length === 0) {
      const tenantName = tenantOption !== undefined ? 'tenantId' : aml[2]!
      return new ServicePrincipalAuthentication({
        ...base,
        tenantId: envTenant(tenantOption ?? get(aml[2]!), tenantName),
        servicePrincipalId: get(aml[0]!)!,
        servicePrincipalPassword: e[aml[1]!]!,
        [INTERNAL]: {
          names: { clientId: aml[0]!, tenantId: tenantName, secret: aml[1]! },
          allowedName: 'additionallyAllowedTenants',
        },
      } as ServicePrincipalAuthenticationOptions)
    }

    const tenant = tenantOption ?? get('AZURE_TENANT_ID')
    const clientId = get('AZURE_CLIENT_ID')
    const sources = [
      'AZURE_CLIENT_SECRET',
      'AZURE_CLIENT_CERTIFICATE_PATH',
      'AZURE_FEDERATED_TOKEN_FILE',
    ]
    const source = sources.find(has)
    if (tenant === undefined || clientId === undefined || source === undefined) {
      const missing = [
        ...(tenant === undefined ? ['AZURE_TENANT_ID'] : []),
        ...(clientId === undefined ? ['AZURE_CLIENT_ID'] : []),
        ...(source === undefined ? [`one of ${sources.join(', ')}`] : []),
      ]
      const azureSeen = ['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', ...sources].some(has)
      const amlSeen = aml.some(has)
      if (source === undefined && has('AZURE_USERNAME') && tenant && clientId) {
        throw new CredentialUnavailableError(
          'AZURE_USERNAME/AZURE_PASSWORD (username and password sign-in) is not supported; set ' +
            'AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE',
        )
      }
      const azureText = `${missing.join(', ')} (for AZURE_TENANT_ID/AZURE_CLIENT_ID sign-in)`
      const amlText = `${amlMissing.join(', ')} (for the Azure ML service principal variables)`
      const parts = azureSeen && !amlSeen
        ? [azureText]
        : amlSeen && !azureSeen
        ? [amlText]
        : [azureText, amlText]
      throw new CredentialUnavailableError(
        `No service principal is configured in the environment; set ${parts.join(', or ')}`,
      )
    }

    const names: Partial<EntraAdviceNames> = {
      clientId: 'AZURE_CLIENT_ID',
      tenantId: tenantOption !== undefined ? 'tenantId' : 'AZURE_TENANT_ID',
      secret: 'AZURE_CLIENT_SECRET',
      certificate: 'AZURE_CLIENT_CERTIFICATE_PATH',
      assertion: 'AZURE_FEDERATED_TOKEN_FILE',
    }
    const authorityHost = get('AZURE_AUTHORITY_HOST')
    const allowed = (e.AZURE_ADDITIONALLY_ALLOWED_TENANTS ?? '')
      .split(';')
      .map((t) => t.trim())
      .filter((t) => t !== '')
    for (const t of allowed) {
      if (t !== '*') _checkTenantId(t, 'AZURE_ADDITIONALLY_ALLOWED_TENANTS')
    }
    const opts = {
      ...base,
      tenantId: envTenant(tenant, names.tenantId!),
      servicePrincipalId: clientId,
      ...(authorityHost !== undefined
        ? { authorityHost: checkAuthority(authorityHost, 'AZURE_AUTHORITY_HOST') }
        : {}),
      additionallyAllowedTenants: allowed,
    }
    let auth: _ClientAuth | undefined
    let secret: string | undefined
    if (source === 'AZURE_CLIENT_SECRET') {
      secret = e.AZURE_CLIENT_SECRET!
    } else if (source === 'AZURE_CLIENT_CERTIFICATE_PATH') {
      const path = get(source)!
      if (has('AZURE_CLIENT_CERTIFICATE_PASSWORD')) {
        throw new CredentialUnavailableError(
          'AZURE_CLIENT_CERTIFICATE_PASSWORD is set, but password-protected keys are not ' +
            'supported (Web Crypto cannot decrypt them). Convert the PEM file once with ' +
            '`openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.unencrypted.pem` (or, for a ' +
            'PFX, `openssl pkcs12 -in cert.pfx -nodes -out cert.pem`), point ' +
            'AZURE_CLIENT_CERTIFICATE_PATH at the result and unset ' +
            'AZURE_CLIENT_CERTIFICATE_PASSWORD',
        )
      }
      if (/\.(pfx|p12)$/i.test(path)) {
        throw new CredentialUnavailableError(
          'AZURE_CLIENT_CERTIFICATE_PATH names a PKCS#12 (PFX) file, which is not supported; ' +
            'convert it once with `openssl pkcs12 -in cert.pfx -nodes -out cert.pem` and point ' +
            'AZURE_CLIENT_CERTIFICATE_PATH at the PEM file',
        )
      }
      const chain = /^(true|1)$/i.test(get('AZURE_CLIENT_SEND_CERTIFICATE_CHAIN') ?? '')
      auth = _certificateFileAuth(path, readFile, chain, 'AZURE_CLIENT_CERTIFICATE_PATH')
    } else {
      auth = _federatedTokenFileAuth(
        get(source)!,
        readFile,
        base.now ?? Date.now,
        'AZURE_FEDERATED_TOKEN_FILE',
      )
    }
    return new ServicePrincipalAuthentication({
      ...opts,
      ...(secret !== undefined ? { servicePrincipalPassword: secret } : {}),
      [INTERNAL]: { auth, names, allowedName: 'AZURE_ADDITIONALLY_ALLOWED_TENANTS' },
    } as ServicePrincipalAuthenticationOptions)
  }

  /**
   * `sp|{authority}|{tenant}|{clientId}|{kind}|{fingerprint}`: instances with the same client,
   * tenant, authority and credential share tokens; the fingerprint distinguishes secrets (a
   * truncated SHA-256) and certificates (the thumbprint) without revealing them.
   */
  protected _cacheIdentity(): string {
    return this.#identity
  }

  /**
   * A per-call tenant: the configured one, or one allowed by `additionallyAllowedTenants`
   * (`"*"` allows any). `AZURE_IDENTITY_DISABLE_MULTITENANTAUTH` makes per-call tenants ignored.
   *
   * @throws {TypeError} for a malformed tenant id
   * @throws {AmlAuthError} `ERR_TENANT_NOT_ALLOWED` for a tenant that is not allowed
   */
  protected override _resolveTenant(tenantId: string): string | undefined {
    const off = this._env.AZURE_IDENTITY_DISABLE_MULTITENANTAUTH?.trim().toLowerCase()
    if (off !== undefined && off !== '' && off !== '0' && off !== 'false') return undefined
    _checkTenantId(tenantId, 'getToken options.tenantId')
    if (NON_TENANTS.includes(tenantId.toLowerCase())) {
      throw new TypeError(
        `getToken options.tenantId must name a directory (GUID or domain), not '${tenantId}'`,
      )
    }
    return _switchTenant(tenantId, this.#tenantId, this.#allowed, this.#allowedName)
  }

  /** One client-credentials request (per-call tenant, claims), with the client credential. */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    const tenant = request.tenantId ?? this.#tenantId
    const ctx = {
      tokenEndpoint: entraEndpoint(this.#authority, tenant),
      clientId: this.#clientId,
      now: this._http.now,
    }
    for (let attempt = 1;; attempt++) {
      const form: Record<string, string | undefined> = {
        grant_type: 'client_credentials',
        client_id: this.#clientId,
        scope: request.scopes.join(' '),
      }
      await this.#auth.apply(form, ctx, attempt > 1)
      if (request.claims !== undefined) form.claims = request.claims
      try {
        return await requestEntraToken(this._http, {
          authority: this.#authority,
          tenant,
          form,
          advice: this.#advice,
        })
      } catch (e) {
        // A reused certificate assertion refused by an STS that enforces single-use jti: sign a
        // fresh one and try once more. Any refusal drops the cached assertion.
        const refused = e instanceof AuthenticationError && (e.status === 400 || e.status === 401)
        if (refused && this.#auth.refused?.(form.client_assertion, ctx) && attempt === 1) continue
        throw e
      }
    }
  }

  /** Tenant, client id, credential kind and authority host: never a secret. */
  protected override _describe(): Record<string, unknown> {
    return {
      tenantId: this.#tenantId,
      servicePrincipalId: this.#clientId,
      credential: this.#auth.kind,
      authorityHost: this.#authority,
    }
  }
}

function clientAuthFrom(options: ServicePrincipalAuthenticationOptions): _ClientAuth {
  const given = (['servicePrincipalPassword', 'certificate', 'clientAssertion'] as const).filter(
    (k) => options[k] !== undefined && options[k] !== null,
  )
  if (given.length !== 1) {
    throw new TypeError(
      'ServicePrincipalAuthentication needs exactly one client credential: ' +
        'servicePrincipalPassword, certificate or clientAssertion ' +
        (given.length === 0 ? '(none was given)' : `(got ${given.join(' and ')})`),
    )
  }
  switch (given[0]!) {
    case 'servicePrincipalPassword':
      return _secretAuth(_checkString(options.servicePrincipalPassword, 'servicePrincipalPassword'))
    case 'certificate': {
      const cert = options.certificate!
      if (
        cert.sendCertificateChain !== undefined && typeof cert.sendCertificateChain !== 'boolean'
      ) {
        throw new TypeError('certificate.sendCertificateChain must be a boolean')
      }
      return _certificateAuth(
        _parseCertificateCredential(cert, 'certificate'),
        cert.sendCertificateChain === true,
      )
    }
    case 'clientAssertion':
      if (typeof options.clientAssertion !== 'function') {
        throw new TypeError('clientAssertion must be a function returning the assertion (a JWT)')
      }
      return _assertionAuth(options.clientAssertion, 'clientAssertion')
  }
}

function checkAuthority(value: unknown, option: string): string {
  const href = _checkEndpoint(value, option)
  const url = new URL(href)
  if (url.search || url.hash) throw new TypeError(`${option} must not have a query or fragment`)
  if (/\/oauth2(\/|$)/i.test(url.pathname)) {
    throw new TypeError(
      `${option} must be the authority host (e.g. https://login.microsoftonline.com), ` +
        'not a token endpoint',
    )
  }
  return href
}

function envTenant(value: string | undefined, name: string): string {
  return _checkTenantId(value, name)
}
