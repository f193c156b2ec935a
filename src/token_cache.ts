/**
 * The one token cache every credential uses. Rules (SPEC 2):
 * - single flight: concurrent callers for one key share one upstream request;
 * - a token is fresh until its refresh point: `refresh_in`/`refresh_on` if sent, else half its
 *   life for tokens over 2 h, 80 % of its life for tokens under 10 min, else 5 min before expiry;
 * - between the refresh point and the hard point (expiry minus 30 s, or minus half the gap from
 *   the refresh point for short tokens) callers get the cached token at once while one background
 *   refresh runs; a failed background refresh keeps the token and is retried no sooner than 30 s;
 * - past the hard point callers wait for a new token.
 * A hit returns a promise resolved once, when the token was stored: no allocation, no I/O.
 *
 * @module
 */
import { AccessToken } from './access_token.ts'
import {
  _checkStoreKey,
  _hashKey,
  _importStoreKey,
  _open,
  _seal,
  type StoreKey,
  type TokenStore,
} from './token_store.ts'

/** Options of {@linkcode createTokenCache}. */
export interface TokenCacheOptions {
  /** An async second tier shared across isolates; values are AES-GCM encrypted under `key`. */
  store?: TokenStore
  /** Encryption key for `store` values (required with `store`). */
  key?: StoreKey
}

/**
 * A token cache. Credentials share {@linkcode defaultTokenCache} unless given their own through
 * the `cache` option (tests, or isolation between tenants of a multi-tenant app).
 *
 * @example Clear cached tokens
 * ```ts
 * import { createTokenCache } from '@aml-edge/auth'
 * const cache = createTokenCache()
 * cache.clear()
 * console.assert(cache.size === 0)
 * ```
 */
export interface TokenCache {
  /** Number of cached entries across all credentials. */
  readonly size: number
  /** Drops every cached token (in-flight requests still complete for their callers). */
  clear(): void
}

const MIN = 60_000
const BACKGROUND_RETRY_MS = 30_000

/** Loads a token upstream. */
export type _Loader = () => Promise<AccessToken>

class Entry {
  token: AccessToken | undefined = undefined
  resolved: Promise<AccessToken> | undefined = undefined
  refreshAt = 0
  hardAt = 0
  inflight: Promise<AccessToken> | undefined = undefined
  nextTry = 0
}

/**
 * The refresh and hard points of a token obtained at `now` (ms).
 */
export function _refreshPoints(t: AccessToken, now: number): { refreshAt: number; hardAt: number } {
  const exp = t.expiresOnTimestamp
  const life = exp - now
  let refreshAt: number
  if (t.refreshAfterTimestamp !== undefined) refreshAt = t.refreshAfterTimestamp
  else if (life > 120 * MIN) refreshAt = now + life / 2
  else if (life < 10 * MIN) refreshAt = now + life * 0.8
  else refreshAt = exp - 5 * MIN
  const hardAt = exp - Math.min(30_000, Math.max(0, (exp - refreshAt) / 2))
  return { refreshAt: Math.min(refreshAt, hardAt), hardAt }
}

/** The entries of one credential identity. */
export class _Partition {
  readonly #entries = new Map<string, Entry>()
  readonly #cache: _Cache
  readonly #identity: string

  constructor(cache: _Cache, identity: string) {
    this.#cache = cache
    this.#identity = identity
  }

  /** The hot path: the cached promise if the token is before its refresh point, else undefined. */
  hit(key: string, now: number): Promise<AccessToken> | undefined {
    const e = this.#entries.get(key)
    return e !== undefined && now < e.refreshAt ? e.resolved : undefined
  }

  /**
   * Full lookup. `force` skips the freshness check (claims challenges) but still joins a request
   * already in flight for the key.
   */
  get(key: string, now: () => number, load: _Loader, force = false): Promise<AccessToken> {
    let e = this.#entries.get(key)
    if (e === undefined) {
      e = new Entry()
      this.#entries.set(key, e)
      this.#cache.count++
    } else if (!force && e.resolved !== undefined) {
      const t = now()
      if (t < e.refreshAt) return e.resolved
      if (t < e.hardAt) {
        if (e.inflight === undefined && t >= e.nextTry) this.#background(e, key, now, load)
        return e.resolved
      }
    }
    return e.inflight ?? this.#start(e, key, now, load, !force)
  }

  /** Stores a token obtained elsewhere (e.g. the answer to a claims challenge). */
  put(key: string, token: AccessToken, now: number): void {
    let e = this.#entries.get(key)
    if (e === undefined) {
      e = new Entry()
      this.#entries.set(key, e)
      this.#cache.count++
    }
    this.#store(e, token, now)
  }

  /** Number of keys held. */
  get size(): number {
    return this.#entries.size
  }

  /** Forgets one key. */
  delete(key: string): void {
    if (this.#entries.delete(key)) this.#cache.count--
  }

  #store(e: Entry, token: AccessToken, now: number): void {
    const { refreshAt, hardAt } = _refreshPoints(token, now)
    e.token = token
    e.resolved = Promise.resolve(token)
    e.refreshAt = refreshAt
    e.hardAt = hardAt
    e.nextTry = 0
  }

  #start(
    e: Entry,
    key: string,
    now: () => number,
    load: _Loader,
    useStore: boolean,
  ): Promise<AccessToken> {
    const p = this.#load(key, now, load, useStore).then(
      (token) => {
        if (e.inflight === p) e.inflight = undefined
        this.#store(e, token, now())
        return token
      },
      (err) => {
        if (e.inflight === p) e.inflight = undefined
        throw err
      },
    )
    e.inflight = p
    return p
  }

  #background(e: Entry, key: string, now: () => number, load: _Loader): void {
    const p = this.#start(e, key, now, load, false)
    // A failed background refresh keeps the valid token and waits before trying again.
    p.catch(() => {
      e.nextTry = now() + BACKGROUND_RETRY_MS
    })
  }

  async #load(
    key: string,
    now: () => number,
    load: _Loader,
    useStore: boolean,
  ): Promise<AccessToken> {
    const tier = this.#cache.tier
    if (!tier) return await load()
    const name = await _hashKey(this.#identity + '\n' + key)
    const k = await tier.key
    if (useStore) {
      const found = await readTier(tier.store, k, name, now())
      if (found) return found
    }
    const token = await load()
    const value = JSON.stringify([
      token.token,
      token.expiresOn,
      token.refreshAfterTimestamp ?? null,
    ])
    try {
      await tier.store.set(name, await _seal(k, name, value), {
        expiresAt: token.expiresOnTimestamp,
      })
    } catch {
      // The shared tier is an optimisation: a failing store must not fail authentication.
    }
    return token
  }
}

async function readTier(
  store: TokenStore,
  key: CryptoKey,
  name: string,
  now: number,
): Promise<AccessToken | undefined> {
  try {
    const sealed = await store.get(name)
    if (sealed === undefined) return undefined
    const plain = await _open(key, name, sealed)
    if (plain === undefined) return undefined
    const [token, expiresOn, refreshAfter] = JSON.parse(plain) as [string, number, number | null]
    const t = new AccessToken(token, expiresOn, refreshAfter ?? undefined)
    // Only take a token from the shared tier while it is still before its own refresh point.
    return now < _refreshPoints(t, now).refreshAt && t.expiresOnTimestamp - now > 60_000
      ? t
      : undefined
  } catch {
    return undefined
  }
}

/** Implementation behind {@linkcode TokenCache}. */
export class _Cache implements TokenCache {
  readonly partitions = new Map<string, _Partition>()
  readonly tier: { store: TokenStore; key: Promise<CryptoKey> } | undefined
  count = 0

  constructor(options: TokenCacheOptions = {}) {
    if (options.store !== undefined) {
      if (options.key === undefined) {
        throw new TypeError(
          'key is required with store: values in a shared store are always encrypted',
        )
      }
      const key = _importStoreKey(_checkStoreKey(options.key, 'key'))
      key.catch(() => {})
      this.tier = { store: options.store, key }
    }
  }

  get size(): number {
    return this.count
  }

  clear(): void {
    this.partitions.clear()
    this.count = 0
  }

  /** Forgets every entry of one credential identity. */
  drop(identity: string): void {
    const p = this.partitions.get(identity)
    if (p === undefined) return
    this.count -= p.size
    this.partitions.delete(identity)
  }

  /** Inspection shows the size only: identities name clients and fingerprint their secrets. */
  [Symbol.for('Deno.customInspect')](): string {
    return `TokenCache(size=${this.count})`
  }

  /** Node util.inspect view: the size only. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `TokenCache(size=${this.count})`
  }

  /** A JSON view: the size only. */
  toJSON(): Record<string, unknown> {
    return { size: this.count }
  }

  /** The partition for one credential identity. */
  partition(identity: string): _Partition {
    let p = this.partitions.get(identity)
    if (p === undefined) {
      p = new _Partition(this, identity)
      this.partitions.set(identity, p)
    }
    return p
  }
}

/**
 * Creates a token cache, optionally backed by an encrypted shared store.
 *
 * @param options the optional second tier and its key
 * @returns a cache to pass as the `cache` option of credentials
 * @throws {TypeError} when `store` is given without `key`
 *
 * @example A cache shared through an encrypted store
 * ```ts
 * import { createTokenCache, memoryTokenStore, TokenAuthentication } from '@aml-edge/auth'
 *
 * const cache = createTokenCache({
 *   store: memoryTokenStore(),
 *   key: crypto.getRandomValues(new Uint8Array(32)),
 * })
 * const auth = new TokenAuthentication(() => ({ token: 'opaque', expiresOn: 4102444800 }), { cache })
 * ```
 */
export function createTokenCache(options: TokenCacheOptions = {}): TokenCache {
  return new _Cache(options)
}

/**
 * The process-wide cache every credential uses by default.
 *
 * @example Count cached tokens
 * ```ts
 * import { defaultTokenCache } from '@aml-edge/auth'
 * console.assert(defaultTokenCache.size >= 0)
 * ```
 */
export const defaultTokenCache: TokenCache = new _Cache()
