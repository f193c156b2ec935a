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
  type FetchLike,
  type HttpResponse,
  type RetryOptions,
  sendRequest,
} from '../http.ts'
import { _authError, _parseTokenResponse, _refusal } from '../token_response.ts'
import { _parseExpiresOn } from '../_expires_on.ts'
import { _checkPositive, _GUID_RE } from '../_validate.ts'
import { AbstractAuthentication, type CredentialOptions, type TokenRequest } from './abstract.ts'
import {
  _ARC_KEY_MAX_BYTES,
  _arcKeyPathProblem,
  _arcRealm,
  _buildMsiRequest,
  _detectSource,
  type _Identity,
  type _IdKind,
  _isLocalEndpoint,
  _MSI_SOURCES,
  type _MsiRequest,
  _resolveEndpoint,
  _retryFor,
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

/** Total time bound of one IMDS token request: covers the 70 s of 410 retries plus a back-off. */
const IMDS_TOTAL_MS = 100_000
/** IMDS retries when the user gave no count (as @azure/identity). */
const IMDS_MAX_RETRIES = 5
const ID_KINDS: readonly _IdKind[] = ['clientId', 'objectId', 'resourceId']
const PYTHON_NAMES: Record<string, string> = {
  client_id: 'clientId',
  object_id: 'objectId',
  msi_res_id: 'resourceId',
  mi_res_id: 'resourceId',
}

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
  readonly #explicitId: boolean
  readonly #retry: Partial<RetryOptions> | undefined
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
    if (options.source !== undefined && !_MSI_SOURCES.includes(options.source)) {
      throw new TypeError(`source must be one of ${_MSI_SOURCES.join(', ')}`)
    }
    if (options.readFile !== undefined && typeof options.readFile !== 'function') {
      throw new TypeError('readFile must be a function (path) => Promise<string>')
    }
    if (
      options.arcKeyDirectory !== undefined &&
      (typeof options.arcKeyDirectory !== 'string' || options.arcKeyDirectory.trim() === '')
    ) {
      throw new TypeError('arcKeyDirectory must be a non-empty path')
    }
    const source = options.source ?? _detectSource(this._env)
    this.source = source
    const spec = _SOURCE_SPECS[source]
    const id = checkIdentityConfig(options.identityConfig)
    if (id !== undefined && spec.idParams[id.kind] === undefined) {
      throw new TypeError(
        `identityConfig.${id.kind} cannot be used with managed identity source ${source}: ${spec.idRefusal}`,
      )
    }
    this.#explicitId = id !== undefined
    const defaultMl = this._env.DEFAULT_IDENTITY_CLIENT_ID?.trim()
    this.#id = id ??
      (source === 'azure-ml' && defaultMl ? { kind: 'clientId', value: defaultMl } : undefined)
    const ep = _resolveEndpoint(source, this._env)
    if ('url' in ep) this.#endpoint = ep.url
    else this.#unavailable = ep.unavailable
    this.#secret = spec.secretVar === undefined ? undefined : this._env[spec.secretVar]?.trim()
    this.#readFile = options.readFile ?? defaultFileReader
    this.#arcDir = options.arcKeyDirectory
    this.#retry = source === 'imds'
      ? {
        maxRetries: options.retry?.maxRetries ?? IMDS_MAX_RETRIES,
        totalTimeoutMs: options.retry?.totalTimeoutMs ?? IMDS_TOTAL_MS,
      }
      : undefined
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
    const ep = _resolveEndpoint(source, e)
    if (!('url' in ep)) return false
    if (_isCloudflareWorkers() && _isLocalEndpoint(ep.url)) return false
    if (source !== 'imds') return true
    if (options.probe !== true) return Boolean(e.AZURE_POD_IDENTITY_AUTHORITY_HOST?.trim())
    const ctx = _httpContext({
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      timeoutMs: options.timeoutMs ?? 1000,
      retry: { maxRetries: 0 },
    })
    try {
      const res = await sendRequest(ctx, {
        method: 'GET',
        url: ep.url,
        what: _SOURCE_SPECS.imds.what,
        retryOn: () => false,
        signal: options.signal,
      })
      // Docker Desktop's proxy answers 403 "... unreachable network" for 169.254.169.254.
      return !(res.status === 403 && /unreachable/i.test(res.body))
    } catch {
      return false
    }
  }

  /** `msi|{source}|{endpoint}|{identity}`: equal identities share tokens; never a secret. */
  protected _cacheIdentity(): string {
    const id = this.#id === undefined
      ? 'system'
      : `${this.#id.kind}:${this.#id.value.toLowerCase()}`
    return `msi|${this.source}|${this.#endpoint ?? 'unavailable'}|${id}`
  }

  /** Source, endpoint and identity: nothing secret. */
  protected override _describe(): Record<string, unknown> {
    return {
      source: this.source,
      endpoint: this.#endpoint,
      identity: this.#id === undefined ? 'system-assigned' : `${this.#id.kind}=${this.#id.value}`,
    }
  }

  /** Builds the source's request for the scope's resource, sends it, parses the answer. */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1) {
      throw new AmlAuthError(
        'ERR_UNSUPPORTED_AUDIENCE',
        'Managed identity gives a token for one scope at a time; call getToken once per scope',
      )
    }
    if (this.#unavailable !== undefined) throw new CredentialUnavailableError(this.#unavailable)
    const endpoint = this.#endpoint!
    const refusal = _workersRefusal(this.source, endpoint)
    if (refusal !== undefined) throw refusal
    const resource = _resourceOf(request.scopes[0]!)
    const req = _buildMsiRequest(this.source, endpoint, resource, this.#id, this.#secret)
    const started = this._http.now()
    if (this.source === 'azure-arc') return await this.#arc(req, started)
    return this.#parse(await this.#send(req), started)
  }

  async #send(req: _MsiRequest): Promise<HttpResponse> {
    const what = _SOURCE_SPECS[this.source].what
    try {
      return await sendRequest(this._http, {
        ...req,
        what,
        retryOn: _retryFor(this.source),
        retryNetworkErrors: this.source !== 'imds',
        ...(this.#retry !== undefined ? { retry: this.#retry } : {}),
      })
    } catch (e) {
      if (this.source === 'imds' && e instanceof AmlAuthError && e.code === 'ERR_NETWORK') {
        throw new CredentialUnavailableError(
          `Could not connect to ${what}; this host does not look like an Azure VM or scale set with managed identity. Use another credential, or point AZURE_POD_IDENTITY_AUTHORITY_HOST at the identity endpoint`,
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
    if (this.source === 'imds' && res.status === 403 && /unreachable/i.test(res.body)) {
      return new CredentialUnavailableError(
        `${what} is unreachable from this network (a proxy answered 403); managed identity is not available here`,
      )
    }
    const advice = _msiAdvice(this.source, res, this.#explicitId)
    const text = plainText(res)
    if (text === undefined) {
      return _authError(res, { what, now: this._http.now(), secrets, advice: () => advice })
    }
    return _refusal(what, res.status, { description: text, errorCodes: [] }, {
      secrets,
      advice: () => advice,
      response: res.raw,
    })
  }

  /** Azure Arc: a 401 challenge names a key file; read it and ask again with Basic auth. */
  async #arc(req: _MsiRequest, started: number): Promise<AccessToken> {
    const what = _SOURCE_SPECS['azure-arc'].what
    const first = await this.#send(req)
    if (first.status !== 401) return this.#parse(first, started)
    const path = _arcRealm(first.headers.get('www-authenticate'))
    if (path === undefined) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        `${what} answered 401 without a "WWW-Authenticate: Basic realm=<key file>" challenge; check that IDENTITY_ENDPOINT points at the Arc agent (himds)`,
        { status: 401 },
      )
    }
    const problem = _arcKeyPathProblem(path, this.#arcDir)
    if (problem !== undefined) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        `Refusing the key file named by ${what}: ${problem}; only the Arc agent's own key files are read`,
        { status: 401 },
      )
    }
    let text: string
    try {
      text = await this.#readFile(path)
    } catch (e) {
      throw new CredentialUnavailableError(
        `Cannot read the key file named by ${what}; on Linux run as a member of the himds group, on Windows as an administrator (or pass readFile)`,
        { cause: e },
      )
    }
    if (typeof text !== 'string') {
      throw new AmlAuthError('ERR_RESPONSE_INVALID', 'readFile must resolve to the file text')
    }
    if (new TextEncoder().encode(text).byteLength > _ARC_KEY_MAX_BYTES) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        `The key file named by ${what} is larger than ${_ARC_KEY_MAX_BYTES} bytes; refusing to send it`,
      )
    }
    const key = text.trim()
    if (!/^[\x21-\x7e]+$/.test(key)) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        `The key file named by ${what} is empty or holds characters a header cannot carry`,
      )
    }
    const now = this._http.now()
    const second = await this.#send({
      ...req,
      headers: { ...req.headers, Authorization: 'Basic ' + key },
    })
    return this.#parse(second, now, key)
  }
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
    } (a loopback or link-local address), and Workers do not run on an Azure host with managed identity. Deploy the token broker worker (workers/token-broker) with a service principal or federated credential and fetch tokens from it, or use ServicePrincipalAuthentication`,
  )
}

function checkIdentityConfig(config: unknown): _Identity | undefined {
  if (config === undefined) return undefined
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(
      'identityConfig must be an object: { clientId } | { objectId } | { resourceId }',
    )
  }
  const entries = Object.entries(config).filter(([, v]) => v !== undefined)
  for (const [k] of entries) {
    if (!(ID_KINDS as readonly string[]).includes(k)) {
      const hint = PYTHON_NAMES[k]
        ? ` (use ${PYTHON_NAMES[k]} instead of the Python name ${k})`
        : ''
      throw new TypeError(
        `identityConfig.${k} is not an option; use clientId, objectId or resourceId${hint}`,
      )
    }
  }
  if (entries.length === 0) return undefined
  if (entries.length > 1) {
    throw new TypeError(
      'identityConfig: clientId, objectId and resourceId are mutually exclusive; pass one',
    )
  }
  const [kind, value] = entries[0]! as [_IdKind, unknown]
  if (typeof value !== 'string' || value.trim() === '') {
    throw new TypeError(`identityConfig.${kind} must be a non-empty string`)
  }
  const v = value.trim()
  if (kind !== 'resourceId' && !_GUID_RE.test(v)) {
    throw new TypeError(`identityConfig.${kind} must be a GUID; check the value you passed`)
  }
  if (kind === 'resourceId' && !/^\/subscriptions\/[^/]+\/resourcegroups\/.+/i.test(v)) {
    throw new TypeError(
      'identityConfig.resourceId must be an ARM resource id (/subscriptions/.../resourceGroups/...)',
    )
  }
  return { kind, value: v }
}

/** The first text of a non-JSON, non-HTML body (plain-text refusals), else `undefined`. */
function plainText(res: HttpResponse): string | undefined {
  const t = res.body.trim()
  if (t === '' || t.startsWith('{') || t.startsWith('[') || t.startsWith('<')) return undefined
  if ((res.headers.get('content-type') ?? '').includes('html')) return undefined
  return t
}

/** What a user should do about a refusal, per source and status. */
export function _msiAdvice(
  source: ManagedIdentitySource,
  res: HttpResponse,
  userAssigned: boolean,
): string | undefined {
  const body = res.body.toLowerCase()
  const spec = _SOURCE_SPECS[source]
  const s = res.status
  const identityMissing =
    /identity (was )?not found|unable to load the proper managed identity|managedidentitynotfound/
      .test(body) || (source === 'imds' && body.includes('identity'))
  if ((s === 400 || s === 404) && identityMissing) {
    return userAssigned
      ? 'Check identityConfig (clientId, objectId or resourceId) and that this user-assigned identity is assigned to the resource'
      : 'Enable the system-assigned identity of this resource, or pass identityConfig for a user-assigned identity assigned to it'
  }
  if ((s === 401 || s === 403) && spec.secretVar !== undefined) {
    return `The endpoint refused ${spec.secretVar}; restart the app or compute so that its managed-identity variables are refreshed`
  }
  if (s === 401 && source === 'azure-arc') {
    return 'The Arc agent refused the key; it may have rotated it, so try again'
  }
  if (s === 410 && source === 'imds') {
    return 'IMDS kept answering 410 (it is being updated); try again in a minute'
  }
  if (s === 429) {
    return 'The endpoint throttles requests; share one credential (tokens are cached) instead of creating one per request'
  }
  if (s >= 500) return 'The endpoint kept failing after retries; try again later'
  if (s === 400 && /resource/.test(body)) {
    return 'Check the scope: its resource must be an application id URI known to Microsoft Entra ID'
  }
  return undefined
}
