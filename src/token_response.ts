// The parse step shared by every token endpoint (Entra ID v2/v1, every managed-identity source,
// the run-token service): one place that turns a completed response into an AccessToken or a
// typed error.
import { AccessToken } from './access_token.ts'
import { _redact, AmlAuthError, AuthenticationError } from './errors.ts'
import { _parseJsonObject, type HttpResponse } from './http.ts'

/** What the parse step needs besides the response. */
export interface _ParseOptions {
  /** Endpoint name for messages. */
  what: string
  /** Values to scrub from any server text that reaches an error. */
  secrets?: readonly (string | undefined)[]
  /** Clock, ms. */
  now: number
  /** Extra advice appended to refusal messages, keyed by Entra error code. */
  advice?: (codes: readonly number[], error: string | undefined) => string | undefined
}

const MAX_DESCRIPTION = 600

/**
 * Builds the typed refusal for a non-2xx identity response. Entra's fields are read when the body
 * is JSON; an HTML or empty body still yields an `AuthenticationError` with the status.
 */
export function _authError(res: HttpResponse, opts: _ParseOptions): AuthenticationError {
  let body: Record<string, unknown> | undefined
  try {
    body = _parseJsonObject(res, opts.what)
  } catch {
    body = undefined
  }
  const nested = body?.error && typeof body.error === 'object'
    ? body.error as Record<string, unknown>
    : undefined
  const error = str(nested?.code) ?? str(body?.error)
  const rawDesc = str(nested?.message) ?? str(body?.error_description) ?? str(body?.message)
  const description = rawDesc === undefined
    ? undefined
    : _redact(rawDesc, opts.secrets ?? []).slice(0, MAX_DESCRIPTION)
  const codes = Array.isArray(body?.error_codes)
    ? (body.error_codes as unknown[]).filter((c): c is number => typeof c === 'number')
    : codesFrom(description)
  const firstLine = description?.split(/\r?\n/)[0]
  const advice = opts.advice?.(codes, error)
  const message =
    `${opts.what} refused the request (status ${res.status}${error ? `, ${error}` : ''})` +
    (firstLine ? `: ${firstLine.replace(/\.+$/, '')}` : '') + (advice ? `. ${advice}` : '')
  return new AuthenticationError(message, {
    status: res.status,
    ...(error !== undefined ? { error } : {}),
    ...(description !== undefined ? { errorDescription: description } : {}),
    ...(codes.length ? { errorCodes: codes } : {}),
    ...(str(body?.trace_id) !== undefined ? { traceId: str(body?.trace_id)! } : {}),
    ...(str(body?.correlation_id) !== undefined
      ? { correlationId: str(body?.correlation_id)! }
      : {}),
    response: res.raw,
  })
}

function codesFrom(description: string | undefined): number[] {
  const m = description?.match(/AADSTS(\d+)/)
  return m ? [Number(m[1])] : []
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

/**
 * Reads a token response: 2xx with `access_token` and an expiry becomes an {@linkcode AccessToken};
 * anything else becomes a typed error.
 */
export function _parseTokenResponse(res: HttpResponse, opts: _ParseOptions): AccessToken {
  if (res.status < 200 || res.status >= 300) throw _authError(res, opts)
  const body = _parseJsonObject(res, opts.what)
  const token = body.access_token
  if (typeof token !== 'string' || token === '') {
    throw new AmlAuthError(
      'ERR_RESPONSE_INVALID',
      `The response of ${opts.what} has no access_token; check that the endpoint is an identity service`,
      { status: res.status },
    )
  }
  const expiresOn = _parseExpiry(body, opts.now, opts.what)
  const refreshAfter = _parseRefreshAfter(body, opts.now)
  return new AccessToken(token, expiresOn, refreshAfter)
}

/**
 * Expiry in epoch seconds from `expires_on` (epoch seconds as number or string, ISO date, or the
 * App Service date formats `MM/dd/yyyy HH:mm:ss +00:00` / `M/d/yyyy h:mm:ss AM +00:00`), else
 * `expires_in`. A response with neither is an error, never a token that lives forever.
 */
export function _parseExpiry(body: Record<string, unknown>, nowMs: number, what: string): number {
  const on = body.expires_on ?? body.expiresOn
  if (on !== undefined && on !== null && on !== '') {
    const parsed = _parseExpiresOn(on)
    if (parsed === undefined) {
      throw new AmlAuthError(
        'ERR_RESPONSE_INVALID',
        `Cannot read the response of ${what}: expires_on is not a number or date`,
      )
    }
    return parsed
  }
  const inSec = num(body.expires_in)
  if (inSec !== undefined) return Math.floor(nowMs / 1000) + inSec
  throw new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `Cannot read the response of ${what}: it has neither expires_on nor expires_in`,
  )
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v
  if (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v)) return Number(v)
  return undefined
}

const US_DATE =
  /^(\d{1,2})\/(\d{1,2})\/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: ?([AP]M))? ?([+-]\d{2}):?(\d{2})$/i

/** Epoch seconds from any `expires_on` shape we know, or `undefined`. */
export function _parseExpiresOn(value: unknown): number | undefined {
  const n = num(value)
  if (n !== undefined) return n > 1e11 ? Math.floor(n / 1000) : n
  if (typeof value !== 'string') return undefined
  const s = value.trim()
  const m = US_DATE.exec(s)
  if (m) {
    const [, mo, d, y, h, mi, se, ampm, oh, om] = m
    let hour = Number(h)
    if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > 31) return undefined
    if (hour > 23 || Number(mi) > 59 || Number(se) > 59) return undefined
    if (ampm) {
      // Hour 0 with AM/PM occurs in Microsoft's own App Service sample (`09/14/2017 00:00:00 PM
      // +00:00`); read it as .NET and V8 do: 0 AM = 00:00, 0 PM = 12:00.
      if (hour > 12) return undefined
      hour = (hour % 12) + (ampm.toUpperCase() === 'PM' ? 12 : 0)
    }
    const sign = oh!.startsWith('-') ? -1 : 1
    const offsetMin = sign * (Math.abs(Number(oh)) * 60 + Number(om))
    const utc = Date.UTC(Number(y), Number(mo) - 1, Number(d), hour, Number(mi), Number(se))
    return Number.isNaN(utc) ? undefined : Math.floor(utc / 1000) - offsetMin * 60
  }
  // ISO 8601 only with an explicit zone: no time-zone guessing.
  if (/^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:?\d{2})$/i.test(s)) {
    const t = Date.parse(s)
    return Number.isNaN(t) ? undefined : Math.floor(t / 1000)
  }
  return undefined
}

/** `refresh_in` (seconds from now) or `refresh_on` (epoch seconds) as epoch ms, if present. */
export function _parseRefreshAfter(
  body: Record<string, unknown>,
  nowMs: number,
): number | undefined {
  const inSec = num(body.refresh_in)
  if (inSec !== undefined) return nowMs + inSec * 1000
  const on = num(body.refresh_on)
  return on !== undefined ? on * 1000 : undefined
}
