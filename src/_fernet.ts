// Fernet (the published format, https://github.com/fernet/spec) with Web Crypto only, plus the
// PBKDF2 key derivation an Azure ML run uses for its shared, encrypted run-token files.
//
// token = base64url(0x80 | timestamp (8 bytes, big-endian seconds) | IV (16) | ciphertext | HMAC (32))
// key   = base64url(signing key (16 bytes) | encryption key (16 bytes))
// The HMAC-SHA256 (first key half) covers everything before it and is verified, in constant time
// by `crypto.subtle.verify`, before anything is decrypted; AES-128-CBC (second half) with PKCS#7.
import { AmlAuthError } from './errors.ts'
import { _b64, _unb64 } from './jwt.ts'

const VERSION = 0x80
const HEADER = 1 + 8 + 16
const MAC = 32
const BLOCK = 16
const enc = /* @__PURE__ */ new TextEncoder()
const B64URL_RE = /^[A-Za-z0-9_-]*={0,2}$/

/** A Fernet key, imported once: the HMAC key and the AES key. */
export interface _FernetKey {
  /** HMAC-SHA256 key (first 16 bytes of the Fernet key). */
  readonly sign: CryptoKey
  /** AES-128-CBC key (last 16 bytes of the Fernet key). */
  readonly encrypt: CryptoKey
}

/** URL-safe base64 with `=` padding, as Python's `base64.urlsafe_b64encode` writes it. */
export function _b64urlPadded(bytes: Uint8Array): string {
  return _b64(bytes).replace(/\+/g, '-').replace(/\//g, '_')
}

/** Bytes of URL-safe base64 (padding optional), or `undefined` when it is not that. */
function unb64url(s: string): Uint8Array<ArrayBuffer> | undefined {
  if (!B64URL_RE.test(s)) return undefined
  try {
    // `_unb64` refuses a length that no base64 has.
    return _unb64(s.replace(/=+$/, ''))
  } catch {
    return undefined
  }
}

/**
 * Imports a Fernet key: 32 bytes, or their URL-safe base64 (44 characters with padding).
 *
 * @throws {TypeError} when the key is not 32 bytes; the message never contains the key
 */
export async function _importFernetKey(key: string | Uint8Array): Promise<_FernetKey> {
  const raw = typeof key === 'string' ? unb64url(key.trim()) : key
  if (!(raw instanceof Uint8Array) || raw.length !== 32) {
    throw new TypeError('A Fernet key must be 32 bytes, or their URL-safe base64')
  }
  const bytes = new Uint8Array(raw)
  try {
    const [sign, encrypt] = await Promise.all([
      crypto.subtle.importKey(
        'raw',
        bytes.slice(0, 16),
        { name: 'HMAC', hash: 'SHA-256' },
        false,
        ['sign', 'verify'],
      ),
      crypto.subtle.importKey('raw', bytes.slice(16), { name: 'AES-CBC' }, false, [
        'encrypt',
        'decrypt',
      ]),
    ])
    return { sign, encrypt }
  } finally {
    bytes.fill(0)
  }
}

/**
 * Encrypts bytes or a UTF-8 string into a Fernet token (URL-safe base64 with padding): the core of
 * {@linkcode _fernetEncrypt}, without its argument checks.
 *
 * @param k the imported key
 * @param plaintext what to encrypt
 * @param ts the timestamp, whole seconds >= 0
 * @param iv the 16-byte IV (default: random; fixed only in tests)
 */
export async function _fernetSeal(
  k: _FernetKey,
  plaintext: string | Uint8Array,
  ts: number,
  iv: Uint8Array<ArrayBuffer> = crypto.getRandomValues(new Uint8Array(BLOCK)),
): Promise<string> {
  const data = typeof plaintext === 'string' ? enc.encode(plaintext) : plaintext
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: 'AES-CBC', iv },
      k.encrypt,
      data as Uint8Array<ArrayBuffer>,
    ),
  )
  const out = new Uint8Array(HEADER + ct.length + MAC)
  out[0] = VERSION
  new DataView(out.buffer).setBigUint64(1, BigInt(ts), false)
  out.set(iv, 9)
  out.set(ct, HEADER)
  const macAt = HEADER + ct.length
  out.set(new Uint8Array(await crypto.subtle.sign('HMAC', k.sign, out.subarray(0, macAt))), macAt)
  return _b64urlPadded(out)
}

/**
 * Verifies and decrypts a Fernet token: the core of {@linkcode _fernetDecrypt}, without a TTL.
 * The HMAC is checked (constant time) before decryption.
 *
 * @returns the plaintext bytes
 * @throws {AmlAuthError} `ERR_TOKEN_INVALID` for any malformed, tampered or foreign-key token
 */
export async function _fernetOpen(k: _FernetKey, token: string): Promise<Uint8Array> {
  const bytes = unb64url(token.trim())
  // A ciphertext that is not whole blocks fails the HMAC or, when signed so, the decryption.
  if (bytes === undefined || bytes.length < HEADER + BLOCK + MAC || bytes[0] !== VERSION) {
    throw invalid()
  }
  const macAt = bytes.length - MAC
  if (
    !await crypto.subtle.verify('HMAC', k.sign, bytes.subarray(macAt), bytes.subarray(0, macAt))
  ) {
    throw invalid()
  }
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: 'AES-CBC', iv: bytes.slice(9, HEADER) },
        k.encrypt,
        bytes.subarray(HEADER, macAt),
      ),
    )
  } catch {
    throw invalid()
  }
}

function invalid(): AmlAuthError {
  return new AmlAuthError(
    'ERR_TOKEN_INVALID',
    'The Fernet token is malformed, tampered with, or made with another key',
  )
}

async function keyOf(key: _FernetKey | string | Uint8Array): Promise<_FernetKey> {
  return typeof key === 'string' || key instanceof Uint8Array ? await _importFernetKey(key) : key
}

/** Options of {@linkcode _fernetEncrypt}; fixed values are for test vectors only. */
export interface _FernetEncryptOptions {
  /** Seconds since the epoch written into the token (default: now). */
  timestamp?: number
  /** The 16-byte IV (default: random). Never fix it outside tests. */
  iv?: Uint8Array
}

/**
 * Encrypts bytes or a UTF-8 string into a Fernet token (URL-safe base64 with padding).
 *
 * @throws {TypeError} for a bad key, IV or timestamp
 */
export async function _fernetEncrypt(
  key: _FernetKey | string | Uint8Array,
  plaintext: string | Uint8Array,
  options: _FernetEncryptOptions = {},
): Promise<string> {
  const k = await keyOf(key)
  const iv = options.iv === undefined ? undefined : new Uint8Array(options.iv)
  if (iv !== undefined && iv.length !== BLOCK) throw new TypeError('The Fernet IV must be 16 bytes')
  const ts = options.timestamp ?? Math.floor(Date.now() / 1000)
  if (!Number.isSafeInteger(ts) || ts < 0) {
    throw new TypeError('The Fernet timestamp must be whole seconds >= 0')
  }
  return await _fernetSeal(
    k,
    typeof plaintext === 'string' ? plaintext : new Uint8Array(plaintext),
    ts,
    iv,
  )
}

/** Options of {@linkcode _fernetDecrypt}. */
export interface _FernetDecryptOptions {
  /** Reject tokens older than this many seconds (default: no age limit, as Fernet without ttl). */
  ttlSeconds?: number
  /** Clock in epoch ms, used only with `ttlSeconds` (default `Date.now`). */
  now?: number
}

/** The timestamp (epoch seconds) of a Fernet token, without verifying it; `undefined` if malformed. */
export function _fernetTimestamp(token: string): number | undefined {
  const bytes = unb64url(token.trim())
  if (bytes === undefined || bytes.length < HEADER + BLOCK + MAC || bytes[0] !== VERSION) {
    return undefined
  }
  return Number(new DataView(bytes.buffer).getBigUint64(1, false))
}

/**
 * Verifies and decrypts a Fernet token. The HMAC is checked (constant time) before decryption.
 *
 * @returns the plaintext bytes
 * @throws {AmlAuthError} `ERR_TOKEN_INVALID` for any malformed, tampered, foreign-key or (with
 * `ttlSeconds`) expired token; the message never contains the token or key
 */
export async function _fernetDecrypt(
  key: _FernetKey | string | Uint8Array,
  token: string,
  options: _FernetDecryptOptions = {},
): Promise<Uint8Array> {
  const k = await keyOf(key)
  if (typeof token !== 'string') throw invalid()
  const plain = await _fernetOpen(k, token)
  if (options.ttlSeconds !== undefined) {
    const ts = _fernetTimestamp(token)!
    const nowSec = Math.floor((options.now ?? Date.now()) / 1000)
    // Fernet's rules: too old, or from more than 60 s in the future.
    if (ts + options.ttlSeconds < nowSec || nowSec + 60 < ts) throw invalid()
  }
  return plain
}

/** PBKDF2 iterations of the Azure ML run-token files. */
export const _RUN_TOKEN_PBKDF2_ITERATIONS = 100_000

/**
 * The Fernet key of an Azure ML run's shared token files: URL-safe base64 of
 * PBKDF2-HMAC-SHA256(password = UTF-8 `pass`, salt = SHA-256(UTF-8 `rand`), 100 000 iterations,
 * 32 bytes), i.e. the values of `AZUREML_RUN_TOKEN_PASS` and `AZUREML_RUN_TOKEN_RAND`.
 *
 * @returns the Fernet key string (44 characters)
 */
export async function _deriveRunTokenKey(
  pass: string,
  rand: string,
  iterations: number = _RUN_TOKEN_PBKDF2_ITERATIONS,
): Promise<string> {
  const salt = await crypto.subtle.digest('SHA-256', enc.encode(rand))
  const base = await crypto.subtle.importKey('raw', enc.encode(pass), 'PBKDF2', false, [
    'deriveBits',
  ])
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations },
    base,
    256,
  )
  return _b64urlPadded(new Uint8Array(bits))
}
