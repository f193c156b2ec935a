// The Microsoft Entra ID v2 token endpoint, shared by every credential that talks to it (service
// principal, device code, refresh token, authorization code): build the request as data, send it
// through the one HTTP layer, then parse the answer into a token or an AuthenticationError whose
// message carries actionable advice for the AADSTS code. Secrets in the form (client_secret,
// client_assertion, refresh_token, device_code, code, code_verifier, assertion) are scrubbed from
// any server text that reaches an error, whatever the grant.
import type { AccessToken } from './access_token.ts'
import { type HttpContext, type HttpRequest, type HttpResponse, sendRequest } from './http.ts'
import { _parseJsonObject } from './http.ts'
import { _parseTokenResponse } from './token_response.ts'

/** The endpoint name used in messages. */
export const ENTRA_WHAT = 'Microsoft Entra ID'

/** `client_assertion_type` of a JWT client assertion (RFC 7523). */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** Form fields whose values are secrets: never logged, scrubbed from server text. */
export const SECRET_FORM_FIELDS: readonly string[] = [
  'client_secret',
  'client_assertion',
  'refresh_token',
  'device_code',
  'code',
  'code_verifier',
  'assertion',
]

/** Builds advice text for an Entra refusal from its AADSTS codes and OAuth error. */
export type EntraAdvice = (
  codes: readonly number[],
  error: string | undefined,
) => string | undefined

/** One request to an Entra v2 endpoint (`/oauth2/v2.0/token` unless `endpoint` says otherwise). */
export interface EntraRequestOptions {
  /** Authority host, e.g. `https://login.microsoftonline.com` (no trailing slash needed). */
  authority: string
  /** Tenant id or domain (or `organizations`/`common` for user flows). */
  tenant: string
  /** The form: grant and client authentication fields; undefined values are dropped. */
  form: Record<string, string | undefined>
  /** Extra values to scrub from server text (the form's secret fields are scrubbed anyway). */
  secrets?: readonly (string | undefined)[]
  /** The caller's abort signal. */
  signal?: AbortSignal | undefined
  /** The v2 endpoint: `token` (default) or `devicecode`. */
  endpoint?: 'token' | 'devicecode'
  /** Advice appended to refusals (default {@linkcode entraAdvice}()). */
  advice?: EntraAdvice
  /** Endpoint name for messages (default `Microsoft Entra ID`). */
  what?: string
}

/** A token response beyond the access token, for grants that return more (refresh tokens). */
export interface EntraTokenResult {
  /** The access token. */
  accessToken: AccessToken
  /** `refresh_token`, when the grant returned one. */
  refreshToken?: string
  /** `id_token`, when the grant returned one. */
  idToken?: string
  /** `scope` granted. */
  scope?: string
  /** The whole JSON body (holds the tokens: never log it). */
  body: Record<string, unknown>
}

/**
 * The v2 URL of an Entra endpoint: `{authority}/{tenant}/oauth2/v2.0/{endpoint}`.
 *
 * @param authority authority host, with or without a trailing slash
 * @param tenant tenant id, domain, `organizations` or `common`
 * @param endpoint `token` (default), `devicecode` or `authorize`
 * @returns the URL
 */
export function entraEndpoint(
  authority: string,
  tenant: string,
  endpoint: 'token' | 'devicecode' | 'authorize' = 'token',
): string {
  return `${authority.replace(/\/+$/, '')}/${encodeURIComponent(tenant)}/oauth2/v2.0/${endpoint}`
}

/** The secrets of a request: its secret form values plus the extra ones. */
export function _requestSecrets(opts: EntraRequestOptions): (string | undefined)[] {
  return [...SECRET_FORM_FIELDS.map((f) => opts.form[f]), ...opts.secrets ?? []]
}

/**
 * The HTTP request of an Entra v2 call, as data: POST, form body, a fresh `client-request-id`
 * (Entra echoes it as the correlation id). Retries follow the HTTP layer's default (408, 429,
 * 5xx); 4xx refusals are final.
 *
 * @param opts authority, tenant, form, signal
 * @returns the request, ready for `sendRequest`
 */
export function buildTokenRequest(opts: EntraRequestOptions): HttpRequest {
  return {
    method: 'POST',
    url: entraEndpoint(opts.authority, opts.tenant, opts.endpoint),
    headers: { 'client-request-id': crypto.randomUUID(), 'return-client-request-id': 'true' },
    form: opts.form,
    what: opts.what ?? ENTRA_WHAT,
    signal: opts.signal,
  }
}

/**
 * Parses an Entra token response: a 2xx with `access_token` and an expiry becomes a result;
 * anything else an `AuthenticationError` (refusal, with Entra's fields and advice) or an
 * `AmlAuthError` `ERR_RESPONSE_INVALID` (not a token response).
 *
 * @param res the completed response
 * @param opts clock, secrets to scrub, advice, endpoint name
 * @returns the token and the rest of the body
 */
export function parseEntraTokenResponse(
  res: HttpResponse,
  opts: {
    now: number
    secrets?: readonly (string | undefined)[]
    advice?: EntraAdvice
    what?: string
  },
): EntraTokenResult {
  const what = opts.what ?? ENTRA_WHAT
  const accessToken = _parseTokenResponse(res, {
    what,
    now: opts.now,
    secrets: opts.secrets ?? [],
    advice: opts.advice ?? DEFAULT_ADVICE,
  })
  const body = _parseJsonObject(res, what)
  const result: EntraTokenResult = { accessToken, body }
  if (typeof body.refresh_token === 'string' && body.refresh_token) {
    result.refreshToken = body.refresh_token
  }
  if (typeof body.id_token === 'string' && body.id_token) result.idToken = body.id_token
  if (typeof body.scope === 'string') result.scope = body.scope
  return result
}

/**
 * Sends one Entra v2 token request and parses the answer, keeping refresh and id tokens.
 *
 * @param http the credential's HTTP context
 * @param opts authority, tenant, form, secrets, signal, advice
 * @returns the token and the rest of the response
 * @throws {AuthenticationError} when Entra refuses; {AmlAuthError} for transport failures
 */
export async function requestEntraTokenResult(
  http: HttpContext,
  opts: EntraRequestOptions,
): Promise<EntraTokenResult> {
  const res = await sendRequest(http, buildTokenRequest(opts))
  return parseEntraTokenResponse(res, {
    now: http.now(),
    secrets: _requestSecrets(opts),
    ...(opts.advice ? { advice: opts.advice } : {}),
    ...(opts.what ? { what: opts.what } : {}),
  })
}

/**
 * Sends one Entra v2 token request (any grant) and returns the access token.
 *
 * @param http the credential's HTTP context
 * @param opts authority, tenant, form, secrets, signal, advice
 * @returns the access token
 * @throws {AuthenticationError} when Entra refuses; {AmlAuthError} for transport failures
 */
export async function requestEntraToken(
  http: HttpContext,
  opts: EntraRequestOptions,
): Promise<AccessToken> {
  const req = buildTokenRequest(opts)
  return _parseTokenResponse(await sendRequest(http, req), {
    what: req.what,
    now: http.now(),
    secrets: _requestSecrets(opts),
    advice: opts.advice ?? DEFAULT_ADVICE,
  })
}

/** How the user named each input, so that advice points at the right option or variable. */
export interface EntraAdviceNames {
  /** The client id option, e.g. `servicePrincipalId` or `AZURE_CLIENT_ID`. */
  clientId: string
  /** The tenant option, e.g. `tenantId` or `AZURE_TENANT_ID`. */
  tenantId: string
  /** The secret option, e.g. `servicePrincipalPassword` or `AZURE_CLIENT_SECRET`. */
  secret: string
  /** The certificate option, e.g. `certificate` or `AZURE_CLIENT_CERTIFICATE_PATH`. */
  certificate: string
  /** The federated assertion source, e.g. `clientAssertion` or `AZURE_FEDERATED_TOKEN_FILE`. */
  assertion: string
}

/**
 * Advice texts by AADSTS code. `{clientId}`, `{tenantId}`, `{secret}`, `{certificate}` and
 * `{assertion}` are replaced by the names the user configured (see {@linkcode EntraAdviceNames}).
 */
export type EntraAdviceTable = Readonly<Record<number, string>>

const SCOPES = 'Check the scopes: client credentials need <resource>/.default'
const TENANT = 'Check {tenantId} and the cloud: no such tenant'

/**
 * The advice every confidential client may need (secret, tenant, client id, scopes, consent,
 * disabled app, Conditional Access). Certificate-only and assertion-only advice lives next to
 * those strategies, user-flow advice with the interactive credential; they pass it in as `extra`.
 */
const CORE_ADVICE: EntraAdviceTable = {
  7000215: "Check {secret}: use the secret's Value, not its ID",
  7000222: 'The client secret has expired: create a new {secret}',
  700025: 'This application is a public client: it must not send {secret} or {certificate}',
  700016: 'Check {clientId} and {tenantId}: no such application',
  90002: TENANT,
  900023: TENANT,
  50059: TENANT,
  7000112: 'The application is disabled in this tenant: ask an administrator',
  70011: SCOPES,
  1002012: SCOPES,
  28000: 'Ask for one resource per token',
  500011: 'The resource is not in this tenant: check the scope',
  65001: 'Grant admin consent for this resource',
  53003: 'Conditional Access blocked the sign-in: ask an administrator',
}

/**
 * Advice for the AADSTS codes users of a confidential or public client actually meet, naming the
 * option or variable to check. Unknown codes get none (the server's own text is in the message).
 *
 * @param names how the inputs are named where the credential was configured (a placeholder
 * without a name stays its key, e.g. `tenantId`)
 * @param extra more advice (certificate, federated assertion, user flows); it takes precedence
 * @returns the advice function
 */
export function entraAdvice(
  names: Partial<EntraAdviceNames> = {},
  extra: EntraAdviceTable = {},
): EntraAdvice {
  return (codes) => {
    for (const c of codes) {
      const text = extra[c] ?? CORE_ADVICE[c]
      if (text) {
        return text.replace(/\{(\w+)\}/g, (_, k: keyof EntraAdviceNames) => names[k] ?? k)
      }
    }
  }
}

const DEFAULT_ADVICE = /* @__PURE__ */ entraAdvice()
