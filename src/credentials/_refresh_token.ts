// User sign-in state shared by the device-code and authorization-code flows: the Entra token
// request that can return a refresh token, the account read from the id_token (never verified),
// the refresh-token grant, and where the refresh token lives (a private field, or a TokenStore
// where it is sealed with AES-GCM under the user's key).
import type { AccessToken } from '../access_token.ts'
import { AmlAuthError } from '../errors.ts'
import { entraAdvice, type EntraTokenResult, requestEntraTokenResult } from '../_entra.ts'
import type { HttpContext } from '../http.ts'
import { _decodeJwt, _unb64 } from '../jwt.ts'
import {
  _checkStoreKey,
  _hashKey,
  _importStoreKey,
  _open,
  _seal,
  type StoreKey,
  type TokenStore,
} from '../token_store.ts'
import { _checkString } from '../_validate.ts'

/** The signed-in account, as read from the id_token (never verified: for display and checks). */
export interface AccountInfo {
  /** MSAL's home account id, `<oid>.<tid>` of the home tenant (from `client_info` when sent). */
  homeAccountId?: string
  /** Object id (`oid`) of the user. */
  objectId?: string
  /** Tenant (`tid`) the tokens were issued in. */
  tenantId?: string
  /** Sign-in name (`preferred_username`, else `upn`, `email`, `unique_name`). */
  username?: string
}

/** The public client a user signs in to: where, in which tenant, with which client id. */
export interface _App {
  /** Entra authority host. */
  authorityHost: string
  /** Tenant (GUID, domain or `organizations`). */
  tenant: string
  /** Public client application id. */
  clientId: string
}

/** What a token endpoint answered to a user grant. */
export interface _TokenResult {
  accessToken: AccessToken
  refreshToken?: string
  /** Lifetime of the refresh token in seconds, when Entra says (SPA and some clients). */
  refreshTokenExpiresIn?: number
  account: AccountInfo
}

/** Scopes Entra needs to return a refresh token and an id_token. */
export const _OIDC_SCOPES: readonly string[] = ['offline_access', 'openid', 'profile']

/** A copy of `o` without its `undefined` values (optional fields stay absent, not undefined). */
export function _defined<T extends object>(o: { [K in keyof T]: T[K] | undefined }): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

/** Normalizes a `scopes` option of the user flows. */
export function _scopeList(
  scopes: string | readonly string[] | undefined,
  fallback: string,
): string[] {
  if (scopes === undefined) return [fallback]
  const list = typeof scopes === 'string' ? scopes.split(' ').filter(Boolean) : [...scopes]
  if (list.length === 0 || list.some((s) => typeof s !== 'string' || !/^\S+$/.test(s))) {
    throw new TypeError('scopes must be non-empty strings without spaces')
  }
  return list
}

/** The scope parameter: the resource scopes plus the OpenID ones, each once. */
export function _scopeParam(scopes: readonly string[]): string {
  return [...new Set([...scopes, ..._OIDC_SCOPES])].join(' ')
}

// The core advice plus the user-flow code; expired codes and refresh tokens come as invalid_grant,
// which _userGrantAdvice answers first.
const ENTRA_ADVICE = /* @__PURE__ */ entraAdvice({ clientId: 'clientId', tenantId: 'tenantId' }, {
  700025: 'This application is a public client: it must send no client secret or certificate',
})

/** Advice appended to Entra refusals of user grants. */
export function _userGrantAdvice(codes: readonly number[], error: string | undefined): string {
  if (
    error === 'interaction_required' || error === 'invalid_grant' ||
    codes.some((c) => [50076, 50079, 50078, 50173, 700082].includes(c))
  ) {
    return 'Sign in again (signOut(), then authenticate() or beginAuthorization())'
  }
  if (codes.includes(7000218)) {
    return 'Enable "Allow public client flows" on the application, or use ServicePrincipalAuthentication'
  }
  return ENTRA_ADVICE(codes, error) ?? 'Check tenantId, clientId and the requested scopes'
}

/** A user-grant answer as a result: the token, a refresh token if any, and the account. */
export function _toResult(r: EntraTokenResult): _TokenResult {
  const rtIn = Number(r.body.refresh_token_expires_in)
  return _defined<_TokenResult>({
    accessToken: r.accessToken,
    refreshToken: r.refreshToken,
    refreshTokenExpiresIn: Number.isFinite(rtIn) && rtIn > 0 ? rtIn : undefined,
    account: _accountFrom(r.body, r.accessToken.token),
  })
}

/** The account from `id_token` and `client_info`, else from the access token's claims. */
export function _accountFrom(body: Record<string, unknown>, accessToken: string): AccountInfo {
  let claims: Record<string, unknown> = {}
  for (const jwt of [body.id_token, accessToken]) {
    try {
      claims = _decodeJwt(jwt as string, 'id_token')
      break
    } catch {
      // absent or an opaque token: try the next source
    }
  }
  const oid = str(claims.oid)
  const tid = str(claims.tid)
  let home = oid && tid && `${oid}.${tid}`
  try {
    const info = JSON.parse(new TextDecoder().decode(_unb64(body.client_info as string)))
    if (str(info?.uid) && str(info?.utid)) home = `${info.uid}.${info.utid}`
  } catch {
    // client_info is optional
  }
  return _defined<AccountInfo>({
    homeAccountId: home,
    objectId: oid,
    tenantId: tid,
    username: str(claims.preferred_username) ?? str(claims.upn) ?? str(claims.email) ??
      str(claims.unique_name),
  })
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

/** The `tid` claim of a token when it is a JWT, else `undefined`. */
export function _tidOf(token: string): string | undefined {
  try {
    return str(_decodeJwt(token).tid)
  } catch {
    return undefined
  }
}

/**
 * POSTs a user grant to the token endpoint (with `client_id` and `client_info` added) and reads
 * the answer.
 *
 * @param ctx the credential's HTTP context
 * @param app the public client
 * @param form the grant's own fields
 * @param what the grant, for messages (`refresh token`, `authorization code`)
 * @param opts abort signal; tenant (default `app.tenant`)
 */
export async function _userGrant(
  ctx: HttpContext,
  app: _App,
  form: Record<string, string | undefined>,
  what: string,
  opts: { signal?: AbortSignal | undefined; tenant?: string | undefined } = {},
): Promise<_TokenResult> {
  return _toResult(
    await requestEntraTokenResult(ctx, {
      authority: app.authorityHost,
      tenant: opts.tenant ?? app.tenant,
      form: { client_id: app.clientId, client_info: '1', ...form },
      what: `the Entra ID token endpoint (${what})`,
      signal: opts.signal,
      advice: _userGrantAdvice,
    }),
  )
}

/** A signed-in user: the refresh token and who it belongs to. */
export interface _Session {
  refreshToken: string
  account: AccountInfo
  /** When the refresh token stops working (epoch ms, an estimate). */
  expiresAt: number
}

/**
 * Entra refresh tokens live 90 days (sliding) unless the answer says otherwise. A literal: bundlers
 * keep module-level arithmetic even when nothing uses it.
 */
export const _DEFAULT_RT_LIFETIME_MS: number = 7_776_000_000

/** Builds the session a grant answer establishes, keeping the old refresh token if none came. */
export function _sessionFrom(
  r: _TokenResult,
  now: number,
  previous?: _Session,
): _Session | undefined {
  const rt = r.refreshToken ?? previous?.refreshToken
  if (rt === undefined) return undefined
  const account = { ...previous?.account, ...r.account }
  const expiresAt = r.refreshToken === undefined && previous
    ? previous.expiresAt
    : now + (r.refreshTokenExpiresIn ?? _DEFAULT_RT_LIFETIME_MS / 1000) * 1000
  return { refreshToken: rt, account, expiresAt }
}

/** The options of a credential that keeps a session in a `TokenStore`. */
export interface _StoreOptions {
  tokenStore?: TokenStore
  tokenStoreKey?: StoreKey
  tokenStoreName?: string
}

/**
 * Where the session lives: a private field, and, with a store, one sealed entry in it. The entry
 * name is a hash (of the authority, tenant, client id and store name), so the store sees neither
 * who signed in nor where; the value is AES-GCM ciphertext bound to that name.
 */
export class _SessionHolder {
  #session: _Session | undefined = undefined
  readonly #store: TokenStore | undefined
  /** The imported key and the entry name. */
  readonly #keys: Promise<[CryptoKey, string]> | undefined
  readonly #now: () => number

  /**
   * Checks the store options (construction time) and starts importing the key.
   *
   * @param o `tokenStore`, `tokenStoreKey` (required with it) and `tokenStoreName`
   * @param app whose sign-in this is (part of the entry name)
   * @param now the clock
   * @throws {TypeError} for a store without key (or key without store), or a bad option
   */
  constructor(o: _StoreOptions, app: _App, now: () => number) {
    this.#now = now
    const store = o.tokenStore as Partial<TokenStore> | undefined
    if ((store === undefined) !== (o.tokenStoreKey === undefined)) {
      throw new TypeError(
        'tokenStore and tokenStoreKey go together: the refresh token is only stored encrypted',
      )
    }
    const name = o.tokenStoreName === undefined
      ? 'default'
      : _checkString(o.tokenStoreName, 'tokenStoreName')
    if (store === undefined) return
    if (
      store === null || typeof store !== 'object' ||
      (['get', 'set', 'delete'] as const).some((m) => typeof store[m] !== 'function')
    ) {
      throw new TypeError('tokenStore must have get, set and delete methods')
    }
    this.#store = store as TokenStore
    this.#keys = Promise.all([
      _importStoreKey(_checkStoreKey(o.tokenStoreKey, 'tokenStoreKey')),
      _hashKey(
        ['aml-edge-auth/refresh-token', app.authorityHost, app.tenant, app.clientId, name].join(
          '\n',
        ),
      ),
    ])
    this.#keys.catch(() => {})
  }

  /** The session this object knows, without I/O. */
  get current(): _Session | undefined {
    const s = this.#session
    if (s !== undefined && s.expiresAt <= this.#now()) this.#session = undefined
    return this.#session
  }

  /** The session, read again from the store when there is one (another instance may rotate it). */
  async load(): Promise<_Session | undefined> {
    const stored = await this.#io('read', async (store, [key, name]) => {
      const sealed = await store.get(name)
      return parseSession(sealed && await _open(key, name, sealed))
    })
    // A session only this object knows (its save failed) stays in use.
    if (stored !== undefined) this.#session = stored
    return this.current
  }

  /** Keeps a session in memory and, with a store, seals it there. */
  async save(session: _Session): Promise<void> {
    this.#session = session
    await this.#io('save', async (store, [key, name]) => {
      const value = JSON.stringify({
        v: 1,
        rt: session.refreshToken,
        account: session.account,
        exp: session.expiresAt,
      })
      await store.set(name, await _seal(key, name, value), { expiresAt: session.expiresAt })
    })
  }

  /** Forgets the session here and in the store. */
  async clear(): Promise<void> {
    this.#session = undefined
    await this.#io('delete', (store, [, name]) => store.delete(name))
  }

  /** Runs a store operation, if there is a store; its failure becomes `ERR_STORE`. */
  async #io<T>(
    action: string,
    run: (store: TokenStore, keys: [CryptoKey, string]) => Promise<T>,
  ): Promise<T | undefined> {
    if (this.#store === undefined) return undefined
    try {
      return await run(this.#store, await this.#keys!)
    } catch (cause) {
      throw new AmlAuthError(
        'ERR_STORE',
        `Cannot ${action} the signed-in account in tokenStore; check the store (see the cause)`,
        { cause },
      )
    }
  }
}

/**
 * Reads a session this module sealed (AES-GCM authenticates it, so only our own writes open);
 * anything of another shape, e.g. from another version, is ignored.
 */
function parseSession(plain: string | undefined): _Session | undefined {
  try {
    const v = JSON.parse(plain!)
    return v?.v === 1 && typeof v.rt === 'string' && v.rt && typeof v.exp === 'number'
      ? { refreshToken: v.rt, account: { ...v.account }, expiresAt: v.exp }
      : undefined
  } catch {
    return undefined
  }
}
