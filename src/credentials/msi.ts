/**
 * `MsiAuthentication`: tokens from the managed identity of the Azure host the code runs on
 * (VM/scale set through IMDS, App Service / Functions / Container Apps, Azure Arc, Azure ML
 * compute, Cloud Shell, Service Fabric).
 *
 * @module
 */
import type { AccessToken } from '../access_token.ts'
import { _resourceOf } from '../clouds.ts'
import {
  _isCloudflareWorkers,
  defaultFileReader,
  type Env,
  type FileReader,
  resolveEnv,
} from '../env.ts'
import { AmlAuthError, CredentialUnavailableError } from '../errors.ts'
import {
  _httpContext,
  _retryStandard,
  type FetchLike,
  type HttpResponse,
  type RetryOptions,
  type RetryPredicate,
  sendRequest,
} from '../http.ts'
import { _authError, _parseTokenResponse, _refusal } from '../token_response.ts'
import { _parseExpiresOn } from '../_expires_on.ts'
import { _checkPositive, _GUID_RE } from '../_validate.ts'
import { AbstractAuthentication, type CredentialOptions, type TokenRequest } from './abstract.ts'
import {
  _arcKey,
  _buildMsiRequest,
  _detectSource,
  _ID_KINDS,
  type _Identity,
  type _IdKind,
  _idParam,
  _isLocalEndpoint,
  _MSI_SOURCES,
  type _MsiRequest,
  _resolveEndpoint,
  _retryImds,
  _SOURCE_SPECS,
  type ManagedIdentityConfig,
  type ManagedIdentitySource,
} from './_msi_sources.ts'

export type { ManagedIdentityConfig, ManagedIdentitySource } from './_msi_sources.ts'

/** Options of {@linkcode MsiAuthentication}. */
export interface MsiAuthenticationOptions extends CredentialOptions {
  /**
   * A user-assigned identity (`{ clientId }`, `{ objectId }` or `{ resourceId }`); default the
   * system-assigned one. `AZURE_CLIENT_ID` is deliberately not read (it usually names a service
   * principal). On Azure ML compute, `DEFAULT_IDENTITY_CLIENT_ID` picks the default.
   */
  identityConfig?: ManagedIdentityConfig
  /** Use this source instead of detecting one from `env` (SPEC 3 order). */
  source?: ManagedIdentitySource
  /** The folder the Azure Arc agent's key files must be in (default: the agent's own folder). */
  arcKeyDirectory?: string
  /** Reads the Azure Arc key file (default: `Deno.readTextFile` where it exists). */
  readFile?: FileReader
}

/** Options of {@linkcode MsiAuthentication.isAvailable}. */
export interface MsiAvailabilityOptions {
  /** For IMDS (nothing in `env`): send one quick request to see whether IMDS answers. */
  probe?: boolean
  /** Timeout of the probe in ms (default 1000). */
  timeoutMs?: number
  /** The `fetch` the probe uses. */
  fetch?: FetchLike
  /** Ends the probe early (it then reports `false`). */
  signal?: AbortSignal
}

/** What `identityConfig` may hold, for messages. */
const ONE_ID = 'one of clientId, objectId or resourceId'

/**
 * A credential for the managed identity of the Azure host this code runs on. The source is
 * detected from the environment when the object is built (SPEC 3 order: Service Fabric, App
 * Service, Azure Arc, Azure ML / App Service 2017, Cloud Shell, else IMDS) or named with
 * `source`. Tokens go through the shared cache: any number of concurrent callers cause one
 * request, and a token is reused until its refresh point (the Python SDK asked on every call).
 *
 * IMDS retries 404, 408, 429 and 5xx (5 retries unless `retry.maxRetries` says otherwise), and
 * 410 for at least 70 s, within a total bound of 100 s (`retry.totalTimeoutMs`); the other
 * sources retry 408, 429 and 5xx. `Retry-After` is honoured, and a caller's `abortSignal` ends
 * its wait at once (a request shared with other callers goes on for them). A connection failure
 * or timeout on IMDS is not retried: it means this host has no IMDS, and becomes a
 * `CredentialUnavailableError` after one attempt (`timeoutMs`); for a faster check use
 * {@linkcode MsiAuthentication.isAvailable} with `probe: true`.
 * Service Fabric serves https with the cluster's own certificate: pass a `fetch` that trusts it
 * (for example one built on `Deno.createHttpClient({ caCerts })`).
 *
 * @example System-assigned identity on an Azure VM (IMDS)
 * ```ts
 * import { createTokenCache, MsiAuthentication } from '@aml-edge/auth'
 *
 * const auth = new MsiAuthentication({ env: {}, cache: createTokenCache() })
 * console.assert(auth.source === 'imds')
 * // On the VM: const header = await auth.getAuthenticationHeader()
 * ```
 *
 * @example A user-assigned identity on App Service
 * ```ts
 * import { MsiAuthentication } from '@aml-edge/auth'
 *
 * const auth = new MsiAuthentication({
 *   identityConfig: { clientId: '4d5c6b7a-8f9e-4d0c-9b1a-2f3e4d5c6b7a' },
 *   env: { IDENTITY_ENDPOINT: 'http://localhost:4141/msi/token', IDENTITY_HEADER: 'example' },
 * })
 * console.assert(auth.source === 'app-service')
 * async function amlHeader() {
 *   return await auth.getAzureMLAuthenticationHeader()
 * }
 * ```
 */
export class MsiAuthentication extends AbstractAuthentication {
  /** The managed-identity source this credential uses (detected or given), for debugging. */
  readonly source: ManagedIdentitySource
  readonly #endpoint: string | undefined
  readonly #unavailable: string | undefined
  readonly #secret: string | undefined
  readonly #id: _Identity | undefined
  /** `kind=value` of the identity, or `system-assigned`. */
  readonly #idText: string
  readonly #explicitId: boolean
  /** The source's retry set and settings, for every request. */
  readonly #sendOptions: {
    what: string
    retryOn: RetryPredicate
    retryNetworkErrors: boolean
    retry: Partial<RetryOptions>
  }
  readonly #readFile: FileReader
  readonly #arcDir: string | undefined

  /**
   * Detects (or takes) the source and checks the options; sends nothing.
   *
   * @param options identity, source, Arc key folder and reader, and the common options
   * @throws {TypeError} for a bad option: an unknown `source`, more than one id in
   * `identityConfig`, or an id kind the source does not support
   */
  constructor(options: MsiAuthenticationOptions = {}) {
    super(options)
    const { source = _detectSource(this._env), readFile, arcKeyDirectory: dir } = options
    if (!_MSI_SOURCES.includes(source)) {
      throw new TypeError(`source must be one of ${_MSI_SOURCES.join(', ')}`)
    }
    if (readFile !== undefined && typeof readFile !== 'function') {
      throw new TypeError('readFile must be a function (path) => Promise<string>')
    }
    if (dir !== undefined && (typeof dir !== 'string' || !dir.trim())) {
      throw new TypeError('arcKeyDirectory must be a non-empty path')
    }
    this.source = source
    const spec = _SOURCE_SPECS[source]
    const id = checkIdentityConfig(options.identityConfig)
    if (id && !_idParam(source, id.kind)) {
      throw new TypeError(
        `identityConfig.${id.kind} is not supported by ${spec.what}; ${
          spec.ids ? 'use clientId' : 'remove identityConfig'
        }`,
      )
    }
    this.#explicitId = !!id
    const ml = this._env.DEFAULT_IDENTITY_CLIENT_ID?.trim()
    const who: _Identity | undefined = id ??
      (source === 'azure-ml' && ml ? { kind: 'clientId', value: ml } : undefined)
    this.#id = who
    this.#idText = who ? `${who.kind}=${who.value}` : 'system-assigned'
    const [endpoint, unavailable] = _resolveEndpoint(source, this._env)
    this.#endpoint = endpoint
    this.#unavailable = unavailable
    this.#secret = spec.header && this._env[spec.vars[1]!]?.trim()
    this.#readFile = readFile ?? defaultFileReader
    this.#arcDir = dir
    const imds = source === 'imds'
    this.#sendOptions = {
      what: spec.what,
      retryOn: imds ? _retryImds : _retryStandard,
      // On IMDS a connection failure means "not on Azure", not "try again".
      retryNetworkErrors: !imds,
      // IMDS: 5 retries unless the user says otherwise, and 100 s for its 70 s of 410s.
      retry: imds
        ? {
          maxRetries: options.retry?.maxRetries ?? 5,
          totalTimeoutMs: options.retry?.totalTimeoutMs ?? 100_000,
        }
        : {},
    }
  }

  /**
   * Whether a managed-identity source is usable here, without sending a token request: `true`
   * for any source the environment names with a valid endpoint. For IMDS (nothing in the
   * environment) it is `true` only when `AZURE_POD_IDENTITY_AUTHORITY_HOST` is set, or, with
   * `probe: true`, when a quick GET to IMDS without the `Metadata` header gets an HTTP answer
   * (IMDS answers 400), as `@azure/identity` does. Always `false` on Cloudflare Workers for
   * loopback and link-local endpoints. Always a promise, so that callers need one code path.
   *
   * @param env environment variables (default: the runtime's)
   * @param options `probe`, its `timeoutMs` (default 1000), `fetch`, `signal`
   * @returns whether getting a token can be tried
   * @throws {RangeError} for a bad `timeoutMs`
   *
   * @example Try managed identity only where it exists
   * ```ts
   * import { MsiAuthentication } from '@aml-edge/auth'
   *
   * const here = await MsiAuthentication.isAvailable({ MSI_ENDPOINT: 'http://localhost:50342/oauth2/token' })
   * console.assert(here === true)
   * ```
   */
  static async isAvailable(env?: Env, options: MsiAvailabilityOptions = {}): Promise<boolean> {
    _checkPositive(options.timeoutMs, 'timeoutMs')
    const e = resolveEnv(env)
    const source = _detectSource(e)
    const [url] = _resolveEndpoint(source, e)
    if (!url || _workersRefusal(source, url)) return false
    if (source !== 'imds') return true
    if (options.probe !== true) return !!e.AZURE_POD_IDENTITY_AUTHORITY_HOST?.trim()
    const ctx = _httpContext({
      fetch: options.fetch,
      timeoutMs: options.timeoutMs ?? 1000,
      retry: { maxRetries: 0 },
    })
    try {
      const what = _SOURCE_SPECS.imds.what
      return !proxyRefused(
        await sendRequest(ctx, { method: 'GET', url, what, signal: options.signal }),
      )
    } catch {
      return false
    }
  }

  /** `msi|{source}|{endpoint}|{identity}`: equal identities share tokens; never a secret. */
  protected _cacheIdentity(): string {
    return `msi|${this.source}|${this.#endpoint}|${this.#idText.toLowerCase()}`
  }

  /** Source, endpoint and identity: nothing secret. */
  protected override _describe(): Record<string, unknown> {
    return { source: this.source, endpoint: this.#endpoint, identity: this.#idText }
  }

  /**
   * Builds the source's request for the scope's resource, sends it, parses the answer. Azure
   * Arc answers a first request with a 401 challenge naming a key file: the request is sent
   * again with that key (`Authorization: Basic <key>`).
   */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1) {
      throw new AmlAuthError(
        'ERR_UNSUPPORTED_AUDIENCE',
        'MsiAuthentication takes one scope per request; call getToken once per scope',
      )
    }
    const endpoint = this.#endpoint
    if (!endpoint) throw new CredentialUnavailableError(this.#unavailable!)
    const refusal = _workersRefusal(this.source, endpoint)
    if (refusal) throw refusal
    const resource = _resourceOf(request.scopes[0]!)
    const req = _buildMsiRequest(this.source, endpoint, resource, this.#id, this.#secret)
    const started = this._http.now()
    const res = await this.#send(req)
    if (this.source !== 'azure-arc' || res.status !== 401) return this.#parse(res, started)
    const key = await _arcKey(res, this.#arcDir, this.#readFile)
    const now = this._http.now()
    const headers = { ...req.headers, Authorization: 'Basic ' + key }
    return this.#parse(await this.#send({ ...req, headers }), now, key)
  }

  async #send(req: _MsiRequest): Promise<HttpResponse> {
    try {
      return await sendRequest(this._http, { ...req, ...this.#sendOptions })
    } catch (e) {
      if (this.source === 'imds' && e instanceof AmlAuthError && e.code === 'ERR_NETWORK') {
        throw new CredentialUnavailableError(
          `Could not connect to ${this.#sendOptions.what}; this host does not look like an Azure VM. Use another credential, or set AZURE_POD_IDENTITY_AUTHORITY_HOST`,
          { cause: e },
        )
      }
      throw e
    }
  }

  #parse(res: HttpResponse, now: number, extraSecret?: string): AccessToken {
    const secrets = [this.#secret, extraSecret]
    if (res.status >= 200 && res.status < 300) {
      return _parseTokenResponse(res, {
        what: _SOURCE_SPECS[this.source].what,
        now,
        secrets,
        expiresOn: _parseExpiresOn,
      })
    }
    throw this.#refusal(res, secrets)
  }

  #refusal(res: HttpResponse, secrets: readonly (string | undefined)[]): AmlAuthError {
    const what = _SOURCE_SPECS[this.source].what
    if (this.source === 'imds' && proxyRefused(res)) {
      return new CredentialUnavailableError(
        `${what} is unreachable here (a proxy answered 403); use another credential`,
      )
    }
    const advice = () => _msiAdvice(this.source, res, this.#explicitId)
    // A plain-text refusal (neither JSON nor HTML) is kept as the description.
    const text = res.body.trim()
    return /^$|^[{[<]/.test(text) || res.headers.get('content-type')?.includes('html')
      ? _authError(res, { what, now: this._http.now(), secrets, advice })
      : _refusal(what, res.status, { description: text, errorCodes: [] }, {
        secrets,
        advice,
        response: res.raw,
      })
  }
}

/** Docker Desktop's proxy answers 403 "... unreachable network" for 169.254.169.254. */
function proxyRefused(res: HttpResponse): boolean {
  return res.status === 403 && /unreachable/i.test(res.body)
}

/**
 * The refusal for a managed-identity endpoint Cloudflare Workers cannot reach (loopback or
 * link-local), or `undefined`. `isWorkers` is a seam for tests.
 */
export function _workersRefusal(
  source: ManagedIdentitySource,
  endpoint: string,
  isWorkers: boolean = _isCloudflareWorkers(),
): CredentialUnavailableError | undefined {
  if (!isWorkers || !_isLocalEndpoint(endpoint)) return undefined
  return new CredentialUnavailableError(
    `Cloudflare Workers cannot reach ${
      _SOURCE_SPECS[source].what
    } (loopback or link-local); fetch tokens from the token broker worker (workers/token-broker), or use ServicePrincipalAuthentication`,
  )
}

function checkIdentityConfig(config: unknown): _Identity | undefined {
  if (config === undefined) return undefined
  const ok = config !== null && typeof config === 'object' && !Array.isArray(config)
  const entries = ok ? Object.entries(config).filter(([, v]) => v !== undefined) : []
  for (const [k] of entries) {
    if (!(_ID_KINDS as readonly string[]).includes(k)) {
      // A Python or REST name (client_id, msi_res_id, ...) gets the option it means.
      const hint = _ID_KINDS.find((kind) => k.toLowerCase().includes(kind.slice(0, 3)))
      throw new TypeError(`identityConfig.${k} is not an option; use ${hint ?? ONE_ID}`)
    }
  }
  if (!ok || entries.length > 1) {
    throw new TypeError(`identityConfig must be an object with ${ONE_ID}`)
  }
  if (!entries[0]) return undefined
  const [kind, value] = entries[0] as [_IdKind, unknown]
  const v = typeof value === 'string' ? value.trim() : ''
  const arm = kind === 'resourceId'
  if (arm ? !/^\/subscriptions\/[^/]+\/resourcegroups\/./i.test(v) : !_GUID_RE.test(v)) {
    throw new TypeError(
      `identityConfig.${kind} must be ${
        arm ? 'an ARM resource id (/subscriptions/.../resourceGroups/...)' : 'a GUID'
      }`,
    )
  }
  return { kind, value: v }
}

/** What a user should do about a refusal, per source and status. */
export function _msiAdvice(
  source: ManagedIdentitySource,
  res: HttpResponse,
  userAssigned: boolean,
): string | undefined {
  const body = res.body.toLowerCase()
  const secretVar = _SOURCE_SPECS[source].header && _SOURCE_SPECS[source].vars[1]
  const s = res.status
  if (
    (s === 400 || s === 404) &&
    (/identity (was )?not found|proper managed identity|managedidentitynotfound/.test(body) ||
      (source === 'imds' && body.includes('identity')))
  ) {
    return userAssigned
      ? 'Check identityConfig and that this identity is assigned to the resource'
      : 'Enable the system-assigned identity of this resource, or pass identityConfig'
  }
  if ((s === 401 || s === 403) && secretVar) {
    return `Check ${secretVar}: restart the app or compute to refresh it`
  }
  if (s === 401 && source === 'azure-arc') return 'The Arc agent refused the key; try again'
  if (s === 410 && source === 'imds') return 'IMDS kept answering 410 (updating); try again later'
  if (s === 429) return 'Throttled: share one credential instead of one per request'
  if (s >= 500) return 'It kept failing after retries; try again later'
  if (s === 400 && body.includes('resource')) {
    return 'Check the scope: its resource must be an app id URI known to Entra ID'
  }
}
