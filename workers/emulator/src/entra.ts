/**
 * Entra ID v2 (and v1) per tenant: token endpoint (client credentials, refresh token,
 * authorization code with PKCE, device code), device authorization, authorize (auto-approved),
 * OpenID configuration, instance discovery and JWKS.
 *
 * @module
 */
import type { Hono } from 'hono'
import { base64url } from 'jose'
import { authenticateClient, basicCredentials, type ClientAuthLevel } from './client_auth.ts'
import { EntraError, entraErrorBody, entraErrors } from './entra_errors.ts'
import { type Incoming, route } from './http.ts'
import { delegatedScp, GRAPH, parseScopes } from './scopes.ts'
import type { Client, DeviceCodeGrant, EmulatorCore, Tenant, User } from './state.ts'
import { mintAccessToken, mintIdToken } from './tokens.ts'
import { digest, escapeHtml, json, randomToken, utf8 } from './util.ts'

const DEVICE_CODE_GRANTS = new Set(['urn:ietf:params:oauth:grant-type:device_code', 'device_code'])

function tokenHeaders(r: Incoming): Record<string, string> {
  return {
    'cache-control': 'no-store, no-cache',
    pragma: 'no-cache',
    'x-ms-request-id': crypto.randomUUID(),
    'client-request-id': r.correlationId ?? crypto.randomUUID(),
  }
}

function required(r: Incoming, name: string): string {
  const v = r.form.get(name)
  if (!v) throw entraErrors.missingParameter(name)
  return v
}

function clientIdOf(r: Incoming): string {
  const id = r.form.get('client_id') ?? basicCredentials(r.request)?.id
  if (!id) throw entraErrors.missingParameter('client_id')
  return id
}

/** Finds a client allowed in a tenant, else Entra's AADSTS700016. */
export function lookupClient(core: EmulatorCore, clientId: string, tenant: Tenant | null): Client {
  const client = core.clients.get(clientId.toLowerCase())
  if (!client || (tenant && client.tenantId !== tenant.id && !client.multiTenant)) {
    throw entraErrors.unknownClient(clientId, tenant?.displayName ?? 'common')
  }
  return client
}

function lifetimeOf(core: EmulatorCore, client: Client): number {
  return client.tokenLifetimeSeconds ?? core.settings.tokenLifetimeSeconds
}

function lifetimeFields(lifetime: number): Record<string, number> {
  const out: Record<string, number> = { expires_in: lifetime, ext_expires_in: lifetime }
  if (lifetime > 7200) out.refresh_in = Math.floor(lifetime / 2)
  return out
}

function resolveResource(core: EmulatorCore, resource: string, tenant: Tenant | null) {
  const found = core.findResource(resource)
  if (!found) throw entraErrors.unknownResource(resource, tenant?.displayName ?? 'common')
  return found
}

/** Issues the tokens of a user flow (access token, and refresh/ID token as the scopes ask). */
async function issueUserTokens(
  core: EmulatorCore,
  r: Incoming,
  opts: {
    client: Client
    user: User
    tenantId: string
    /** The grant's scope; the form's `scope`, when given, replaces it. */
    grantScope: string
    acr: ClientAuthLevel
    nonce?: string | null
  },
): Promise<Response> {
  const scope = r.form.get('scope') ?? opts.grantScope
  const parsed = parseScopes(scope)
  const resourceId = parsed.resource ?? GRAPH
  const tenant = core.tenants.get(opts.tenantId) ?? null
  const resource = resolveResource(core, resourceId, tenant)
  const perms = parsed.resource ? parsed.permissions : ['.default']
  const scp = delegatedScp(resourceId, perms)
  const lifetime = lifetimeOf(core, opts.client)
  const minted = await mintAccessToken(core, {
    origin: r.origin,
    tenantId: opts.tenantId,
    audience: resourceId,
    version: resource.tokenVersion,
    lifetimeSeconds: lifetime,
    principal: { kind: 'user', appId: opts.client.clientId, user: opts.user, scp, acr: opts.acr },
  })
  const prefix = `${resourceId}/`
  const granted = scp.split(' ').map((s) => prefix + s)
  if (perms.includes('.default')) granted.push(`${prefix}.default`)
  const left = minted.exp - Math.floor(core.now() / 1000)
  const body: Record<string, unknown> = {
    token_type: 'Bearer',
    scope: granted.join(' '),
    ...lifetimeFields(left),
    access_token: minted.token,
  }
  if (parsed.oidc.has('offline_access')) {
    const rt = randomToken(96)
    const now = core.now()
    core.refreshTokens.set(rt, {
      clientId: opts.client.clientId,
      userId: opts.user.objectId,
      tenantId: opts.tenantId,
      scope,
      issuedAt: now,
      expiresAt: now + core.settings.refreshTokenLifetimeSeconds * 1000,
    })
    body.refresh_token = rt
  }
  if (parsed.oidc.has('openid')) {
    body.id_token = await mintIdToken(core, {
      origin: r.origin,
      tenantId: opts.tenantId,
      clientId: opts.client.clientId,
      user: opts.user,
      nonce: opts.nonce ?? null,
    })
  }
  if (r.form.get('client_info') === '1') {
    body.client_info = base64url.encode(
      JSON.stringify({ uid: opts.user.objectId, utid: opts.tenantId }),
    )
  }
  return json(body, 200, tokenHeaders(r))
}

async function clientCredentials(
  core: EmulatorCore,
  r: Incoming,
  tenant: Tenant | null,
  segment: string,
): Promise<Response> {
  if (!tenant) throw entraErrors.tenantRequired()
  const clientId = clientIdOf(r)
  const client = lookupClient(core, clientId, tenant)
  const scope = required(r, 'scope')
  const acr = await authenticateClient(core, r, client, tenant, segment)
  if (client.publicClient) throw entraErrors.credentialRequired()
  const parsed = parseScopes(scope)
  if (
    !parsed.resource || parsed.permissions.length !== 1 || parsed.permissions[0] !== '.default' ||
    parsed.oidc.size
  ) {
    throw entraErrors.clientCredentialsScope(scope)
  }
  const resource = resolveResource(core, parsed.resource, tenant)
  const minted = await mintAccessToken(core, {
    origin: r.origin,
    tenantId: tenant.id,
    audience: parsed.resource,
    version: resource.tokenVersion,
    lifetimeSeconds: lifetimeOf(core, client),
    principal: {
      kind: 'app',
      appId: client.clientId,
      objectId: client.objectId,
      roles: client.roles,
      acr,
    },
  })
  const left = minted.exp - Math.floor(core.now() / 1000)
  return json(
    { token_type: 'Bearer', ...lifetimeFields(left), access_token: minted.token },
    200,
    tokenHeaders(r),
  )
}

/** The request and client a user-flow grant is redeemed for. */
interface Redeemer {
  r: Incoming
  client: Client
  tenant: Tenant | null
  segment: string
}

/**
 * A user-flow grant (authorization code, refresh token, device code) that exists, was issued to
 * the client and passes `matches`, and the client's authentication level; else `invalid()`.
 */
async function grantOf<G extends { clientId: string }>(
  core: EmulatorCore,
  { r, client, tenant, segment }: Redeemer,
  grant: G | undefined,
  invalid: () => EntraError,
  matches: (grant: G) => boolean = () => true,
): Promise<{ grant: G; acr: ClientAuthLevel }> {
  if (!grant || grant.clientId !== client.clientId || !matches(grant)) throw invalid()
  const acr = await authenticateClient(core, r, client, tenant, segment)
  return { grant, acr }
}

/** A live refresh token of the client (v1 and v2), with its user. */
async function redeemRefreshToken(core: EmulatorCore, who: Redeemer, rt: string) {
  const { grant, acr } = await grantOf(
    core,
    who,
    core.refreshTokens.get(rt),
    entraErrors.badRefreshToken,
  )
  const now = core.now()
  if (grant.expiresAt <= now) throw entraErrors.refreshTokenExpired(grant.issuedAt, now)
  const user = core.findUser(grant.userId)
  if (!user) throw entraErrors.badRefreshToken()
  return { grant, user, acr, now }
}

async function authorizationCode(
  core: EmulatorCore,
  r: Incoming,
  tenant: Tenant | null,
  segment: string,
): Promise<Response> {
  const code = required(r, 'code')
  const clientId = clientIdOf(r)
  const redirectUri = required(r, 'redirect_uri')
  const client = lookupClient(core, clientId, tenant)
  const { grant, acr } = await grantOf(
    core,
    { r, client, tenant, segment },
    core.authCodes.get(code),
    entraErrors.badCode,
    (g) => !tenant || tenant.id === g.tenantId,
  )
  if (grant.redeemed) throw entraErrors.codeRedeemed()
  if (grant.expiresAt < core.now()) throw entraErrors.badCode()
  if (redirectUri !== grant.redirectUri) {
    throw entraErrors.redirectMismatch(redirectUri, clientId, 'invalid_grant')
  }
  if (grant.codeChallenge) {
    const verifier = r.form.get('code_verifier')
    if (!verifier) throw entraErrors.pkceMismatch()
    const computed = grant.codeChallengeMethod === 'plain'
      ? verifier
      : base64url.encode(await digest('SHA-256', utf8(verifier)))
    if (computed !== grant.codeChallenge) throw entraErrors.pkceMismatch()
  }
  grant.redeemed = true
  const user = core.findUser(grant.userId)
  if (!user) throw entraErrors.badCode()
  return issueUserTokens(core, r, {
    client,
    user,
    tenantId: grant.tenantId,
    grantScope: grant.scope,
    acr,
    nonce: grant.nonce,
  })
}

async function refreshToken(
  core: EmulatorCore,
  r: Incoming,
  tenant: Tenant | null,
  segment: string,
): Promise<Response> {
  const rt = required(r, 'refresh_token')
  const client = lookupClient(core, clientIdOf(r), tenant)
  const { grant, user, acr } = await redeemRefreshToken(core, { r, client, tenant, segment }, rt)
  const tenantId = tenant?.id ?? grant.tenantId
  return issueUserTokens(core, r, { client, user, tenantId, grantScope: grant.scope, acr })
}

/** Approves a pending device code (by user code); false when there is none. */
export function approveDeviceCode(
  core: EmulatorCore,
  userCode: string,
  user?: string,
): boolean {
  const grant = findByUserCode(core, userCode)
  if (!grant || grant.status !== 'pending' || grant.expiresAt < core.now()) return false
  const u = user ? core.findUser(user) : core.defaultUser()
  if (!u) throw new TypeError(`no user ${user ?? '(default)'} is registered`)
  grant.status = 'approved'
  grant.userId = u.objectId
  return true
}

/** Declines a pending device code (by user code); false when there is none. */
export function denyDeviceCode(core: EmulatorCore, userCode: string): boolean {
  const grant = findByUserCode(core, userCode)
  if (!grant || grant.status !== 'pending') return false
  grant.status = 'declined'
  return true
}

function findByUserCode(core: EmulatorCore, userCode: string): DeviceCodeGrant | undefined {
  const want = userCode.trim().toUpperCase()
  for (const g of core.deviceCodes.values()) if (g.userCode === want) return g
  return undefined
}

async function deviceCodeGrant(
  core: EmulatorCore,
  r: Incoming,
  tenant: Tenant | null,
  segment: string,
): Promise<Response> {
  const deviceCode = required(r, 'device_code')
  const client = lookupClient(core, clientIdOf(r), tenant)
  const { grant, acr } = await grantOf(
    core,
    { r, client, tenant, segment },
    core.deviceCodes.get(deviceCode),
    entraErrors.badDeviceCode,
  )
  const now = core.now()
  if (grant.status === 'redeemed') throw entraErrors.badDeviceCode()
  if (now > grant.expiresAt) throw entraErrors.expiredDeviceCode()
  if (grant.status === 'declined') throw entraErrors.deviceDeclined()
  if (grant.status === 'pending') {
    const s = core.settings.deviceCode
    if (
      s.enforceInterval && grant.lastPollAt !== null &&
      now - grant.lastPollAt < grant.interval * 1000
    ) {
      grant.lastPollAt = now
      grant.interval += 5
      throw entraErrors.slowDown()
    }
    grant.lastPollAt = now
    grant.polls++
    if (s.autoApproveAfterPolls !== null && grant.polls > s.autoApproveAfterPolls) {
      approveDeviceCode(core, grant.userCode)
    } else {
      throw entraErrors.authorizationPending()
    }
  }
  const user = grant.userId ? core.findUser(grant.userId) : undefined
  if (!user) throw entraErrors.badDeviceCode()
  grant.status = 'redeemed'
  const tenantId = tenant?.id ?? user.tenantId
  return issueUserTokens(core, r, { client, user, tenantId, grantScope: grant.scope, acr })
}

function userCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
  const bytes = crypto.getRandomValues(new Uint8Array(9))
  let out = ''
  for (const b of bytes) out += alphabet[b % alphabet.length]
  return out
}

function isLoopback(uri: string): boolean {
  try {
    const u = new URL(uri)
    return (u.protocol === 'http:' || u.protocol === 'https:') &&
      ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname)
  } catch {
    return false
  }
}

function htmlError(err: EntraError, r: Incoming, now: number): Response {
  const body = entraErrorBody(err, { origin: r.origin, correlationId: r.correlationId, now })
  return new Response(
    `<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body>` +
      `<h1>Sorry, but we're having trouble signing you in.</h1>` +
      `<p id="error">${escapeHtml(body.error_description.split('\r\n')[0]!)}</p>` +
      `<p>Trace ID: ${body.trace_id}<br>Correlation ID: ${body.correlation_id}<br>` +
      `Timestamp: ${body.timestamp}</p></body></html>`,
    { status: err.status, headers: { 'content-type': 'text/html; charset=utf-8' } },
  )
}

function redirectWith(
  redirectUri: string,
  mode: string,
  params: Record<string, string>,
): Response {
  if (mode === 'form_post') {
    const inputs = Object.entries(params).map(([k, v]) =>
      `<input type="hidden" name="${escapeHtml(k)}" value="${escapeHtml(v)}">`
    ).join('')
    return new Response(
      `<!DOCTYPE html><html><head><title>Working...</title></head><body onload="document.forms[0].submit()">` +
        `<form method="POST" action="${escapeHtml(redirectUri)}">${inputs}` +
        `<noscript><button type="submit">Continue</button></noscript></form></body></html>`,
      {
        status: 200,
        headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
      },
    )
  }
  const url = new URL(redirectUri)
  const qs = new URLSearchParams(params)
  if (mode === 'fragment') url.hash = qs.toString()
  else for (const [k, v] of qs) url.searchParams.append(k, v)
  return new Response(null, {
    status: 302,
    headers: { location: url.href, 'cache-control': 'no-store' },
  })
}

function authorize(core: EmulatorCore, r: Incoming, segment: string): Response {
  const q = r.url.searchParams
  const now = core.now()
  let tenant: Tenant | null
  let client: Client
  let redirectUri: string
  try {
    tenant = core.resolveTenant(segment)
    const clientId = q.get('client_id')
    if (!clientId) throw entraErrors.missingParameter('client_id')
    client = lookupClient(core, clientId, tenant)
    const asked = q.get('redirect_uri') ??
      (client.redirectUris.length === 1 ? client.redirectUris[0] : null)
    if (!asked) throw entraErrors.missingParameter('redirect_uri')
    if (!client.redirectUris.includes(asked) && !isLoopback(asked)) {
      throw entraErrors.redirectMismatch(asked, clientId)
    }
    redirectUri = asked
  } catch (e) {
    if (e instanceof EntraError) return htmlError(e, r, now)
    throw e
  }
  const mode = q.get('response_mode') ?? 'query'
  const state = q.get('state')
  const fail = (err: EntraError) => {
    const body = entraErrorBody(err, { origin: r.origin, correlationId: r.correlationId, now })
    const params: Record<string, string> = {
      error: err.error,
      error_description: body.error_description,
      error_uri: body.error_uri,
    }
    if (state !== null) params.state = state
    return redirectWith(redirectUri, mode, params)
  }
  try {
    const responseType = q.get('response_type')
    if (!responseType) throw entraErrors.missingParameter('response_type')
    if (responseType !== 'code') throw entraErrors.unsupportedResponseType(responseType)
    const scope = q.get('scope')
    if (!scope) throw entraErrors.missingParameter('scope')
    const parsed = parseScopes(scope)
    resolveResource(core, parsed.resource ?? GRAPH, tenant)
    const challenge = q.get('code_challenge')
    const method = challenge ? (q.get('code_challenge_method') ?? 'plain') : null
    if (method !== null && method !== 'S256' && method !== 'plain') {
      throw new EntraError(
        400,
        'invalid_request',
        501491,
        `Invalid code_challenge_method '${method}'. Use 'S256' or 'plain'.`,
      )
    }
    const user = core.findUser(q.get('login_hint')) ?? core.defaultUser()
    if (!user) {
      throw new EntraError(
        400,
        'invalid_request',
        50034,
        'The user account does not exist in the directory.',
      )
    }
    const tenantId = tenant?.id ?? user.tenantId
    const code = randomToken(64)
    core.authCodes.set(code, {
      clientId: client.clientId,
      redirectUri,
      scope,
      userId: user.objectId,
      tenantId,
      codeChallenge: challenge,
      codeChallengeMethod: method,
      nonce: q.get('nonce'),
      expiresAt: now + core.settings.authorizationCodeLifetimeSeconds * 1000,
      redeemed: false,
    })
    core.sweep()
    const params: Record<string, string> = { code }
    if (state !== null) params.state = state
    params.session_state = crypto.randomUUID()
    return redirectWith(redirectUri, mode, params)
  } catch (e) {
    if (e instanceof EntraError) return fail(e)
    throw e
  }
}

function deviceCode(core: EmulatorCore, r: Incoming, segment: string): Response {
  const tenant = core.resolveTenant(segment)
  const clientId = clientIdOf(r)
  const scope = required(r, 'scope')
  const client = lookupClient(core, clientId, tenant)
  const parsed = parseScopes(scope)
  resolveResource(core, parsed.resource ?? GRAPH, tenant)
  const s = core.settings.deviceCode
  const grant: DeviceCodeGrant = {
    deviceCode: randomToken(96),
    userCode: userCode(),
    clientId: client.clientId,
    tenantSegment: segment,
    scope,
    expiresAt: core.now() + s.expiresInSeconds * 1000,
    interval: s.intervalSeconds,
    polls: 0,
    lastPollAt: null,
    status: 'pending',
    userId: null,
  }
  core.deviceCodes.set(grant.deviceCode, grant)
  core.sweep()
  const verificationUri = `${r.origin}/devicelogin`
  return json(
    {
      user_code: grant.userCode,
      device_code: grant.deviceCode,
      verification_uri: verificationUri,
      expires_in: s.expiresInSeconds,
      interval: s.intervalSeconds,
      message: `To sign in, use a web browser to open the page ${verificationUri} and enter the ` +
        `code ${grant.userCode} to authenticate.`,
    },
    200,
    tokenHeaders(r),
  )
}

async function tokenV1(core: EmulatorCore, r: Incoming, segment: string): Promise<Response> {
  const tenant = core.resolveTenant(segment)
  const grantType = required(r, 'grant_type')
  if (grantType !== 'client_credentials' && grantType !== 'refresh_token') {
    throw entraErrors.unsupportedGrant(grantType)
  }
  const clientId = clientIdOf(r)
  const resourceId = required(r, 'resource')
  const client = lookupClient(core, clientId, tenant)
  let principal
  let tenantId: string
  let refresh: string | undefined
  if (grantType === 'client_credentials') {
    if (!tenant) throw entraErrors.tenantRequired()
    const acr = await authenticateClient(core, r, client, tenant, segment)
    tenantId = tenant.id
    principal = {
      kind: 'app' as const,
      appId: client.clientId,
      objectId: client.objectId,
      roles: client.roles,
      acr,
    }
  } else {
    const rt = required(r, 'refresh_token')
    const { grant, user, acr, now } = await redeemRefreshToken(
      core,
      { r, client, tenant, segment },
      rt,
    )
    tenantId = tenant?.id ?? grant.tenantId
    principal = {
      kind: 'user' as const,
      appId: client.clientId,
      user,
      scp: delegatedScp(resourceId, ['.default']),
      acr,
    }
    refresh = randomToken(96)
    core.refreshTokens.set(refresh, {
      ...grant,
      issuedAt: now,
      expiresAt: now + core.settings.refreshTokenLifetimeSeconds * 1000,
    })
  }
  const resource = resolveResource(core, resourceId, core.tenants.get(tenantId) ?? null)
  const minted = await mintAccessToken(core, {
    origin: r.origin,
    tenantId,
    audience: resourceId,
    version: resource.tokenVersion,
    lifetimeSeconds: lifetimeOf(core, client),
    principal,
  })
  const left = minted.exp - Math.floor(core.now() / 1000)
  const body: Record<string, unknown> = {
    token_type: 'Bearer',
    expires_in: String(left),
    ext_expires_in: String(left),
    expires_on: String(minted.exp),
    not_before: String(minted.iat),
    resource: resourceId,
    access_token: minted.token,
  }
  if (refresh) {
    body.scope = 'user_impersonation'
    body.refresh_token = refresh
  }
  return json(body, 200, tokenHeaders(r))
}

function openIdConfiguration(
  core: EmulatorCore,
  r: Incoming,
  segment: string,
  version: 1 | 2,
): Response {
  const tenant = core.resolveTenant(segment, true)
  const o = r.origin
  const t = tenant ? tenant.id : segment.toLowerCase()
  const issuerTenant = tenant ? tenant.id : '{tenantid}'
  const v = version === 2 ? 'v2.0/' : ''
  const host = r.url.host
  const doc: Record<string, unknown> = {
    token_endpoint: `${o}/${t}/oauth2/${v}token`,
    token_endpoint_auth_methods_supported: [
      'client_secret_post',
      'private_key_jwt',
      'client_secret_basic',
    ],
    jwks_uri: `${o}/${t}/discovery/${v}keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    issuer: version === 2 ? `${o}/${issuerTenant}/v2.0` : `${o}/${issuerTenant}/`,
    request_uri_parameter_supported: false,
    authorization_endpoint: `${o}/${t}/oauth2/${v}authorize`,
    device_authorization_endpoint: `${o}/${t}/oauth2/${v}devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${o}/${t}/oauth2/${v}logout`,
    claims_supported: [
      'sub',
      'iss',
      'cloud_instance_name',
      'cloud_instance_host_name',
      'cloud_graph_host_name',
      'msgraph_host',
      'aud',
      'exp',
      'iat',
      'auth_time',
      'acr',
      'nonce',
      'preferred_username',
      'name',
      'tid',
      'ver',
      'at_hash',
      'c_hash',
      'email',
    ],
    code_challenge_methods_supported: ['S256', 'plain'],
    tenant_region_scope: 'EU',
    cloud_instance_name: host,
    cloud_graph_host_name: 'graph.windows.net',
    msgraph_host: 'graph.microsoft.com',
    rbac_url: 'https://pas.windows.net',
  }
  return json(doc, 200, {
    'cache-control': 'max-age=86400, private',
    'access-control-allow-origin': '*',
  })
}

function instanceDiscovery(r: Incoming): Response {
  const host = r.url.host
  let tenant = 'common'
  const endpoint = r.url.searchParams.get('authorization_endpoint')
  if (endpoint) {
    try {
      const seg = new URL(endpoint).pathname.split('/').filter(Boolean)[0]
      if (seg) tenant = seg
    } catch {
      // keep common
    }
  }
  return json(
    {
      tenant_discovery_endpoint: `${r.origin}/${tenant}/v2.0/.well-known/openid-configuration`,
      'api-version': '1.1',
      metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
    },
    200,
    { 'cache-control': 'max-age=86400, private', 'access-control-allow-origin': '*' },
  )
}

function deviceLoginPage(core: EmulatorCore, message = '', status = 200): Response {
  const users = [...core.users.values()].map((u) =>
    `<option value="${escapeHtml(u.username)}">${escapeHtml(u.name)} (${
      escapeHtml(u.username)
    })</option>`
  ).join('')
  return new Response(
    `<!DOCTYPE html><html><head><title>Enter code</title></head><body>` +
      `<h1>Enter code</h1><p>${escapeHtml(message)}</p>` +
      `<form method="POST" action="/devicelogin"><label>Code <input name="user_code" autofocus></label> ` +
      `<label>Sign in as <select name="username">${users}</select></label> ` +
      `<button type="submit">Next</button></form></body></html>`,
    {
      status,
      headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
    },
  )
}

/** Registers the Entra ID routes on the app. */
export function registerEntraRoutes(app: Hono, core: EmulatorCore): void {
  app.post(
    '/:tenant/oauth2/v2.0/token',
    route(core, 'entra.token', async (c, r) => {
      const segment = c.req.param('tenant')!
      const tenant = core.resolveTenant(segment)
      const grantType = required(r, 'grant_type')
      if (grantType === 'client_credentials') {
        return await clientCredentials(core, r, tenant, segment)
      }
      if (grantType === 'authorization_code') {
        return await authorizationCode(core, r, tenant, segment)
      }
      if (grantType === 'refresh_token') return await refreshToken(core, r, tenant, segment)
      if (DEVICE_CODE_GRANTS.has(grantType)) return await deviceCodeGrant(core, r, tenant, segment)
      throw entraErrors.unsupportedGrant(grantType)
    }),
  )
  app.post(
    '/:tenant/oauth2/token',
    route(core, 'entra.token.v1', (c, r) => tokenV1(core, r, c.req.param('tenant')!)),
  )
  app.post(
    '/:tenant/oauth2/v2.0/devicecode',
    route(core, 'entra.devicecode', (c, r) => deviceCode(core, r, c.req.param('tenant')!)),
  )
  app.get(
    '/:tenant/oauth2/v2.0/authorize',
    route(core, 'entra.authorize', (c, r) => authorize(core, r, c.req.param('tenant')!)),
  )
  app.get('/:tenant/oauth2/v2.0/logout', (c) => {
    const to = c.req.query('post_logout_redirect_uri')
    if (to && isLoopback(to)) return c.redirect(to, 302)
    return c.html('<!DOCTYPE html><html><body><p>You signed out of your account.</p></body></html>')
  })
  app.get(
    '/:tenant/v2.0/.well-known/openid-configuration',
    route(
      core,
      'entra.openid-configuration',
      (c, r) => openIdConfiguration(core, r, c.req.param('tenant')!, 2),
    ),
  )
  app.get(
    '/:tenant/.well-known/openid-configuration',
    route(
      core,
      'entra.openid-configuration',
      (c, r) => openIdConfiguration(core, r, c.req.param('tenant')!, 1),
    ),
  )
  app.get(
    '/:tenant/discovery/instance',
    route(core, 'entra.instance-discovery', (_c, r) => instanceDiscovery(r)),
  )
  const keys = route(core, 'entra.jwks', async (c) => {
    core.resolveTenant(c.req.param('tenant')!, true)
    return json(await core.keys.jwks(), 200, {
      'cache-control': 'max-age=86400, private',
      'access-control-allow-origin': '*',
    })
  })
  app.get('/:tenant/discovery/v2.0/keys', keys)
  app.get('/:tenant/discovery/keys', keys)
  app.get('/devicelogin', route(core, 'entra.devicelogin', () => deviceLoginPage(core)))
  app.post(
    '/devicelogin',
    route(core, 'entra.devicelogin', (_c, r) => {
      const code = r.form.get('user_code') ?? ''
      const username = r.form.get('username') || undefined
      if (username && !core.findUser(username)) {
        return deviceLoginPage(core, 'That account does not exist.', 400)
      }
      if (!approveDeviceCode(core, code, username)) {
        return deviceLoginPage(core, 'That code is not valid or has expired. Try again.', 400)
      }
      return new Response(
        '<!DOCTYPE html><html><body><h1>You have signed in</h1><p>You may now close this window.</p></body></html>',
        { headers: { 'content-type': 'text/html; charset=utf-8' } },
      )
    }),
  )
  app.get('/error', (c) => {
    const code = c.req.query('code') ?? ''
    return c.html(
      `<!DOCTYPE html><html><body><h1>AADSTS${escapeHtml(code)}</h1>` +
        '<p>This is the identity emulator. See workers/emulator/README.md for what each code means here.</p></body></html>',
    )
  })
}
