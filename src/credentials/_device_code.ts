// The OAuth 2.0 device authorization grant (RFC 8628) against Microsoft Entra ID v2: ask for a
// code, show it to the user, poll the token endpoint until they finish. Each step is a plain
// request through the one HTTP layer; waits go through the context's sleep (fake clocks in tests).
import { AmlAuthError } from '../errors.ts'
import { _parseJsonObject, type HttpContext, sendRequest } from '../http.ts'
import { _authError } from '../token_response.ts'
import { buildTokenRequest, parseEntraTokenResponse } from '../_entra.ts'
import {
  type _App,
  _scopeParam,
  type _TokenResult,
  _toResult,
  _userGrantAdvice,
} from './_refresh_token.ts'

/** What the user needs to finish a device-code sign-in (never the device code itself). */
export interface DeviceCodeInfo {
  /** The short code the user types, e.g. `ABCD-EFGH`. */
  userCode: string
  /** Where the user types it, e.g. `https://microsoft.com/devicelogin`. */
  verificationUri: string
  /** Entra's ready-made instruction to show. */
  message: string
  /** When the code stops working. */
  expiresOn: Date
}

/** Receives the device-code prompt; may be async (its promise is awaited before polling). */
export type DeviceCodeCallback = (info: DeviceCodeInfo) => void | Promise<void>

/** The RFC 8628 grant type. */
export const _DEVICE_CODE_GRANT: string = 'urn:ietf:params:oauth:grant-type:device_code'

const EXPIRED = 'The device code expired; start the sign-in again and finish it in time'
/** Extra seconds RFC 8628 asks for after `slow_down`. */
const SLOW_DOWN_S = 5

/** `ERR_ABORTED`: the caller aborted a sign-in. */
export function _aborted(): AmlAuthError {
  return new AmlAuthError('ERR_ABORTED', 'The sign-in was aborted by the caller')
}

/**
 * Runs the whole device-code flow: POST `/devicecode`, hand the prompt to `onDeviceCode`, poll
 * `/token` every `interval` seconds. `authorization_pending` keeps polling, `slow_down` adds 5 s to
 * the interval (MSAL aborts instead), anything else is an `AuthenticationError`; the flow ends
 * with `ERR_TIMEOUT` at `expires_in` and with `ERR_ABORTED` when `signal` aborts.
 */
export async function _deviceCodeFlow(
  ctx: HttpContext,
  app: _App,
  p: {
    scopes: readonly string[]
    onDeviceCode: DeviceCodeCallback
    signal?: AbortSignal | undefined
  },
): Promise<_TokenResult> {
  const started = ctx.now()
  const post = (
    form: Record<string, string>,
    what: string,
    endpoint: 'token' | 'devicecode' = 'token',
  ) =>
    sendRequest(
      ctx,
      buildTokenRequest({
        authority: app.authorityHost,
        tenant: app.tenant,
        form: { client_id: app.clientId, ...form },
        what,
        signal: p.signal,
        endpoint,
      }),
    )
  const what = 'the Entra ID device code endpoint'
  const res = await post({ scope: _scopeParam(p.scopes) }, what, 'devicecode')
  if (res.status < 200 || res.status >= 300) {
    throw _authError(res, { what, now: ctx.now(), advice: _userGrantAdvice })
  }
  const body = _parseJsonObject(res, what)
  const invalid = (field: string) =>
    new AmlAuthError(
      'ERR_RESPONSE_INVALID',
      `The response of ${what} has no valid ${field}; check authorityHost`,
    )
  body.verification_uri ??= body.verification_url
  const [deviceCode, userCode, uri] = ['device_code', 'user_code', 'verification_uri'].map((f) => {
    const v = body[f]
    if (typeof v !== 'string' || v === '') throw invalid(f)
    return v
  }) as [string, string, string]
  const expiresIn = Number(body.expires_in)
  if (!Number.isFinite(expiresIn) || expiresIn <= 0) throw invalid('expires_in')
  let interval = body.interval === undefined ? 5 : Number(body.interval)
  if (!Number.isFinite(interval) || interval < 0) throw invalid('interval')
  const deadline = started + expiresIn * 1000
  const message = (typeof body.message === 'string' && body.message) ||
    `To sign in, use a web browser to open the page ${uri} and enter the code ${userCode} to authenticate.`

  if (p.signal?.aborted) throw _aborted()
  await p.onDeviceCode({ userCode, verificationUri: uri, message, expiresOn: new Date(deadline) })

  const tokenWhat = 'the Entra ID token endpoint (device code)'
  for (;;) {
    if (p.signal?.aborted) throw _aborted()
    if (ctx.now() + interval * 1000 >= deadline) {
      throw new AmlAuthError('ERR_TIMEOUT', EXPIRED)
    }
    try {
      await ctx.sleep(interval * 1000, p.signal)
    } catch {
      throw _aborted()
    }
    const poll = await post(
      { grant_type: _DEVICE_CODE_GRANT, device_code: deviceCode, client_info: '1' },
      tokenWhat,
    )
    const opts = {
      what: tokenWhat,
      now: ctx.now(),
      secrets: [deviceCode],
      advice: (codes: readonly number[], err: string | undefined) =>
        err === 'expired_token'
          ? EXPIRED
          : err === 'authorization_declined'
          ? 'The user declined the sign-in'
          : _userGrantAdvice(codes, err),
    }
    if (poll.status >= 200 && poll.status < 300) {
      return _toResult(parseEntraTokenResponse(poll, opts))
    }
    let error: unknown
    try {
      error = _parseJsonObject(poll, tokenWhat).error
    } catch {
      error = undefined
    }
    if (error === 'authorization_pending') continue
    if (error === 'slow_down') {
      interval += SLOW_DOWN_S
      continue
    }
    throw _authError(poll, opts)
  }
}
