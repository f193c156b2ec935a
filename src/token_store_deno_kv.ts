/**
 * A {@linkcode TokenStore} on Deno KV, for sharing tokens and sign-ins across Deno processes and
 * Deno Deploy isolates. Values reach it already encrypted (AES-GCM) by the cache or credential.
 *
 * @module
 */
import { _openDenoKv, type DenoKvLike } from './env.ts'
import { AmlAuthError } from './errors.ts'
import type { TokenStore } from './token_store.ts'

export type { DenoKvLike } from './env.ts'

/** Options of {@linkcode denoKvTokenStore}. */
export interface DenoKvTokenStoreOptions {
  /** Key prefix in the database (default `["aml-edge-auth", "tokens"]`). */
  prefix?: readonly string[]
  /** Path of the database `Deno.openKv` opens when no `kv` is given (default: Deno's). */
  path?: string
  /** Clock in ms, for the entries' `expireIn` (default `Date.now`). */
  now?: () => number
}

/** A {@linkcode TokenStore} that can release the database it opened itself. */
export interface DenoKvTokenStore extends TokenStore {
  /** Closes the database if this store opened it (a `kv` passed in stays open). */
  close(): Promise<void>
}

/**
 * A {@linkcode TokenStore} backed by Deno KV. Entries expire with the value they hold
 * (`expireIn`), and Deno KV removes them itself.
 *
 * @param kv a `Deno.Kv` (or a promise of one); default: `Deno.openKv(options.path)`, opened now
 * @param options key prefix, database path, clock
 * @returns the store; `close()` closes the database only if the store opened it
 * @throws {AmlAuthError} `ERR_STORE` when no `kv` is given and Deno KV does not exist here
 *
 * @example Keep an interactive sign-in across runs of a CLI (needs `--unstable-kv`)
 * ```ts
 * import { denoKvTokenStore, InteractiveLoginAuthentication } from '@aml-edge/auth'
 *
 * async function credential(key: Uint8Array) {
 *   const kv = await Deno.openKv()
 *   return new InteractiveLoginAuthentication({
 *     force: true,
 *     tokenStore: denoKvTokenStore(kv),
 *     tokenStoreKey: key, // 32 random bytes you keep, e.g. in the OS keychain
 *   })
 * }
 * ```
 */
export function denoKvTokenStore(
  kv?: DenoKvLike | Promise<DenoKvLike>,
  options: DenoKvTokenStoreOptions = {},
): DenoKvTokenStore {
  const { prefix = ['aml-edge-auth', 'tokens'], now = Date.now } = options
  if (!Array.isArray(prefix) || prefix.some((p) => typeof p !== 'string')) {
    throw new TypeError('prefix must be an array of strings')
  }
  if (kv !== undefined && typeof kv !== 'object') throw new TypeError('kv must be a Deno.Kv')
  const owned = kv === undefined
  const db = owned ? _openDenoKv(options.path) : Promise.resolve(kv)
  if (!db) {
    throw new AmlAuthError(
      'ERR_STORE',
      'Deno KV is not available: run Deno with --unstable-kv, use Deno Deploy, or pass a Deno.Kv',
    )
  }
  db.catch(() => {})
  const open = (): Promise<DenoKvLike> =>
    db.catch((e) => {
      throw new AmlAuthError('ERR_STORE', 'Could not open Deno KV; the cause says why', {
        cause: e,
      })
    })
  const k = (key: string) => [...prefix, key]
  return {
    async get(key) {
      const { value } = await (await open()).get(k(key))
      return typeof value === 'string' ? value : undefined
    },
    async set(key, value, { expiresAt }) {
      const d = await open()
      // An entry already expired is removed instead of stored.
      const ms = Math.floor(expiresAt - now())
      await (ms > 0 ? d.set(k(key), value, { expireIn: ms }) : d.delete(k(key)))
    },
    async delete(key) {
      await (await open()).delete(k(key))
    },
    async close() {
      if (owned) await db.then((d) => d.close(), () => {})
    },
  }
}
