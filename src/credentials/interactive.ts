/**
 * `InteractiveLoginAuthentication`: a user signs in once, through the device-code flow or the
 * authorization-code flow with PKCE; every audience then comes silently from the refresh token.
 * Where the environment already provides an identity (managed identity, a service principal in
 * `AZUREML_SERVICE_PRINCIPAL_*`, an Azure ML run token), that identity is used instead (SPEC 4).
 *
 * @module
 */
import type { AccessToken } from '../access_token.ts'
import { AmlAuthError, AuthenticationError, CredentialUnavailableError } from '../errors.ts'
import type { StoreKey, TokenStore } from '../token_store.ts'
import {
  _checkAllowedTenants,
  _checkEndpoint,
  _checkKinds,
  _checkString,
  _checkTenantId,
  _GUID_RE,
} from '../_validate.ts'
import {
  _scopeKey,
  _switchTenant,
  _uniqueIdentity,
  AbstractAuthentication,
  type CredentialOptions,
  type GetTokenOptions,
  type SubscriptionInfo,
  type TokenRequest,
} from './abstract.ts'
import {
  _badState,
  _beginAuthorization,
  _completeAuthorization,
  type AuthorizationRequest,
  type BeginAuthorizationOptions,
} from './_auth_code.ts'
import {
  _aborted,
  _deviceCodeFlow,
  type DeviceCodeCallback,
  type DeviceCodeInfo,
} from './_device_code.ts'
import {
  type _App,
  _defined,
  _scopeList,
  _scopeParam,
  type _Session,
  _sessionFrom,
  _SessionHolder,
  _tidOf,
  type _TokenResult,
  _userGrant,
  type AccountInfo,
} from './_refresh_token.ts'
import { AzureMLTokenAuthentication } from './azureml_token.ts'
import { MsiAuthentication } from './msi.ts'
import { ServicePrincipalAuthentication } from './service_principal.ts'
import { servicePrincipalFromEnvironment } from './service_principal_env.ts'

export type { AuthorizationRequest, BeginAuthorizationOptions } from './_auth_code.ts'
export type { DeviceCodeCallback, DeviceCodeInfo } from './_device_code.ts'
export type { AccountInfo } from './_refresh_token.ts'

/** The Azure CLI's public client id, the default `clientId` (as the Python SDK). */
export const AZURE_CLI_CLIENT_ID: string = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'

/** Which ambient identity an {@linkcode InteractiveLoginAuthentication} delegates to. */
export type AmbientSource = 'msi' | 'service-principal' | 'azureml-run'

/** Options of {@linkcode InteractiveLoginAuthentication}. */
export interface InteractiveLoginAuthenticationOptions extends CredentialOptions {
  /** Tenant to sign in to (GUID or domain); default `organizations` (any work or school account). */
  tenantId?: string
  /** Public client application id; default the Azure CLI's `04b07795-8ddb-461a-bbee-02f9e1bf7b46`. */
  clientId?: string
  /** Skip ambient detection and always sign a user in. */
  force?: boolean
  /** Receives the device-code prompt (default: print Entra's message to stderr). */
  onDeviceCode?: DeviceCodeCallback
  /**
   * Keeps the refresh token and account beyond this object (and shares them with other
   * instances and isolates using the same store, key and name), sealed with AES-GCM. Default:
   * a private field of this object.
   */
  tokenStore?: TokenStore
  /** AES-GCM key for `tokenStore` (16, 24 or 32 random bytes, or a CryptoKey); required with it. */
  tokenStoreKey?: StoreKey
  /** Distinguishes sign-ins kept in one `tokenStore`, e.g. one per user of a web app (default `default`). */
  tokenStoreName?: string
  /** Entra authority host; default the cloud's (`https://login.microsoftonline.com`). */
  authorityHost?: string
  /**
   * Never start a device-code sign-in from `getToken`: without a signed-in user it fails with
   * `ERR_CREDENTIAL_UNAVAILABLE` (call `authenticate()` or the authorization-code flow first).
   * Set this in servers, where nobody reads a device-code prompt.
   */
  disableAutomaticAuthentication?: boolean
  /**
   * Tenants besides `tenantId` that `getToken(…, { tenantId })` may ask for (`*` for any).
   * Without `tenantId`, any tenant is allowed.
   */
  additionallyAllowedTenants?: readonly string[]
}

const MAX_PENDING = 16

/** A sign-in in progress, shared by every caller that needs it. */
interface _Flight {
  promise: Promise<_Session>
  controller: AbortController
  /** Callers waiting with an abort signal. */
  waiting: number
  /** A caller without a signal joined: the flight runs to its end. */
  pinned: boolean
}

function printPrompt(info: DeviceCodeInfo): void {
  // deno-lint-ignore no-console -- the device-code prompt must reach the user; pass onDeviceCode to send it elsewhere
  console.error(info.message)
}

/**
 * A user's credential. Without `force`, an identity the environment provides is used instead,
 * first match wins: managed identity (`MSI_ENDPOINT` or `IDENTITY_ENDPOINT`), a service principal
 * (`AZUREML_SERVICE_PRINCIPAL_ID`, `_PASSWORD`, and `_TENANT_ID` or `tenantId`), an Azure ML run
 * token (`AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH=true`); the `ambient` property says which.
 *
 * Otherwise a user signs in, either with the device-code flow (started by the first `getToken`,
 * or by `authenticate()`; the prompt goes to `onDeviceCode`), or with the authorization-code flow
 * with PKCE for apps that own a redirect URI (`beginAuthorization` / `completeAuthorization`).
 * The refresh token then serves every scope silently (`grant_type=refresh_token`); a rotated
 * refresh token replaces the old one. It lives in a private field, or sealed in `tokenStore`.
 * Concurrent callers share one sign-in; cached access tokens belong to this object only.
 *
 * A token issued in another tenant than a GUID `tenantId` is refused with
 * `ERR_TENANT_NOT_ALLOWED` (the Python SDK then forced a new login).
 *
 * @example Device-code sign-in in a terminal
 * ```ts
 * import { InteractiveLoginAuthentication } from '@aml-edge/auth'
 *
 * const auth = new InteractiveLoginAuthentication({
 *   env: {},
 *   onDeviceCode: ({ verificationUri, userCode }) => {
 *     console.log(`Open ${verificationUri} and enter ${userCode}`)
 *   },
 * })
 * console.assert(auth.ambient === undefined)
 * async function listMine() {
 *   return await auth.listSubscriptions() // first call prompts, later ones are silent
 * }
 * ```
 *
 * @example Authorization code with PKCE in a web app
 * ```ts
 * import { InteractiveLoginAuthentication, memoryTokenStore } from '@aml-edge/auth'
 *
 * const auth = new InteractiveLoginAuthentication({
 *   force: true,
 *   disableAutomaticAuthentication: true,
 *   tokenStore: memoryTokenStore(),
 *   tokenStoreKey: crypto.getRandomValues(new Uint8Array(32)),
 *   tokenStoreName: 'user-42',
 * })
 * const { url, state } = await auth.beginAuthorization({ redirectUri: 'http://localhost:8400/callback' })
 * console.assert(url.searchParams.get('code_challenge_method') === 'S256')
 * // Redirect the browser to `url`, keep `state` in the server-side session; then, in the
 * // callback handler:
 * async function onCallback(request: Request) {
 *   const account = await auth.completeAuthorization(request.url, state)
 *   return account.username
 * }
 * ```
 */
export class InteractiveLoginAuthentication extends AbstractAuthentication {
  /** The ambient identity this credential delegates to, or `undefined` when a user signs in. */
  readonly ambient: AmbientSource | undefined
  /** The tenant users sign in to, when one was given. */
  readonly tenantId: string | undefined
  /** The public client application id. */
  readonly clientId: string
  readonly #ambient: AbstractAuthentication | undefined
  /** Authority host, tenant (`organizations` without `tenantId`) and client id. */
  readonly #app: _App
  readonly #holder: _SessionHolder
  readonly #onDeviceCode: DeviceCodeCallback
  readonly #auto: boolean
  readonly #allowed: ReadonlySet<string>
  #identity: string | undefined = undefined
  /** Access tokens a sign-in returned, handed to the cache once. */
  readonly #first = new Map<string, AccessToken>()
  /** Ambient promises already wrapped in a tenant check: a cache hit then allocates nothing. */
  readonly #delegated = new WeakMap<Promise<AccessToken>, Promise<AccessToken>>()
  #flight: _Flight | undefined = undefined
  /** Authorizations begun here: /authorize `state` → the opaque state. */
  readonly #pending = new Map<string, string>()

  /**
   * Checks the options and detects the ambient identity from `env`; sends nothing.
   *
   * @param options tenant, client id, prompt callback, token store, ambient control and the
   * common options
   * @throws {TypeError} for a bad option (tenant, client id, authority, store without key, ...)
   */
  constructor(options: InteractiveLoginAuthenticationOptions = {}) {
    super(options)
    if (options.tenantId !== undefined) _checkTenantId(options.tenantId, 'tenantId')
    this.tenantId = options.tenantId
    this.clientId = options.clientId === undefined
      ? AZURE_CLI_CLIENT_ID
      : _checkString(options.clientId, 'clientId').trim()
    if (/\s/.test(this.clientId)) throw new TypeError('clientId must not contain spaces')
    this.#app = {
      authorityHost: _checkEndpoint(
        options.authorityHost ?? this.cloud.activeDirectory,
        options.authorityHost === undefined ? 'cloud.activeDirectory' : 'authorityHost',
      ),
      tenant: options.tenantId ?? 'organizations',
      clientId: this.clientId,
    }
    _checkKinds({ onDeviceCode: options.onDeviceCode }, { onDeviceCode: 'f' })
    this.#onDeviceCode = options.onDeviceCode ?? printPrompt
    this.#auto = options.disableAutomaticAuthentication !== true
    this.#allowed = _checkAllowedTenants(
      options.additionallyAllowedTenants,
      'additionallyAllowedTenants',
    )
    this.#holder = new _SessionHolder(options, this.#app, this._http.now)
    const found = options.force === true ? undefined : this.#detectAmbient(options)
    this.ambient = found?.[0]
    this.#ambient = found?.[1]
  }

  /** Builds the first ambient identity the environment provides (no I/O), SPEC 4 order. */
  #detectAmbient(
    options: InteractiveLoginAuthenticationOptions,
  ): [AmbientSource, AbstractAuthentication] | undefined {
    const env = this._env
    const common = _defined<CredentialOptions>({
      cloud: this.cloud,
      env,
      fetch: options.fetch,
      now: options.now,
      sleep: options.sleep,
      timeoutMs: options.timeoutMs,
      retry: options.retry,
      cache: options.cache,
    })
    // As the Python SDK, a source whose variables are incomplete or malformed is skipped.
    if (env.MSI_ENDPOINT?.trim() || env.IDENTITY_ENDPOINT?.trim()) {
      try {
        return ['msi', new MsiAuthentication(common)]
      } catch {
        // fall through
      }
    }
    const has = (name: string) => (env[name]?.trim() ?? '') !== ''
    if (
      has('AZUREML_SERVICE_PRINCIPAL_ID') && has('AZUREML_SERVICE_PRINCIPAL_PASSWORD') &&
      (options.tenantId !== undefined || has('AZUREML_SERVICE_PRINCIPAL_TENANT_ID'))
    ) {
      try {
        return [
          'service-principal',
          options.authorityHost === undefined
            // Reads the AZUREML_SERVICE_PRINCIPAL_* variables; errors then name them.
            ? servicePrincipalFromEnvironment(env, {
              ...common,
              ...(options.tenantId !== undefined ? { tenantId: options.tenantId } : {}),
            })
            : new ServicePrincipalAuthentication({
              ...common,
              tenantId: options.tenantId ?? env.AZUREML_SERVICE_PRINCIPAL_TENANT_ID!.trim(),
              servicePrincipalId: env.AZUREML_SERVICE_PRINCIPAL_ID!.trim(),
              servicePrincipalPassword: env.AZUREML_SERVICE_PRINCIPAL_PASSWORD!,
              authorityHost: options.authorityHost,
            }),
        ]
      } catch {
        // fall through
      }
    }
    if (env.AZUREML_RUN_TOKEN_USE_AMBIENT_AUTH?.trim().toLowerCase() === 'true') {
      try {
        return ['azureml-run', AzureMLTokenAuthentication.fromEnvironment(env, common)]
      } catch {
        // fall through
      }
    }
    return undefined
  }

  /**
   * A token for the given scopes (default ARM): from the ambient identity, or from the signed-in
   * user's refresh token; signs the user in first (device code) when nobody is.
   *
   * @param scopes one scope or several; default the cloud's ARM scope
   * @param options abort signal (also ends a sign-in nobody else waits for), claims, tenant
   * @returns the token
   * @throws {AmlAuthError} `ERR_CREDENTIAL_UNAVAILABLE` when nobody is signed in and automatic
   * sign-in is disabled, `ERR_TENANT_NOT_ALLOWED`, `ERR_ABORTED`, `ERR_TIMEOUT`, or an
   * `AuthenticationError`
   */
  override getToken(
    scopes?: string | readonly string[],
    options?: GetTokenOptions,
  ): Promise<AccessToken> {
    const ambient = this.#ambient
    if (ambient !== undefined) return this.#delegate(ambient.getToken(scopes, options))
    if (this.#holder.current !== undefined) return super.getToken(scopes, options)
    let list: string[]
    try {
      // Refuse a tenant that is not allowed before anyone is asked to sign in.
      if (options?.tenantId !== undefined) this._resolveTenant(options.tenantId)
      list = _scopeList(scopes?.length ? scopes : undefined, this._scopeForAudience('ARM'))
    } catch (e) {
      return Promise.reject(e)
    }
    return this.#session(list, options?.abortSignal).then(() => super.getToken(scopes, options))
  }

  /**
   * The subscriptions the ARM token can see; with an ambient identity, as that identity answers.
   *
   * @param options abort signal
   * @returns the subscriptions
   */
  override listSubscriptions(
    options: { abortSignal?: AbortSignal } = {},
  ): Promise<SubscriptionInfo[]> {
    // The base class would send a run token to ARM: the run credential refuses instead (SPEC 5).
    // Audiences and headers need no override: they come from getToken, which delegates.
    return this.ambient === 'azureml-run'
      ? this.#ambient!.listSubscriptions(options)
      : super.listSubscriptions(options)
  }

  /**
   * Signs a user in with the device-code flow now, unless one is signed in already (here or in
   * `tokenStore`). Use it to sign in ahead of time, e.g. with `disableAutomaticAuthentication`.
   *
   * @param options scopes to consent to (default ARM), abort signal
   * @returns the signed-in account
   * @throws {CredentialUnavailableError} with an ambient identity (pass `force: true`)
   */
  async authenticate(
    options: { scopes?: string | readonly string[]; abortSignal?: AbortSignal } = {},
  ): Promise<AccountInfo> {
    this.#refuseAmbient('authenticate()')
    const scopes = _scopeList(options.scopes, this._scopeForAudience('ARM'))
    const session = await this.#session(scopes, options.abortSignal, { explicit: true })
    return { ...session.account }
  }

  /**
   * First step of the authorization-code flow with PKCE: the URL to send the browser to, and an
   * opaque `state` to keep server-side until the callback (it holds the PKCE verifier).
   *
   * @param options `redirectUri` (https, or http on loopback), scopes, `loginHint`, `prompt`
   * @returns `{ url, state }`
   * @throws {TypeError} for a bad option
   */
  async beginAuthorization(options: BeginAuthorizationOptions): Promise<AuthorizationRequest> {
    this.#refuseAmbient('beginAuthorization()')
    const request = await _beginAuthorization(this.#app, this._scopeForAudience('ARM'), options)
    // Also kept here (the latest few), so that this object can complete it from the URL alone.
    const pending = this.#pending
    pending.set(request.url.searchParams.get('state')!, request.state)
    if (pending.size > MAX_PENDING) pending.delete(pending.keys().next().value!)
    return request
  }

  /**
   * Second step: checks the callback's `state`, exchanges the code (with the PKCE verifier) and
   * keeps the refresh token. Later tokens for any scope come silently.
   *
   * @param callbackUrl the full URL Entra redirected the browser to
   * @param state what `beginAuthorization` returned with the URL; may be left out when this
   * same object began the authorization (it keeps the latest 16)
   * @param options abort signal
   * @returns the signed-in account
   * @throws {AuthenticationError} for an `error` on the callback or a refused code;
   * {AmlAuthError} `ERR_RESPONSE_INVALID` when `state` does not match, `ERR_TENANT_NOT_ALLOWED`,
   * `ERR_STORE` when the sign-in could not be saved (it still works in this object)
   */
  async completeAuthorization(
    callbackUrl: string | URL,
    state?: string,
    options: { abortSignal?: AbortSignal } = {},
  ): Promise<AccountInfo> {
    this.#refuseAmbient('completeAuthorization()')
    let sent = ''
    try {
      sent = new URL(callbackUrl).searchParams.get('state') ?? ''
    } catch {
      // _completeAuthorization reports the bad URL
    }
    const pending = state ?? this.#pending.get(sent)
    if (pending === undefined) throw _badState()
    if (this.#pending.get(sent) === pending) this.#pending.delete(sent)
    const { result, scopes } = await _completeAuthorization(
      this._http,
      this.#app,
      callbackUrl,
      pending,
      options.abortSignal,
    )
    return { ...(await this.#establish(result, scopes)).account }
  }

  /**
   * The signed-in account (read from the id_token, never verified), or `undefined`.
   *
   * @returns the account
   * @throws {AmlAuthError} `ERR_STORE` when `tokenStore` cannot be read
   */
  async getAccount(): Promise<AccountInfo | undefined> {
    const s = this.#ambient === undefined ? await this.#holder.load() : undefined
    return s && { ...s.account }
  }

  /**
   * Forgets the signed-in user: the refresh token (here and in `tokenStore`) and the cached
   * access tokens. The next token needs a new sign-in.
   *
   * @returns when done
   * @throws {AmlAuthError} `ERR_STORE` when `tokenStore` refuses the deletion
   */
  async signOut(): Promise<void> {
    this.#first.clear()
    this._forgetTokens()
    await this.#holder.clear()
  }

  /**
   * Unique to this object: cached access tokens are never shared with another sign-in. Made on
   * first use, since Workers refuse random values at global scope.
   */
  protected _cacheIdentity(): string {
    return this.#identity ??= _uniqueIdentity('interactive')
  }

  /** Allows `tenantId`, `additionallyAllowedTenants`, or any tenant when no `tenantId` was set. */
  protected override _resolveTenant(tenantId: string): string | undefined {
    _checkTenantId(tenantId, 'tenantId')
    // Without a tenantId, users sign in to `organizations`: asking for that is no switch.
    if (this.tenantId === undefined && tenantId.toLowerCase() === this.#app.tenant) return undefined
    return _switchTenant(tenantId, this.tenantId, this.#allowed, 'additionallyAllowedTenants')
  }

  /** A token from the ambient identity, the sign-in's first token, or the refresh token. */
  protected async _requestToken(request: TokenRequest): Promise<AccessToken> {
    if (this.#ambient !== undefined) {
      return await this.#ambient.getToken(
        request.scopes,
        _defined<GetTokenOptions>({ claims: request.claims, tenantId: request.tenantId }),
      )
    }
    // Only a plain request may take the sign-in's first token ('' is never a key of #first).
    const key = request.claims === undefined && request.tenantId === undefined
      ? _scopeKey(request.scopes)
      : ''
    let session = this.#holder.current
    if (session === undefined || this.#first.has(key)) {
      session = await this.#session(request.scopes, undefined)
      const first = this.#takeFirst(key)
      if (first !== undefined) return first
    }
    // With a store, another instance sharing it may have rotated the refresh token (without one,
    // this is the session above).
    session = (await this.#holder.load()) ?? await this.#session(request.scopes, undefined)
    let result: _TokenResult
    try {
      result = await this.#refresh(session, request)
    } catch (e) {
      if (
        !(e instanceof AuthenticationError) ||
        !['invalid_grant', 'interaction_required'].includes(e.error!)
      ) {
        throw e
      }
      // invalid_grant: the refresh token no longer works (expired, revoked). interaction_required
      // (MFA, consent) only concerns this resource: the refresh token stays.
      if (e.error === 'invalid_grant') await this.#holder.clear().catch(() => {})
      if (!this.#auto) throw e
      session = await this.#session(request.scopes, undefined, { fresh: true })
      const first = this.#takeFirst(key)
      if (first !== undefined) return first
      result = await this.#refresh(session, request)
    }
    this.#checkTenant(result.accessToken, result.account, request.tenantId ?? this.tenantId)
    const next = _sessionFrom(result, this._http.now(), session)
    if (next !== undefined && result.refreshToken !== undefined) {
      // A failed save keeps the new refresh token here; the old one in the store still works.
      await this.#holder.save(next).catch(() => {})
    }
    return result.accessToken
  }

  /** The ambient source, tenant and client id; never a token. */
  protected override _describe(): Record<string, unknown> {
    return {
      ambient: this.ambient,
      tenantId: this.tenantId,
      clientId: this.ambient === undefined ? this.clientId : undefined,
    }
  }

  #refresh(session: _Session, request: TokenRequest): Promise<_TokenResult> {
    // The refresh-token grant: a token for any scope, silently.
    return _userGrant(
      this._http,
      this.#app,
      {
        grant_type: 'refresh_token',
        refresh_token: session.refreshToken,
        scope: _scopeParam(request.scopes),
        claims: request.claims,
      },
      'refresh token',
      { tenant: request.tenantId },
    )
  }

  #takeFirst(key: string): AccessToken | undefined {
    const t = this.#first.get(key)
    this.#first.delete(key)
    return t !== undefined && t.expiresOnTimestamp - this._http.now() > 60_000 ? t : undefined
  }

  #refuseAmbient(what: string): void {
    if (this.ambient !== undefined) {
      throw new CredentialUnavailableError(
        `${what} signs a user in, but this credential uses the ambient ${this.ambient} identity (pass force: true)`,
      )
    }
  }

  /** Checks the tenant of a token that was asked for with a GUID tenant. */
  #checkTenant(token: AccessToken, account: AccountInfo | undefined, expected?: string): void {
    if (expected === undefined || !_GUID_RE.test(expected)) return
    const tid = _tidOf(token.token) ?? account?.tenantId
    if (tid !== undefined && tid.toLowerCase() !== expected.toLowerCase()) {
      throw new AmlAuthError(
        'ERR_TENANT_NOT_ALLOWED',
        'The token was issued in another tenant than tenantId; sign in with an account of that tenant or change tenantId',
      )
    }
  }

  /**
   * Ambient tokens: managed identity is refused when its tenant differs (Python parity). The
   * ambient cache answers a hit with the same promise every time, so its checked twin is kept
   * (weakly) and a hit costs one WeakMap lookup, no closure or promise.
   */
  #delegate(p: Promise<AccessToken>): Promise<AccessToken> {
    if (this.ambient !== 'msi' || this.tenantId === undefined) return p
    let checked = this.#delegated.get(p)
    if (checked === undefined) {
      checked = p.then((t) => {
        this.#checkTenant(t, undefined, this.tenantId)
        return t
      })
      this.#delegated.set(p, checked)
    }
    return checked
  }

  /** Adopts what a sign-in returned: tenant check, session, first token. */
  async #establish(result: _TokenResult, scopes: readonly string[]): Promise<_Session> {
    this.#checkTenant(result.accessToken, result.account, this.tenantId)
    const session = _sessionFrom(result, this._http.now())
    if (session === undefined) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        'Entra ID returned no refresh token; check that the application may use offline_access',
      )
    }
    this._forgetTokens()
    this.#first.clear()
    this.#first.set(_scopeKey(scopes), result.accessToken)
    await this.#holder.save(session)
    return session
  }

  /**
   * The signed-in session: the known one, the one in `tokenStore`, or a new device-code sign-in
   * (single flight). The sign-in is aborted when every caller that joined with a signal aborted
   * and none joined without one.
   */
  #session(
    scopes: readonly string[],
    signal: AbortSignal | undefined,
    how: { explicit?: boolean; fresh?: boolean } = {},
  ): Promise<_Session> {
    const known = how.fresh ? undefined : this.#holder.current
    if (known !== undefined) return Promise.resolve(known)
    let f = this.#flight
    if (f === undefined) {
      const controller = new AbortController()
      const flight: _Flight = {
        controller,
        waiting: 0,
        pinned: false,
        promise: this.#signIn(scopes, controller.signal, how).finally(() => {
          if (this.#flight === flight) this.#flight = undefined
        }),
      }
      flight.promise.catch(() => {})
      this.#flight = f = flight
    }
    if (signal === undefined) {
      f.pinned = true
      return f.promise
    }
    // Join with a signal: leave on abort, and end the sign-in when the last such caller left.
    const flight = f
    flight.waiting++
    let onAbort!: () => void
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(_aborted())
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    return Promise.race([aborted, flight.promise]).finally(() => {
      signal.removeEventListener('abort', onAbort)
      if (--flight.waiting === 0 && signal.aborted && !flight.pinned) flight.controller.abort()
    })
  }

  async #signIn(
    scopes: readonly string[],
    signal: AbortSignal,
    how: { explicit?: boolean; fresh?: boolean },
  ): Promise<_Session> {
    // `fresh`: the stored sign-in was refused for this resource (MFA, consent): ask the user.
    const stored = how.fresh ? undefined : await this.#holder.load()
    if (stored !== undefined) return stored
    if (!this.#auto && !how.explicit) {
      throw new CredentialUnavailableError(
        'No user is signed in; call authenticate() or beginAuthorization() first',
      )
    }
    const result = await _deviceCodeFlow(this._http, this.#app, {
      scopes,
      onDeviceCode: this.#onDeviceCode,
      signal,
    })
    return await this.#establish(result, scopes)
  }
}
