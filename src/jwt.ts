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
  let bin = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  }
  return btoa(bin)
}

/** Lower-case hex of bytes. */
export function _hex(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

/** Bytes of a base64 or base64url string (padding optional). Throws a TypeError on bad input. */
export function _unb64(s: string): Uint8Array<ArrayBuffer> {
  const norm = s.replace(/-/g, '+').replace(/_/g, '/').replace(/\s+/g, '')
  const padded = norm + '='.repeat((4 - (norm.length % 4)) % 4)
  const bin = atob(padded)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
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
  if (parts.length !== 3 || !parts[1]) {
    throw new AmlAuthError(
      'ERR_TOKEN_INVALID',
      `The ${what} is not a JWT, so its expiry cannot be read; pass the expiry explicitly`,
    )
  }
  try {
    const claims = JSON.parse(dec.decode(_unb64(parts[1])))
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) throw new Error()
    return claims as _JwtClaims
  } catch {
    throw new AmlAuthError(
      'ERR_TOKEN_INVALID',
      `The ${what} has an unreadable JWT payload; pass the expiry explicitly`,
    )
  }
}

/** `exp` (epoch seconds) of a JWT, or a typed error when it has none. */
export function _jwtExpiry(token: string, what = 'token'): number {
  const { exp } = _decodeJwt(token, what)
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw new AmlAuthError(
      'ERR_TOKEN_INVALID',
      `The ${what} has no numeric exp claim; pass the expiry explicitly`,
    )
  }
  return exp
}
