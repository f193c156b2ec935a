/**
 * The optional second tier of the token cache: an async key/value store shared across isolates
 * or processes (Workers KV, a Durable Object, Deno KV, Redis...). The cache encrypts every value
 * with AES-GCM before it reaches the store, so a store only ever sees ciphertext.
 *
 * @module
 */
import { AccessToken } from './access_token.ts'
import type { _Tier } from './token_cache.ts'
import { _b64, _hex, _unb64 } from './jwt.ts'

/**
 * An async key/value store. Keys are opaque hex strings; values are opaque ciphertext.
 *
 * @example A Workers KV adapter
 * ```ts
 * import type { TokenStore } from '@aml-edge/auth'
 *
 * interface KV {
 *   get(key: string): Promise<string | null>
 *   put(key: string, value: string, opts?: { expiration?: number }): Promise<void>
 *   delete(key: string): Promise<void>
 * }
 * function kvStore(kv: KV): TokenStore {
 *   return {
 *     get: async (key) => (await kv.get(key)) ?? undefined,
 *     set: (key, value, { expiresAt }) => kv.put(key, value, { expiration: Math.floor(expiresAt / 1000) }),
 *     delete: (key) => kv.delete(key),
 *   }
 * }
 * ```
 */
export interface TokenStore {
  /** The stored value, or `undefined`. */
  get(key: string): Promise<string | undefined>
  /** Stores a value until `expiresAt` (epoch ms); the store may drop it earlier. */
  set(key: string, value: string, options: { expiresAt: number }): Promise<void>
  /** Removes a value. */
  delete(key: string): Promise<void>
}

/**
 * An in-memory {@linkcode TokenStore}, for tests and single-process use. Expired values are
 * dropped when read.
 *
 * @param now clock in ms (default `Date.now`)
 * @returns a store
 *
 * @example Share one store between two caches
 * ```ts
 * import { createTokenCache, memoryTokenStore } from '@aml-edge/auth'
 *
 * const store = memoryTokenStore()
 * const key = crypto.getRandomValues(new Uint8Array(32))
 * const a = createTokenCache({ store, key })
 * const b = createTokenCache({ store, key })
 * ```
 */
export function memoryTokenStore(
  now: () => number = Date.now,
): TokenStore & { readonly size: number } {
  const map = new Map<string, { value: string; expiresAt: number }>()
  return {
    get size() {
      return map.size
    },
    get(key) {
      const e = map.get(key)
      if (e && e.expiresAt <= now()) map.delete(key)
      return Promise.resolve(e && e.expiresAt > now() ? e.value : undefined)
    },
    set(key, value, { expiresAt }) {
      map.set(key, { value, expiresAt })
      return Promise.resolve()
    },
    delete(key) {
      map.delete(key)
      return Promise.resolve()
    },
  }
}

/** A user-supplied AES key: a `CryptoKey` for AES-GCM, or 16/24/32 raw bytes. */
export type StoreKey = CryptoKey | Uint8Array

const enc = /* @__PURE__ */ new TextEncoder()
const dec = /* @__PURE__ */ new TextDecoder()

/**
 * Checks a store key where it is given (construction time, synchronously): 16, 24 or 32 bytes,
 * or an AES-GCM `CryptoKey` that may encrypt and decrypt.
 *
 * @throws {RangeError} for a byte key of another length; {TypeError} for anything else
 */
export function _checkStoreKey(key: unknown, option: string): StoreKey {
  if (key instanceof Uint8Array) {
    if (![16, 24, 32].includes(key.byteLength)) {
      throw new RangeError(`${option} must be 16, 24 or 32 bytes for AES-GCM`)
    }
    return key
  }
  if (
    typeof CryptoKey !== 'undefined' && key instanceof CryptoKey &&
    key.algorithm.name === 'AES-GCM' && key.usages.includes('encrypt') &&
    key.usages.includes('decrypt')
  ) {
    return key
  }
  throw new TypeError(`${option} must be 16, 24 or 32 random bytes or an AES-GCM CryptoKey`)
}

/** Imports the user's key once (checked first with {@linkcode _checkStoreKey}). */
export async function _importStoreKey(key: StoreKey): Promise<CryptoKey> {
  if (key instanceof Uint8Array) {
    return await crypto.subtle.importKey('raw', key.slice(), 'AES-GCM', false, [
      'encrypt',
      'decrypt',
    ])
  }
  return key
}

/** AES-GCM encrypt with a random 96-bit IV; the store key is bound as additional data. */
export async function _seal(key: CryptoKey, name: string, plain: string): Promise<string> {
  const iv = crypto.getRandomValues(new Uint8Array(12))
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: enc.encode(name) },
      key,
      enc.encode(plain),
    ),
  )
  const out = new Uint8Array(12 + ct.byteLength)
  out.set(iv)
  out.set(ct, 12)
  return 'v1.' + _b64(out)
}

/** Decrypts what {@linkcode _seal} wrote; `undefined` for anything tampered with or foreign. */
export async function _open(
  key: CryptoKey,
  name: string,
  sealed: string,
): Promise<string | undefined> {
  if (!sealed.startsWith('v1.')) return undefined
  try {
    const all = _unb64(sealed.slice(3))
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: all.subarray(0, 12), additionalData: enc.encode(name) },
      key,
      all.subarray(12),
    )
    return dec.decode(plain)
  } catch {
    return undefined
  }
}

/** SHA-256 hex of a string: store keys never reveal client ids, tenants or scopes. */
export async function _hashKey(s: string): Promise<string> {
  return _hex(new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(s))))
}

/**
 * The second tier of a token cache (`createTokenCache({ store, key })`): names are SHA-256 hashes
 * of identity and scope, values AES-GCM sealed under `key`. A stored token is taken only while it
 * is before its own refresh point (`refreshAt`, the cache's rule) and over a minute from expiry.
 * A failing store never fails authentication: it is an optimisation.
 *
 * @throws {TypeError} when `key` is missing or not a key; {RangeError} for a byte key of a bad length
 */
export function _storeTier(
  store: TokenStore,
  key: StoreKey | undefined,
  refreshAt: (t: AccessToken, now: number) => number,
): _Tier {
  if (key === undefined) {
    throw new TypeError('key is required with store: values in a shared store are always encrypted')
  }
  const k = _importStoreKey(_checkStoreKey(key, 'key'))
  k.catch(() => {})
  return async (id, now, load, useStore) => {
    const name = await _hashKey(id)
    const ck = await k
    if (useStore) {
      try {
        const plain = await _open(ck, name, (await store.get(name)) ?? '')
        if (plain !== undefined) {
          const [token, expiresOn, refreshAfter] = JSON.parse(plain)
          const t = new AccessToken(token, expiresOn, refreshAfter ?? undefined)
          const n = now()
          if (n < refreshAt(t, n) && t.expiresOnTimestamp - n > 60_000) return t
        }
      } catch {
        // Unreadable or foreign: load a new token.
      }
    }
    const token = await load()
    const value = JSON.stringify([token.token, token.expiresOn, token.refreshAfterTimestamp])
    try {
      await store.set(name, await _seal(ck, name, value), { expiresAt: token.expiresOnTimestamp })
    } catch {
      // The shared tier is an optimisation: a failing store must not fail authentication.
    }
    return token
  }
}
