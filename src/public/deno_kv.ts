/**
 * `denoKvTokenStore`: a shared, encrypted second tier of the token cache on Deno KV (Deno Deploy,
 * or Deno with `--unstable-kv`), and everything of `@aml-edge/auth/core`.
 *
 * @example A token cache shared by every isolate of a Deno Deploy app
 * ```ts
 * import { createTokenCache, denoKvTokenStore, type TokenCache } from '@aml-edge/auth/deno-kv'
 *
 * function sharedCache(key: CryptoKey): TokenCache {
 *   return createTokenCache({ store: denoKvTokenStore(), key })
 * }
 * ```
 *
 * @module
 */
export * from './core.ts'
export {
  type DenoKvLike,
  type DenoKvTokenStore,
  denoKvTokenStore,
  type DenoKvTokenStoreOptions,
} from '../token_store_deno_kv.ts'
