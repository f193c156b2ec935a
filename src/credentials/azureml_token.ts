/**
 * `AzureMLTokenAuthentication`: the run-scoped token an Azure ML run is given, refreshed from the
 * run-token service before it expires (SPEC 5).
 *
 * @module
 */
import { AccessToken, type Audience } from '../access_token.ts'
import { _unrefTimer, type Env, resolveEnv } from '../env.ts'
import { AmlAuthError, CredentialUnavailableError } from '../errors.ts'
import { _parseJsonObject, type HttpResponse, sendRequest } from '../http.ts'
import { _jwtExpiry } from '../jwt.ts'
import { _authError } from '../token_response.ts'
import { _parseIsoWithZone } from '../_expires_on.ts'
import { _checkEndpoint, _checkKinds, _checkPositive, _checkString } from '../_validate.ts'
import {
  _uniqueIdentity,
  AbstractAuthentication,
  type CredentialOptions,
  type GetTokenOptions,
  type SubscriptionInfo,
  type TokenRequest,
} from './abstract.ts'
import {
  _readSharedToken,
  type _Sharing,
  _sharingFromEnv,
  _writeSharedToken,
  type RunTokenFiles,
} from './_run_token_files.ts'

export type { DirectoryLister, RunTokenFiles, TextFileWriter } from './_run_token_files.ts'
export { _parseIsoWithZone }

/** The run a token belongs to: the registry key of {@linkcode AzureMLTokenAuthentication.create}. */
export interface AzureMLRunScope {
  /** Subscription id of the workspace. */
  subscriptionId: string
  /** Resource group of the workspace. */
  resourceGroupName: string
  /** Workspace name. */
  workspaceName: string
  /** Experiment name. */
  experimentName: string
  /** Run id. */
  runId: string
  /** Experiment id; when given it identifies the experiment (registry key and refresh route). */
  experimentId?: string
}

/** Options of the {@linkcode AzureMLTokenAuthentication} constructor (prefer `create`). */
export interface AzureMLTokenAuthenticationOptions
  extends CredentialOptions, Partial<AzureMLRunScope> {
  /** The run token. */
  azuremlAccessToken: string
  /**
   * Its expiry: a `Date`, epoch seconds, or an ISO 8601 string with a time zone
   * (default: the token's JWT `exp`).
   */
  expiryTime?: Date | number | string
  /** The run-token service, e.g. `https://westus2.api.azureml.ms` (https unless loopback). */
  host?: string
  /** E-mail of the user who submitted the run (informational). */
  userEmail?: string
  /**
   * Path of the refresh route under `host`, with placeholders `{subscriptionId}`,
   * `{resourceGroupName}`, `{workspaceName}`, `{experimentName}`, `{experimentId}`, `{runId}`
   * (values are URL-encoded). Default: the run-history route of SPEC 5, by experiment id when one
   * is known, else by experiment name.
   */
  refreshRoute?: string
  /**
   * File-system functions for the run's shared encrypted token files, or `false` to never read or
   * write them. Sharing happens only when the environment enables it (see the class docs).
   */
  tokenFiles?: RunTokenFiles | false
}

/** Options of {@linkcode AzureMLTokenAuthentication.create}: the host and the whole run scope. */
export type AzureMLTokenCreateOptions =
  & Omit<AzureMLTokenAuthenticationOptions, keyof AzureMLRunScope | 'host'>
  & AzureMLRunScope
  & { host: string }

/** Options of {@linkcode AzureMLTokenAuthentication.fromEnvironment}. */
export type AzureMLTokenFromEnvironmentOptions = Omit<
  AzureMLTokenAuthenticationOptions,
  keyof AzureMLRunScope | 'host' | 'azuremlAccessToken' | 'expiryTime'
>

/** Options of {@linkcode AzureMLTokenAuthentication.startAutoRefresh}. */
export interface AutoRefreshOptions {
  /** How often to check the token, ms (default 30 000, as the Python SDK's daemon). */
  intervalMs?: number
  /** Called with the error of a failed background refresh (the token stays in use while valid). */
  onError?: (error: AmlAuthError) => void
}

/** A running auto-refresh timer. */
export interface AutoRefresh {
  /** Stops the timer. */
  stop(): void
}

/** Refresh when fewer than this many ms remain (Python: 3 retries of 30 s + 5 s). */
const THRESHOLD_MS = 95_000
/** After a failed refresh, wait this long before the next attempt (an explicit refresh() excepted). */
const RETRY_AFTER_FAILURE_MS = 10_000
/**
 * Cache key of the run token. The base class keys "no scope" as the ARM scope, which a run token
 * must never answer for, so this class maps "no scope" to this key and refuses every real scope.
 * It is not a URL, so no real scope can collide with it.
 */
const RUN_KEY = 'azureml:run-token'
const WHAT = 'the Azure ML run-token service'
/**
 * The fields of a run scope, in route order (internal; the token broker validates its policy's
 * run-token patterns against the same list).
 */
export const _RUN_SCOPE_FIELDS = [
  'subscriptionId',
  'resourceGroupName',
  'workspaceName',
  'experimentName',
  'experimentId',
  'runId',
] as const
type ScopeField = typeof _RUN_SCOPE_FIELDS[number]
/** The host and the run scope, as validated (absent fields are `undefined`). */
type Scope = Record<'host' | ScopeField, string | undefined>

/**
 * The variable (after `AZUREML_`) each option comes from in `fromEnvironment`. The first seven
 * are required, in the order messages list them; the expiry only for a token that is not a JWT.
 */
const ENV: Record<string, string> = {
  azuremlAccessToken: 'RUN_TOKEN',
  subscriptionId: 'ARM_SUBSCRIPTION',
  resourceGroupName: 'ARM_RESOURCEGROUP',
  workspaceName: 'ARM_WORKSPACE_NAME',
  experimentName: 'ARM_PROJECT_NAME',
  runId: 'RUN_ID',
  host: 'SERVICE_ENDPOINT',
  expiryTime: 'RUN_TOKEN_EXPIRY',
  experimentId: 'EXPERIMENT_ID',
}

/** The default refresh route of SPEC 5: by experiment id when one is known, else by name. */
function defaultRoute(byId: boolean): string {
  return '/history/v1.0/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/{workspaceName}/' +
    (byId ? 'experimentids/{experimentId}' : 'experiments/{experimentName}') + '/runs/{runId}/token'
}

// How refreshing works with the shared token cache (design notes).
// - Keying: the base class keys `getToken()` without scopes as the ARM scope. A run token must
//   never answer for ARM, so `getToken` is overridden: "no scope" becomes RUN_KEY, every real
//   scope is refused. The header helpers and `fetch()` call `getToken()`, so they follow.
// - Refresh point: `_requestToken` hands the cache an AccessToken whose refreshAfterTimestamp is
//   expiry - 95 s. The cache then serves it without I/O until that point; between it and
//   expiry - 30 s callers still get it at once while ONE background `_requestToken` runs; after
//   that, callers wait for one `_requestToken`. Single flight is the cache's, per key.
// - `_requestToken` never caches: it answers with `#current` while that has over 95 s left
//   (first use, or a token a sibling process or the timer already renewed), else refreshes.
// - A failed refresh while `#current` is still valid is not an error for callers: the token is
//   returned with refreshAfter = now + 10 s, so the cache retries soon without hammering the
//   service. Only an expired token turns into ERR_TOKEN_EXPIRED (cause: the last refresh error).
// - `refresh()` and the timer bypass the cache: they share `#refreshNow` (one request in flight
//   per instance, joined by the cache's own refresh too), then `_forgetTokens()` so the next
//   `getToken()` asks `_requestToken`, which returns the new `#current` without I/O.

/** One instance per run scope and isolate (the Python SDK's `_registered_auth`). */
const registry = new Map<string, AzureMLTokenAuthentication>()

/** Forgets every registered instance and stops their timers (tests only). */
export function _resetRunTokenRegistry(): void {
  for (const auth of registry.values()) auth.stopAutoRefresh()
  registry.clear()
}

/**
 * What identifies a run, joined by `separator`: subscription, resource group, workspace,
 * experiment (its id when known, else its name) and run id. Internal: the registry key here
 * (`//`), the token broker's run label (`/`).
 *
 * @param scope the run scope (the experiment name may be missing when the id is given)
 * @param separator what joins the parts
 * @returns the joined parts
 */
export function _runScopeKey(
  scope: Omit<AzureMLRunScope, 'experimentName'> & { experimentName?: string | undefined },
  separator: string,
): string {
  return [
    scope.subscriptionId,
    scope.resourceGroupName,
    scope.workspaceName,
    scope.experimentId ?? scope.experimentName,
    scope.runId,
  ].join(separator)
}

/**
 * A credential around an Azure ML run token: the token a submitted run receives to call the Azure
 * ML services on its own behalf. It is not an Entra ID token: ARM and the Azure ML client audience
 * are refused (`ERR_UNSUPPORTED_AUDIENCE`), and `getToken()` without scopes returns the run token.
 *
 * The token is refreshed from the run-token service when fewer than 95 s remain: lazily when it is
 * asked for (one request however many callers wait), on an optional timer
 * ({@linkcode AzureMLTokenAuthentication.startAutoRefresh}) that never keeps the process alive, or
 * explicitly with {@linkcode AzureMLTokenAuthentication.refresh}. The refresh request carries the
 * current run token. A failed refresh keeps the current token in use while it is valid; an expired
 * token is never sent, the call fails with `ERR_TOKEN_EXPIRED` instead **(ours: the Python SDK
 * sent it)**. An instance without a host or a complete run scope is never refreshed.
 *
 * Inside a run whose environment enables token sharing (`AZUREML_RUN_TOKEN_PASS` and
 * `AZUREML_RUN_TOKEN_RAND` set, `AZUREML_DISABLE_REFRESHED_TOKEN_SHARING` unset, and
 * `AZ_BATCHAI_JOB_TEMP`), an instance for the environment's own run also reads the newest token
 * its sibling processes left in `$AZ_BATCHAI_JOB_TEMP/run_token` (Fernet-encrypted), and writes
 * each token it refreshes there.
 *
 * @example Create the run's credential and sign a request
 * ```ts
 * import { AzureMLTokenAuthentication } from '@aml-edge/auth'
 *
 * const auth = AzureMLTokenAuthentication.create({
 *   azuremlAccessToken: 'opaque-run-token',
 *   expiryTime: '2100-01-01T00:00:00Z',
 *   host: 'https://westus2.api.azureml.ms',
 *   subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
 *   resourceGroupName: 'my-rg',
 *   workspaceName: 'my-ws',
 *   experimentName: 'my-experiment',
 *   runId: 'my-run-1',
 * })
 * const { Authorization } = await auth.getAuthenticationHeader()
 * console.assert(Authorization === 'Bearer opaque-run-token')
 * ```
 */
export class AzureMLTokenAuthentication extends AbstractAuthentication {
  /** The run-token service, without a trailing slash, if known. */
  readonly host: string | undefined
  /** Subscription id of the run's workspace. */
  readonly subscriptionId: string | undefined
  /** Resource group of the run's workspace. */
  readonly resourceGroupName: string | undefined
  /** Workspace name. */
  readonly workspaceName: string | undefined
  /** Experiment name. */
  readonly experimentName: string | undefined
  /** Experiment id. */
  readonly experimentId: string | undefined
  /** Run id. */
  readonly runId: string | undefined
  /** E-mail of the user who submitted the run, if given. */
  readonly userEmail: string | undefined

  #current: AccessToken
  /** The host and run scope, for `_describe`. */
  readonly #scope: Scope
  // Random, so that no other instance, in this isolate or another sharing a token store, can
  // ever read this instance's cached token. Made on first use: Workers refuse random values at
  // global scope, where `create()` is often called.
  #identity: string | undefined = undefined
  /** The refresh URL, or undefined when this instance is never refreshed. */
  readonly #refreshUrl: string | undefined
  /** Why it is never refreshed (option names), for messages. */
  readonly #missing: readonly string[]
  readonly #sharing: _Sharing | undefined
  #sharedChecked = false
  #inflight: Promise<AccessToken> | undefined = undefined
  #lastError: AmlAuthError | undefined = undefined
  #retryAt = 0
  #timer: ReturnType<typeof setInterval> | undefined = undefined

  /**
   * Builds a standalone instance, not registered. Most code wants
   * {@linkcode AzureMLTokenAuthentication.create} (one instance per run) or
   * {@linkcode AzureMLTokenAuthentication.fromEnvironment}.
   *
   * @param options the token, its expiry, the host and run scope, and common options
   * @throws {TypeError} for a missing token, a non-JWT token without `expiryTime`, a date without a
   * time zone, a host that is not https (loopback excepted), or a bad route template
   * @throws {RangeError} for an expiry that looks like milliseconds
   */
  constructor(options: AzureMLTokenAuthenticationOptions) {
    super(options)
    const v = validate(options, 0)
    Object.assign(this, v.scope)
    this.#scope = v.scope
    this.userEmail = options.userEmail
    this.#current = new AccessToken(v.token, v.expiresOn)
    this.#missing = v.missing
    this.#refreshUrl = v.refreshUrl
    this.#sharing = options.tokenFiles === false || !isEnvRun(this._env, v.scope)
      ? undefined
      : _sharingFromEnv(this._env, options.tokenFiles)
  }

  /**
   * The one instance registered for the run scope (subscription, resource group, workspace,
   * experiment id or else name, run id), created on the first call. A later call with the same
   * scope returns that instance: its token, expiry and options are ignored, as in the Python SDK.
   *
   * @param options the token, its expiry, the host, the run scope and common options
   * @returns the registered instance
   * @throws {TypeError} for a missing or empty host or scope field, and as the constructor
   *
   * @example One instance per run
   * ```ts
   * import { AzureMLTokenAuthentication } from '@aml-edge/auth'
   *
   * const scope = {
   *   host: 'https://westus2.api.azureml.ms',
   *   subscriptionId: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
   *   resourceGroupName: 'my-rg',
   *   workspaceName: 'my-ws',
   *   experimentName: 'my-experiment',
   *   runId: 'registry-example-run',
   * }
   * const a = AzureMLTokenAuthentication.create({ ...scope, azuremlAccessToken: 'first', expiryTime: 4102444800 })
   * const b = AzureMLTokenAuthentication.create({ ...scope, azuremlAccessToken: 'second', expiryTime: 4102444800 })
   * console.assert(a === b)
   * ```
   */
  static create(options: AzureMLTokenCreateOptions): AzureMLTokenAuthentication {
    return register(options, 1)
  }

  /**
   * The run's credential from the variables Azure ML sets in a run: `AZUREML_RUN_TOKEN`,
   * `AZUREML_RUN_TOKEN_EXPIRY` (epoch seconds or an ISO 8601 date with a time zone; optional for a
   * JWT), `AZUREML_ARM_SUBSCRIPTION`, `AZUREML_ARM_RESOURCEGROUP`, `AZUREML_ARM_WORKSPACE_NAME`,
   * `AZUREML_ARM_PROJECT_NAME`, `AZUREML_EXPERIMENT_ID` (optional), `AZUREML_RUN_ID` and
   * `AZUREML_SERVICE_ENDPOINT`. Goes through {@linkcode AzureMLTokenAuthentication.create}.
   *
   * @param env the variables (default: the `env` option, else the runtime's environment)
   * @param options common options, route template and token-file functions
   * @returns the registered instance for the run
   * @throws {CredentialUnavailableError} naming every required variable that is not set
   * @throws {TypeError} naming a variable whose value is malformed
   *
   * @example Inside a run (here with an explicit environment)
   * ```ts
   * import { AzureMLTokenAuthentication } from '@aml-edge/auth'
   *
   * const auth = AzureMLTokenAuthentication.fromEnvironment({
   *   AZUREML_RUN_TOKEN: 'opaque-run-token',
   *   AZUREML_RUN_TOKEN_EXPIRY: '4102444800',
   *   AZUREML_ARM_SUBSCRIPTION: '2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d',
   *   AZUREML_ARM_RESOURCEGROUP: 'my-rg',
   *   AZUREML_ARM_WORKSPACE_NAME: 'my-ws',
   *   AZUREML_ARM_PROJECT_NAME: 'my-experiment',
   *   AZUREML_RUN_ID: 'env-example-run',
   *   AZUREML_SERVICE_ENDPOINT: 'https://westus2.api.azureml.ms',
   * })
   * console.assert(auth.runId === 'env-example-run')
   * ```
   */
  static fromEnvironment(
    env?: Env,
    options: AzureMLTokenFromEnvironmentOptions = {},
  ): AzureMLTokenAuthentication {
    const e = resolveEnv(env ?? options.env)
    const all: Record<string, unknown> = { ...options, env: e }
    const missing: string[] = []
    Object.entries(ENV).forEach(([field, name], i) => {
      const value = e[name = 'AZUREML_' + name]?.trim()
      all[field] = value || undefined
      if (
        !value &&
        (i < 7 ||
          (i === 7 && all.azuremlAccessToken && jwtExpiry(all.azuremlAccessToken) === undefined))
      ) missing.push(name)
    })
    if (missing.length > 0) {
      throw new CredentialUnavailableError(
        `AzureMLTokenAuthentication.fromEnvironment needs ${
          missing.join(', ')
        }, not set (Azure ML sets them in a run; elsewhere use create())`,
      )
    }
    return register(all as unknown as AzureMLTokenCreateOptions, 2)
  }

  /** Expiry of the current run token. */
  get expiryTime(): Date {
    return new Date(this.#current.expiresOnTimestamp)
  }

  /** Whether this instance can refresh its token (it has a host and a complete run scope). */
  get refreshable(): boolean {
    return this.#refreshUrl !== undefined
  }

  /**
   * The run token. Without scopes (the only form accepted) it returns the run token, refreshed
   * first when fewer than 95 s remain; any scope, including ARM's and Azure ML's, is refused,
   * so an `@azure/*` client can never send a run token to a service that does not take it.
   *
   * @param scopes none (or an empty list)
   * @param options abort signal; `claims` forces a refresh
   * @returns the run token
   * @throws {AmlAuthError} `ERR_UNSUPPORTED_AUDIENCE` for any scope; `ERR_TOKEN_EXPIRED` when the
   * token expired and could not be refreshed
   */
  override getToken(
    scopes?: string | readonly string[],
    options?: GetTokenOptions,
  ): Promise<AccessToken> {
    // The base class would key "no scope" as ARM; route it to the run-token key instead, so the
    // shared cache (single flight, refresh-ahead at expiry - 95 s) still does the work.
    return scopes === undefined || scopes?.length === 0
      ? super.getToken(RUN_KEY, options)
      : refuse(`scope ${scopes}`)
  }

  /**
   * Always refused: ARM and Azure ML client audiences are not supported for run tokens.
   *
   * @param audience the audience
   * @returns never
   * @throws {AmlAuthError} `ERR_UNSUPPORTED_AUDIENCE`
   */
  override getTokenForAudience(audience: Audience): Promise<AccessToken> {
    return refuse(`audience ${audience}`)
  }

  /**
   * `{ Authorization: 'Bearer <run token>' }`, a new object on every call.
   *
   * @returns the header object
   * @throws {AmlAuthError} `ERR_TOKEN_EXPIRED` when the token expired and could not be refreshed
   */
  override async getAuthenticationHeader(): Promise<{ Authorization: string }> {
    const t = await this.getToken()
    return { Authorization: 'Bearer ' + t.token }
  }

  /**
   * Always refused: the Azure ML client audience is not supported for run tokens.
   *
   * @returns never
   * @throws {AmlAuthError} `ERR_UNSUPPORTED_AUDIENCE`
   */
  override getAzureMLAuthenticationHeader(): Promise<{ Authorization: string }> {
    return refuse('the Azure ML client audience')
  }

  /**
   * Always refused: ARM does not accept run tokens.
   *
   * @returns never
   * @throws {AmlAuthError} `ERR_UNSUPPORTED_AUDIENCE`
   */
  override listSubscriptions(): Promise<SubscriptionInfo[]> {
    return refuse('listSubscriptions() (an ARM call)')
  }

  /**
   * Refreshes the run token from the service now, whatever time it has left (shares a refresh
   * already in flight).
   *
   * @returns the new token
   * @throws {CredentialUnavailableError} when this instance cannot be refreshed
   * @throws {AmlAuthError} when the service refuses or cannot be reached
   */
  async refresh(): Promise<AccessToken> {
    if (this.#refreshUrl === undefined) throw this.#notRefreshable()
    const t = await this.#refreshNow()
    this._forgetTokens()
    return t
  }

  /**
   * Checks the token every `intervalMs` and refreshes it when fewer than 95 s remain. The timer
   * never keeps the process alive (Deno, Node); call `stop()` when done. Starting again replaces
   * the previous timer. On Workers, prefer the lazy refresh (or call `refresh()` from a cron).
   *
   * @param options interval and error callback
   * @returns a handle to stop the timer
   * @throws {CredentialUnavailableError} when this instance cannot be refreshed
   * @throws {RangeError} for a bad interval
   */
  startAutoRefresh(options: AutoRefreshOptions = {}): AutoRefresh {
    const intervalMs = _checkPositive(options.intervalMs, 'intervalMs') ?? 30_000
    _checkKinds({ onError: options.onError }, { onError: 'f' })
    if (this.#refreshUrl === undefined) throw this.#notRefreshable()
    this.stopAutoRefresh()
    const onError = options.onError
    const id = setInterval(() => void this.#tick(onError), intervalMs)
    _unrefTimer(id)
    this.#timer = id
    return {
      stop: () => {
        if (this.#timer === id) this.stopAutoRefresh()
      },
    }
  }

  /** Stops the auto-refresh timer, if one runs. */
  stopAutoRefresh(): void {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  /** Identity for the cache: random per instance, so no other credential shares its tokens. */
  protected _cacheIdentity(): string {
    return this.#identity ??= _uniqueIdentity('azureml-run-token')
  }

  /**
   * Called by the cache only: on the first use, at the refresh point (expiry - 95 s) and for a
   * claims challenge. Answers with the current token while it has over 95 s left, else refreshes.
   */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (request.scopes.length !== 1 || request.scopes[0] !== RUN_KEY) {
      throw unsupported(`scope ${request.scopes}`)
    }
    let t: AccessToken | undefined
    try {
      t = await this.#renew(request.claims !== undefined)
    } catch {
      // the refresh failed: the current token stays in use while valid
    }
    if (t !== undefined) return this.#forCache(t)
    // Not refreshable, or a refresh failed moments ago: keep using the valid token rather than
    // hammer the service (the cache asks again at the retry time).
    t = this.#current
    if (t.expiresOnTimestamp > this._http.now()) {
      return this.#forCache(t, this.#refreshUrl ? this.#retryAt : undefined)
    }
    throw this.#expired()
  }

  /** Non-secret fields for `toString`, `toJSON` and inspection: the host and run scope. */
  protected override _describe(): Record<string, unknown> {
    return {
      ...this.#scope,
      expiresOn: new Date(this.#current.expiresOnTimestamp).toISOString(),
      refreshable: this.refreshable,
    }
  }

  /**
   * The token as the cache should hold it: fresh until `refreshAt` (default: expiry - 95 s for a
   * refreshable instance; just before expiry otherwise, since waking earlier changes nothing).
   */
  #forCache(t: AccessToken, refreshAt?: number): AccessToken {
    const exp = t.expiresOnTimestamp
    const at = refreshAt ?? (this.#refreshUrl === undefined ? exp - 1_000 : exp - THRESHOLD_MS)
    return new AccessToken(t.token, t.expiresOn, Math.min(at, exp))
  }

  /**
   * The token to use now, renewed if due: first from a sibling's shared file (newest, when it
   * outlives ours), else from the service when refreshable and not backing off after a failure;
   * `force` skips the "still fresh" answer and the back-off. Resolves `undefined` when a refresh is
   * due but not possible now; rejects when the refresh fails.
   */
  async #renew(force: boolean): Promise<AccessToken | undefined> {
    const now = this._http.now()
    if (
      this.#sharing !== undefined &&
      (!this.#sharedChecked || this.#current.expiresOnTimestamp - now <= THRESHOLD_MS)
    ) {
      const found = await _readSharedToken(this.#sharing)
      if (found !== undefined && found.expiresOn * 1000 > this.#current.expiresOnTimestamp) {
        this.#current = new AccessToken(found.token, found.expiresOn)
      }
    }
    this.#sharedChecked = true
    if (!force && this.#current.expiresOnTimestamp - now > THRESHOLD_MS) return this.#current
    return this.#refreshUrl !== undefined && (force || now >= this.#retryAt)
      ? await this.#refreshNow()
      : undefined
  }

  /** One refresh request at a time per instance, shared by the cache, the timer and refresh(). */
  #refreshNow(): Promise<AccessToken> {
    if (this.#inflight === undefined) {
      this.#inflight = this.#fetchToken().finally(() => {
        this.#inflight = undefined
      })
    }
    return this.#inflight
  }

  async #fetchToken(): Promise<AccessToken> {
    const bearer = this.#current.token
    try {
      const res = await sendRequest(this._http, {
        method: 'GET',
        url: this.#refreshUrl!,
        headers: { authorization: 'Bearer ' + bearer },
        what: WHAT,
      })
      const t = _parseRunTokenResponse(res, this._http.now(), bearer)
      this.#current = t
      this.#lastError = undefined
      this.#retryAt = 0
      if (this.#sharing !== undefined) {
        await _writeSharedToken(this.#sharing, t.token, this._http.now())
      }
      return t
    } catch (e) {
      const err = asAmlError(e)
      this.#lastError = err
      this.#retryAt = this._http.now() + RETRY_AFTER_FAILURE_MS
      throw err
    }
  }

  async #tick(onError: ((error: AmlAuthError) => void) | undefined): Promise<void> {
    try {
      if (this.#current.expiresOnTimestamp - this._http.now() > THRESHOLD_MS) return
      // Due: a sibling process may already have refreshed it; else ask the service.
      const before = this.#current
      try {
        await this.#renew(false)
      } finally {
        if (this.#current !== before) this._forgetTokens()
      }
    } catch (e) {
      try {
        onError?.(asAmlError(e))
      } catch {
        // The callback's own failure must not become an unhandled rejection of the timer.
      }
    }
  }

  #expired(): AmlAuthError {
    const last = this.#lastError
    return new AmlAuthError(
      'ERR_TOKEN_EXPIRED',
      `The Azure ML run token has expired and ${
        this.#refreshUrl === undefined
          ? notRefreshable(this.#missing)
          : last !== undefined
          ? `the last refresh failed (${last.code}${
            last.status !== undefined ? ', status ' + last.status : ''
          })`
          : 'could not be refreshed'
      }; get a new run token`,
      last && { cause: last },
    )
  }

  #notRefreshable(): CredentialUnavailableError {
    return new CredentialUnavailableError(
      `This AzureMLTokenAuthentication ${notRefreshable(this.#missing)}`,
    )
  }
}

/** A refresh failure as an `AmlAuthError` (anything else becomes a generic `ERR_NETWORK`). */
function asAmlError(e: unknown): AmlAuthError {
  return e instanceof AmlAuthError
    ? e
    : new AmlAuthError('ERR_NETWORK', `Refreshing through ${WHAT} failed`)
}

function notRefreshable(missing: readonly string[]): string {
  return `cannot refresh its run token without ${missing.join(', ')}`
}

function unsupported(what: string): AmlAuthError {
  return new AmlAuthError(
    'ERR_UNSUPPORTED_AUDIENCE',
    `${what} is not supported for run tokens; use ServicePrincipalAuthentication or MsiAuthentication for ARM and Azure ML tokens`,
  )
}

function refuse(what: string): Promise<never> {
  return Promise.reject(unsupported(what))
}

/** `create()` and `fromEnvironment()`: the registered instance of the run scope, made once. */
function register(
  options: AzureMLTokenCreateOptions,
  mode: 1 | 2,
): AzureMLTokenAuthentication {
  validate(options, mode)
  const key = _runScopeKey(options, '//')
  let auth = registry.get(key)
  if (auth === undefined) registry.set(key, auth = new AzureMLTokenAuthentication(options))
  return auth
}

/** Whether a run scope is the run the environment describes (the owner of the shared token files). */
function isEnvRun(env: Env, scope: Scope): boolean {
  return (['runId', 'subscriptionId', 'resourceGroupName', 'workspaceName'] as const).every((f) => {
    const a = env['AZUREML_' + ENV[f]]?.trim()
    const b = scope[f]
    return a !== undefined && b !== undefined &&
      (f === 'runId' ? a === b : a.toLowerCase() === b.toLowerCase())
  })
}

interface Validated {
  token: string
  expiresOn: number
  scope: Scope
  /** Option names whose absence prevents refreshing (empty: refreshable). */
  missing: string[]
  refreshUrl: string | undefined
}

const PLACEHOLDER_RE = /\{(\w+)\}/g

/**
 * Checks options without I/O. `mode` 1 (`create`) requires the host and the whole run scope, 2
 * (`fromEnvironment`) as well and names the variables in messages.
 */
function validate(o: Partial<AzureMLTokenAuthenticationOptions>, mode: 0 | 1 | 2): Validated {
  if (o === null || typeof o !== 'object') throw new TypeError('options must be an object')
  const n = (option: string) => mode > 1 && ENV[option] ? 'AZUREML_' + ENV[option] : option
  const token = _checkString(o.azuremlAccessToken, n('azuremlAccessToken'))
  const expiresOn = o.expiryTime === undefined
    ? jwtExpiry(token)
    : _expirySeconds(o.expiryTime, n('expiryTime'))
  if (expiresOn === undefined) {
    throw new TypeError(
      `${n('azuremlAccessToken')} is not a JWT with an exp claim; pass ${n('expiryTime')}`,
    )
  }
  const scope = { host: o.host == null ? undefined : _checkEndpoint(o.host, n('host')) } as Scope
  for (const field of _RUN_SCOPE_FIELDS) {
    // A scope value: a non-empty string that cannot walk out of its path segment.
    const value = o[field] == null ? undefined : _checkString(o[field], n(field))
    if (value === '.' || value === '..') throw new TypeError(`${n(field)} must not be '.' or '..'`)
    scope[field] = value
  }
  if (o.userEmail !== undefined && typeof o.userEmail !== 'string') {
    throw new TypeError('userEmail must be a string')
  }
  const byDefault = defaultRoute(scope.experimentId !== undefined)
  const route = o.refreshRoute === undefined ? byDefault : checkRoute(o.refreshRoute)
  // The host, the whole run scope (either experiment field) and whatever the route uses.
  const missing = [
    ...new Set(['host', ...placeholders(byDefault), ...placeholders(route)]),
  ].filter((f) => scope[f as ScopeField] === undefined).map(n)
  if (mode && missing.length > 0) {
    throw new TypeError(`${missing.join(', ')} must be given (non-empty strings)`)
  }
  return {
    token,
    expiresOn,
    scope,
    missing,
    refreshUrl: missing.length > 0 ? undefined : scope.host +
      route.replace(PLACEHOLDER_RE, (_, f: ScopeField) => encodeURIComponent(scope[f]!)),
  }
}

function placeholders(route: string): string[] {
  return [...route.matchAll(PLACEHOLDER_RE)].map((m) => m[1]!)
}

function checkRoute(value: unknown): string {
  if (
    typeof value !== 'string' || !/^\/(?!\/)[^?#]*$/.test(value) || /[{}]/.test(
      value.replace(PLACEHOLDER_RE, (m, f) => _RUN_SCOPE_FIELDS.includes(f) ? '' : m),
    )
  ) {
    throw new TypeError(
      `refreshRoute must be a path starting with one /, without query or fragment, with placeholders among {${
        _RUN_SCOPE_FIELDS.join('}, {')
      }}`,
    )
  }
  return value
}

function jwtExpiry(token: unknown): number | undefined {
  try {
    return _jwtExpiry(token as string, 'run token')
  } catch {
    return undefined
  }
}

/**
 * Epoch seconds of an expiry given as a `Date`, epoch seconds (number or digits), or an ISO 8601
 * date-time with a zone. No time-zone guessing: a date-time without a zone is refused.
 */
export function _expirySeconds(value: unknown, option: string): number {
  if (value instanceof Date && !Number.isNaN(value.getTime())) {
    return Math.floor(value.getTime() / 1000)
  }
  if (
    typeof value === 'number' || (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value))
  ) {
    const n = Number(value)
    if (!(n > 0 && n <= 1e11)) {
      throw new RangeError(`${option} must be positive epoch seconds (not milliseconds)`)
    }
    return Math.floor(n)
  }
  const parsed = typeof value === 'string' ? _parseIsoWithZone(value) : undefined
  if (typeof parsed === 'number') return Math.floor(parsed / 1000)
  throw new TypeError(
    `${option} must be a Date, epoch seconds, or an ISO 8601 date-time with a time zone${
      parsed === 'no-zone' ? ' (add Z or an offset: the zone is never guessed)' : ''
    }`,
  )
}

/**
 * Reads the run-token service's answer `{ token, expiryTimeUtc }`: non-2xx becomes an
 * `AuthenticationError` (server text scrubbed of the bearer token), a missing or malformed field
 * `ERR_RESPONSE_INVALID`.
 */
export function _parseRunTokenResponse(
  res: HttpResponse,
  nowMs: number,
  bearer: string,
): AccessToken {
  if (res.status < 200 || res.status >= 300) {
    throw _authError(res, { what: WHAT, now: nowMs, secrets: [bearer] })
  }
  const body = _parseJsonObject(res, WHAT)
  const invalid = (why: string) =>
    new AmlAuthError('ERR_RESPONSE_INVALID', `Cannot read the response of ${WHAT}: ${why}`, {
      status: res.status,
    })
  if (typeof body.token !== 'string' || body.token.trim() === '') {
    throw invalid('token is missing')
  }
  const expiry = typeof body.expiryTimeUtc === 'string'
    ? _parseIsoWithZone(body.expiryTimeUtc)
    : undefined
  if (typeof expiry !== 'number' || expiry <= nowMs) {
    throw invalid(
      'expiryTimeUtc is in the past or not an ISO 8601 date-time with a time zone',
    )
  }
  return new AccessToken(body.token, Math.floor(expiry / 1000))
}
