/**
 * `ServicePrincipalAuthentication`: an app registration signs in with a client secret, a
 * certificate (a PS256 client assertion signed with Web Crypto, so it runs on Cloudflare Workers
 * too) or a federated assertion (workload identity), through the client-credentials grant.
 *
 * @module
 */
import type { AccessToken } from '../access_token.ts'
import { entraAdvice, type EntraAdviceNames, entraEndpoint, requestEntraToken } from '../_entra.ts'
import { _assertionAuth, _certificates, type _ClientAuth, _secretAuth } from '../_client_auth.ts'
import { _checkAllowedTenants, _checkEndpoint, _checkString, _checkTenantId } from '../_validate.ts'
import {
  _switchTenant,
  AbstractAuthentication,
  type CredentialOptions,
  type TokenRequest,
} from './abstract.ts'
import type { ClientCertificate } from './client_certificate.ts'

export {
  type ClientCertificate,
  clientCertificate,
  type ClientCertificateInput,
} from './client_certificate.ts'

/** Options of {@linkcode ServicePrincipalAuthentication}: exactly one client credential. */
export interface ServicePrincipalAuthenticationOptions extends CredentialOptions {
  /** The directory (tenant) GUID or verified domain. */
  tenantId: string
  /** The application (client) id of the app registration. */
  servicePrincipalId: string
  /** A client secret (its Value, not its Secret ID). */
  servicePrincipalPassword?: string | undefined
  /** A certificate made by `clientCertificate({ privateKey, certificate })`. */
  certificate?: ClientCertificate | undefined
  /** Returns a federated assertion (a JWT from a trusted issuer); called for every token request. */
  clientAssertion?: (() => string | Promise<string>) | undefined
  /** Entra authority host (default: the cloud's, e.g. `https://login.microsoftonline.com`). */
  authorityHost?: string | undefined
  /** Tenants a per-call `tenantId` may name besides `tenantId`; `"*"` allows any. */
  additionallyAllowedTenants?: string[] | undefined
}

/**
 * Internal construction path of `servicePrincipalFromEnvironment()`: a ready strategy and the
 * names of the variables, for messages.
 */
export const _internal: unique symbol = Symbol()

/** What `servicePrincipalFromEnvironment()` passes under {@linkcode _internal}. */
export interface _Internal {
  /** A ready strategy (certificate file, federated token file). */
  auth?: _ClientAuth
  /** How the inputs are named, for advice. */
  names: Partial<EntraAdviceNames>
  /** The name of the allowed-tenants setting, for messages. */
  allowedName: string
}

// Option names used more than once, as constants: each spelled once in the minified bundle.
const TENANT = 'tenantId'
const ID = 'servicePrincipalId'
const HOST = 'authorityHost'
const ALLOWED = 'additionallyAllowedTenants'
const CREDENTIALS = ['servicePrincipalPassword', 'certificate', 'clientAssertion'] as const

/** Throws a TypeError (an expression, for the checks below). */
function bad(message: string): never {
  throw new TypeError(message)
}

/**
 * A service principal (app registration) signing in to Microsoft Entra ID with the
 * client-credentials grant: POST `{authority}/{tenant}/oauth2/v2.0/token` with
 * `grant_type=client_credentials`, `client_id`, `scope`, and the client credential. One request
 * per token (no instance discovery, no metadata document); tokens are cached and shared through
 * the token cache.
 *
 * - `servicePrincipalPassword`: sent as `client_secret`.
 * - `certificate`: a value made by {@linkcode clientCertificate} (which parses and checks the key
 *   and certificate); each request carries a PS256 client assertion (`x5t#S256`, optional `x5c`)
 *   signed with Web Crypto, reused until 60 s before it expires. Only a certificate user loads the
 *   PEM and DER code.
 * - `clientAssertion`: a callback returning a federated token, called for every token request.
 *
 * From environment variables (`AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH`,
 * `AZURE_FEDERATED_TOKEN_FILE`, ...): `servicePrincipalFromEnvironment()`.
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
 * import { clientCertificate, ServicePrincipalAuthentication } from '@aml-edge/auth'
 *
 * function credentialFor(env: { TENANT: string; CLIENT: string; KEY: string; CERT: string }) {
 *   return new ServicePrincipalAuthentication({
 *     tenantId: env.TENANT,
 *     servicePrincipalId: env.CLIENT,
 *     certificate: clientCertificate({
 *       privateKey: env.KEY,
 *       certificate: env.CERT,
 *       sendCertificateChain: true,
 *     }),
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
  // Everything is settled in the constructor and kept in closures: the methods below only
  // delegate (shorter once minified than private fields read in every method).
  readonly #identity: string
  readonly #fields: Record<string, unknown>
  readonly #tenant: (tenantId: string) => string | undefined
  readonly #request: (request: TokenRequest) => Promise<AccessToken>

  /**
   * Validates the options; no I/O.
   *
   * @param options tenant, client id, exactly one client credential, and common options
   * @throws {TypeError} for a bad tenant id, client id, authority, allowed tenant, a missing or
   * second client credential, or a `certificate` not made by `clientCertificate()`
   */
  constructor(options: ServicePrincipalAuthenticationOptions) {
    super(options)
    const internal = (options as { [_internal]?: _Internal })[_internal]
    const tenantId = directory(options[TENANT], TENANT)
    const clientId = _checkString(options[ID], ID)
    if (/\s|[^ -\uffff]/.test(clientId)) bad(ID + ' must be the application (client) id')
    const host = options[HOST]
    // A custom cloud's host went through _checkEndpoint only: check it as an authority too.
    const authority = _checkAuthority(
      host ?? this.cloud.activeDirectory,
      host !== undefined ? HOST : 'cloud.activeDirectory',
    )
    const allowed = _checkAllowedTenants(options[ALLOWED], ALLOWED)
    const allowedName = internal?.allowedName ?? ALLOWED
    const auth = internal?.auth ?? clientAuthFrom(options)
    const { kind } = auth
    // How the options are named, for advice (`tenantId` and `certificate` are their own names).
    const names: Partial<EntraAdviceNames> = internal?.names ??
      { clientId: ID, secret: CREDENTIALS[0], assertion: CREDENTIALS[2] }
    const advice = entraAdvice(names, auth.advice)
    const http = this._http

    // See _cacheIdentity. The kinds' fingerprints cannot meet: a secret's is two base-36 numbers
    // joined by `.`, a certificate's starts with `c:` (`f:` from a file), a token file's with
    // `w:`, a callback's is a UUID.
    this.#identity = `sp|${authority}|${tenantId}|${clientId}|`.toLowerCase() + auth.fingerprint
    // Tenant, client id, credential kind and authority host: never a secret.
    this.#fields = { [TENANT]: tenantId, [ID]: clientId, credential: kind, [HOST]: authority }
    // `AZURE_IDENTITY_DISABLE_MULTITENANTAUTH` makes per-call tenants ignored.
    this.#tenant = (t) =>
      /^\s*(0|false)?\s*$/i.test(this._env.AZURE_IDENTITY_DISABLE_MULTITENANTAUTH ?? '')
        ? _switchTenant(directory(t, 'getToken options.tenantId'), tenantId, allowed, allowedName)
        : undefined
    this.#request = (request) => {
      const tenant = request[TENANT] ?? tenantId
      return auth.send((fields) =>
        requestEntraToken(http, {
          authority,
          tenant,
          form: {
            grant_type: 'client_credentials',
            client_id: clientId,
            scope: request.scopes.join(' '),
            ...fields,
            claims: request.claims,
          },
          advice,
        }), { tokenEndpoint: entraEndpoint(authority, tenant), clientId, now: http.now })
    }
  }

  /**
   * `sp|{authority}|{tenant}|{clientId}|{fingerprint}`: instances with the same client,
   * tenant, authority and credential share tokens; the fingerprint distinguishes secrets (a hash)
   * and certificates (the public certificate) without revealing a secret.
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
    return this.#tenant(tenantId)
  }

  /** One client-credentials request (per-call tenant, claims), with the client credential. */
  protected _requestToken(request: TokenRequest): Promise<AccessToken> {
    return this.#request(request)
  }

  /** Tenant, client id, credential kind and authority host: never a secret. */
  protected override _describe(): Record<string, unknown> {
    return this.#fields
  }
}

function clientAuthFrom(options: ServicePrincipalAuthenticationOptions): _ClientAuth {
  const given = CREDENTIALS.filter((k) => options[k] != null)
  const [kind] = given
  if (given.length !== 1) {
    bad(
      `Pass exactly one client credential: ${CREDENTIALS.join(', ')} ` +
        `(${kind ? 'got ' + given.join(' and ') : 'none was given'})`,
    )
  }
  const value = options[kind!]
  return kind === CREDENTIALS[1]
    ? _certificates.get(value as ClientCertificate) ??
      bad(CREDENTIALS[1] + ' must be made by clientCertificate()')
    : kind === CREDENTIALS[2]
    ? typeof value === 'function'
      ? _assertionAuth(value as () => string, kind)
      : bad(kind + ' must be a function')
    : _secretAuth(_checkString(value, kind!))
}

/** A tenant GUID or domain that names one directory (not `common`, `organizations`...). */
function directory(tenantId: unknown, option: string): string {
  const t = _checkTenantId(tenantId, option)
  return /^(common|organizations|consumers)$/i.test(t)
    ? bad(`${option} must name one directory, not '${t}'`)
    : t
}

/**
 * Checks an authority host: https (or loopback http), no query, fragment or token endpoint path.
 *
 * @throws {TypeError} naming the option
 */
export function _checkAuthority(value: unknown, option: string): string {
  const href = _checkEndpoint(value, option)
  return /[?#]|\/oauth2\b/i.test(href)
    ? bad(option + ' must be the authority host (no token endpoint, query or fragment)')
    : href
}
