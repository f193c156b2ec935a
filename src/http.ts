/**
 * The one HTTP layer. Every request any credential makes goes through {@linkcode sendRequest}:
 * per-attempt timeout, the caller's `AbortSignal` (also during back-off), bounded retries with
 * exponential back-off and jitter, `Retry-After`, a total deadline and a response-size cap. It
 * throws only for transport failures; a completed response (any status) is returned for a
 * separate parse step, so every error path can be tested on its own.
 *
 * @module
 */
import { AmlAuthError, type AmlAuthErrorOptions, type ErrorCode } from './errors.ts'

/** The `fetch` signature this package needs; pass your own to intercept or instrument. */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/** Retry and timeout settings, common to every credential (`retry` option). */
export interface RetryOptions {
  /** Retries after the first attempt (default 3). */
  maxRetries?: number
  /** First back-off delay in ms before jitter (default 800). */
  baseDelayMs?: number
  /** Longest single back-off delay in ms (default 30 000). */
  maxDelayMs?: number
  /** Upper bound in ms for all attempts and waits together (default 60 000). */
  totalTimeoutMs?: number
}

/** What the transport needs from a credential. */
export interface HttpContext {
  /** The fetch implementation. */
  fetch: FetchLike
  /** Per-attempt timeout in ms. */
  timeoutMs: number
  /** Retry settings. */
  retry: Required<RetryOptions>
  /** Clock in ms. */
  now: () => number
  /** Waits `ms`, rejecting at once when `signal` aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>
  /** Largest response body accepted, in bytes. */
  maxBodyBytes: number
}

/** Decides whether a status is retried: attempt counts from 1 (the first retry). */
export type RetryPredicate = (
  status: number,
  state: { attempt: number; elapsedMs: number; maxRetries: number },
) => boolean

/** 408, 429 and 5xx while retries remain: the set for Entra ID and most managed-identity sources. */
export function _retryStandard(
  status: number,
  s: { attempt: number; maxRetries: number },
): boolean {
  return s.attempt <= s.maxRetries && (status === 408 || status === 429 || status >= 500)
}

/** One request, described as data. */
export interface HttpRequest {
  /** `GET` or `POST`. */
  method: 'GET' | 'POST'
  /** Target URL. */
  url: string | URL
  /** Extra headers. */
  headers?: Record<string, string>
  /** Form fields, sent as `application/x-www-form-urlencoded`; undefined values are dropped. */
  form?: Record<string, string | undefined>
  /** Human name of the endpoint for messages, e.g. `the Entra ID token endpoint`. */
  what: string
  /** Which statuses are retried (default {@linkcode _retryStandard}). */
  retryOn?: RetryPredicate
  /** Overrides of the context's retry settings for this request (IMDS waits longer). */
  retry?: Partial<RetryOptions>
  /** The caller's signal: aborts at once, including during back-off. */
  signal?: AbortSignal | undefined
  /**
   * Whether connection failures and attempt timeouts are retried (default true). IMDS turns this
   * off: on a host without it, a dropped packet means "not on Azure", not "try again".
   */
  retryNetworkErrors?: boolean
}

/** A completed response whose body has been read (bounded). */
export interface HttpResponse {
  /** HTTP status. */
  status: number
  /** Response headers. */
  headers: Headers
  /** Body text. */
  body: string
  /** The raw response (body already consumed). */
  raw: Response
  /** Attempts made, 1 when the first one succeeded. */
  attempts: number
}

/** Default sleep: a timer that the signal cancels. */
export function _sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // Runs on the timer or on the abort, whichever comes first; it stops the other.
    const done = () => {
      clearTimeout(timer)
      stop()
      if (signal?.aborted) reject(signal.reason)
      else resolve()
    }
    const timer = setTimeout(done, ms)
    const stop = _onAbort(signal, done)
    if (signal?.aborted) done()
  })
}

/**
 * Calls `listener` once when `signal` aborts (never if it already has).
 *
 * @param signal the signal, if any
 * @param listener what to run
 * @returns a function that stops listening
 */
export function _onAbort(signal: AbortSignal | undefined, listener: () => void): () => void {
  signal?.addEventListener('abort', listener, { once: true })
  return () => signal?.removeEventListener('abort', listener)
}

/** Builds an {@linkcode HttpContext} from common credential options. */
export function _httpContext(options: {
  fetch?: FetchLike | undefined
  timeoutMs?: number | undefined
  retry?: RetryOptions | undefined
  now?: (() => number) | undefined
  sleep?: ((ms: number, signal?: AbortSignal) => Promise<void>) | undefined
}): HttpContext {
  const r = options.retry ?? {}
  return {
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    timeoutMs: options.timeoutMs ?? 10_000,
    retry: {
      maxRetries: r.maxRetries ?? 3,
      baseDelayMs: r.baseDelayMs ?? 800,
      maxDelayMs: r.maxDelayMs ?? 30_000,
      totalTimeoutMs: r.totalTimeoutMs ?? 60_000,
    },
    now: options.now ?? Date.now,
    sleep: options.sleep ?? _sleep,
    maxBodyBytes: 1 << 20,
  }
}

/**
 * How long a server asked us to wait, in ms: `retry-after-ms`, `x-ms-retry-after-ms`, then
 * `Retry-After` as seconds or an HTTP date. `undefined` when absent or unreadable.
 */
export function _retryAfterMs(headers: Headers, nowMs: number): number | undefined {
  // Each header with the factor that turns its number into ms.
  const names = [['retry-after-ms', 1], ['x-ms-retry-after-ms', 1], ['retry-after', 1000]] as const
  for (const [name, factor] of names) {
    const v = headers.get(name)?.trim()
    if (v && /^\d+(\.\d+)?$/.test(v)) return Number(v) * factor
  }
  const date = Date.parse(headers.get('retry-after') as string) // NaN for null too
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}

/**
 * Sends one logical request with retries. Returns the final response whatever its status;
 * throws {@linkcode AmlAuthError} for timeouts (`ERR_TIMEOUT`), caller aborts (`ERR_ABORTED`),
 * connection failures (`ERR_NETWORK`) and oversized bodies (`ERR_RESPONSE_TOO_LARGE`).
 */
export async function sendRequest(ctx: HttpContext, req: HttpRequest): Promise<HttpResponse> {
  const retry = { ...ctx.retry, ...req.retry }
  const { what, signal } = req
  const start = ctx.now()
  const body = req.form &&
    new URLSearchParams(
        Object.entries(req.form).filter((e): e is [string, string] => e[1] !== undefined),
      ) + ''
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...body !== undefined && { 'content-type': 'application/x-www-form-urlencoded;charset=utf-8' },
    ...req.headers,
  }
  const fail = (code: ErrorCode, message: string, options?: AmlAuthErrorOptions) =>
    new AmlAuthError(code, what + message, options)
  // Back-off: exponential with jitter (half fixed, half random); the caller's signal ends it.
  const wait = async (ms: number) => {
    try {
      await ctx.sleep(ms, signal)
    } catch {
      throw _aborted(what)
    }
  }
  const backoff = (attempt: number) => {
    const exp = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1))
    return exp / 2 + Math.random() * (exp / 2)
  }
  for (let attempt = 1;; attempt++) {
    if (signal?.aborted) throw _aborted(what)
    const remaining = retry.totalTimeoutMs - (ctx.now() - start)
    if (remaining <= 0) {
      throw fail(
        'ERR_TIMEOUT',
        `: no usable answer in ${retry.totalTimeoutMs} ms (${attempt - 1} tries)`,
      )
    }
    const attemptMs = Math.min(ctx.timeoutMs, remaining)
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      controller.abort()
    }, attemptMs)
    const stopListening = _onAbort(signal, () => controller.abort())
    let res: Response
    let text = ''
    try {
      res = await ctx.fetch(req.url, {
        method: req.method,
        headers,
        ...body !== undefined && { body },
        signal: controller.signal,
        redirect: 'manual',
      })
      // The 1 MiB cap: checked on the declared length, then while streaming.
      const tooLarge = () =>
        fail(
          'ERR_RESPONSE_TOO_LARGE',
          `: response over ${ctx.maxBodyBytes} bytes; check the endpoint`,
          { status: res.status },
        )
      if (Number(res.headers.get('content-length')) > ctx.maxBodyBytes) {
        await res.body?.cancel()
        throw tooLarge()
      }
      const reader = res.body?.getReader()
      const chunks: Uint8Array<ArrayBuffer>[] = []
      let size = 0
      for (let r; reader && !(r = await reader.read()).done;) {
        if ((size += r.value.byteLength) > ctx.maxBodyBytes) {
          await reader.cancel()
          throw tooLarge()
        }
        chunks.push(r.value)
      }
      text = await new Blob(chunks).text()
    } catch (e) {
      if (e instanceof AmlAuthError) throw e
      if (signal?.aborted) throw _aborted(what)
      const err = timedOut
        ? fail(
          'ERR_TIMEOUT',
          `: no answer in ${attemptMs} ms; check the network or raise timeoutMs`,
        )
        : fail(
          'ERR_NETWORK',
          `: cannot connect to ${originOf(req.url)}; check the endpoint and network`,
          {
            cause: e,
          },
        )
      if (req.retryNetworkErrors === false || attempt > retry.maxRetries) throw err
      await wait(backoff(attempt))
      continue
    } finally {
      clearTimeout(timer)
      stopListening()
    }
    const elapsedMs = ctx.now() - start
    const state = { attempt, elapsedMs, maxRetries: retry.maxRetries }
    // A wait past the deadline cannot end in success: hand back the refusal now.
    const delay = res.status >= 400 && (req.retryOn ?? _retryStandard)(res.status, state)
      ? _retryAfterMs(res.headers, start + elapsedMs) ?? backoff(attempt)
      : Infinity
    if (elapsedMs + delay >= retry.totalTimeoutMs) {
      return { status: res.status, headers: res.headers, body: text, raw: res, attempts: attempt }
    }
    await wait(delay)
  }
}

function originOf(url: string | URL): string {
  try {
    return new URL(url).origin
  } catch {
    return 'the endpoint'
  }
}

/**
 * Parses a response body as a JSON object, turning empty bodies, HTML pages and garbage into
 * `ERR_RESPONSE_INVALID` errors that say what arrived instead.
 */
export function _parseJsonObject(res: HttpResponse, what: string): Record<string, unknown> {
  const text = res.body.trim()
  let problem = 'an empty body'
  if (text) {
    // An HTML page (a proxy's or a sign-in page) starts with '<'; JSON never does.
    problem = 'an HTML page; check the endpoint URL'
    if (!text.startsWith('<')) {
      try {
        const value = JSON.parse(text)
        if (value && typeof value === 'object' && !Array.isArray(value)) return value
        problem = 'not a JSON object'
      } catch {
        problem = 'not valid JSON'
      }
    }
  }
  throw _invalidResponse(what, problem, res.status)
}

/**
 * The `ERR_RESPONSE_INVALID` error: `what` answered, but not with something usable.
 *
 * @param what the service, e.g. `Microsoft Entra ID`
 * @param problem what is wrong with the answer, and what to check
 * @param status the response's status, when the answer had one
 * @returns the error
 */
export function _invalidResponse(what: string, problem: string, status?: number): AmlAuthError {
  return new AmlAuthError(
    'ERR_RESPONSE_INVALID',
    `${what} sent an unusable response${status ? ` (status ${status})` : ''}: ${problem}`,
    { status },
  )
}

/**
 * The `ERR_ABORTED` error for a caller's abort signal; shared by the HTTP layer and the token
 * lookup so that the wording lives once.
 *
 * @param what what was aborted, e.g. `Microsoft Entra ID` or `The token request`
 * @returns the error
 */
export function _aborted(what: string): AmlAuthError {
  return new AmlAuthError('ERR_ABORTED', what + ': aborted by the caller')
}
