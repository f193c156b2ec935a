// The OAuth 2.0 device authorization grant (RFC 8628) against Microsoft Entra ID v2: ask for a
// code, show it to the user, poll the token endpoint until they finish. Each step is a plain
// request through the one HTTP layer; waits go through the context's sleep (fake clocks in tests).
import { AmlAuthError } from '../errors.ts'
import { _parseJsonObject, type HttpContext, sendRequest } from '../http.ts'
import { _authError } from '../token_response.ts'
import { buildTokenRequest } from '../_entra.ts'
import {
  _readTokenResult,
  _scopeParam,
  type _TokenResult,
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

/** Extra seconds RFC 8628 asks for after `slow_down`. */
const SLOW_DOWN_S = 5

function aborted(): AmlAuthError {
  return new AmlAuthError('ERR_ABORTED', 'The device-code sign-in was aborted by the caller')
}

function invalid(field: string): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `The response of the Entra ID device code endpoint has no valid ${field}; check authorityHost`,
  )
}

/**
 * Runs the whole device-code flow: POST `/devicecode`, hand the prompt to `onDeviceCode`, poll
 * `/token` every `interval` seconds. `authorization_pending` keeps polling, `slow_down` adds 5 s to
 * the interval (MSAL aborts instead), anything else is an `AuthenticationError`; the flow ends
 * with `ERR_TIMEOUT` at `expires_in` and with `ERR_ABORTED` when `signal` aborts.
 */
export async function _deviceCodeFlow(
  ctx: HttpContext,
  p: {
    authorityHost: string
    tenant: string
    clientId: string
    scopes: readonly string[]
    onDeviceCode: DeviceCodeCallback
    signal?: AbortSignal | undefined
  },
): Promise<_TokenResult> {
  const what = 'the Entra ID device code endpoint'
  const started = ctx.now()
  const res = await sendRequest(
    ctx,
    buildTokenRequest({
      authority: p.authorityHost,
      tenant: p.tenant,
      endpoint: 'devicecode',
      form: { client_id: p.clientId, scope: _scopeParam(p.scopes) },
      what,
      signal: p.signal,
    }),
  )
  if (res.status < 200 || res.status >= 300) {
    throw _authError(res, { what, now: ctx.now(), advice: _userGrantAdvice })
  }
  const body = _parseJsonObject(res, what)
  const deviceCode = body.device_code
  const userCode = body.user_code
  const uri = body.verification_uri ?? body.verification_url
  if (typeof deviceCode !== 'string' || deviceCode === '') throw invalid('device_code')
  if (typeof userCode !== 'string' || userCode === '') throw invalid('user_code')
  if (typeof uri !== 'string' || uri === '') throw invalid('verification_uri')
  const expiresIn = Number(body.expires_in)
  if (!Number.isFinite(expiresIn) || expiresIn <= 0) throw invalid('expires_in')
  let interval = body.interval === undefined ? 5 : Number(body.interval)
  if (!Number.isFinite(interval) || interval < 0) throw invalid('interval')
  const deadline = started + expiresIn * 1000
  const message = typeof body.message === 'string' && body.message !== ''
    ? body.message
    : `To sign in, use a web browser to open the page ${uri} and enter the code ${userCode} to authenticate.`

  if (p.signal?.aborted) throw aborted()
  await p.onDeviceCode({ userCode, verificationUri: uri, message, expiresOn: new Date(deadline) })

  const tokenWhat = 'the Entra ID token endpoint (device code)'
  for (;;) {
    if (p.signal?.aborted) throw aborted()
    if (ctx.now() + interval * 1000 >= deadline) {
      throw new AmlAuthError(
        'ERR_TIMEOUT',
        `The device code expired after ${expiresIn} s before the sign-in was completed; start the sign-in again and finish it in time`,
      )
    }
    try {
      await ctx.sleep(interval * 1000, p.signal)
    } catch {
      throw aborted()
    }
    const poll = await sendRequest(
      ctx,
      buildTokenRequest({
        authority: p.authorityHost,
        tenant: p.tenant,
        form: {
          grant_type: _DEVICE_CODE_GRANT,
          client_id: p.clientId,
          device_code: deviceCode,
          client_info: '1',
        },
        what: tokenWhat,
        signal: p.signal,
      }),
    )
    if (poll.status >= 200 && poll.status < 300) {
      return _readTokenResult(poll, { what: tokenWhat, now: ctx.now(), secrets: [deviceCode] })
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
    throw _authError(poll, {
      what: tokenWhat,
      now: ctx.now(),
      secrets: [deviceCode],
      advice: (codes, err) =>
        err === 'expired_token'
          ? 'The device code expired; start the sign-in again and finish it in time'
          : err === 'authorization_declined'
          ? 'The user declined the sign-in'
          : _userGrantAdvice(codes, err),
    })
  }
}
