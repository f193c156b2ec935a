/**
 * Client authentication at the token endpoint: client secrets (form or HTTP Basic), certificate
 * client assertions checked as Entra checks them, and federated assertions.
 *
 * @module
 */
import { base64url, compactVerify, createLocalJWKSet, errors, importX509, jwtVerify } from 'jose'
import type { Client, ClientCertificate, EmulatorCore, Tenant } from './state.ts'
import { entraErrors } from './entra_errors.ts'
import type { Incoming } from './http.ts'
import { constantTimeEqual, decodeJwt, digest } from './util.ts'

/** `client_assertion_type` of JWT client assertions. */
export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** `appidacr`/`azpacr`: 0 public client, 1 secret, 2 certificate or assertion. */
export type ClientAuthLevel = '0' | '1' | '2'

const thumbprints = new WeakMap<ClientCertificate, Promise<{ sha1: string; sha256: string }>>()
const certKeys = new WeakMap<ClientCertificate, Map<string, Promise<CryptoKey>>>()

/** base64url SHA-1 and SHA-256 thumbprints of a certificate's DER. */
export function certificateThumbprints(
  cert: ClientCertificate,
): Promise<{ sha1: string; sha256: string }> {
  let p = thumbprints.get(cert)
  if (!p) {
    p = (async () => ({
      sha1: base64url.encode(await digest('SHA-1', cert.der)),
      sha256: base64url.encode(await digest('SHA-256', cert.der)),
    }))()
    thumbprints.set(cert, p)
  }
  return p
}

function certKey(cert: ClientCertificate, alg: string): Promise<CryptoKey> {
  let m = certKeys.get(cert)
  if (!m) certKeys.set(cert, m = new Map())
  let p = m.get(alg)
  if (!p) {
    p = importX509(cert.pem, alg)
    m.set(alg, p)
  }
  return p
}

/** Client id and secret from an `Authorization: Basic` header, if any. */
export function basicCredentials(request: Request): { id: string; secret: string } | null {
  const h = request.headers.get('authorization')
  if (!h || !/^basic /i.test(h)) return null
  try {
    const raw = atob(h.slice(6).trim())
    const i = raw.indexOf(':')
    if (i < 0) return null
    return {
      id: decodeURIComponent(raw.slice(0, i)),
      secret: decodeURIComponent(raw.slice(i + 1)),
    }
  } catch {
    return null
  }
}

/** The audiences a certificate assertion may carry for this tenant. */
function acceptedAudiences(origin: string, tenant: Tenant | null, segment: string): Set<string> {
  const names = new Set([segment.toLowerCase()])
  if (tenant) {
    names.add(tenant.id)
    for (const d of tenant.domains) names.add(d)
  }
  const out = new Set<string>()
  for (const n of names) {
    out.add(`${origin}/${n}/oauth2/v2.0/token`.toLowerCase())
    out.add(`${origin}/${n}/oauth2/token`.toLowerCase())
    out.add(`${origin}/${n}/v2.0`.toLowerCase())
    out.add(`${origin}/${n}/`.toLowerCase())
  }
  return out
}

/** Authenticates the client of a token request; throws the Entra error Entra would return. */
export async function authenticateClient(
  core: EmulatorCore,
  r: Incoming,
  client: Client,
  tenant: Tenant | null,
  segment: string,
): Promise<ClientAuthLevel> {
  const basic = basicCredentials(r.request)
  const secret = r.form.get('client_secret') ?? basic?.secret ?? null
  const assertion = r.form.get('client_assertion')
  if (client.publicClient) {
    if (secret || assertion) throw entraErrors.publicClientWithCredential()
    return '0'
  }
  if (!secret && !assertion) throw entraErrors.credentialRequired()
  if (secret) {
    let ok = false
    for (const s of client.secrets) ok = constantTimeEqual(s, secret) || ok
    if (!ok) throw entraErrors.badSecret(client.clientId)
    return '1'
  }
  const type = r.form.get('client_assertion_type')
  if (!type) throw entraErrors.missingParameter('client_assertion_type')
  if (type !== JWT_BEARER) {
    throw entraErrors.malformedAssertion(`client_assertion_type must be '${JWT_BEARER}'.`)
  }
  const decoded = decodeJwt(assertion!)
  if (!decoded) {
    throw entraErrors.malformedAssertion('The client_assertion is not a compact JWS.')
  }
  const { header, claims } = decoded
  const iss = typeof claims.iss === 'string' ? claims.iss : ''
  if (iss.toLowerCase() !== client.clientId && client.federatedCredentials.length) {
    await verifyFederated(core, client, assertion!, claims)
    return '2'
  }
  if (
    iss.toLowerCase() !== client.clientId ||
    typeof claims.sub !== 'string' || claims.sub.toLowerCase() !== client.clientId
  ) {
    throw entraErrors.assertionSubject()
  }
  const alg = header.alg
  if (alg !== 'PS256' && alg !== 'RS256') {
    throw entraErrors.badSignature(
      `The algorithm '${String(alg)}' is not supported; use PS256 or RS256.`,
    )
  }
  const s256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : null
  const s1 = typeof header.x5t === 'string' ? header.x5t : null
  if (!s256 && !s1) {
    throw entraErrors.keyNotFound('(no x5t or x5t#S256 header)', client.clientId)
  }
  let cert: ClientCertificate | undefined
  for (const c of client.certificates) {
    const t = await certificateThumbprints(c)
    if ((s256 && t.sha256 === s256) || (!s256 && t.sha1 === s1)) {
      cert = c
      break
    }
  }
  if (!cert) throw entraErrors.keyNotFound((s256 ?? s1)!, client.clientId)
  try {
    await compactVerify(assertion!, await certKey(cert, alg), { algorithms: [alg] })
  } catch {
    throw entraErrors.badSignature()
  }
  const accepted = acceptedAudiences(r.origin, tenant, segment)
  const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
  if (!auds.some((a) => typeof a === 'string' && accepted.has(a.toLowerCase()))) {
    throw entraErrors.assertionAudience()
  }
  const now = core.now()
  const skew = core.settings.clockSkewSeconds
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined
  const nbf = typeof claims.nbf === 'number' ? claims.nbf : undefined
  if (
    exp === undefined || now / 1000 > exp + skew || (nbf !== undefined && now / 1000 + skew < nbf)
  ) {
    throw entraErrors.assertionTime(now, nbf, exp)
  }
  if (typeof claims.jti !== 'string' || !claims.jti) {
    throw entraErrors.malformedAssertion('The client assertion must have a jti claim.')
  }
  if (!core.useJti(client.clientId, claims.jti, exp * 1000)) throw entraErrors.assertionReplayed()
  return '2'
}

async function verifyFederated(
  core: EmulatorCore,
  client: Client,
  assertion: string,
  claims: Record<string, unknown>,
): Promise<void> {
  const iss = String(claims.iss ?? '')
  const sub = String(claims.sub ?? '')
  const aud = Array.isArray(claims.aud) ? claims.aud.map(String) : [String(claims.aud ?? '')]
  const fc = client.federatedCredentials.find((f) =>
    f.issuer === iss && f.subject === sub &&
    (f.audiences ?? ['api://AzureADTokenExchange']).some((a) => aud.includes(a))
  )
  if (!fc) throw entraErrors.federatedNoMatch(iss, sub, aud.join(', '))
  try {
    await jwtVerify(
      assertion,
      createLocalJWKSet(fc.jwks as Parameters<typeof createLocalJWKSet>[0]),
      {
        currentDate: new Date(core.now()),
        clockTolerance: core.settings.clockSkewSeconds,
      },
    )
  } catch (e) {
    if (e instanceof errors.JWTExpired || e instanceof errors.JWTClaimValidationFailed) {
      throw entraErrors.assertionTime(
        core.now(),
        typeof claims.nbf === 'number' ? claims.nbf : undefined,
        typeof claims.exp === 'number' ? claims.exp : undefined,
      )
    }
    throw entraErrors.badSignature()
  }
}
