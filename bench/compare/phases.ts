// The measured phases of the head-to-head comparison, runtime-neutral (only `performance`,
// timers and promises), so that the Deno client (client.ts) and the Node client
// (client_node.mjs, which loads this file bundled) run exactly the same code. A library is
// reached only through the `Credentials` factory each client builds.

/** What `getToken` resolves to, in both libraries (`@azure/core-auth` shape). */
export interface TokenLike {
  token: string
  expiresOnTimestamp: number
}

/** A bound `getToken(scope)` of one credential instance. */
export type GetToken = () => Promise<TokenLike | null>

/** Builds fresh credential instances of one library. */
export interface Credentials {
  /** A client-secret credential; `now` is a clock for libraries that accept one. */
  secret(input: PhaseInput, now?: () => number): GetToken
  /** A certificate credential (PEM key and certificate). */
  certificate(input: PhaseInput): GetToken
}

/** Phases main.ts can ask for. */
export type Phase = 'first' | 'first-cert' | 'cached' | 'herd' | 'sixty' | 'sixty-fake'

/** Everything a phase needs; main.ts sends it as JSON. */
export interface PhaseInput {
  origin: string
  tenantId: string
  clientId: string
  clientSecret: string
  certClientId: string
  certKeyPem: string
  certPem: string
  scope: string
  /** herd: concurrent callers (default 200). */
  callers?: number
  /** cached: how long to measure throughput, ms (default 2000). */
  durationMs?: number
  /** cached: timed calls for the percentiles (default 20,000). */
  samples?: number
  /** sixty: number of calls (default 100). */
  calls?: number
  /** sixty / sixty-fake: spacing between calls, ms (default 480). */
  spacingMs?: number
  /** sixty-fake: simulated span, ms (default 48,000). */
  spanMs?: number
  /** sixty: a call slower than this waited for the network (default 2 ms). */
  waitedMs?: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/**
 * Runs one phase and returns what it measured (JSON-serialisable).
 *
 * @param creds the library's credential factory
 * @param phase which phase
 * @param input emulator, credentials and phase parameters
 * @returns the measurements
 */
export async function runPhase(
  creds: Credentials,
  phase: Phase,
  input: PhaseInput,
): Promise<Record<string, number | boolean>> {
  switch (phase) {
    case 'first':
    case 'first-cert': {
      const t0 = performance.now()
      const get = phase === 'first' ? creds.secret(input) : creds.certificate(input)
      const first = await get()
      const t1 = performance.now()
      const second = await get()
      return {
        firstMs: t1 - t0,
        secondMs: performance.now() - t1,
        sameToken: first?.token === second?.token,
      }
    }
    case 'cached': {
      const get = creds.secret(input)
      const first = await get()
      for (let i = 0; i < 2000; i++) await get() // warm-up
      const duration = input.durationMs ?? 2000
      let calls = 0
      const t0 = performance.now()
      let t = t0
      while (t - t0 < duration) {
        for (let i = 0; i < 100; i++) await get()
        calls += 100
        t = performance.now()
      }
      const perSecond = calls / ((t - t0) / 1000)
      const n = input.samples ?? 20_000
      const samples = new Float64Array(n)
      for (let i = 0; i < n; i++) {
        const s = performance.now()
        await get()
        samples[i] = performance.now() - s
      }
      samples.sort()
      const last = await get()
      return {
        perSecond,
        calls,
        p50Us: percentile(samples, 0.5) * 1000,
        p99Us: percentile(samples, 0.99) * 1000,
        maxUs: samples[n - 1]! * 1000,
        sameToken: first?.token === last?.token,
      }
    }
    case 'herd': {
      const get = creds.secret(input)
      const n = input.callers ?? 200
      const t0 = performance.now()
      const tokens = await Promise.all(Array.from({ length: n }, () => get()))
      return {
        ms: performance.now() - t0,
        callers: n,
        distinctTokens: new Set(tokens.map((t) => t?.token)).size,
      }
    }
    case 'sixty': {
      // Real time: `calls` calls, one every `spacingMs` (100 x 480 ms: the last at 47.5 s).
      const get = creds.secret(input)
      const calls = input.calls ?? 100
      const spacing = input.spacingMs ?? 480
      const waitedMs = input.waitedMs ?? 2
      const tokens = new Set<string>()
      const start = performance.now()
      let slowest = 0
      let waited = 0
      for (let i = 0; i < calls; i++) {
        const wait = start + i * spacing - performance.now()
        if (wait > 0) await sleep(wait)
        const s = performance.now()
        const t = await get()
        const ms = performance.now() - s
        slowest = Math.max(slowest, ms)
        if (ms > waitedMs) waited++
        tokens.add(t!.token)
      }
      return {
        calls,
        spanMs: performance.now() - start,
        distinctTokens: tokens.size,
        callsThatWaited: waited,
        slowestCallMs: slowest,
      }
    }
    case 'sixty-fake': {
      // A fake clock (the `now` option): the span passes in moments of real time. It starts on a
      // whole second: `expires_on` is whole seconds, so a token issued mid-second lives up to 1 s
      // less, and its 80 % refresh point (47.2-48 s) could fall before the 100th call (47.52 s),
      // which would then start one background refresh (no caller waits for it).
      const base = Math.ceil(Date.now() / 1000) * 1000
      let fake = base
      const get = creds.secret(input, () => fake)
      const spacing = input.spacingMs ?? 480
      const span = input.spanMs ?? 48_000
      const tokens = new Set<string>()
      let calls = 0
      for (let at = 0; at < span; at += spacing) {
        fake = base + at
        tokens.add((await get())!.token)
        calls++
        // Let a background refresh this call started reach the emulator before time jumps on.
        await sleep(5)
      }
      await sleep(200)
      return { calls, spanMs: span, distinctTokens: tokens.size }
    }
  }
}
