/**
 * Typed errors. Every error has a stable `code`; messages name fields and actions, never values,
 * so no secret, assertion, refresh token or access token can reach a log through an error.
 *
 * @module
 */

/** Every `code` an error of this package can carry. */
export type ErrorCode =
  | 'ERR_CREDENTIAL_UNAVAILABLE'
  | 'ERR_AUTHENTICATION'
  | 'ERR_TIMEOUT'
  | 'ERR_ABORTED'
  | 'ERR_NETWORK'
  | 'ERR_HTTP_STATUS'
  | 'ERR_RESPONSE_INVALID'
  | 'ERR_RESPONSE_TOO_LARGE'
  | 'ERR_UNSUPPORTED_AUDIENCE'
  | 'ERR_TOKEN_INVALID'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TENANT_NOT_ALLOWED'
  | 'ERR_STORE'

/** Options accepted by {@linkcode AmlAuthError}. */
export interface AmlAuthErrorOptions {
  /** The underlying error. Only errors that hold no secret are ever attached. */
  cause?: unknown
  /** HTTP status of the response that caused the error, when there was one. */
  status?: number | undefined
}

/**
 * Base class of every error this package throws (other than `TypeError`/`RangeError` for bad
 * options at construction time).
 *
 * @example Branch on the stable code
 * ```ts
 * import { AmlAuthError } from '@aml-edge/auth'
 *
 * function explain(e: unknown): string {
 *   if (e instanceof AmlAuthError && e.code === 'ERR_TIMEOUT') return 'identity service is slow'
 *   return 'other failure'
 * }
 * explain(new Error('x'))
 * ```
 */
export class AmlAuthError extends Error {
  /** Stable machine-readable code. */
  declare readonly code: ErrorCode
  /** HTTP status, when a response caused the error. */
  declare readonly status?: number

  /**
   * Creates an error with a stable code.
   *
   * @param code stable code
   * @param message what went wrong and what to do; never a secret
   * @param options cause and status
   */
  constructor(code: ErrorCode, message: string, options: AmlAuthErrorOptions = {}) {
    super(message, options)
    this.name = 'AmlAuthError'
    this.code = code
    if (options.status !== undefined) this.status = options.status
  }

  /** A JSON view: name, code, status, the service's fields and message (own enumerable ones). */
  toJSON(): Record<string, unknown> {
    return { ...this as object, message: this.message }
  }
}

/**
 * This credential cannot work in this environment (a variable, binary, runtime feature or
 * endpoint is missing). The message says what is missing. Chains move on to the next source.
 *
 * @example Detect an unavailable source
 * ```ts
 * import { CredentialUnavailableError } from '@aml-edge/auth'
 *
 * const e = new CredentialUnavailableError('AZURE_CLIENT_ID is not set')
 * console.assert(e.code === 'ERR_CREDENTIAL_UNAVAILABLE')
 * ```
 */
export class CredentialUnavailableError extends AmlAuthError {
  /**
   * Creates an unavailable-source error.
   *
   * @param message what is missing, and what to do
   * @param options cause
   */
  constructor(message: string, options?: AmlAuthErrorOptions) {
    super('ERR_CREDENTIAL_UNAVAILABLE', message, options)
    this.name = 'CredentialUnavailableError'
  }
}

/** Fields Microsoft Entra ID (and managed-identity endpoints) put in an error body. */
export interface AuthenticationErrorDetails {
  /** HTTP status of the refusal. */
  status: number
  /** OAuth `error`, e.g. `invalid_client`. */
  error?: string | undefined
  /** OAuth `error_description`, e.g. `AADSTS7000215: Invalid client secret provided...`. */
  errorDescription?: string | undefined
  /** Entra `error_codes`, e.g. `[7000215]`. */
  errorCodes?: number[] | undefined
  /** Entra `trace_id`. */
  traceId?: string | undefined
  /** Entra `correlation_id`. */
  correlationId?: string | undefined
  /** The raw response; kept non-enumerable so it never serializes. */
  response?: Response | undefined
}

/**
 * The identity service refused the request. Carries the service's own explanation.
 *
 * @example Read Entra's error code
 * ```ts
 * import { AuthenticationError } from '@aml-edge/auth'
 *
 * const e = new AuthenticationError('Entra ID refused the client secret', {
 *   status: 401,
 *   error: 'invalid_client',
 *   errorCodes: [7000215],
 * })
 * console.assert(e.errorCodes?.[0] === 7000215)
 * ```
 */
export class AuthenticationError extends AmlAuthError {
  /** OAuth `error`. */
  declare readonly error?: string
  /** OAuth `error_description`. */
  declare readonly errorDescription?: string
  /** Entra `error_codes`. */
  declare readonly errorCodes?: number[]
  /** Entra `trace_id`. */
  declare readonly traceId?: string
  /** Entra `correlation_id`. */
  declare readonly correlationId?: string
  /** The raw response (non-enumerable). */
  declare readonly response?: Response

  /**
   * Creates a refusal error from the service's fields.
   *
   * @param message what happened and what to do
   * @param details the service's error fields
   */
  constructor(message: string, details: AuthenticationErrorDetails) {
    // details has no `cause`: Error reads nothing else from it, AmlAuthError only `status`.
    super('ERR_AUTHENTICATION', message, details)
    this.name = 'AuthenticationError'
    // By name, not by spreading `details`: only these fields may ever reach JSON or inspection.
    for (
      const k of ['error', 'errorDescription', 'errorCodes', 'traceId', 'correlationId'] as const
    ) {
      if (details[k] !== undefined) Object.assign(this, { [k]: details[k] })
    }
    Object.defineProperty(this, 'response', { value: details.response })
  }
}

/**
 * Removes every occurrence of the given secrets from a text that came from a server, so that a
 * service echoing a credential back cannot carry it into an error message.
 */
export function _redact(text: string, secrets?: readonly (string | undefined)[]): string
export function _redact(
  text: string | undefined,
  secrets?: readonly (string | undefined)[],
): string | undefined
export function _redact(
  text: string | undefined,
  secrets: readonly (string | undefined)[] = [],
): string | undefined {
  // Values under 4 characters are left alone: scrubbing them would garble the text for nothing.
  return secrets.reduce(
    (t, s) => t && s && s.length >= 4 ? t.replaceAll(s, '[redacted]') : t,
    text,
  )
}
