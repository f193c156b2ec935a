// JWT and base64url helpers. Decoding here never verifies: it only reads `exp`/`tid` of tokens we
// were handed, exactly as the Python SDK does with PyJWT `verify=False`.
import { AmlAuthError } from './errors.ts'

const enc = /* @__PURE__ */ new TextEncoder()
const dec = /* @__PURE__ */ new TextDecoder()

/** base64url of bytes or a UTF-8 string, without padding. */
export function _b64url(input: Uint8Array | ArrayBuffer | string): string {
  const bytes = typeof input === 'string'
    ? enc.encode(input)
    : input instanceof Uint8Array
    ? input
    : new Uint8Array(input)
  return _b64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** Standard base64 of bytes, with padding. */
export function _b64(bytes: Uint8Array): string {
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''))
}

/** Lower-case hex of bytes. */
export function _hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

/**
 * Bytes of a base64 or base64url string (padding optional: `atob` decodes "forgivingly", as the
 * HTML standard says). Throws on bad input.
 */
export function _unb64(s: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(
    atob(s.replace(/-/g, '+').replace(/_/g, '/').replace(/\s+/g, '')),
    (c) => c.charCodeAt(0),
  )
}

/** Claims of a JWT we only read (never trust). */
export interface _JwtClaims {
  exp?: number
  tid?: string
  [claim: string]: unknown
}

/**
 * Decodes the payload of a compact JWT without verifying it.
 *
 * @throws {AmlAuthError} `ERR_TOKEN_INVALID` when the string is not a JWT; the message never
 * contains the token.
 */
export function _decodeJwt(token: string, what = 'token'): _JwtClaims {
  const parts = token.split('.')
  try {
    const claims = JSON.parse(dec.decode(_unb64(parts[1]!)))
    if (parts.length === 3 && claims && typeof claims === 'object' && !Array.isArray(claims)) {
      return claims
    }
  } catch {
    // Reported below, without the token.
  }
  throw invalid(what, 'is not a JWT with a readable payload')
}

function invalid(what: string, problem: string): AmlAuthError {
  return new AmlAuthError(
    'ERR_TOKEN_INVALID',
    `The ${what} ${problem}, so its expiry cannot be read; pass the expiry explicitly`,
  )
}

/** `exp` (epoch seconds) of a JWT, or a typed error when it has none. */
export function _jwtExpiry(token: string, what = 'token'): number {
  const { exp } = _decodeJwt(token, what)
  if (!Number.isFinite(exp)) throw invalid(what, 'has no numeric exp claim')
  return exp as number
}
