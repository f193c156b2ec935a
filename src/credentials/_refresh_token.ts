// User sign-in state shared by the device-code and authorization-code flows: the Entra token
// request that can return a refresh token, the account read from the id_token (never verified),
// the refresh-token grant, and where the refresh token lives (a private field, or a TokenStore
// where it is sealed with AES-GCM under the user's key).
import type { AccessToken } from '../access_token.ts'
import { AmlAuthError } from '../errors.ts'
import {
  entraAdvice,
  type EntraTokenResult,
  parseEntraTokenResponse,
  requestEntraTokenResult,
} from '../_entra.ts'
import type { HttpContext, HttpResponse } from '../http.ts'
import { _decodeJwt, _unb64 } from '../jwt.ts'
import {
  _hashKey,
  _importStoreKey,
  _open,
  _seal,
  type StoreKey,
  type TokenStore,
} from '../token_store.ts'

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

/** Normalizes a `scopes` option of the user flows. */
export function _scopeList(
  scopes: string | readonly string[] | undefined,
  fallback: string,
): string[] {
  if (scopes === undefined) return [fallback]
  const list = typeof scopes === 'string' ? scopes.split(' ').filter(Boolean) : [...scopes]
  if (list.length === 0 || list.some((s) => typeof s !== 'string' || s === '' || /\s/.test(s))) {
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
    codes.some((c) => c === 50076 || c === 50079 || c === 50078 || c === 50173 || c === 700082)
  ) {
    return 'Sign in again (signOut(), then authenticate() or beginAuthorization())'
  }
  if (codes.includes(7000218)) {
    return 'The application is not a public client: enable "Allow public client flows" on it, or use ServicePrincipalAuthentication'
  }
  return ENTRA_ADVICE(codes, error) ?? 'Check tenantId, clientId and the requested scopes'
}

/** Reads a successful user-grant answer: the token, a refresh token if any, and the account. */
export function _readTokenResult(
  res: HttpResponse,
  opts: { what: string; now: number; secrets: readonly (string | undefined)[] },
): _TokenResult {
  return _toResult(parseEntraTokenResponse(res, { ...opts, advice: _userGrantAdvice }))
}

function _toResult(r: EntraTokenResult): _TokenResult {
  const rtIn = Number(r.body.refresh_token_expires_in)
  return {
    accessToken: r.accessToken,
    ...(r.refreshToken !== undefined ? { refreshToken: r.refreshToken } : {}),
    ...(Number.isFinite(rtIn) && rtIn > 0 ? { refreshTokenExpiresIn: rtIn } : {}),
    account: _accountFrom(r.body, r.accessToken.token),
  }
}

/** The account from `id_token` and `client_info`, else from the access token's claims. */
export function _accountFrom(body: Record<string, unknown>, accessToken: string): AccountInfo {
  let claims: Record<string, unknown> = {}
  for (const jwt of [body.id_token, accessToken]) {
    if (typeof jwt !== 'string') continue
    try {
      claims = _decodeJwt(jwt, 'id_token')
      break
    } catch {
      // an opaque token: try the next source
    }
  }
  const str = (v: unknown) => typeof v === 'string' && v !== '' ? v : undefined
  const oid = str(claims.oid)
  const tid = str(claims.tid)
  let home = oid !== undefined && tid !== undefined ? `${oid}.${tid}` : undefined
  if (typeof body.client_info === 'string') {
    try {
      const info = JSON.parse(new TextDecoder().decode(_unb64(body.client_info)))
      if (str(info?.uid) && str(info?.utid)) home = `${info.uid}.${info.utid}`
    } catch {
      // client_info is optional
    }
  }
  const username = str(claims.preferred_username) ?? str(claims.upn) ?? str(claims.email) ??
    str(claims.unique_name)
  return {
    ...(home !== undefined ? { homeAccountId: home } : {}),
    ...(oid !== undefined ? { objectId: oid } : {}),
    ...(tid !== undefined ? { tenantId: tid } : {}),
    ...(username !== undefined ? { username } : {}),
  }
}

/** The `tid` claim of a token when it is a JWT, else `undefined`. */
export function _tidOf(token: string): string | undefined {
  try {
    const tid = _decodeJwt(token).tid
    return typeof tid === 'string' && tid !== '' ? tid : undefined
  } catch {
    return undefined
  }
}

/** POSTs a user grant to the token endpoint and reads the answer. */
export async function _userGrant(
  ctx: HttpContext,
  req: {
    authorityHost: string
    tenant: string
    form: Record<string, string | undefined>
    what: string
    signal?: AbortSignal | undefined
  },
): Promise<_TokenResult> {
  return _toResult(
    await requestEntraTokenResult(ctx, {
      authority: req.authorityHost,
      tenant: req.tenant,
      form: req.form,
      what: req.what,
      signal: req.signal,
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

/** Entra refresh tokens live 90 days (sliding) unless the answer says otherwise. */
export const _DEFAULT_RT_LIFETIME_MS: number = 90 * 24 * 3600 * 1000

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

/** Checks a `TokenStore` at construction time. */
export function _checkStore(store: unknown, option: string): TokenStore {
  const s = store as Partial<TokenStore> | null
  if (
    s === null || typeof s !== 'object' || typeof s.get !== 'function' ||
    typeof s.set !== 'function' || typeof s.delete !== 'function'
  ) {
    throw new TypeError(`${option} must have get, set and delete methods`)
  }
  return s as TokenStore
}

function storeError(action: string, cause: unknown): AmlAuthError {
  return new AmlAuthError(
    'ERR_STORE',
    `Cannot ${action} the signed-in account in tokenStore; check the store (its error is the cause)`,
    { cause },
  )
}

/**
 * Where the session lives: a private field, and, with a store, one sealed entry in it. The entry
 * name is a hash (of the authority, tenant, client id and store name), so the store sees neither
 * who signed in nor where; the value is AES-GCM ciphertext bound to that name.
 */
export class _SessionHolder {
  #session: _Session | undefined = undefined
  readonly #store: TokenStore | undefined
  readonly #key: Promise<CryptoKey> | undefined
  readonly #name: Promise<string> | undefined
  readonly #now: () => number

  constructor(
    opts: { store?: TokenStore | undefined; key?: StoreKey | undefined; name: string },
    now: () => number,
  ) {
    this.#now = now
    if (opts.store !== undefined) {
      this.#store = opts.store
      this.#key = _importStoreKey(opts.key!)
      this.#key.catch(() => {})
      this.#name = _hashKey('aml-edge-auth/refresh-token\n' + opts.name)
      this.#name.catch(() => {})
    }
  }

  /** Whether sessions outlive this object (a store was given). */
  get persistent(): boolean {
    return this.#store !== undefined
  }

  /** The session this object knows, without I/O. */
  get current(): _Session | undefined {
    const s = this.#session
    if (s !== undefined && s.expiresAt <= this.#now()) this.#session = undefined
    return this.#session
  }

  /** The session, read again from the store when there is one (another instance may rotate it). */
  async load(): Promise<_Session | undefined> {
    if (this.#store === undefined) return this.current
    let sealed: string | undefined
    let key: CryptoKey
    let name: string
    try {
      ;[key, name] = await Promise.all([this.#key!, this.#name!])
      sealed = await this.#store.get(name)
    } catch (e) {
      throw storeError('read', e)
    }
    const plain = sealed === undefined ? undefined : await _open(key, name, sealed)
    const stored = plain === undefined ? undefined : parseSession(plain)
    // A session only this object knows (its save failed) stays in use.
    if (stored !== undefined) this.#session = stored
    return this.current
  }

  /** Keeps a session in memory and, with a store, seals it there. */
  async save(session: _Session): Promise<void> {
    this.#session = session
    if (this.#store === undefined) return
    try {
      const [key, name] = await Promise.all([this.#key!, this.#name!])
      const value = JSON.stringify({
        v: 1,
        rt: session.refreshToken,
        account: session.account,
        exp: session.expiresAt,
      })
      await this.#store.set(name, await _seal(key, name, value), { expiresAt: session.expiresAt })
    } catch (e) {
      throw storeError('save', e)
    }
  }

  /** Forgets the session here and in the store. */
  async clear(): Promise<void> {
    this.#session = undefined
    if (this.#store === undefined) return
    try {
      await this.#store.delete(await this.#name!)
    } catch (e) {
      throw storeError('delete', e)
    }
  }
}

function parseSession(plain: string): _Session | undefined {
  try {
    const v = JSON.parse(plain)
    if (v?.v !== 1 || typeof v.rt !== 'string' || v.rt === '' || typeof v.exp !== 'number') {
      return undefined
    }
    const a = v.account && typeof v.account === 'object' ? v.account : {}
    const account: AccountInfo = {}
    for (const k of ['homeAccountId', 'objectId', 'tenantId', 'username'] as const) {
      if (typeof a[k] === 'string') account[k] = a[k]
    }
    return { refreshToken: v.rt, account, expiresAt: v.exp }
  } catch {
    return undefined
  }
}

/** The refresh-token grant: a token for any scope, silently, from the session's refresh token. */
export function _refreshGrant(
  ctx: HttpContext,
  p: {
    authorityHost: string
    tenant: string
    clientId: string
    refreshToken: string
    scopes: readonly string[]
    claims?: string | undefined
  },
): Promise<_TokenResult> {
  return _userGrant(ctx, {
    authorityHost: p.authorityHost,
    tenant: p.tenant,
    form: {
      client_id: p.clientId,
      grant_type: 'refresh_token',
      refresh_token: p.refreshToken,
      scope: _scopeParam(p.scopes),
      client_info: '1',
      claims: p.claims,
    },
    what: 'the Entra ID token endpoint (refresh token)',
  })
}
