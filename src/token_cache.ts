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
import type { AccessToken } from './access_token.ts'
import { _inspectAsString } from './_inspect.ts'
import { _storeTier, type StoreKey, type TokenStore } from './token_store.ts'

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

/** Loads a token upstream. */
export type _Loader = () => Promise<AccessToken>

/**
 * The second tier of a cache (see `_storeTier`): loads the token named `name` (identity and key),
 * from the shared store when `useStore` and it holds a fresh one, else through `load`, storing
 * the result.
 */
export type _Tier = (
  name: string,
  now: () => number,
  load: _Loader,
  useStore: boolean,
) => Promise<AccessToken>

// Entry keys are short on purpose: the cache ships in every bundle, and property names are not
// minified.
interface Entry {
  /** The current token, resolved. */
  ready?: Promise<AccessToken>
  /** The request in flight, if any. */
  busy?: Promise<AccessToken> | undefined
  refreshAt: number
  hardAt: number
  nextTry: number
}

/**
 * The refresh and hard points of a token obtained at `now` (ms).
 */
export function _refreshPoints(t: AccessToken, now: number): { refreshAt: number; hardAt: number } {
  const exp = t.expiresOnTimestamp
  const life = exp - now
  const refreshAt = t.refreshAfterTimestamp ??
    (life > 120 * MIN ? now + life / 2 : life < 10 * MIN ? now + life * 0.8 : exp - 5 * MIN)
  const hardAt = exp - Math.min(30_000, Math.max(0, (exp - refreshAt) / 2))
  return { refreshAt: Math.min(refreshAt, hardAt), hardAt }
}

/** The entries of one credential identity. */
export class _Partition {
  readonly #entries = new Map<string, Entry>()
  readonly #tier: _Tier | undefined
  readonly #identity: string

  constructor(tier: _Tier | undefined, identity: string) {
    this.#tier = tier
    this.#identity = identity
  }

  /** The hot path: the cached promise if the token is before its refresh point, else undefined. */
  hit(key: string, now: number): Promise<AccessToken> | undefined {
    const e = this.#entries.get(key)
    return e && now < e.refreshAt ? e.ready : undefined
  }

  /**
   * Full lookup. `force` skips the freshness check (claims challenges) but still joins a request
   * already in flight for the key.
   */
  get(key: string, now: () => number, load: _Loader, force = false): Promise<AccessToken> {
    const e = this.#entry(key)
    if (!force && e.ready) {
      const t = now()
      if (t < e.refreshAt) return e.ready
      if (t < e.hardAt) {
        // Background refresh: callers keep the valid token; a failure waits 30 s to retry.
        if (!e.busy && t >= e.nextTry) {
          this.#start(e, key, now, load, false).catch(() => e.nextTry = now() + 30_000)
        }
        return e.ready
      }
    }
    return e.busy ?? this.#start(e, key, now, load, !force)
  }

  /** Stores a token obtained elsewhere (e.g. the answer to a claims challenge). */
  put(key: string, token: AccessToken, now: number): void {
    store(this.#entry(key), token, now)
  }

  /** Number of keys held. */
  get size(): number {
    return this.#entries.size
  }

  /** Forgets one key. */
  delete(key: string): void {
    this.#entries.delete(key)
  }

  /** Forgets every key (in place, so that every credential holding this partition sees it). */
  clear(): void {
    this.#entries.clear()
  }

  #entry(key: string): Entry {
    let e = this.#entries.get(key)
    // An empty entry: its times are read only once it holds a token, and store() sets them.
    if (!e) this.#entries.set(key, e = {} as Entry)
    return e
  }

  #start(
    e: Entry,
    key: string,
    now: () => number,
    load: _Loader,
    useStore: boolean,
  ): Promise<AccessToken> {
    const tier = this.#tier
    const done = () => {
      if (e.busy === p) e.busy = undefined
    }
    const p: Promise<AccessToken> =
      (async () =>
        tier ? await tier(this.#identity + '\n' + key, now, load, useStore) : await load())()
        .then((token) => {
          done()
          store(e, token, now())
          return token
        }, (err) => {
          done()
          throw err
        })
    return e.busy = p
  }
}

function store(e: Entry, token: AccessToken, now: number): void {
  Object.assign(e, _refreshPoints(token, now), { ready: Promise.resolve(token), nextTry: 0 })
}

/** Implementation behind {@linkcode TokenCache}. */
export class _Cache implements TokenCache {
  /** One partition per credential identity; partitions are emptied in place, never replaced. */
  readonly #partitions = new Map<string, _Partition>()
  /** The shared second tier, if any. */
  readonly #tier: _Tier | undefined

  constructor(tier?: _Tier) {
    this.#tier = tier
  }

  get size(): number {
    let n = 0
    for (const p of this.#partitions.values()) n += p.size
    return n
  }

  clear(): void {
    for (const p of this.#partitions.values()) p.clear()
  }

  /** Forgets every entry of one credential identity. */
  drop(identity: string): void {
    this.#partitions.get(identity)?.clear()
  }

  /** The size only: identities name clients and fingerprint their secrets. */
  toString(): string {
    return `TokenCache(size=${this.size})`
  }

  /** A JSON view: the size only. */
  toJSON(): Record<string, unknown> {
    return { size: this.size }
  }

  /** The partition for one credential identity. */
  partition(identity: string): _Partition {
    let p = this.#partitions.get(identity)
    if (!p) this.#partitions.set(identity, p = new _Partition(this.#tier, identity))
    return p
  }
}
_inspectAsString(_Cache)

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
  return new _Cache(
    options.store === undefined
      ? undefined
      : _storeTier(options.store, options.key, (t, now) => _refreshPoints(t, now).refreshAt),
  )
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
