/**
 * Per-caller rate limiting: the Workers rate-limiting binding (`ratelimits` in wrangler.jsonc,
 * shared by the isolates of a location) when it is bound, else a fixed one-minute window per
 * isolate. Either way a refusal carries `Retry-After`.
 *
 * @module
 */
import type { RateLimitBinding } from './env.ts'

/** The outcome of counting one request. */
export type RateDecision = { ok: true } | { ok: false; retryAfterSeconds: number }

/** Counts requests per key. */
export interface RateLimiter {
  /** Counts one request for `key`. */
  limit(key: string): Promise<RateDecision>
}

/**
 * A limiter over the Workers binding. The binding does not say when its window ends, so
 * `Retry-After` is its period.
 *
 * @param binding the `RATE_LIMITER` binding
 * @param periodSeconds the period configured in wrangler.jsonc (10 or 60)
 * @returns the limiter
 */
export function bindingLimiter(binding: RateLimitBinding, periodSeconds = 60): RateLimiter {
  return {
    async limit(key) {
      try {
        const { success } = await binding.limit({ key })
        return success ? { ok: true } : { ok: false, retryAfterSeconds: periodSeconds }
      } catch {
        // A failing limiter must not take the broker down: let the request through.
        return { ok: true }
      }
    },
  }
}

const MAX_KEYS = 10_000

/**
 * A fixed one-minute window per key, in this isolate's memory (bounded: the oldest windows are
 * dropped first).
 *
 * @param perMinute requests allowed per key per minute
 * @param now clock, ms
 * @returns the limiter
 */
export function memoryLimiter(perMinute: number, now: () => number = Date.now): RateLimiter {
  const windows = new Map<string, { start: number; count: number }>()
  return {
    limit(key) {
      const t = now()
      let w = windows.get(key)
      if (w === undefined || t - w.start >= 60_000) {
        windows.delete(key)
        if (windows.size >= MAX_KEYS) {
          for (const [k, v] of windows) {
            if (t - v.start >= 60_000 || windows.size >= MAX_KEYS) windows.delete(k)
            if (windows.size < MAX_KEYS / 2) break
          }
        }
        w = { start: t, count: 0 }
        windows.set(key, w)
      }
      w.count++
      if (w.count <= perMinute) return Promise.resolve({ ok: true })
      return Promise.resolve({
        ok: false,
        retryAfterSeconds: Math.max(1, Math.ceil((w.start + 60_000 - t) / 1000)),
      })
    },
  }
}
