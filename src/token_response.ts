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

/** The fields of a refusal, wherever they were read from (a JSON body, a callback URL, text). */
export interface _RefusalFields {
  /** OAuth `error`. */
  error?: string | undefined
  /** Server text explaining the refusal (secrets are scrubbed from it before use). */
  description?: string | undefined
  /** Entra `error_codes`; read from `AADSTS<n>` in the description when absent. */
  errorCodes?: readonly number[] | undefined
  /** Entra `trace_id`. */
  traceId?: string | undefined
  /** Entra `correlation_id`. */
  correlationId?: string | undefined
}

/**
 * The one builder of `AuthenticationError`s: scrubs `secrets` from every server-supplied field,
 * caps the description, reads AADSTS codes from it when none were given, and writes the message
 * `<what> refused <request> (status <n>, <error>): <first line>. <advice>`. A status of 0 (a
 * refusal that came without an HTTP response, e.g. on a redirect) is left out of the message.
 */
export function _refusal(
  what: string,
  status: number,
  fields: _RefusalFields,
  opts: {
    secrets?: readonly (string | undefined)[] | undefined
    advice?: _ParseOptions['advice']
    response?: Response | undefined
    /** What was refused, for the message (default `the request`). */
    request?: string
  } = {},
): AuthenticationError {
  const secrets = opts.secrets ?? []
  const clean = (v: string | undefined) => v === undefined ? undefined : _redact(v, secrets)
  const error = clean(fields.error)
  const description = clean(fields.description)?.slice(0, MAX_DESCRIPTION)
  const codes = fields.errorCodes ? [...fields.errorCodes] : codesFrom(description)
  const firstLine = description?.split(/\r?\n/)[0]?.replace(/\.+$/, '')
  const advice = opts.advice?.(codes, error)
  const inParens = [status !== 0 ? `status ${status}` : '', error ?? ''].filter(Boolean).join(', ')
  const message = `${what} refused ${opts.request ?? 'the request'}` +
    (inParens ? ` (${inParens})` : '') + (firstLine ? `: ${firstLine}` : '') +
    (advice ? `. ${advice}` : '')
  const traceId = clean(fields.traceId)
  const correlationId = clean(fields.correlationId)
  return new AuthenticationError(message, {
    status,
    ...(error !== undefined ? { error } : {}),
    ...(description !== undefined ? { errorDescription: description } : {}),
    ...(codes.length ? { errorCodes: codes } : {}),
    ...(traceId !== undefined ? { traceId } : {}),
    ...(correlationId !== undefined ? { correlationId } : {}),
    ...(opts.response !== undefined ? { response: opts.response } : {}),
  })
}

/**
 * Builds the typed refusal for a non-2xx identity response. Entra's fields are read when the body
 * is JSON (also the `{ error: { code, message } }` shape); an HTML or empty body still yields an
 * `AuthenticationError` with the status.
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
  return _refusal(opts.what, res.status, {
    error: str(nested?.code) ?? str(body?.error),
    description: str(nested?.message) ?? str(body?.error_description) ?? str(body?.message),
    errorCodes: Array.isArray(body?.error_codes)
      ? (body.error_codes as unknown[]).filter((c): c is number => typeof c === 'number')
      : undefined,
    traceId: str(body?.trace_id),
    correlationId: str(body?.correlation_id),
  }, { secrets: opts.secrets, advice: opts.advice, response: res.raw })
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
  const iso = _parseIsoWithZone(s)
  return typeof iso === 'number' ? Math.floor(iso / 1000) : undefined
}

const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:\s*(Z|[+-]\d{2}(?::?\d{2})?))?$/i

/**
 * Epoch ms of an ISO 8601 date-time with a zone (`Z` or an offset), strictly: the fields must be
 * a real date. Returns `'no-zone'` for a date-time without a zone, `undefined` for anything else.
 */
export function _parseIsoWithZone(s: string): number | 'no-zone' | undefined {
  const m = ISO_RE.exec(s.trim())
  if (!m) return undefined
  const [, y, mo, d, h, mi, se, frac, zone] = m
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const hour = Number(h)
  const minute = Number(mi)
  const second = se === undefined ? 0 : Number(se)
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) {
    return undefined
  }
  if (new Date(Date.UTC(year, month - 1, day)).getUTCDate() !== day) return undefined
  if (zone === undefined) return 'no-zone'
  let offsetMin = 0
  if (zone.toUpperCase() !== 'Z') {
    const digits = zone.slice(1).replace(':', '')
    const oh = Number(digits.slice(0, 2))
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0
    if (oh > 23 || om > 59) return undefined
    offsetMin = (zone.startsWith('-') ? -1 : 1) * (oh * 60 + om)
  }
  const ms = frac === undefined ? 0 : Math.floor(Number('0.' + frac) * 1000)
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000
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
