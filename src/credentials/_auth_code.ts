// The authorization-code flow with PKCE (RFC 7636, S256) for apps that own a redirect URI: build
// the /authorize URL, then read the callback and exchange the code. The opaque `state` string the
// app keeps between the two steps holds the PKCE verifier, so it belongs on the server side.
import { AmlAuthError } from '../errors.ts'
import { _refusal } from '../token_response.ts'
import type { HttpContext } from '../http.ts'
import { _b64url, _unb64 } from '../jwt.ts'
import { _checkEndpoint, _checkString } from '../_validate.ts'
import { entraEndpoint } from '../_entra.ts'
import {
  type _App,
  _scopeList,
  _scopeParam,
  type _TokenResult,
  _userGrant,
  _userGrantAdvice,
} from './_refresh_token.ts'

/** Options of `beginAuthorization`. */
export interface BeginAuthorizationOptions {
  /** Where Entra sends the browser back: https, or http on a loopback host. */
  redirectUri: string | URL
  /** Scopes to consent to and get the first token for (default: the cloud's ARM scope). */
  scopes?: string | readonly string[]
  /** Pre-fills the sign-in name. */
  loginHint?: string
  /** `login`, `select_account`, `consent`, `none` or `create`. */
  prompt?: 'login' | 'select_account' | 'consent' | 'none' | 'create'
  /** Skips home-realm discovery, e.g. `contoso.com` or `consumers`. */
  domainHint?: string
}

/** What `beginAuthorization` returns. */
export interface AuthorizationRequest {
  /** Send the user's browser here. */
  url: URL
  /**
   * Opaque; keep it server-side (it holds the PKCE verifier) and pass it to
   * `completeAuthorization` with the callback URL.
   */
  state: string
}

const PROMPTS = ['login', 'select_account', 'consent', 'none', 'create']

interface _Pending {
  v: 1
  /** The `state` sent to /authorize. */
  s: string
  /** PKCE code verifier. */
  cv: string
  /** Redirect URI. */
  r: string
  /** Scopes. */
  sc: string[]
  /** Client id, so a state cannot be completed by another app's credential. */
  c: string
}

/** Builds the /authorize URL with an S256 challenge from a random 32-byte verifier. */
export async function _beginAuthorization(
  app: _App,
  defaultScope: string,
  options: BeginAuthorizationOptions,
): Promise<AuthorizationRequest> {
  _checkEndpoint(options?.redirectUri, 'redirectUri')
  // Entra compares redirect URIs exactly: send the one the app registered, as given.
  const redirect = String(options.redirectUri)
  const scopes = _scopeList(options.scopes, defaultScope)
  if (options.prompt !== undefined && !PROMPTS.includes(options.prompt)) {
    throw new TypeError(`prompt must be one of ${PROMPTS.join(', ')}`)
  }
  if (options.loginHint !== undefined) _checkString(options.loginHint, 'loginHint')
  if (options.domainHint !== undefined) _checkString(options.domainHint, 'domainHint')
  const random = (n: number) => _b64url(crypto.getRandomValues(new Uint8Array(n)))
  const verifier = random(32)
  const state = random(16)
  const url = new URL(entraEndpoint(app.authorityHost, app.tenant, 'authorize'))
  const query: Record<string, string | undefined> = {
    client_id: app.clientId,
    response_type: 'code',
    redirect_uri: redirect,
    response_mode: 'query',
    scope: _scopeParam(scopes),
    state,
    code_challenge: _b64url(
      await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)),
    ),
    code_challenge_method: 'S256',
    prompt: options.prompt,
    login_hint: options.loginHint,
    domain_hint: options.domainHint,
  }
  for (const k in query) if (query[k] !== undefined) url.searchParams.set(k, query[k])
  const pending: _Pending = {
    v: 1,
    s: state,
    cv: verifier,
    r: redirect,
    sc: scopes,
    c: app.clientId,
  }
  return { url, state: _b64url(JSON.stringify(pending)) }
}

/** `ERR_RESPONSE_INVALID`: the callback's `state` matches no pending authorization. */
export function _badState(): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    'The callback URL state matches no pending authorization; pass the state beginAuthorization() returned, or start again',
  )
}

function readPending(state: unknown, clientId: string): _Pending {
  let v: _Pending | undefined
  try {
    v = JSON.parse(new TextDecoder().decode(_unb64(state as string)))
  } catch {
    // reported below
  }
  if (
    typeof state !== 'string' || v?.v !== 1 || !Array.isArray(v.sc) ||
    ![v.s, v.cv, v.r, v.c].every((x) => typeof x === 'string')
  ) {
    throw new TypeError('state must be the string beginAuthorization() returned')
  }
  if (v.c !== clientId) {
    throw new TypeError('state was created by a credential with another clientId')
  }
  return v
}

function sameString(a: string, b: string): boolean {
  let diff = a.length ^ b.length
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0)
  }
  return diff === 0
}

/**
 * Reads the callback URL, checks `state`, and exchanges the code (with the verifier) at the token
 * endpoint. Errors Entra put on the callback become `AuthenticationError`s (status 0: no HTTP
 * response carried them).
 */
export async function _completeAuthorization(
  ctx: HttpContext,
  app: _App,
  callbackUrl: string | URL,
  state: string,
  signal?: AbortSignal,
): Promise<{ result: _TokenResult; scopes: string[] }> {
  const pending = readPending(state, app.clientId)
  let url: URL
  try {
    url = new URL(callbackUrl)
  } catch {
    throw new TypeError('callbackUrl must be the absolute URL Entra redirected to')
  }
  const q = url.searchParams
  const param = (name: string) => q.get(name) || undefined
  const got = q.get('state')
  if (got === null || !sameString(got, pending.s)) throw _badState()
  const error = q.get('error')
  if (error !== null) {
    throw _refusal('Entra ID', 0, {
      error,
      description: param('error_description'),
      traceId: param('trace_id'),
      correlationId: param('correlation_id'),
    }, {
      request: 'the authorization',
      advice: (codes, err) =>
        err === 'access_denied' || err === 'consent_required' || err === 'interaction_required'
          ? 'Start again with beginAuthorization() (the user declined or must consent)'
          : _userGrantAdvice(codes, err),
    })
  }
  const code = param('code')
  if (code === undefined) {
    throw new AmlAuthError(
      'ERR_RESPONSE_INVALID',
      'The callback URL has neither code nor error; pass the full URL Entra redirected to',
    )
  }
  const result = await _userGrant(
    ctx,
    app,
    {
      grant_type: 'authorization_code',
      code,
      redirect_uri: pending.r,
      code_verifier: pending.cv,
      scope: _scopeParam(pending.sc),
    },
    'authorization code',
    { signal },
  )
  return { result, scopes: pending.sc }
}
