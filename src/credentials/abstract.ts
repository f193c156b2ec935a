/**
 * `AbstractAuthentication`: the base of every credential. It owns the cache lookup (the hot
 * path), audience and scope handling, the header helpers, ARM subscription listing and the
 * signed `fetch`. A subclass only says how to request one token and who it is.
 *
 * @module
 */
import { type AccessToken, Audience } from '../access_token.ts'
import { _scopeOf, type Cloud, type CloudName, resolveCloud } from '../clouds.ts'
import { type Env, resolveEnv } from '../env.ts'
import { AmlAuthError } from '../errors.ts'
import {
  _aborted,
  _httpContext,
  _invalidResponse,
  _onAbort,
  _parseJsonObject,
  type FetchLike,
  type HttpContext,
  type RetryOptions,
  sendRequest,
} from '../http.ts'
import { _inspectAsString } from '../_inspect.ts'
import { _authError } from '../token_response.ts'
import { _Cache, type _Partition, defaultTokenCache, type TokenCache } from '../token_cache.ts'
import { _checkKinds } from '../_validate.ts'

/** Options every credential accepts. */
export interface CredentialOptions {
  /** A cloud name or object; default `env.AZUREML_CURRENT_CLOUD`, else `AzureCloud`. */
  cloud?: CloudName | Cloud
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchLike
  /** Environment variables (default: the runtime's, where there is one; else empty). */
  env?: Env
  /** Clock in epoch ms, for tests (default `Date.now`). */
  now?: () => number
  /** Back-off sleep, for tests with a fake clock (default: a real timer). */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Timeout of one HTTP attempt in ms (default 10 000). */
  timeoutMs?: number
  /** Retry bounds for HTTP calls. */
  retry?: RetryOptions
  /** The token cache (default {@linkcode defaultTokenCache}, shared by every credential). */
  cache?: TokenCache
}

/** Per-call options of `getToken`, the `@azure/core-auth` `GetTokenOptions` subset we honour. */
export interface GetTokenOptions {
  /** Ends the wait for this caller at once (a shared request continues for the others). */
  abortSignal?: AbortSignal | undefined
  /** Claims challenge (CAE): forces a new token carrying these claims. */
  claims?: string
  /** Another tenant to get the token from, where the credential allows it. */
  tenantId?: string
  /** Accepted for `@azure/core-auth` compatibility. */
  enableCae?: boolean
}

/** One upstream token request, as a subclass receives it. */
export interface TokenRequest {
  /** Scopes, never empty. */
  scopes: readonly string[]
  /** Claims challenge, if any. */
  claims?: string | undefined
  /** Tenant override, already validated by `_resolveTenant`. */
  tenantId?: string | undefined
}

/** One subscription, as ARM lists it. */
export interface SubscriptionInfo {
  /** Subscription id (GUID). */
  subscriptionId: string
  /** Display name. */
  displayName: string
  /** Home tenant of the subscription. */
  tenantId: string
}

/** `fetch` init with the audience or scopes to sign the request for. */
export type SignedFetchInit = RequestInit & {
  /** Audience of the bearer token (default ARM). */
  audience?: Audience
  /** Scopes of the bearer token, instead of an audience. */
  scopes?: string | readonly string[]
}

/**
 * The base class of every credential. It is a `@azure/core-auth` `TokenCredential`, so any
 * `@azure/*` client accepts it unchanged.
 *
 * @example Use any credential
 * ```ts
 * import { type AbstractAuthentication, TokenAuthentication } from '@aml-edge/auth'
 *
 * async function whoCanList(auth: AbstractAuthentication) {
 *   return await auth.listSubscriptions()
 * }
 * const auth: AbstractAuthentication = new TokenAuthentication(() => ({ token: 't', expiresOn: 4102444800 }))
 * const header = await auth.getAuthenticationHeader()
 * console.assert(header.Authorization === 'Bearer t')
 * ```
 */
export abstract class AbstractAuthentication {
  /** The cloud this credential signs in to. */
  declare readonly cloud: Cloud
  readonly #env: Env
  /** The HTTP context (fetch, timeouts, retries, clock). */
  declare protected readonly _http: HttpContext
  readonly #cache: _Cache
  #partition: _Partition | undefined
  readonly #armScope: string
  readonly #amlScope: string

  /**
   * Resolves the cloud, environment and HTTP settings; no I/O.
   *
   * @param options common options
   * @throws {TypeError} for an unknown cloud or a bad option
   */
  constructor(options: CredentialOptions = {}) {
    _checkKinds({ options }, { options: 'o' })
    _checkKinds(options as Record<string, unknown>, {
      timeoutMs: '+',
      retry: 'o',
      env: 'o',
      fetch: 'f',
      now: 'f',
      sleep: 'f',
    })
    _checkKinds(options.retry as Record<string, unknown> | undefined, {
      maxRetries: '1',
      baseDelayMs: '0',
      maxDelayMs: '0',
      totalTimeoutMs: '+',
    }, 'retry.')
    this.#env = resolveEnv(options.env)
    this.cloud = resolveCloud(options.cloud, this.#env)
    this._http = _httpContext(options)
    const cache = options.cache ?? defaultTokenCache
    if (!(cache instanceof _Cache)) throw new TypeError('cache must come from createTokenCache()')
    this.#cache = cache
    this.#armScope = _scopeOf(this.cloud.activeDirectoryResourceId)
    this.#amlScope = _scopeOf(this.cloud.amlResourceId)
  }

  /**
   * The environment this credential reads. An accessor over a private field, so that the
   * variables (which hold secrets such as AZURE_CLIENT_SECRET or IDENTITY_HEADER) are never an
   * own property that `Object.keys`, a spread or an inspector without custom views would show.
   */
  protected get _env(): Env {
    return this.#env
  }

  /**
   * Identity of this credential for the cache: two instances with the same identity share
   * tokens. Must never contain a secret verbatim.
   */
  protected abstract _cacheIdentity(): string

  /** Requests one token upstream, through the HTTP layer. Called by the cache only. */
  protected abstract _requestToken(request: TokenRequest): Promise<AccessToken>

  /**
   * Checks a per-call tenant. The default ignores it (managed identity, static tokens);
   * credentials that can switch tenants override this.
   */
  protected _resolveTenant(_tenantId: string): string | undefined {
    return undefined
  }

  /**
   * A token for the given scopes (default: ARM). The `@azure/core-auth` `TokenCredential`
   * method; a cached token is returned at once.
   *
   * @param scopes one scope or several, or an `Audience` name; default the cloud's ARM scope
   * @param options abort signal, claims challenge, tenant
   * @returns the token
   * @throws {AmlAuthError} with a stable `code` when no token can be had
   */
  getToken(scopes?: string | readonly string[], options?: GetTokenOptions): Promise<AccessToken> {
    const key = this.#scopeKey(scopes)
    if (options?.claims === undefined && options?.tenantId === undefined) {
      const hit = this.#part().hit(key, this._http.now())
      if (hit) return hit
    }
    return this.#slow(key, options)
  }

  /**
   * A token for an {@linkcode Audience}.
   *
   * @param audience `Audience.ARM` or `Audience.AZUREML`
   * @returns the token
   * @throws {TypeError} for an unknown audience
   */
  getTokenForAudience(audience: Audience): Promise<AccessToken> {
    return this.getToken(this._scopeForAudience(audience))
  }

  /**
   * `{ Authorization: 'Bearer <ARM token>' }`, a new object on every call.
   *
   * @returns the header object
   */
  async getAuthenticationHeader(): Promise<{ Authorization: string }> {
    return { Authorization: bearer(await this.getToken()) }
  }

  /**
   * `{ Authorization: 'Bearer <Azure ML token>' }`, a new object on every call.
   *
   * @returns the header object
   */
  async getAzureMLAuthenticationHeader(): Promise<{ Authorization: string }> {
    // getToken reads an audience name as that audience's scope.
    return { Authorization: bearer(await this.getToken(Audience.AZUREML)) }
  }

  /**
   * The Azure ML resource id of this credential's cloud, e.g. `https://ml.azure.com`.
   *
   * @returns the resource id
   */
  getAmlResourceId(): string {
    return this.cloud.amlResourceId
  }

  /**
   * Lists the subscriptions the ARM token can see, following `nextLink` pages (only on the
   * cloud's own ARM origin, so the token never travels elsewhere).
   *
   * @param options abort signal
   * @returns the subscriptions
   * @throws {AuthenticationError} when ARM refuses the token
   */
  async listSubscriptions(
    options: { abortSignal?: AbortSignal } = {},
  ): Promise<SubscriptionInfo[]> {
    const signal = options.abortSignal
    // resolveCloud gives custom clouds a trailing slash; the built-in ones are bare origins or
    // end in one: either way a relative path resolves under it.
    const base = this.cloud.resourceManager
    const what = 'Azure Resource Manager'
    const out: SubscriptionInfo[] = []
    let url = new URL('subscriptions?api-version=2022-12-01', base)
    const origin = url.origin
    for (let page = 1;; page++) {
      const token = await this.getToken(undefined, options)
      const res = await sendRequest(this._http, {
        method: 'GET',
        url: url.href,
        headers: { authorization: bearer(token) },
        what,
        signal,
      })
      if (res.status !== 200) {
        throw _authError(res, { what, now: this._http.now(), secrets: [token.token] })
      }
      const body = _parseJsonObject(res, what)
      const values: Record<string, unknown>[] = Array.isArray(body.value) ? body.value : []
      out.push(...values.map((s) =>
        Object.fromEntries(
          ['subscriptionId', 'displayName', 'tenantId'].map((k) => [k, String(s?.[k] ?? '')]),
        ) as unknown as SubscriptionInfo
      ))
      const next = body.nextLink
      if (typeof next !== 'string' || !next) return out
      url = new URL(next, base)
      if (url.origin !== origin) {
        throw _invalidResponse(what, 'a nextLink to another origin (the token stays on ARM)')
      }
      if (page >= 1000) throw _invalidResponse(what, 'over 1000 pages; check resourceManager')
    }
  }

  /**
   * `fetch` with a bearer token added (the Python `signed_session`, web-style). The request is
   * the caller's own: it is sent once, without retries, as the global `fetch` would.
   *
   * @param input URL or request
   * @param init request init plus `audience` or `scopes` (default ARM)
   * @returns the response
   */
  async fetch(input: string | URL | Request, init: SignedFetchInit = {}): Promise<Response> {
    const { audience, scopes, ...rest } = init
    const token = await this.getToken(
      audience === undefined ? scopes : this._scopeForAudience(audience),
      { abortSignal: rest.signal ?? undefined },
    )
    const req = new Request(input, rest)
    req.headers.set('authorization', bearer(token))
    return this._http.fetch(req)
  }

  /** Forgets every cached token of this credential (its token source changed). */
  protected _forgetTokens(): void {
    this.#cache.drop(this._cacheIdentity())
    this.#partition = undefined
  }

  #part(): _Partition {
    return this.#partition ??= this.#cache.partition(this._cacheIdentity())
  }

  /** The `.default` scope of an audience in this cloud. */
  protected _scopeForAudience(audience: Audience): string {
    if (audience === Audience.ARM) return this.#armScope
    if (audience === Audience.AZUREML) return this.#amlScope
    throw new TypeError('audience must be ARM or AZUREML')
  }

  /** Non-secret fields shown by `toString`, `toJSON` and inspection. */
  protected _describe(): Record<string, unknown> {
    return {}
  }

  /** A description without secrets (also what `Deno.inspect` and `util.inspect` show). */
  toString(): string {
    const { type, ...fields } = this.toJSON()
    const shown = Object.entries(fields).filter(([, v]) => v !== undefined)
    return `${type}(${shown.map(([k, v]) => `${k}=${v}`).join(', ')})`
  }

  /** A JSON view without secrets. */
  toJSON(): Record<string, unknown> {
    return { type: this.constructor.name, cloud: this.cloud.name, ...this._describe() }
  }

  #scopeKey(scopes: string | readonly string[] | undefined): string {
    // The Python SDK's get_token(Audience.ARM) spelling: an audience name stands for its scope.
    if (scopes === Audience.ARM || scopes === Audience.AZUREML) {
      return this._scopeForAudience(scopes)
    }
    if (typeof scopes === 'string' || scopes === undefined) return scopes || this.#armScope
    if (!Array.isArray(scopes) || scopes.some((s) => !s || typeof s !== 'string')) {
      throw new TypeError('scopes must be non-empty strings')
    }
    return scopes.length ? _scopeKey(scopes) : this.#armScope
  }

  // async so that a throw here (bad tenant, aborted signal) becomes a rejection; nothing to await.
  // deno-lint-ignore require-await
  async #slow(key: string, options: GetTokenOptions = {}): Promise<AccessToken> {
    const { abortSignal: signal, claims } = options
    const now = this._http.now
    if (signal?.aborted) throw _aborted(REQUEST)
    const partition = this.#part()
    const tenant = options.tenantId === undefined
      ? undefined
      : this._resolveTenant(options.tenantId)
    const fullKey = (tenant === undefined ? '' : tenant + '|') + key
    const load = () => this._requestToken({ scopes: key.split(' '), claims, tenantId: tenant })
    // A claims challenge needs a new token; it then replaces the cached one for the scope.
    const claimsKey = fullKey + '\0' + claims
    const p = claims === undefined
      ? partition.get(fullKey, now, load)
      : partition.get(claimsKey, now, load, true).then((t: AccessToken) => {
        partition.delete(claimsKey)
        partition.put(fullKey, t, now())
        return t
      })
    // Lets one caller stop waiting without cancelling the request others share.
    return signal
      ? new Promise((resolve, reject) => {
        p.then(resolve, reject).finally(_onAbort(signal, () => reject(_aborted(REQUEST))))
      })
      : p
  }
}
_inspectAsString(AbstractAuthentication)

/** The cache key of a list of scopes: the scope itself, or several sorted and space-joined. */
export function _scopeKey(scopes: readonly string[]): string {
  return scopes.length === 1 ? scopes[0]! : [...scopes].sort().join(' ')
}

/**
 * A cache identity unique to one object, for credentials whose source cannot be shared. Random,
 * not a counter: with a shared store, two isolates must never produce the same identity.
 */
export function _uniqueIdentity(kind: string): string {
  return `${kind}#${crypto.randomUUID()}`
}

/**
 * The per-call tenant rule of credentials that can switch tenants: `undefined` for the configured
 * tenant (no switch), the tenant itself when no tenant was configured or `allowed` names it (or
 * holds `*`), else `ERR_TENANT_NOT_ALLOWED` naming the option that would allow it.
 */
export function _switchTenant(
  tenantId: string,
  configured: string | undefined,
  allowed: ReadonlySet<string>,
  allowedName: string,
): string | undefined {
  const t = tenantId.toLowerCase()
  if (configured !== undefined && t === configured.toLowerCase()) return undefined
  if (configured === undefined || allowed.has('*') || allowed.has(t)) return tenantId
  throw new AmlAuthError(
    'ERR_TENANT_NOT_ALLOWED',
    `Not allowed: tenant '${tenantId}'; add it to ${allowedName} (or "*" for any tenant)`,
  )
}

const REQUEST = 'The token request'

function bearer(t: AccessToken): string {
  return 'Bearer ' + t.token
}
