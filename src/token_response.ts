// The parse step shared by every token endpoint (Entra ID v2/v1, every managed-identity source,
// the run-token service): one place that turns a completed response into an AccessToken or a
// typed error. Date-shaped `expires_on` values (managed identity, Azure CLI) are read by
// `_parseExpiresOn` in `_expires_on.ts`, which only the credentials that meet them import.
import { AccessToken } from './access_token.ts'
import { _redact, AuthenticationError } from './errors.ts'
import { _invalidResponse, _parseJsonObject, type HttpResponse } from './http.ts'

/** What the parse step needs besides the response. */
export interface _ParseOptions {
  /** Endpoint name for messages. */
  what: string
  /** Values to scrub from any server text that reaches an error. */
  secrets?: readonly (string | undefined)[] | undefined
  /** Clock, ms. */
  now: number
  /** Extra advice appended to refusal messages, keyed by Entra error code. */
  advice?: ((codes: readonly number[], error: string | undefined) => string | undefined) | undefined
  /**
   * Reads `expires_on` as epoch seconds (`undefined` when unreadable). Default
   * {@linkcode _epochSeconds}: numbers only, as Entra sends them; managed identity passes
   * `_parseExpiresOn`, which also reads the App Service and ISO dates.
   */
  expiresOn?: (value: unknown) => number | undefined
}

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
 * caps the description at 600 characters, reads AADSTS codes from it when none were given, and
 * writes the message `<what> refused <request> (status <n>, <error>): <first line>. <advice>`.
 * A status of 0 (a refusal that came without an HTTP response, e.g. on a redirect) is left out of
 * the message.
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
  const clean = (v: string | undefined) => _redact(v, opts.secrets)
  const error = clean(fields.error)
  const description = clean(fields.description)?.slice(0, 600)
  const m = description?.match(/AADSTS(\d+)/)
  const codes = fields.errorCodes ? [...fields.errorCodes] : m ? [Number(m[1])] : []
  // `.` matches no line break: this is the first line.
  const firstLine = description?.match(/.*/)?.[0].replace(/\.+$/, '')
  const advice = opts.advice?.(codes, error)
  const inParens = [status && `status ${status}`, error].filter(Boolean).join(', ')
  return new AuthenticationError(
    `${what} refused ${opts.request ?? 'the request'}` + (inParens && ` (${inParens})`) +
      (firstLine ? `: ${firstLine}` : '') + (advice ? `. ${advice}` : ''),
    {
      status,
      error,
      errorDescription: description,
      errorCodes: codes.length ? codes : undefined,
      traceId: clean(fields.traceId),
      correlationId: clean(fields.correlationId),
      response: opts.response,
    },
  )
}

/**
 * Builds the typed refusal for a non-2xx identity response. Entra's fields are read when the body
 * is JSON (also the `{ error: { code, message } }` shape); an HTML or empty body still yields an
 * `AuthenticationError` with the status.
 */
export function _authError(res: HttpResponse, opts: _ParseOptions): AuthenticationError {
  let body: Record<string, unknown> = {}
  try {
    body = _parseJsonObject(res, opts.what)
  } catch {
    // Not JSON: the status alone tells the story.
  }
  const nested = (body.error && typeof body.error === 'object' ? body.error : {}) as Record<
    string,
    unknown
  >
  return _refusal(opts.what, res.status, {
    error: str(nested.code, body.error),
    description: str(nested.message, body.error_description, body.message),
    errorCodes: Array.isArray(body.error_codes)
      ? body.error_codes.filter((c): c is number => typeof c === 'number')
      : undefined,
    traceId: str(body.trace_id),
    correlationId: str(body.correlation_id),
  }, { ...opts, response: res.raw })
}

/** The first non-empty string among `values`. */
function str(...values: unknown[]): string | undefined {
  return values.find((v): v is string => typeof v === 'string' && !!v)
}

/**
 * Reads a token response: 2xx with `access_token` and an expiry becomes an {@linkcode AccessToken};
 * anything else becomes a typed error.
 */
export function _parseTokenResponse(res: HttpResponse, opts: _ParseOptions): AccessToken {
  if (res.status < 200 || res.status >= 300) throw _authError(res, opts)
  const body = _parseJsonObject(res, opts.what)
  const token = body.access_token
  if (typeof token !== 'string' || !token) {
    throw _invalidResponse(
      opts.what,
      'no access_token; check the endpoint',
      res.status,
    )
  }
  return new AccessToken(
    token,
    _parseExpiry(body, opts.now, opts.what, opts.expiresOn),
    _parseRefreshAfter(body, opts.now),
  )
}

/**
 * Expiry in epoch seconds from `expires_on` (read by `parse`, default {@linkcode _epochSeconds}),
 * else `expires_in`. A response with neither is an error, never a token that lives forever.
 */
export function _parseExpiry(
  body: Record<string, unknown>,
  nowMs: number,
  what: string,
  parse: (value: unknown) => number | undefined = _epochSeconds,
): number {
  const on = body.expires_on ?? body.expiresOn
  if (on !== undefined && on !== null && on !== '') {
    const exp = parse(on)
    if (exp === undefined) throw _invalidResponse(what, 'expires_on is not a number or date')
    return exp
  }
  const inSec = _num(body.expires_in)
  if (inSec !== undefined) return Math.floor(nowMs / 1000) + inSec
  throw _invalidResponse(what, 'neither expires_on nor expires_in')
}

/** A finite number, or a string of digits, as a number; else `undefined`. */
export function _num(v: unknown): number | undefined {
  // Number.isFinite is false for anything that is not a number (no coercion).
  if (Number.isFinite(v)) return v as number
  if (typeof v === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(v)) return Number(v)
}

/** Epoch seconds from a number or digit string (read as ms when over 1e11), else `undefined`. */
export function _epochSeconds(value: unknown): number | undefined {
  const n = _num(value)
  return n && n > 1e11 ? Math.floor(n / 1000) : n
}

/** `refresh_in` (seconds from now) or `refresh_on` (epoch seconds) as epoch ms, if present. */
export function _parseRefreshAfter(
  body: Record<string, unknown>,
  nowMs: number,
): number | undefined {
  const inSec = _num(body.refresh_in)
  if (inSec !== undefined) return nowMs + inSec * 1000
  const on = _num(body.refresh_on)
  return on && on * 1000 // undefined stays undefined, 0 stays 0
}
