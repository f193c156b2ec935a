/**
 * Entra ID error responses, in Entra's exact shape: `error`, `error_description` that starts with
 * the AADSTS code and ends with the trace id, correlation id and timestamp, `error_codes`,
 * `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
 *
 * @module
 */
import { entraTimestamp, json } from './util.ts'

/** An Entra error, thrown inside handlers and rendered by {@link entraErrorResponse}. */
export class EntraError extends Error {
  override name = 'EntraError'
  /** HTTP status. */
  readonly status: number
  /** OAuth `error`. */
  readonly error: string
  /** AADSTS number. */
  readonly code: number
  /** Description after `AADSTS<code>: `. */
  readonly text: string

  constructor(status: number, error: string, code: number, text: string) {
    super(`AADSTS${code}: ${text}`)
    this.status = status
    this.error = error
    this.code = code
    this.text = text
  }
}

/** The JSON body of an Entra error. */
export interface EntraErrorBody {
  error: string
  error_description: string
  error_codes: number[]
  timestamp: string
  trace_id: string
  correlation_id: string
  error_uri: string
}

/** Renders an Entra error body. The correlation id echoes the client's `client-request-id`. */
export function entraErrorBody(
  err: EntraError,
  ctx: { origin: string; correlationId?: string | null; now: number },
): EntraErrorBody {
  const traceId = crypto.randomUUID()
  const correlationId = ctx.correlationId || crypto.randomUUID()
  const timestamp = entraTimestamp(ctx.now)
  return {
    error: err.error,
    error_description: `AADSTS${err.code}: ${err.text}\r\nTrace ID: ${traceId}\r\n` +
      `Correlation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [err.code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `${ctx.origin}/error?code=${err.code}`,
  }
}

/** Renders an Entra error response (with `x-ms-request-id` and `client-request-id` headers). */
export function entraErrorResponse(
  err: EntraError,
  ctx: { origin: string; correlationId?: string | null; now: number },
): Response {
  const body = entraErrorBody(err, ctx)
  const headers: Record<string, string> = {
    'x-ms-request-id': body.trace_id,
    'client-request-id': body.correlation_id,
    pragma: 'no-cache',
  }
  if (err.status === 401) headers['www-authenticate'] = `Bearer error="${err.error}"`
  return json(body, err.status, headers)
}

const CERT_DOCS =
  'Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .'

/** Builders for every Entra error the emulator returns. */
export const entraErrors = {
  missingParameter: (name: string): EntraError =>
    new EntraError(
      400,
      'invalid_request',
      900144,
      `The request body must contain the following parameter: '${name}'.`,
    ),
  tenantNotFound: (tenant: string, discovery = false): EntraError =>
    new EntraError(
      400,
      discovery ? 'invalid_tenant' : 'invalid_request',
      90002,
      `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are ` +
        'signing into the correct cloud. Check with your subscription administrator, this may ' +
        'happen if there are no active subscriptions for the tenant.',
    ),
  invalidTenantName: (tenant: string): EntraError =>
    new EntraError(
      400,
      'invalid_request',
      900023,
      `Specified tenant identifier '${tenant}' is neither a valid DNS name, nor a valid external domain.`,
    ),
  tenantRequired: (): EntraError =>
    new EntraError(
      400,
      'invalid_request',
      50059,
      'No tenant-identifying information found in either the request or implied by any provided credentials.',
    ),
  unknownClient: (clientId: string, tenantName: string): EntraError =>
    new EntraError(
      400,
      'unauthorized_client',
      700016,
      `Application with identifier '${clientId}' was not found in the directory '${tenantName}'. ` +
        'This can happen if the application has not been installed by the administrator of the ' +
        'tenant or consented to by any user in the tenant. You may have sent your authentication ' +
        'request to the wrong tenant.',
    ),
  badSecret: (clientId: string): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      7000215,
      'Invalid client secret provided. Ensure the secret being sent in the request is the client ' +
        `secret value, not the client secret ID, for a secret added to app '${clientId}'.`,
    ),
  credentialRequired: (): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      7000218,
      "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
  publicClientWithCredential: (): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700025,
      "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    ),
  malformedAssertion: (detail: string): EntraError =>
    new EntraError(400, 'invalid_request', 50027, `JWT token is invalid or malformed. ${detail}`),
  keyNotFound: (thumbprint: string, clientId: string): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700027,
      'The certificate with identifier used to sign the client assertion is not registered on ' +
        `application. [Reason - The key was not found., Thumbprint of key used by client: '${thumbprint}', ` +
        'Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured ' +
        `keys for app Id '${clientId}'.]`,
    ),
  badSignature: (
    reason = 'The provided signature value did not match the expected signature value.',
  ): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700027,
      `Client assertion failed signature validation. [Reason - ${reason}]`,
    ),
  assertionSubject: (): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700021,
      `Client assertion application identifier doesn't match 'client_id' parameter. ${CERT_DOCS}`,
    ),
  assertionReplayed: (): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700021,
      'Client assertion contains a jti that has already been used. Client assertions are single ' +
        `use: sign a new assertion with a new jti for every request. ${CERT_DOCS}`,
    ),
  assertionAudience: (): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700023,
      `Client assertion audience claim does not match Realm issuer. ${CERT_DOCS}`,
    ),
  assertionTime: (now: number, nbf: number | undefined, exp: number | undefined): EntraError =>
    new EntraError(
      401,
      'invalid_client',
      700024,
      `Client assertion is not within its valid time range. Current time: ${iso7(now)}, ` +
        `assertion valid from ${iso7((nbf ?? 0) * 1000)}, expiry time of assertion ${
          iso7((exp ?? 0) * 1000)
        }. ${CERT_DOCS}`,
    ),
  federatedNoMatch: (iss: string, sub: string, aud: string): EntraError =>
    new EntraError(
      400,
      'invalid_client',
      70021,
      'No matching federated identity record found for presented assertion. ' +
        `Assertion Issuer: '${iss}'. Assertion Subject: '${sub}'. Assertion Audience: '${aud}'.`,
    ),
  unsupportedGrant: (grant: string): EntraError =>
    new EntraError(
      400,
      'unsupported_grant_type',
      70003,
      `The app requested an unsupported grant type '${grant}'.`,
    ),
  invalidScope: (scope: string): EntraError =>
    new EntraError(
      400,
      'invalid_scope',
      70011,
      `The provided value for the input parameter 'scope' is not valid. The scope ${scope} is not valid.`,
    ),
  clientCredentialsScope: (scope: string): EntraError =>
    new EntraError(
      400,
      'invalid_scope',
      1002012,
      `The provided value for scope ${scope} is not valid. Client credential flows must have a ` +
        'scope value with /.default suffixed to the resource identifier (application ID URI).',
    ),
  multipleResources: (scope: string): EntraError =>
    new EntraError(
      400,
      'invalid_scope',
      28000,
      'Provided value for the input parameter scope is not valid because it contains more than ' +
        `one resource. Scope ${scope} is not valid.`,
    ),
  unknownResource: (resource: string, tenantName: string): EntraError =>
    new EntraError(
      400,
      'invalid_resource',
      500011,
      `The resource principal named ${resource} was not found in the tenant named ${tenantName}. ` +
        'This can happen if the application has not been installed by the administrator of the ' +
        'tenant or consented to by any user in the tenant. You might have sent your ' +
        'authentication request to the wrong tenant.',
    ),
  badCode: (): EntraError =>
    new EntraError(
      400,
      'invalid_grant',
      70008,
      'The provided authorization code or refresh token has expired due to inactivity. Send a ' +
        'new interactive authorization request for this user and resource.',
    ),
  codeRedeemed: (): EntraError =>
    new EntraError(
      400,
      'invalid_grant',
      54005,
      'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use ' +
        'an existing refresh token.',
    ),
  redirectMismatch: (uri: string, clientId: string, error = 'invalid_request'): EntraError =>
    new EntraError(
      400,
      error,
      50011,
      `The redirect URI '${uri}' specified in the request does not match the redirect URIs ` +
        `configured for the application '${clientId}'. Make sure the redirect URI sent in the ` +
        'request matches one added to your application in the Azure portal.',
    ),
  pkceMismatch: (): EntraError =>
    new EntraError(
      400,
      'invalid_grant',
      501481,
      'The Code_Verifier does not match the code_challenge supplied in the authorization request.',
    ),
  badRefreshToken: (): EntraError =>
    new EntraError(400, 'invalid_grant', 70000, 'Provided grant is invalid or malformed.'),
  refreshTokenExpired: (issuedAt: number, now: number): EntraError =>
    new EntraError(
      400,
      'invalid_grant',
      700082,
      `The refresh token has expired due to inactivity. The token was issued on ${
        iso7(issuedAt)
      } and was inactive for ${Math.round((now - issuedAt) / 1000)} seconds.`,
    ),
  authorizationPending: (): EntraError =>
    new EntraError(
      400,
      'authorization_pending',
      70016,
      'OAuth 2.0 device flow error. Authorization is pending. Continue polling.',
    ),
  slowDown: (): EntraError =>
    new EntraError(
      400,
      'slow_down',
      70016,
      'OAuth 2.0 device flow error. Polling too frequently: add 5 seconds to the interval and continue polling.',
    ),
  expiredDeviceCode: (): EntraError =>
    new EntraError(
      400,
      'expired_token',
      70020,
      "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
    ),
  badDeviceCode: (): EntraError =>
    new EntraError(
      400,
      'bad_verification_code',
      70000,
      "The provided value for the input parameter 'device_code' is not valid.",
    ),
  deviceDeclined: (): EntraError =>
    new EntraError(
      400,
      'authorization_declined',
      70000,
      'The user has declined the authorization request.',
    ),
  unsupportedResponseType: (type: string): EntraError =>
    new EntraError(
      400,
      'unsupported_response_type',
      70007,
      `The application '${type}' response type is not supported. Use 'code'.`,
    ),
} as const

function iso7(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$10000Z')
}
