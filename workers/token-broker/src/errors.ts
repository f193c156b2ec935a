/**
 * The broker's errors: every refusal is a {@linkcode BrokerError} rendered as the JSON body
 * `{ error, error_description }`. Descriptions are written here, by us: no upstream body, stack
 * trace, secret or token ever reaches a response.
 *
 * @module
 */
import { AmlAuthError, AuthenticationError } from '../../../src/errors.ts'

/** The statuses the broker answers errors with. */
export type ErrorStatus = 400 | 401 | 403 | 404 | 405 | 413 | 415 | 429 | 500 | 502 | 503

/** A refusal with its HTTP status, OAuth-style `error` code and a fixed description. */
export class BrokerError extends Error {
  /** HTTP status. */
  readonly status: ErrorStatus
  /** OAuth-style error code, e.g. `invalid_token`. */
  readonly error: string
  /** Human description (ours, never server text). */
  readonly description: string
  /** Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`). */
  readonly headers: Record<string, string>
  /** Extra non-secret fields for the request's log line. */
  readonly log: Record<string, unknown>

  /**
   * @param status HTTP status
   * @param error error code
   * @param description what went wrong and what to do; never a secret or token
   * @param options headers and log fields
   */
  constructor(
    status: ErrorStatus,
    error: string,
    description: string,
    options: { headers?: Record<string, string>; log?: Record<string, unknown> } = {},
  ) {
    super(description)
    this.name = 'BrokerError'
    this.status = status
    this.error = error
    this.description = description
    this.headers = options.headers ?? {}
    this.log = options.log ?? {}
  }
}

/** A configuration problem; the message names the variable, never its value. */
export class ConfigError extends Error {
  /** The variable at fault. */
  readonly variable: string

  /**
   * @param variable the binding name
   * @param message what is wrong and what to do
   */
  constructor(variable: string, message: string) {
    super(`${variable}: ${message}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

/** 400 with `invalid_request`. */
export function badRequest(description: string): BrokerError {
  return new BrokerError(400, 'invalid_request', description)
}

const WWW_AUTHENTICATE = 'Bearer realm="token-broker", ApiKey realm="token-broker"'

/** 401 with `invalid_token` (or another code) and a `WWW-Authenticate` challenge. */
export function unauthorized(
  description: string,
  reason: string,
  error = 'invalid_token',
): BrokerError {
  return new BrokerError(401, error, description, {
    headers: { 'www-authenticate': WWW_AUTHENTICATE },
    log: { reason },
  })
}

/** 403 `access_denied`: the caller is known but the policy does not allow the request. */
export function forbidden(description: string): BrokerError {
  return new BrokerError(403, 'access_denied', description)
}

/**
 * Maps an error from the module (the upstream credential) to a 502 without the upstream body:
 * the description is generic, plus Entra's numeric error codes when there are some. Anything
 * else is an internal error (500) with a generic description.
 *
 * @param e what was thrown
 * @returns the refusal to send
 */
export function fromUpstream(e: unknown): BrokerError {
  if (e instanceof BrokerError) return e
  if (e instanceof AuthenticationError) {
    const codes = (e.errorCodes ?? []).filter((c) => Number.isInteger(c)).slice(0, 5)
    const suffix = codes.length ? ` (${codes.map((c) => 'AADSTS' + c).join(', ')})` : ''
    const failing = e.status === undefined || e.status >= 500 || e.status === 429
    return new BrokerError(
      502,
      'upstream_error',
      failing
        ? `The identity provider is unavailable${suffix}; try again later`
        : `The identity provider refused the broker's token request${suffix}; see the broker's logs`,
      {
        log: {
          upstream: e.code,
          upstream_status: e.status,
          upstream_error: typeof e.error === 'string' ? e.error.slice(0, 64) : undefined,
          upstream_codes: codes,
          upstream_trace_id: e.traceId,
          upstream_correlation_id: e.correlationId,
        },
      },
    )
  }
  if (e instanceof AmlAuthError) {
    const transport = [
      'ERR_TIMEOUT',
      'ERR_NETWORK',
      'ERR_HTTP_STATUS',
      'ERR_RESPONSE_INVALID',
      'ERR_RESPONSE_TOO_LARGE',
    ]
    if (transport.includes(e.code)) {
      return new BrokerError(
        502,
        'upstream_error',
        e.code === 'ERR_TIMEOUT'
          ? 'The identity provider did not answer in time; try again later'
          : 'The identity provider could not be reached or gave an unreadable answer; try again later',
        { log: { upstream: e.code, upstream_status: e.status } },
      )
    }
    return new BrokerError(
      500,
      'server_error',
      'The broker could not obtain a token; see its logs',
      { log: { upstream: e.code } },
    )
  }
  return internal(e)
}

/** 500 `server_error` with a generic description; the log line gets the error's name only. */
export function internal(e: unknown): BrokerError {
  return new BrokerError(500, 'server_error', 'The broker failed to handle the request', {
    log: { exception: e instanceof Error ? e.name : typeof e },
  })
}

/** The JSON body of a refusal. */
export function errorBody(e: BrokerError): { error: string; error_description: string } {
  return { error: e.error, error_description: e.description }
}
