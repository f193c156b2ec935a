/**
 * Shared helpers of the emulator tests: form posts, token verification through the emulator's
 * JWKS, and client assertions signed with the fixture keys.
 *
 * @module
 */
import {
  base64url,
  createRemoteJWKSet,
  customFetch,
  importPKCS8,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose'
import { assert, assertEquals, assertMatch } from '@std/assert'
import type { RunningEmulator } from '../../../workers/emulator/serve.ts'

export const ARM_SCOPE = 'https://management.core.windows.net//.default'
export const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** POSTs a form and returns status, headers and the parsed JSON body (always consumed). */
export async function postForm(
  url: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body: new URLSearchParams(form), headers })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : {} }
}

/** GETs and returns status, headers and the body (JSON when it parses, else text). */
export async function get(
  url: string,
  headers: Record<string, string> = {},
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown>; text: string }> {
  const res = await fetch(url, { ...init, headers })
  const text = await res.text()
  let body: Record<string, unknown> = {}
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body, text }
}

/** Verifies a token with jose against the emulator's JWKS. */
export async function verifyToken(
  emu: RunningEmulator,
  token: string,
  tenant: string,
  opts: { audience?: string; issuer?: string; client?: Deno.HttpClient } = {},
): Promise<JWTPayload & Record<string, unknown>> {
  const client = opts.client
  const jwks = createRemoteJWKSet(new URL(emu.url(`/${tenant}/discovery/v2.0/keys`)), {
    ...(client
      ? { [customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, client }) }
      : {}),
  })
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: ['RS256'],
    ...(opts.audience ? { audience: opts.audience } : {}),
    ...(opts.issuer ? { issuer: opts.issuer } : {}),
  })
  assertEquals(protectedHeader.typ, 'JWT')
  assert(typeof protectedHeader.kid === 'string' && protectedHeader.kid.length > 0)
  return payload as JWTPayload & Record<string, unknown>
}

/** Asserts an Entra error body: status, error, AADSTS code and the description's tail. */
export function assertEntraError(
  res: { status: number; body: Record<string, unknown> },
  status: number,
  error: string,
  code: number,
): void {
  assertEquals(res.status, status, JSON.stringify(res.body))
  assertEquals(res.body.error, error)
  assertEquals(res.body.error_codes, [code])
  const d = String(res.body.error_description)
  assert(d.startsWith(`AADSTS${code}: `), d)
  assertMatch(
    d,
    /\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
  )
  assertMatch(String(res.body.timestamp), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/)
  assertMatch(String(res.body.trace_id), /^[0-9a-f-]{36}$/)
  assertMatch(String(res.body.correlation_id), /^[0-9a-f-]{36}$/)
  assert(String(res.body.error_uri).endsWith(`/error?code=${code}`))
}

function derOf(pem: string): Uint8Array<ArrayBuffer> {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem)!
  const bin = atob(m[1]!.replace(/\s+/g, ''))
  return Uint8Array.from(bin, (c) => c.charCodeAt(0))
}

/** base64url SHA-1 / SHA-256 thumbprints of the first certificate of a PEM. */
export async function thumbprints(pem: string): Promise<{ x5t: string; x5tS256: string }> {
  const der = derOf(pem)
  return {
    x5t: base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-1', der))),
    x5tS256: base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', der))),
  }
}

/** Signs a client assertion as Entra wants it, with overrides for the negative tests. */
export async function signAssertion(opts: {
  keyPem: string
  certPem: string
  clientId: string
  audience: string
  alg?: 'PS256' | 'RS256'
  header?: Record<string, unknown>
  claims?: Record<string, unknown>
  omitThumbprint?: boolean
}): Promise<string> {
  const alg = opts.alg ?? 'PS256'
  const key = await importPKCS8(opts.keyPem, alg)
  const t = await thumbprints(opts.certPem)
  const now = Math.floor(Date.now() / 1000)
  const header: Record<string, unknown> = { alg, typ: 'JWT' }
  if (!opts.omitThumbprint) {
    if (alg === 'PS256') header['x5t#S256'] = t.x5tS256
    else header.x5t = t.x5t
  }
  Object.assign(header, opts.header)
  return await new SignJWT({
    aud: opts.audience,
    iss: opts.clientId,
    sub: opts.clientId,
    jti: crypto.randomUUID(),
    nbf: now,
    exp: now + 600,
    ...opts.claims,
  })
    .setProtectedHeader(header as { alg: string })
    .sign(key)
}

/** Decodes a JWT's payload without verifying it. */
export function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(base64url.decode(token.split('.')[1]!)))
}

/** PKCE verifier and S256 challenge. */
export async function pkce(): Promise<{ verifier: string; challenge: string }> {
  const verifier = base64url.encode(crypto.getRandomValues(new Uint8Array(32)))
  const challenge = base64url.encode(
    new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))),
  )
  return { verifier, challenge }
}
